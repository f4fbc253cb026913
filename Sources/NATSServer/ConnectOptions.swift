// CONNECT: the client's options, decoded the way nats-server 2.9.10 decodes them
// (Go encoding/json into a struct that starts from the defaults).

import Formats

/// The options a client sends in CONNECT.
///
/// Before any CONNECT a client has the defaults `verbose`, `pedantic` and `echo` all true. A CONNECT
/// changes only the keys it contains (keys match case-insensitively, as in Go); a key with the wrong
/// JSON type makes the whole CONNECT invalid, and nats-server then closes the connection silently.
struct ConnectOptions: Equatable, Sendable {
    var verbose = true
    var pedantic = true
    var echo = true
    var headers = false
    var noResponders = false
    var tlsRequired = false
    var protocolVersion = 0
    var name = ""
    var lang = ""
    var version = ""
    var user = ""
    var pass = ""
    var authToken = ""
    var account = ""
    var newAccount = false
    var nkey = ""
    var sig = ""
    var jwt = ""

    /// A CONNECT argument that nats-server would fail to unmarshal.
    struct DecodeError: Error, Equatable {
        let message: String
    }

    /// Applies the CONNECT JSON in `json` on top of `self`.
    /// - Throws: ``DecodeError`` when the JSON is malformed, is not an object, or gives a known
    ///   key a value of the wrong type.
    mutating func apply(json: UnsafeRawBufferPointer) throws(DecodeError) {
        let value: JSON
        do {
            value = try JSON.parse(json.assumingMemoryBound(to: UInt8.self))
        } catch {
            throw DecodeError(message: "malformed JSON: \(error.message) at offset \(error.offset)")
        }
        guard case .object(let members) = value else {
            throw DecodeError(message: "CONNECT argument is not a JSON object")
        }
        var updated = self
        for member in members {
            try updated.set(key: member.key.lowercased(), member.value)
        }
        self = updated
    }

    private mutating func set(key: String, _ value: JSON) throws(DecodeError) {
        switch key {
        case "verbose": try assign(&verbose, value, key)
        case "pedantic": try assign(&pedantic, value, key)
        case "echo": try assign(&echo, value, key)
        case "headers": try assign(&headers, value, key)
        case "no_responders": try assign(&noResponders, value, key)
        case "tls_required": try assign(&tlsRequired, value, key)
        case "new_account": try assign(&newAccount, value, key)
        case "name": try assign(&name, value, key)
        case "lang": try assign(&lang, value, key)
        case "version": try assign(&version, value, key)
        case "user": try assign(&user, value, key)
        case "pass": try assign(&pass, value, key)
        case "auth_token": try assign(&authToken, value, key)
        case "account": try assign(&account, value, key)
        case "nkey": try assign(&nkey, value, key)
        case "sig": try assign(&sig, value, key)
        case "jwt": try assign(&jwt, value, key)
        case "protocol":
            switch value {
            case .null: break
            case .int(let number):
                protocolVersion = Int(number)
            case .double(let number):
                throw DecodeError(message: "protocol must be an integer, got \(number)")
            default: throw DecodeError(message: "protocol must be a number")
            }
        default:
            break  // Unknown keys are ignored, as Go's json.Unmarshal does.
        }
    }

    private func assign(_ field: inout Bool, _ value: JSON, _ key: String) throws(DecodeError) {
        switch value {
        case .null: break
        case .bool(let flag): field = flag
        default: throw DecodeError(message: "\(key) must be a boolean")
        }
    }

    private func assign(_ field: inout String, _ value: JSON, _ key: String) throws(DecodeError) {
        switch value {
        case .null: break
        case .string(let text): field = text
        default: throw DecodeError(message: "\(key) must be a string")
        }
    }
}
