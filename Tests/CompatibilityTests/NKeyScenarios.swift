// nkey users on the wire: the same config file on both brokers, CONNECT signed with the nonce each
// connection's INFO carries. A step's text names the seed that signs: `<sig:SEED>` (base64url, as
// clients send it) or `<stdsig:SEED>` (standard base64 with padding, which 2.9.10 also accepts).
import NKeys

enum NKeyScenarios {
    // nats-server 2.9.10's own test users (server/reload_test.go): two seeds and the first one's key.
    static let userSeed = "SUAPM67TC4RHQLKBX55NIQXSMATZDOZK6FNEOSS36CAYA7F7TY66LP4BOM"
    static let userKey = "UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR"
    static let otherSeed = "SUAIS5JPX4X4GJ7EIIJEQ56DH2GWPYJRPWN5XJEDENJOZHCBLI7SEPUQDE"
    /// The public key of `otherSeed`, which the config does not list.
    static var otherKey: String { pair(otherSeed).publicKey.encoded }

    /// The key pair of a seed of these scenarios: a seed that does not parse is a bug of the test
    /// itself, which must stop it rather than send an empty key or signature.
    static func pair(_ seed: String) -> NKeyPair {
        do {
            return try NKeyPair(seed: seed)
        } catch {
            preconditionFailure("NKeyScenarios: seed \(seed.prefix(4))... does not parse: \(error)")
        }
    }

    static func signature(_ seed: String, of text: String) -> [UInt8] {
        do {
            return try pair(seed).sign(Array(text.utf8))
        } catch {
            preconditionFailure("NKeyScenarios: cannot sign: \(error)")
        }
    }

    static let config = BrokerConfig(configLines: [
        "authorization {",
        "  users = [",
        "    {nkey: \(userKey), permissions: {publish: \"allowed.>\", subscribe: \"allowed.>\"}}",
        "    {user: alice, password: secret}",
        "  ]",
        "}",
    ])

    /// `text` with every `<sig:SEED>` and `<stdsig:SEED>` replaced by SEED's signature of the nonce
    /// in `info` (the INFO line the connection received first; an empty nonce when it has none).
    static func signed(_ text: String, info: [UInt8]) -> [UInt8] {
        var out = text
        for (marker, encode) in [("<sig:", Base64.urlEncoded), ("<stdsig:", Base64.standardEncoded)] {
            while let start = out.range(of: marker), let end = out[start.upperBound...].firstIndex(of: ">") {
                let seed = String(out[start.upperBound..<end])
                let signature = encode(signature(seed, of: nonce(in: info)))
                out.replaceSubrange(start.lowerBound...end, with: signature)
            }
        }
        return Array(out.utf8)
    }

    static func nonce(in info: [UInt8]) -> String {
        let line = String(decoding: info.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        guard let start = line.range(of: #""nonce":""#) else { return "" }
        return String(line[start.upperBound...].prefix { $0 != "\"" })
    }

    private static func connect(_ fields: String) -> String {
        #"CONNECT {"verbose":false,"# + fields + "}\r\n"
    }

    private static let violation = "-ERR 'Authorization Violation'\r\n"

    static let all: [Scenario] = [
        Scenario(name: "nkeys: a signed nonce logs in, and the user's permissions apply", config: config,
                 steps: [.exchange(connect(#""nkey":"\#(userKey)","sig":"<sig:\#(userSeed)>""#)
                                   + "SUB allowed.a 1\r\nPUB allowed.a 1\r\nx\r\nPUB other 1\r\ny\r\nSUB other 2\r\n")],
                 expect: [.open("MSG allowed.a 1 1\r\nx\r\n-ERR 'Permissions Violation for Publish to \"other\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"other\"'\r\nPONG\r\n")]),
        Scenario(name: "nkeys: a standard base64 signature with padding is accepted too", config: config,
                 steps: [.exchange(connect(#""nkey":"\#(userKey)","sig":"<stdsig:\#(userSeed)>""#))],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "nkeys: verbose CONNECT gets +OK", config: config,
                 steps: [.exchange(#"CONNECT {"verbose":true,"nkey":"\#(userKey)","sig":"<sig:\#(userSeed)>"}"# + "\r\n")],
                 expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "nkeys: another key's signature gets Authorization Violation", config: config,
                 steps: [.sendExpectingClose(connect(#""nkey":"\#(userKey)","sig":"<sig:\#(otherSeed)>""#))],
                 expect: [.closed(violation)]),
        Scenario(name: "nkeys: a missing signature gets Authorization Violation", config: config,
                 steps: [.sendExpectingClose(connect(#""nkey":"\#(userKey)""#))],
                 expect: [.closed(violation)]),
        Scenario(name: "nkeys: a signature that is not base64 gets Authorization Violation", config: config,
                 steps: [.sendExpectingClose(connect(#""nkey":"\#(userKey)","sig":"not*base64""#))],
                 expect: [.closed(violation)]),
        Scenario(name: "nkeys: a signature of another text gets Authorization Violation", config: config,
                 steps: [.sendExpectingClose(connect(
                    #""nkey":"\#(userKey)","sig":"\#(signatureOfOtherText)""#))],
                 expect: [.closed(violation)]),
        Scenario(name: "nkeys: an unknown nkey with its own good signature gets Authorization Violation", config: config,
                 steps: [.sendExpectingClose(connect(#""nkey":"\#(otherKey)","sig":"<sig:\#(otherSeed)>""#))],
                 expect: [.closed(violation)]),
        Scenario(name: "nkeys: an unknown nkey with a password user's credentials gets Authorization Violation",
                 config: config,
                 steps: [.sendExpectingClose(connect(#""nkey":"\#(otherKey)","user":"alice","pass":"secret""#))],
                 expect: [.closed(violation)]),
        Scenario(name: "nkeys: a password user beside nkey users still logs in", config: config,
                 steps: [.exchange(connect(#""user":"alice","pass":"secret""#))],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "nkeys: CONNECT without credentials gets Authorization Violation", config: config,
                 steps: [.sendExpectingClose("CONNECT {}\r\n")],
                 expect: [.closed(violation)]),
    ]

    /// The user's signature of a fixed text: well-formed, but not of the connection's nonce.
    static var signatureOfOtherText: String {
        Base64.urlEncoded(signature(userSeed, of: "not the nonce"))
    }
}
