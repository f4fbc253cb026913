// The INFO a server sends, and the CONNECT the client answers with.

import Foundation

/// What a server announced in its INFO message.
public struct ServerInfo: Sendable, Decodable, Equatable {
    /// The server's unique id.
    public var serverID: String
    /// The server's configured name (often equal to the id).
    public var serverName: String?
    /// The server's version, such as `2.9.10`.
    public var version: String
    /// The protocol level (1 means async INFO is supported).
    public var proto: Int
    /// Whether the server accepts headers (HPUB/HMSG).
    public var headers: Bool
    /// The largest message (headers plus payload) the server accepts.
    public var maxPayload: Int
    /// Whether the server requires authentication.
    public var authRequired: Bool
    /// Other servers of the cluster, as `host:port`.
    public var connectURLs: [String]
    /// Whether the server entered lame duck mode (it will close connections soon).
    public var lameDuckMode: Bool
    /// This connection's id on the server (`cid` in /connz).
    public var clientID: UInt64?
    /// The challenge an nkey user signs in CONNECT (sent when the server has nkey users).
    public var nonce: String?

    enum CodingKeys: String, CodingKey {
        case serverID = "server_id", serverName = "server_name", version, proto, headers
        case maxPayload = "max_payload", authRequired = "auth_required", connectURLs = "connect_urls"
        case lameDuckMode = "ldm", clientID = "client_id", nonce
    }

    /// Decodes the INFO JSON with defaults for missing optional fields.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        serverID = try c.decodeIfPresent(String.self, forKey: .serverID) ?? ""
        serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
        proto = try c.decodeIfPresent(Int.self, forKey: .proto) ?? 0
        headers = try c.decodeIfPresent(Bool.self, forKey: .headers) ?? false
        maxPayload = try c.decodeIfPresent(Int.self, forKey: .maxPayload) ?? 1_048_576
        authRequired = try c.decodeIfPresent(Bool.self, forKey: .authRequired) ?? false
        connectURLs = try c.decodeIfPresent([String].self, forKey: .connectURLs) ?? []
        lameDuckMode = try c.decodeIfPresent(Bool.self, forKey: .lameDuckMode) ?? false
        clientID = try c.decodeIfPresent(UInt64.self, forKey: .clientID)
        nonce = try c.decodeIfPresent(String.self, forKey: .nonce)
    }

    /// Parses the JSON argument of INFO.
    ///
    /// - Throws: ``NATSError/protocolError(_:)`` if it is not a JSON object.
    static func parse(_ json: UnsafeRawBufferPointer) throws(NATSError) -> ServerInfo {
        do {
            return try JSONDecoder().decode(ServerInfo.self, from: Data(json))
        } catch {
            throw .protocolError("malformed INFO: \(error)")
        }
    }
}

/// The CONNECT JSON (field names as nats-server 2.9.10 reads them).
struct ConnectInfo: Encodable {
    var verbose: Bool
    var pedantic: Bool
    var tls_required = false
    var name: String?
    var lang = "swift"
    var version = "0.1.0"
    var `protocol` = 1
    var echo: Bool
    var headers = true
    var no_responders: Bool
    var user: String?
    var pass: String?
    var auth_token: String?
    /// The public user nkey, and `sig`, its signature of INFO's nonce in base64url without padding.
    var nkey: String?
    var sig: String?

    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings and booleans cannot fail.
        return (try? Array(encoder.encode(self))) ?? Array("{}".utf8)
    }
}
