import Foundation
import NATSConfig
import Testing

@testable import NATSServer

// Expected lines and errors were recorded from nats-server 2.9.10 with the same configuration.

private let accountsConfig = """
    accounts {
      A {
        users [{user: a, password: a}]
        exports [
          {stream: "s.>", accounts: [B]}
          {service: "req.>"}
          {service: "many.>", response_type: stream}
        ]
      }
      B {
        users [{user: b, password: b}]
        imports [
          {stream: {account: A, subject: "s.>"}, prefix: "p"}
          {service: {account: A, subject: "req.x"}, to: "local.x"}
          {service: {account: A, subject: "many.x"}}
        ]
        exports [{stream: "t.*"}]
      }
      C: {
        users = [{user: c, password: c}]
        imports [{stream: {account: B, subject: "t.*"}, to: "mapped.*"}]
      }
    }
    authorization { users [{user: g, password: g}] }
    """

private func parsed(_ text: String) throws -> Options {
    var options = Options()
    try options.apply(ConfigParser.parse(text, file: "nats.conf", environment: [:]))
    return options
}

private func configError(_ text: String) -> ConfigError? {
    do {
        _ = try parsed(text)
        return nil
    } catch let error as ConfigError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

private func accountsBroker(_ text: String = accountsConfig, monitoring: Bool = false) throws -> TestBroker {
    let options = try parsed(text)
    return try TestBroker {
        $0.users = options.users
        $0.accounts = options.accounts
        $0.noAuthUser = options.noAuthUser
        if monitoring { $0.httpPort = -1 }
    }
}

private extension TestBroker {
    func login(_ user: String, headers: Bool = false) throws -> RawClient {
        try connected(#"{"verbose":false,"pedantic":false,"user":"\#(user)","pass":"\#(user)","headers":\#(headers)}"#)
    }
}

@Suite("accounts as nats-server 2.9.10 configures and routes them")
struct AccountTests {
    @Test func accountsUsersExportsAndImportsAreRead() throws {
        let options = try parsed(accountsConfig)
        #expect(options.accounts.map(\.name) == ["A", "B", "C"])
        let a = options.accounts[0]
        #expect(a.users.map(\.account) == ["A"])
        #expect(a.exports == [
            AccountExport(subject: "s.>", kind: .stream, accounts: ["B"]),
            AccountExport(subject: "req.>", kind: .service(.singleton)),
            AccountExport(subject: "many.>", kind: .service(.stream)),
        ])
        let b = options.accounts[1]
        #expect(b.imports[0] == AccountImport(kind: .stream, account: "A", subject: "s.>", prefix: "p"))
        #expect(b.imports[0].localSubject == "p.s.>")
        #expect(b.imports[1].localSubject == "local.x")
        #expect(options.allUsers.map(\.name) == ["g", "a", "b", "c"])
        #expect(options.authRequired)
        let list = try parsed("accounts [X, Y]")
        #expect(list.accounts.map(\.name) == ["X", "Y"])
        let empty = try parsed("no_auth_user: d\naccounts { D {}, E { users [{user: d, password: p}] } }")
        #expect(empty.accounts.map(\.name) == ["D", "E"])
        #expect(empty.noAuthUser == "d")
        #expect(try parsed("accounts { J { jetstream: enabled } }").accounts[0].jetStream)
        #expect(try parsed("accounts { J { jetstream { max_mem: -1, max_file: -1, max_streams: -1, max_bytes_required: false } } }")
            .accounts[0].jetStream)
        #expect(try !parsed("accounts { J { jetstream: disabled } }").accounts[0].jetStream)
        _ = try parsed("system_account: \"$SYS\"\nno_system_account: false")
    }

    @Test("a bad accounts entry gets 2.9.10's text with its line", arguments: [
        ("accounts {\n  \"$G\" { }\n}", "nats.conf:2:10: \"$G\" is a Reserved Account"),
        ("accounts [A, A]", "nats.conf:1:14: Duplicate Account Entry: A"),
        ("accounts {\n  A: 1\n}", "nats.conf:2:6: Expected map entries for accounts"),
        ("accounts { A { foo: 1 } }", "nats.conf:1:16: unknown field \"foo\""),
        ("authorization { users [{user: a, password: x}] }\naccounts {\n  A { users [{user: a, password: a}] }\n}",
         "nats.conf:3:13: Duplicate user \"a\" detected"),
        ("accounts { A { exports [{stream: 1}] } }", "nats.conf:1:33: Expected stream name to be string, got int64"),
        ("accounts { A { exports [{service: x, response_type: bogus}] } }", "nats.conf:1:53: Unknown response type: \"bogus\""),
        ("accounts { B { imports [{stream: {account: A}}] } }", "nats.conf:1:33: Expect an account name and a subject"),
        ("accounts {\n  A { exports [{stream: \"s.>\", accounts: [B]}] }\n  B {}\n  C { imports [{stream: {account: A, subject: \"s.>\"}}] }\n}",
         "nats.conf:1:1: Error adding stream import \"s.>\": stream import not authorized"),
        ("accounts {\n  A { exports [{stream: \"s.>\"}] }\n  B { imports [{service: {account: A, subject: \"s.x\"}}] }\n}",
         "nats.conf:1:1: Error adding service import \"s.x\": service import not authorized"),
        ("accounts {\n  A { exports [{stream: foo}], imports [{stream: {account: B, subject: foo}}] }\n"
         + "  B { exports [{stream: foo}], imports [{stream: {account: A, subject: foo}}] }\n}",
         "nats.conf:1:1: Error adding stream import \"foo\": import forms a cycle"),
        ("accounts {\n  A { exports [{service: q}], imports [{service: {account: B, subject: q}}] }\n"
         + "  B { exports [{service: q}], imports [{service: {account: A, subject: q}}] }\n}",
         "nats.conf:1:1: Error adding service import \"q\": import forms a cycle"),
        ("accounts {\n  J { jetstream {\n    max_streams: 3\n  } }\n}",
         "nats.conf:3:5: \"max_streams\" in an account's jetstream is not implemented by this broker (only -1, no limit)"),
        ("accounts { J { jetstream { max_bytes_required: true } } }",
         "nats.conf:1:28: \"max_bytes_required\" in an account's jetstream is not implemented by this broker (only -1, no limit)"),
        ("accounts {\n  B { imports [{service: {account: Q, subject: \"y\"}}] }\n}",
         "nats.conf:1:1: \"Q\" account not defined for service import"),
        ("accounts {\n  A { exports [{stream: \"a\", accounts: [ZZ]}] }\n}",
         "nats.conf:1:1: \"ZZ\" account not defined for stream export"),
        ("no_auth_user: x\naccounts { A { users [{user: y, password: p}] } }",
         "nats.conf:1:15: no_auth_user: \"x\" not present as user in authorization block or account configuration"),
        ("authorization { user: u, password: p }\naccounts { A { users [{user: a, password: a}] } }",
         "nats.conf:2:22: Can not have a single user/pass and accounts"),
    ])
    func configErrors(text: String, expected: String) throws {
        let error = try #require(configError(text))
        #expect(error.message == expected.split(separator: ": ", maxSplits: 1).last.map(String.init))
        #expect(error.location?.line == Int(expected.split(separator: ":")[1]))
    }

    @Test func clientsOfTwoAccountsNeverSeeEachOthersMessages() throws {
        let broker = try accountsBroker()
        let a = try broker.login("a")
        let c = try broker.login("c")
        let g = try broker.login("g")
        for client in [a, c, g] {
            try client.send("SUB > 1\r\n")
            try client.sync()
        }
        try a.send("PUB x.y 2\r\nfa\r\n")
        try c.send("PUB x.y 2\r\nfc\r\n")
        try g.send("PUB x.y 2\r\nfg\r\n")
        #expect(try a.sync() == ["MSG x.y 1 2", "fa"])
        #expect(try c.sync() == ["MSG x.y 1 2", "fc"])
        #expect(try g.sync() == ["MSG x.y 1 2", "fg"])
    }

    @Test func aStreamImportDeliversWithItsPrefixOrMappingAndOnlyThere() throws {
        let broker = try accountsBroker()
        let a = try broker.login("a")
        let b = try broker.login("b")
        let c = try broker.login("c")
        try b.send("SUB p.> 1\r\nSUB s.> 2\r\n")
        try b.sync()
        try c.send("SUB mapped.* 1\r\nSUB t.* 2\r\n")
        try c.sync()
        try a.send("PUB s.foo 2\r\nhi\r\nPUB other 1\r\nx\r\n")
        try a.sync()
        #expect(try b.sync() == ["MSG p.s.foo 1 2", "hi"])
        // A message B publishes on its export to C arrives mapped by C's `to`.
        try b.send("PUB t.q 3\r\nbee\r\n")
        try b.sync()
        #expect(try c.sync() == ["MSG mapped.q 1 3", "bee"])
    }

    @Test func aServiceImportRequestIsAnsweredOnceBackInTheImportingAccount() throws {
        let broker = try accountsBroker()
        let a = try broker.login("a")
        let b = try broker.login("b")
        try a.send("SUB req.> 1\r\n")
        try a.sync()
        try b.send("SUB _INBOX.> 9\r\nPUB local.x _INBOX.r1 3\r\nreq\r\n")
        try b.sync()
        let request = try a.sync()
        #expect(request.count == 2)
        let head = request.first?.split(separator: " ").map(String.init) ?? []
        // MSG req.x 1 _R_.xxxxxx.yyyyyyyy 3: the requester's reply is hidden behind the exporter's prefix.
        #expect(head.count == 5 && head[0] == "MSG" && head[1] == "req.x" && head[3].hasPrefix("_R_."))
        #expect(request.last == "req")
        let reply = head.count == 5 ? head[3] : "none"
        try a.send("PUB \(reply) 2\r\nr1\r\nPUB \(reply) 2\r\nr2\r\n")
        try a.sync()
        #expect(try b.sync() == ["MSG _INBOX.r1 9 2", "r1"])
        #expect(broker.server.runningBroker?.accounts["A"]?.responses.count == 0)
    }

    @Test func aStreamedServiceTakesManyResponsesAndTheRequesterSeesItsAccountInTheHeader() throws {
        let broker = try accountsBroker()
        let a = try broker.login("a", headers: true)
        let b = try broker.login("b")
        try a.send("SUB many.> 1\r\n")
        try a.sync()
        try b.send("SUB _INBOX.> 9\r\nPUB many.x _INBOX.r2 1\r\nq\r\n")
        try b.sync()
        let request = try a.sync()
        let head = request.first?.split(separator: " ").map(String.init) ?? []
        #expect(head.first == "HMSG" && head.count == 6)
        #expect(request.contains { $0.hasPrefix("Nats-Request-Info: {\"acc\":\"B\"") })
        let reply = head.count == 6 ? head[3] : "none"
        try a.send("PUB \(reply) 2\r\nr1\r\nPUB \(reply) 2\r\nr2\r\n")
        try a.sync()
        #expect(try b.sync() == ["MSG _INBOX.r2 9 2", "r1", "MSG _INBOX.r2 9 2", "r2"])
        // The empty message ends a streamed response.
        try a.send("PUB \(reply) 0\r\n\r\nPUB \(reply) 2\r\nr3\r\n")
        try a.sync()
        #expect(try b.sync() == ["MSG _INBOX.r2 9 0", ""])
    }

    @Test func aRequestNoResponderInTheExporterTakesLeavesNoPendingReply() throws {
        let broker = try accountsBroker()
        let b = try broker.login("b")
        try b.send("SUB _INBOX.> 9\r\nPUB local.x _INBOX.r1 3\r\nreq\r\n")
        try b.sync()
        #expect(broker.server.runningBroker?.accounts["A"]?.responses.count == 0)
    }

    @Test func theResponseMapIsBoundedAndExpires() throws {
        let map = ResponseMap()
        let account = Account(name: "B", index: 1, config: nil, jetStreamEnabled: false)
        let reply = Array("_INBOX.1".utf8)
        var first: [UInt8] = []
        for i in 0...ResponseMap.capacity {
            let token = reply.withUnsafeBytes { map.register(account: account, reply: $0, singleton: true, now: 1) }
            if i == 0 { first = token }
        }
        #expect(map.count == ResponseMap.capacity)
        #expect(first.withUnsafeBytes { map.resolve($0, endOfStream: false, now: 3) } == nil)
        let late = reply.withUnsafeBytes { map.register(account: account, reply: $0, singleton: false, now: 10) }
        #expect(late.withUnsafeBytes { map.resolve($0, endOfStream: false, now: 10 + ResponseMap.threshold + 1) } == nil)
    }

    @Test func resolvedRepliesLeaveTheResponseMapsStorageBounded() throws {
        let map = ResponseMap()
        let account = Account(name: "B", index: 1, config: nil, jetStreamEnabled: false)
        let reply = Array("_INBOX.1".utf8)
        // One reply waits for its (streamed) responses while many others come and go behind it.
        _ = reply.withUnsafeBytes { map.register(account: account, reply: $0, singleton: false, now: 1) }
        for _ in 0..<50_000 {
            let token = reply.withUnsafeBytes { map.register(account: account, reply: $0, singleton: true, now: 2) }
            #expect(token.withUnsafeBytes { map.resolve($0, endOfStream: false, now: 2) } != nil)
        }
        #expect(map.count == 1)
        #expect(map.trackedTokens <= 3 * map.count + 1025)
    }

    @Test func aStreamImportReachesOnlyTheImportingAccountsOwnSubscribers() throws {
        let broker = try accountsBroker("""
            accounts {
              A { users [{user: a, password: a}], exports [{stream: foo, accounts: [B]}] }
              B { users [{user: b, password: b}], imports [{stream: {account: A, subject: foo}}], exports [{stream: foo}] }
              C { users [{user: c, password: c}], imports [{stream: {account: B, subject: foo}}] }
            }
            """)
        let a = try broker.login("a")
        let b = try broker.login("b")
        let c = try broker.login("c")
        for client in [b, c] {
            try client.send("SUB foo 1\r\n")
            try client.sync()
        }
        try a.send("PUB foo 2\r\nfa\r\n")
        try a.sync()
        #expect(try b.sync() == ["MSG foo 1 2", "fa"])
        // B's own publish still reaches C through B's export.
        try b.send("PUB foo 2\r\nfb\r\n")
        try b.sync()
        #expect(try c.sync() == ["MSG foo 1 2", "fb"])
    }

    @Test func aClientsRequestInfoHeaderIsReplacedNotRepeated() throws {
        let sent = Array("NATS/1.0\r\nX: 1\r\nNats-Request-Info: {\"acc\":\"forged\"}\r\nY: 2\r\n\r\n".utf8)
        let headers = sent.withUnsafeBytes { ClientConnection.requestInfoHeaders($0, account: "B", rtt: 0) }
        #expect(String(decoding: headers, as: UTF8.self)
            == "NATS/1.0\r\nX: 1\r\nY: 2\r\nNats-Request-Info: {\"acc\":\"B\"}\r\n\r\n")
        let only = Array("NATS/1.0\r\nNats-Request-Info: x\r\n\r\n".utf8)
        let replaced = only.withUnsafeBytes { ClientConnection.requestInfoHeaders($0, account: "B", rtt: 0) }
        #expect(String(decoding: replaced, as: UTF8.self) == "NATS/1.0\r\nNats-Request-Info: {\"acc\":\"B\"}\r\n\r\n")
    }

    @Test("a traced CONNECT hides its password as 2.9.10's trace does", arguments: [
        (#"{"verbose":false,"user":"u","pass":"p","auth_token":"tok"}"#,
         #"{"verbose":false,"user":"u","pass":"[REDACTED]","auth_token":"tok"}"#),
        (#"{"user":"passenger","pass":"se cret","name":"n"}"#, #"{"user":"passenger","pass":"[REDACTED]","name":"n"}"#),
        (#"{"pass":"","user":"u"}"#, #"{"pass":"[REDACTED]","user":"u"}"#),
        (#"{"user":"u","auth_token":"t"}"#, #"{"user":"u","auth_token":"t"}"#),
    ])
    func traceRedactsThePassword(sent: String, traced: String) {
        #expect(ClientConnection.redactingPassword(sent) == traced)
    }

    @Test func aSecondConnectAsAnotherAccountsUserMovesTheClientAndItsSubscriptions() throws {
        let broker = try accountsBroker()
        let a = try broker.login("a")
        let c = try broker.login("c")
        let switching = try broker.login("a")
        for client in [a, c] {
            try client.send("SUB w 1\r\n")
            try client.sync()
        }
        try switching.send("SUB x 7\r\n")
        try switching.sync()
        try switching.send(#"CONNECT {"verbose":false,"user":"c","pass":"c"}"# + "\r\nPUB w 2\r\nhi\r\n")
        try switching.sync()
        #expect(try c.sync() == ["MSG w 1 2", "hi"])
        #expect(try a.sync() == [])
        // Its subscription from before now lives in C.
        try a.send("PUB x 1\r\na\r\n")
        try a.sync()
        try c.send("PUB x 1\r\nc\r\n")
        try c.sync()
        #expect(try switching.sync() == ["MSG x 7 1", "c"])
    }

    @Test func aPushConsumerWhoseSubscriberIsInAnImportingAccountIsBound() throws {
        let store = FileManager.default.temporaryDirectory.appendingPathComponent("accounts-js-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: store) }
        let options = try parsed("""
            accounts {
              J { users [{user: j, password: j}], jetstream: enabled, exports [{stream: "d.>"}] }
              A { users [{user: a, password: a}], imports [{stream: {account: J, subject: "d.>"}}] }
            }
            """)
        let broker = try TestBroker {
            $0.users = options.users
            $0.accounts = options.accounts
            $0.jetStream = true
            $0.storeDirectory = store
        }
        // As 2.9.10: a client of A on exactly the deliver subject binds the consumer through the import.
        let a = try broker.login("a")
        try a.send("SUB d.x 1\r\n")
        try a.sync()
        let j = try broker.login("j")
        let create = #"{"name":"S","subjects":["x"]}"#
        let consumer = #"{"stream_name":"S","config":{"durable_name":"C","deliver_subject":"d.x","ack_policy":"none"}}"#
        try j.send("SUB _INBOX.> 1\r\nPUB $JS.API.STREAM.CREATE.S _INBOX.s \(create.utf8.count)\r\n\(create)\r\n"
                   + "PUB $JS.API.CONSUMER.DURABLE.CREATE.S.C _INBOX.c \(consumer.utf8.count)\r\n\(consumer)\r\n")
        #expect(eventually { (try? j.sync().joined().contains("consumer_create_response")) == true })
        try j.send("PUB $JS.API.CONSUMER.INFO.S.C _INBOX.i 0\r\n\r\n")
        #expect(eventually { (try? j.sync().joined().contains(#""push_bound":true"#)) == true })
        try j.send("PUB x 2\r\nhi\r\n")
        try j.sync()
        #expect(eventually { (try? a.sync().contains("hi")) == true })
    }

    @Test func noAuthUserMayNameAnAccountUser() throws {
        let broker = try accountsBroker(accountsConfig + "\nno_auth_user: b")
        let anonymous = try broker.connected()
        let a = try broker.login("a")
        try anonymous.send("SUB p.> 1\r\n")
        try anonymous.sync()
        try a.send("PUB s.z 1\r\nz\r\n")
        try a.sync()
        #expect(try anonymous.sync() == ["MSG p.s.z 1 1", "z"])
    }

    @Test func monitoringShowsAccounts() async throws {
        let broker = try accountsBroker(monitoring: true)
        let port = try #require(broker.server.monitoringPort)
        let a = try broker.login("a")
        try a.send("SUB s.> 1\r\n")
        try a.sync()
        func json(_ path: String) async throws -> [String: Any] {
            let (status, body) = try await httpGet(port: port, path: path)
            #expect(status == 200, "\(path)")
            return try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        }
        #expect(try await json("/accountz")["accounts"] as? [String] == ["$G", "A", "B", "C", "$SYS"])
        let detail = try #require(try await json("/accountz?acc=B")["account_detail"] as? [String: Any])
        #expect(detail["account_name"] as? String == "B")
        let imports = try #require(detail["imports"] as? [[String: Any]])
        #expect(imports.map { $0["type"] as? String } == ["stream", "service", "service"])
        #expect(imports[0]["local_subject"] as? String == "p.s.>")
        #expect(imports[1]["subject"] as? String == "local.x" && imports[1]["to"] as? String == "req.x")
        let exporter = try #require(try await json("/accountz?acc=A")["account_detail"] as? [String: Any])
        let exports = try #require(exporter["exports"] as? [[String: Any]])
        #expect(exports.map { $0["type"] as? String } == ["service", "service", "stream"])
        #expect(exports[0]["response_type"] as? String == "Singleton")
        #expect(exports[2]["approved_accounts"] as? [String] == ["B"])
        #expect(exporter["client_connections"] as? Int == 1)

        let connz = try await json("/connz?auth=true")
        let connection = try #require((connz["connections"] as? [[String: Any]])?.first)
        #expect(connection["account"] as? String == "A")
        #expect(connection["authorized_user"] as? String == "a")
        let plain = try #require((try await json("/connz")["connections"] as? [[String: Any]])?.first)
        #expect(plain["account"] == nil)
        let (refused, _) = try await httpGet(port: port, path: "/connz?acc=A")
        #expect(refused == 400)
        #expect((try await json("/connz?auth=1&acc=B")["connections"] as? [Any])?.isEmpty == true)

        let subsz = try await json("/subsz?subs=1")
        let subs = try #require(subsz["subscriptions_list"] as? [[String: Any]])
        #expect(subs.map { $0["account"] as? String } == ["A"])
        #expect(subs.first?["subject"] as? String == "s.>")
    }

    @Test func jetStreamServesTheAccountWithAJetStreamBlockAndRefusesTheOthers() throws {
        let store = FileManager.default.temporaryDirectory.appendingPathComponent("accounts-js-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: store) }
        let options = try parsed("accounts {\n  A { users [{user: a, password: a}] }\n  J { users [{user: j, password: j}], jetstream: enabled }\n}")
        let broker = try TestBroker {
            $0.users = options.users
            $0.accounts = options.accounts
            $0.jetStream = true
            $0.storeDirectory = store
        }
        let a = try broker.login("a")
        try a.send("SUB _INBOX.> 1\r\nPUB $JS.API.INFO _INBOX.x 0\r\n\r\n")
        #expect(try a.sync() == ["MSG _INBOX.x 1 145",
                                 #"{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10039,"description":"JetStream not enabled for account"}}"#])
        let j = try broker.login("j")
        let create = #"{"name":"S","subjects":["x"]}"#
        try j.send("SUB _INBOX.> 1\r\nPUB $JS.API.STREAM.CREATE.S _INBOX.y \(create.utf8.count)\r\n\(create)\r\n")
        try j.sync()
        #expect(eventually { FileManager.default.fileExists(atPath: store + "/jetstream/J/streams/S") })
        #expect(!FileManager.default.fileExists(atPath: store + "/jetstream/$G/streams/S"))
        // JetStream in two accounts is refused rather than half served.
        let two = try parsed("accounts {\n  A { jetstream: enabled }\n  B { jetstream: enabled }\n}")
        var twoOptions = Options()
        twoOptions.port = 0
        twoOptions.noLog = true
        twoOptions.accounts = two.accounts
        twoOptions.jetStream = true
        twoOptions.storeDirectory = store
        #expect(throws: ServerStartError.self) { try Server(options: twoOptions).start() }
    }
}
