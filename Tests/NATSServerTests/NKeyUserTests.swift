// nkey users: `users [{nkey: U...}]` read and checked as nats-server 2.9.10 does, a nonce in
// every INFO while nkey users are configured, CONNECT's signature of it verified, and reloads.

import Foundation
import NATSConfig
import NKeys
import Testing

@testable import NATSServer

// nats-server 2.9.10's test users (server/reload_test.go).
private let userSeed = "SUAPM67TC4RHQLKBX55NIQXSMATZDOZK6FNEOSS36CAYA7F7TY66LP4BOM"
private let userKey = "UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR"
private let otherSeed = "SUAIS5JPX4X4GJ7EIIJEQ56DH2GWPYJRPWN5XJEDENJOZHCBLI7SEPUQDE"

private func parsed(_ text: String) throws -> Options {
    var options = Options()
    try options.apply(ConfigParser.parse(text, file: "nats.conf", environment: [:]))
    return options
}

private func refusal(_ text: String) -> ConfigError? {
    do {
        _ = try parsed(text)
        return nil
    } catch {
        return error as? ConfigError
    }
}

/// The CONNECT JSON of `seed`'s user signing `nonce`.
private func signedConnect(seed: String, nonce: String, verbose: Bool = false) throws -> String {
    let pair = try NKeyPair(seed: seed)
    let signature = Base64.urlEncoded(try pair.sign(Array(nonce.utf8)))
    return #"{"verbose":\#(verbose),"nkey":"\#(pair.publicKey.encoded)","sig":"\#(signature)"}"#
}

private func nkeyBroker(permissions: Permissions? = nil) throws -> TestBroker {
    try TestBroker {
        $0.users = [User(name: userKey, password: "", permissions: permissions, nkey: userKey),
                    User(name: "alice", password: "secret")]
    }
}

@Suite("nkey users")
struct NKeyUserTests {
    @Test func anNKeyUserIsReadWithItsPermissions() throws {
        let options = try parsed("""
            authorization {
              users = [
                {nkey: \(userKey), permissions: {publish: "a.>"}}
                {user: alice, password: secret}
              ]
            }
            """)
        let user = try #require(options.users.first)
        #expect(user.nkey == userKey)
        #expect(user.name == userKey)
        #expect(user.password == "")
        #expect(user.permissions?.publish?.allow == ["a.>"])
        #expect(options.users.last?.nkey == nil)
        #expect(options.nonceRequired)
        #expect(!(try parsed("authorization { users = [ {user: a, password: b} ] }")).nonceRequired)
    }

