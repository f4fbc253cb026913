// Credentials are compared as bytes, as nats-server 2.9.10 compares them: a canonically equivalent
// spelling (U+212A KELVIN SIGN for K) is another name or secret.

import Testing

@testable import NATSServer

@Suite("credentials compared as bytes")
struct CredentialTests {
    private let kelvin = "\u{212A}"

    @Test func theComparisonsLookAtBytes() {
        #expect(kelvin + "ate" == "Kate")  // Swift's String == is canonical equivalence
        #expect(!Credentials.sameBytes(kelvin + "ate", "Kate"))
        #expect(Credentials.sameBytes("Kate", "Kate"))
        #expect(!Credentials.secretsMatch("Kate", kelvin + "ate"))
        #expect(!Credentials.secretsMatch("Kate", "Kat"))
        #expect(!Credentials.secretsMatch("Kate", "Katf"))
        #expect(Credentials.secretsMatch("Kate", "Kate"))
        #expect(Credentials.secretsMatch("", ""))
    }

    @Test("a Kelvin-sign spelling is refused", arguments: ["user", "password", "users", "token"])
    func aKelvinSpellingIsRefused(kind: String) throws {
        let broker = try TestBroker {
            switch kind {
            case "user", "password":
                $0.username = "Kate"
                $0.password = "Kelvin"
            case "users": $0.users = [User(name: "Kate", password: "Kelvin")]
            default: $0.authToken = "Kate"
            }
        }
        let good = kind == "token" ? #"{"verbose":false,"auth_token":"Kate"}"#
            : #"{"verbose":false,"user":"Kate","pass":"Kelvin"}"#
        let bad: String
        switch kind {
        case "password": bad = #"{"user":"Kate","pass":"\#(kelvin)elvin"}"#
        case "token": bad = #"{"auth_token":"\#(kelvin)ate"}"#
        default: bad = #"{"user":"\#(kelvin)ate","pass":"Kelvin"}"#
        }
        let accepted = try broker.client()
        try accepted.send("CONNECT \(good)\r\n")
        #expect(try accepted.sync().isEmpty)
        let refused = try broker.client()
        try refused.send("CONNECT \(bad)\r\nPING\r\n")
        #expect(try refused.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }
}
