// /accountz with accounts configured: our broker and nats-server 2.9.10 started with the same file.
import Foundation
import Testing

@Suite("Accounts in monitoring: our broker against nats-server 2.9.10")
struct AccountMonitoringCompatibilityTests {
    static let config = BrokerConfig(configLines: [
        "accounts {",
        "  A {",
        "    users [{user: a, password: a}]",
        #"    exports [{stream: "s.>", accounts: [B]}, {service: "req.>", response_type: stream}]"#,
        "  }",
        "  B {",
        "    users [{user: b, password: b}]",
        "    imports [",
        #"      {stream: {account: A, subject: "s.>"}, prefix: "p"}"#,
        #"      {service: {account: A, subject: "req.x"}, to: "local.x"}"#,
        "    ]",
        "  }",
        "}",
    ], monitoring: true)

    static func json(_ reply: HTTPReply) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any])
    }

    /// Imports without 2.9.10's own ones from its system account (this broker has none to serve).
    static func configured(_ detail: [String: Any]) -> String {
        let imports = (detail["imports"] as? [[String: Any]] ?? []).filter { $0["account"] as? String != "$SYS" }
        let data = try? JSONSerialization.data(withJSONObject: ["exports": detail["exports"] ?? NSNull(), "imports": imports],
                                               options: [.sortedKeys])
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "?"
    }

    @Test("/accountz lists the same accounts and details their exports and imports as 2.9.10 does",
          .enabled(if: Peers.referenceAvailable || Peers.required, "nats-server 2.9.10 is not installed"))
    func accountzMatches() async throws {
        try #require(Peers.referenceAvailable, "nats-server 2.9.10 missing at \(Peers.referencePath)")
        await ConcurrencyGate.scenarios.acquire()
        let outcome: Result<Void, any Error>
        do {
            outcome = .success(try await runBlocking {
                let reference = try BrokerProcess.start(.reference, config: Self.config)
                defer { reference.stop() }
                let ours = try BrokerProcess.start(.ours, config: Self.config)
                defer { ours.stop() }
                let theirList = try Self.json(HTTPReply.get(port: reference.monitorPort ?? 0, path: "/accountz"))
                let myList = try Self.json(HTTPReply.get(port: ours.monitorPort ?? 0, path: "/accountz"))
                // 2.9.10 lists them in its map's order.
                #expect((myList["accounts"] as? [String])?.sorted() == (theirList["accounts"] as? [String])?.sorted())
                #expect(myList["system_account"] as? String == theirList["system_account"] as? String)
                for account in ["A", "B", "$G"] {
                    let path = "/accountz?acc=\(account)"
                    let theirs = try HTTPReply.get(port: reference.monitorPort ?? 0, path: path)
                    let mine = try HTTPReply.get(port: ours.monitorPort ?? 0, path: path)
                    let a = try #require(try Self.json(theirs)["account_detail"] as? [String: Any])
                    let b = try #require(try Self.json(mine)["account_detail"] as? [String: Any])
                    #expect(Self.configured(b) == Self.configured(a), "\(path)")
                    for key in ["account_name", "expired", "complete", "jetstream_enabled", "client_connections"] {
                        #expect("\(b[key] ?? "absent")" == "\(a[key] ?? "absent")", "\(path) \(key)")
                    }
                    if let theirShape = JSONShape.of(theirs.body), let myShape = JSONShape.of(mine.body) {
                        // `imports` may be absent here where 2.9.10 lists only its system imports.
                        let problems = myShape.differences(from: theirShape).filter { !$0.hasPrefix("account_detail.imports") }
                        #expect(problems.isEmpty, "\(path): \(problems)")
                    }
                }
            })
        } catch {
            outcome = .failure(error)
        }
        await ConcurrencyGate.scenarios.release()
        try outcome.get()
    }
}