    @Test func badNKeyUsersAreRefusedWith2_9_10sWords() throws {
        let wrapped = { (entry: String) in "authorization {\n  users = [\n    \(entry)\n  ]\n}" }
        let notAKey = try #require(refusal(wrapped("{nkey: UBAD}")))
        #expect(notAKey.message == "Not a valid public nkey for a user")
        #expect(notAKey.location == SourceLocation(file: "nats.conf", line: 3, column: 6))
        // An account key, and a user key with one character changed (its CRC no longer matches).
        #expect(refusal(wrapped("{nkey: A\(userKey.dropFirst())}"))?.message == "Not a valid public nkey for a user")
        #expect(refusal(wrapped("{nkey: \(userKey.dropLast())A}"))?.message == "Not a valid public nkey for a user")
        let withUser = try #require(refusal(wrapped("{nkey: \(userKey), user: x}")))
        #expect(withUser.message == "Nkey users do not take usernames or passwords")
        #expect(withUser.location?.column == 70)
        #expect(refusal(wrapped("{nkey: \(userKey), password: x}"))?.message
                == "Nkey users do not take usernames or passwords")
        #expect(refusal(wrapped("{nkey: \(userKey)}, {nkey: \(userKey)}"))?.message
                == "Duplicate nkey \"\(userKey)\" detected")
        #expect(refusal(wrapped("{nkey: 5}")) != nil)
    }

    @Test("nkey configs are judged as nats-server 2.9.10 judges them", arguments: [
        "{nkey: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR, permissions: {publish: \"a\"}}",
        "{nkey: UBAD}",
        "{nkey: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR, password: x}",
        "{user: a,\n     password: x, nkey: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR}",
        "{user: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR, password: p}\n    {nkey: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR}",
        "{nkey: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR}\n    {nkey: UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR}",
        "{user: a, password: p}\n    {user: a, password: q}",
        "{user: K, password: p}\n    {user: \"\u{212A}\", password: q}",
    ])
    func judgedAsTheReference(entry: String) throws {
        // Not on the first line: 2.9.10 counts that line's columns from 0, the others from 1.
        try Self.expectJudgedAsTheReference("# users\nauthorization {\n  users = [\n    \(entry)\n  ]\n}\n")
    }

    @Test("user names and nkeys are one set across authorization and accounts, as 2.9.10 has them", arguments: [
        "# users\nauthorization {\n  users = [\n    {nkey: \(userKey)}\n  ]\n}\naccounts {\n  A {\n    users = [\n      {user: \(userKey), password: p}\n    ]\n  }\n}\n",
        "accounts {\n  A {\n    users = [\n      {nkey: \(userKey)}\n    ]\n  }\n}\nauthorization {\n  users = [\n    {user: \(userKey), password: p}\n  ]\n}\n",
        "accounts {\n  A {\n    users = [\n      {user: \(userKey), password: p}\n      {nkey: \(userKey)}\n    ]\n  }\n}\n",
        "accounts {\n  A {\n    users = [\n      {nkey: \(userKey)}\n    ]\n  }\n  B {\n    users = [\n      {nkey: \(userKey)}\n    ]\n  }\n}\n",
    ])
    func namesAreOneSetAsTheReference(text: String) throws {
        try Self.expectJudgedAsTheReference(text)
    }

    /// Our verdict on `text` is 2.9.10's: both accept it, or both refuse it with the same
    /// `file:line:col: message`. 2.9.10 visits a config's top-level keys, its accounts and a user
    /// map's keys in Go's map order, which varies between runs: where that changes its report (the
    /// key it names, which duplicate it finds first), ours must be one of its reports, so it is
    /// asked again a few times before they are compared.
    static func expectJudgedAsTheReference(_ text: String) throws {
        guard var reference = try ConfigFileCompatibilityTests.referenceVerdict(text) else { return }
        let ours = refusal(text)
        #expect(reference.valid == (ours == nil), "\(reference.output)")
        guard let ours else { return }
        let whole = "/" + ours.description + "\n"
        for _ in 0..<12 where !reference.output.contains(whole) {
            reference = try #require(try ConfigFileCompatibilityTests.referenceVerdict(text))
        }
        #expect(reference.output.contains(whole), "ours: \(ours.description), 2.9.10: \(reference.output)")
    }

    @Test func infoCarriesAFreshNonceOnlyWithNKeyUsers() throws {
        let broker = try nkeyBroker()
        var nonces: Set<String> = []
        for _ in 0..<3 {
            let info = try RawClient(port: broker.port).readInfo()
            let nonce = try #require(info.json["nonce"] as? String)
            #expect(nonce.count == 15)
            #expect(nonce.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            // After client_ip, as 2.9.10 orders INFO.
            #expect(info.raw.hasSuffix(#","nonce":"\#(nonce)"} "#))
            nonces.insert(nonce)
        }
        #expect(nonces.count == 3)
        let passwordsOnly = try TestBroker { $0.users = [User(name: "alice", password: "secret")] }
        #expect(try RawClient(port: passwordsOnly.port).readInfo().json["nonce"] == nil)
    }

    @Test func aSignedNonceLogsInAndPermissionsApply() throws {
        var permissions = Permissions()
        permissions.publish = SubjectPermission(allow: ["a.>"])
        let broker = try nkeyBroker(permissions: permissions)
        let client = try RawClient(port: broker.port)
        let nonce = try #require(try client.readInfo().json["nonce"] as? String)
        try client.send("CONNECT \(try signedConnect(seed: userSeed, nonce: nonce, verbose: true))\r\nSUB a.b 1\r\nPUB a.b 1\r\nx\r\nPUB c 0\r\n\r\n")
        #expect(try client.sync() == ["+OK", "+OK", "+OK", "MSG a.b 1 1", "x",
                                     "-ERR 'Permissions Violation for Publish to \"c\"'"])
        let alice = try broker.connected(#"{"verbose":false,"user":"alice","pass":"secret"}"#)
        #expect(try alice.sync().isEmpty)
    }

    @Test("a CONNECT that does not prove the key gets Authorization Violation", arguments: [
        "other seed", "other nonce", "no sig", "garbage sig", "unknown key", "nonce of another connection",
    ])
    func unprovenKeysAreRefused(_ case: String) throws {
        let broker = try nkeyBroker()
        let client = try RawClient(port: broker.port)
        let nonce = try #require(try client.readInfo().json["nonce"] as? String)
        let connect: String
        switch `case` {
        case "other seed":
            connect = try signedConnect(seed: otherSeed, nonce: nonce).replacingOccurrences(
                of: try NKeyPair(seed: otherSeed).publicKey.encoded, with: userKey)
        case "other nonce": connect = try signedConnect(seed: userSeed, nonce: nonce + "x")
        case "no sig": connect = #"{"verbose":false,"nkey":"\#(userKey)"}"#
        case "garbage sig": connect = #"{"verbose":false,"nkey":"\#(userKey)","sig":"@@@"}"#
        case "unknown key": connect = try signedConnect(seed: otherSeed, nonce: nonce)
        default:
            let second = try RawClient(port: broker.port)
            let otherNonce = try #require(try second.readInfo().json["nonce"] as? String)
            connect = try signedConnect(seed: userSeed, nonce: otherNonce)
        }
        try client.send("CONNECT \(connect)\r\nPING\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }

    @Test func refusalsAreLoggedIn2_9_10sWords() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nkeys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logPath = directory.appendingPathComponent("broker.log").path
        let broker = try TestBroker {
            $0.users = [User(name: userKey, password: "", nkey: userKey), User(name: "alice", password: "secret")]
            $0.noLog = false
            $0.debug = true
            $0.logFile = logPath
        }
        let attempts = [
            #"{"nkey":"\#(userKey)"}"#,
            #"{"nkey":"\#(userKey)","sig":"@@@"}"#,
            #"{"nkey":"\#(userKey)","sig":"\#(Base64.urlEncoded([UInt8](repeating: 1, count: 64)))"}"#,
            #"{"user":"alice","pass":"wrong"}"#,
        ]
        for attempt in attempts {
            let client = try broker.client()
            try client.send("CONNECT \(attempt)\r\nPING\r\n")
            #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
        }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        #expect(eventually { log().components(separatedBy: "authentication error").count == 5 })
        let lines = log().split(separator: "\n").filter { $0.contains(" - cid:") && !$0.contains("Client connection") }
            .map { $0.split(separator: " - ", maxSplits: 2).last.map(String.init) ?? "" }
        let nkeyError = "authentication error - Nkey \"\(userKey)\""
        #expect(lines == ["Signature missing", nkeyError, "Signature not valid base64", nkeyError,
                          "Signature not verified", nkeyError, "authentication error - Nkey \"\""])
    }

    @Test func aClientAReloadRefusesIsLoggedAsARefusedConnect() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nkeys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logPath = directory.appendingPathComponent("broker.log").path
        let broker = try TestBroker {
            $0.users = [User(name: userKey, password: "", nkey: userKey), User(name: "alice", password: "secret"),
                        User(name: "bob", password: "secret")]
            $0.noLog = false
            $0.debug = true
            $0.logFile = logPath
        }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        let alice = try broker.client()
        try alice.send(#"CONNECT {"verbose":false,"user":"alice","pass":"secret"}"# + "\r\n")
        #expect(try alice.sync().isEmpty)
        let bob = try broker.client()
        try bob.send(#"CONNECT {"verbose":false,"user":"bob","pass":"secret"}"# + "\r\n")
        #expect(try bob.sync().isEmpty)

        // nkey users still configured: 2.9.10 names CONNECT's (empty) nkey, not the user.
        var fresh = broker.server.options
        fresh.users = [User(name: userKey, password: "", nkey: userKey), User(name: "bob", password: "secret")]
        try broker.server.reload(fresh)
        #expect(try alice.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
        #expect(eventually { log().contains(#"authentication error - Nkey """#) })

        // Password users only: it names the user.
        fresh.users = [User(name: "alice", password: "secret")]
        try broker.server.reload(fresh)
        #expect(try bob.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
        #expect(eventually { log().contains(#"authentication error - User "bob""#) })
        #expect(!log().contains(#"authentication error - User "alice""#))
    }

    @Test func connzNamesAnNKeyConnectionByItsKey() async throws {
        let broker = try TestBroker {
            $0.users = [User(name: userKey, password: "", nkey: userKey), User(name: "alice", password: "secret")]
            $0.httpPort = -1
        }
        let port = try #require(broker.server.monitoringPort)
        let client = try RawClient(port: broker.port)
        let nonce = try #require(try client.readInfo().json["nonce"] as? String)
        try client.send("CONNECT \(try signedConnect(seed: userSeed, nonce: nonce))\r\n")
        #expect(try client.sync().isEmpty)
        let alice = try broker.connected(#"{"verbose":false,"user":"alice","pass":"secret"}"#)
        #expect(try alice.sync().isEmpty)
        let (status, body) = try await httpGet(port: port, path: "/connz?auth=true")
        #expect(status == 200)
        let connz = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        let users = (connz["connections"] as? [[String: Any]])?.compactMap { $0["authorized_user"] as? String }
        #expect(users == [userKey, "alice"])
    }

    @Test("plain-text passwords are warned about at start as by 2.9.10, nothing else names the authentication",
          arguments: ["users", "nkeys", "token", "user"])
    func plaintextPasswordWarning(kind: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nkeys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logPath = directory.appendingPathComponent("broker.log").path
        let broker = try TestBroker {
            switch kind {
            case "users": $0.users = [User(name: userKey, password: "", nkey: userKey), User(name: "alice", password: "secret")]
            case "nkeys": $0.users = [User(name: userKey, password: "", nkey: userKey)]
            case "token": $0.authToken = "t"
            default:
                $0.username = "a"
                $0.password = "b"
            }
            $0.noLog = false
            $0.debug = true
            $0.logFile = logPath
        }
        _ = broker
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        #expect(eventually { log().contains("Server is ready") })
        let warned = log().contains("[WRN] Plaintext passwords detected, use nkeys or bcrypt")
        #expect(warned == (kind == "users" || kind == "user"))
        #expect(!log().contains("authentication\n"))
    }

    @Test func standardBase64SignaturesAreAcceptedAs2_9_10Does() throws {
        let broker = try nkeyBroker()
        let client = try RawClient(port: broker.port)
        let nonce = try #require(try client.readInfo().json["nonce"] as? String)
        let signature = Base64.standardEncoded(try NKeyPair(seed: userSeed).sign(Array(nonce.utf8)))
        #expect(signature.hasSuffix("=="))
        try client.send(#"CONNECT {"verbose":false,"nkey":"\#(userKey)","sig":"\#(signature)"}"# + "\r\n")
        #expect(try client.sync().isEmpty)
    }

    @Test func aReloadKeepsSignedInUsersAndDropsRemovedKeys() throws {
        let broker = try nkeyBroker()
        let client = try RawClient(port: broker.port)
        let nonce = try #require(try client.readInfo().json["nonce"] as? String)
        try client.send("CONNECT \(try signedConnect(seed: userSeed, nonce: nonce))\r\n")
        #expect(try client.sync().isEmpty)

        // The same users again (a reload that changes something else): the signature still holds.
        var fresh = broker.server.options
        fresh.maxPayload = 2048
        try broker.server.reload(fresh)
        #expect(try client.sync().isEmpty)
        let again = try RawClient(port: broker.port)
        let againNonce = try #require(try again.readInfo().json["nonce"] as? String)
        try again.send("CONNECT \(try signedConnect(seed: userSeed, nonce: againNonce))\r\n")
        #expect(try again.sync().isEmpty)

        // The nkey user removed: its connections close, and new INFOs carry no nonce.
        fresh.users = [User(name: "alice", password: "secret")]
        try broker.server.reload(fresh)
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
        #expect(try RawClient(port: broker.port).readInfo().json["nonce"] == nil)
    }
}
