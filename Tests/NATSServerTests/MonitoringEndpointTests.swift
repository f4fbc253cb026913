// /connz, /subsz, /routez, /accountz, the index page and /metrics: 2.9.10's fields, types and
// arguments (samples/connz_*.json, subsz*.json, routez.json, accountz.json), 400s for bad arguments.

import Foundation
import Glibc
import Testing
@testable import NATSServer

@Suite("Monitoring endpoints")
struct MonitoringEndpointTests {
    static func monitored(_ configure: @escaping (inout Options) -> Void = { _ in }) throws -> (TestBroker, Int) {
        let broker = try TestBroker { $0.httpPort = -1; configure(&$0) }
        return (broker, try #require(broker.server.monitoringPort))
    }

    static func json(_ port: Int, _ path: String) async throws -> [String: Any] {
        let (status, body) = try await httpGet(port: port, path: path)
        #expect(status == 200, "\(path): status \(status) \(String(decoding: body, as: UTF8.self))")
        return try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    }

    static func connections(_ document: [String: Any]) -> [[String: Any]] {
        document["connections"] as? [[String: Any]] ?? []
    }

    @Test func connzListsOpenConnectionsWithTheFieldsAndTypesOf2_9_10() async throws {
        let (broker, port) = try Self.monitored()
        let a = try broker.connected(#"{"verbose":false,"name":"svc-a","lang":"swift","version":"0.1.0"}"#)
        let b = try broker.connected(#"{"verbose":false,"name":"svc-b","lang":"py","version":"2"}"#)
        try a.send("SUB work q 1\r\nSUB _INBOX.x.* 2\r\n")
        try a.sync()
        try b.send("PUB work 5\r\nhello\r\nPUB work 3\r\nabc\r\n")
        try b.sync()
        #expect(try a.sync() == ["MSG work 1 5", "hello", "MSG work 1 3", "abc"])

        let doc = try await Self.json(port, "/connz")
        for key in ["server_id", "now"] { #expect(doc[key] is String, "\(key)") }
        #expect(doc["num_connections"] as? Int == 2)
        #expect(doc["total"] as? Int == 2)
        #expect(doc["offset"] as? Int == 0)
        #expect(doc["limit"] as? Int == 1024)
        let list = Self.connections(doc)
        try #require(list.count == 2)
        for c in list {
            for key in ["cid", "port", "pending_bytes", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions"] {
                #expect(c[key] is NSNumber, "\(key) is a number")
            }
            for key in ["kind", "type", "ip", "start", "last_activity", "rtt", "uptime", "idle", "name", "lang", "version"] {
                #expect(c[key] is String, "\(key) is a string")
            }
            #expect(c["kind"] as? String == "Client")
            #expect(c["type"] as? String == "nats")
            #expect(c["ip"] as? String == "127.0.0.1")
            #expect(c["stop"] == nil && c["reason"] == nil && c["subscriptions_list"] == nil)
        }
        let first = list[0], second = list[1]
        #expect((first["cid"] as? Int ?? 0) < (second["cid"] as? Int ?? 0), "sorted by cid")
        #expect(first["name"] as? String == "svc-a")
        #expect(first["subscriptions"] as? Int == 2)
        #expect(first["out_msgs"] as? Int == 2)
        #expect(first["out_bytes"] as? Int == 8)
        #expect(first["in_msgs"] as? Int == 0)
        #expect(second["name"] as? String == "svc-b")
        #expect(second["lang"] as? String == "py")
        #expect(second["in_msgs"] as? Int == 2)
        #expect(second["in_bytes"] as? Int == 8)
        #expect(second["subscriptions"] as? Int == 0)
    }

    @Test func connzSortsPagesAndSelectsOneCid() async throws {
        let (broker, port) = try Self.monitored()
        var clients: [RawClient] = []
        for subs in [1, 3, 2] {
            let client = try broker.connected()
            for sid in 1...subs { try client.send("SUB s.\(sid) \(sid)\r\n") }
            try client.sync()
            clients.append(client)
        }
        let bySubs = Self.connections(try await Self.json(port, "/connz?sort=subs")).map { $0["subscriptions"] as? Int ?? -1 }
        #expect(bySubs == [3, 2, 1])
        let cids = Self.connections(try await Self.json(port, "/connz?sort=cid")).compactMap { $0["cid"] as? Int }
        #expect(cids.count == 3 && cids == cids.sorted())

        let page = try await Self.json(port, "/connz?sort=subs&offset=1&limit=1")
        #expect(page["total"] as? Int == 3)
        #expect(page["num_connections"] as? Int == 1)
        #expect(page["offset"] as? Int == 1)
        #expect(page["limit"] as? Int == 1)
        #expect(Self.connections(page).first?["subscriptions"] as? Int == 2)
        let beyond = try await Self.json(port, "/connz?offset=10")
        #expect(beyond["total"] as? Int == 3 && Self.connections(beyond).isEmpty)

        try clients[0].sync()
        let byLast = Self.connections(try await Self.json(port, "/connz?sort=last")).compactMap { $0["cid"] as? Int }
        #expect(byLast.first == cids[0], "the connection read from last comes first")
        #expect(byLast.count == 3)

        let one = try await Self.json(port, "/connz?cid=\(cids[1])")
        #expect(Self.connections(one).map { $0["cid"] as? Int } == [cids[1]])
        #expect(Self.connections(one).first?["subscriptions"] as? Int == 3)
        _ = clients
    }

    @Test func connzListsSubscriptionsAndTheirDetail() async throws {
        let (broker, port) = try Self.monitored()
        let sub = try broker.connected()
        try sub.send("SUB auth.user.get workers 1\r\nSUB _INBOX.Xy7.* 2\r\n")
        try sub.sync()
        let pub = try broker.connected()
        try pub.send("PUB auth.user.get 2\r\nhi\r\n")
        try pub.sync()
        _ = try sub.sync()

        let listed = Self.connections(try await Self.json(port, "/connz?subs=1")).first { $0["subscriptions"] as? Int == 2 }
        let names = try #require(listed?["subscriptions_list"] as? [String])
        #expect(Set(names) == ["auth.user.get", "_INBOX.Xy7.*"])

        let detailed = Self.connections(try await Self.json(port, "/connz?subs=detail")).first { $0["subscriptions"] as? Int == 2 }
        let detail = try #require(detailed?["subscriptions_list_detail"] as? [[String: Any]])
        try #require(detail.count == 2)
        #expect(detail[0]["subject"] as? String == "auth.user.get")
        #expect(detail[0]["qgroup"] as? String == "workers")
        #expect(detail[0]["sid"] as? String == "1")
        #expect(detail[0]["msgs"] as? Int == 1)
        #expect(detail[0]["cid"] as? Int == detailed?["cid"] as? Int)
        #expect(detail[1]["subject"] as? String == "_INBOX.Xy7.*")
        #expect(detail[1]["qgroup"] == nil)
        #expect(detail[1]["msgs"] as? Int == 0)
    }

    @Test func aClosedClientIsListedWithStopAndReason() async throws {
        let (broker, port) = try Self.monitored()
        let staying = try broker.connected()
        let leaving = try broker.connected(#"{"verbose":false,"name":"leaver"}"#)
        try leaving.send("SUB x 1\r\n")
        try leaving.sync()
        _ = Glibc.shutdown(leaving.fd, Int32(SHUT_RDWR))
        #expect(eventually { broker.server.statistics().connections == 1 })

        let closed = try await Self.json(port, "/connz?state=closed")
        let entry = try #require(Self.connections(closed).first)
        #expect(Self.connections(closed).count == 1)
        #expect(entry["name"] as? String == "leaver")
        #expect(entry["reason"] as? String == "Client Closed")
        #expect(entry["stop"] is String)
        #expect(entry["subscriptions"] as? Int == 1)
        let open = try await Self.json(port, "/connz")
        #expect(Self.connections(open).count == 1)
        let any = try await Self.json(port, "/connz?state=any&sort=cid")
        #expect(Self.connections(any).count == 2)
        let byReason = try await Self.json(port, "/connz?state=closed&sort=reason")
        #expect(Self.connections(byReason).count == 1)
        let byStop = try await Self.json(port, "/connz?state=any&sort=last")
        #expect(Self.connections(byStop).count == 2)
        _ = staying
    }

    @Test func aSlowConsumerIsListedAsClosedWithItsReason() async throws {
        let (broker, port) = try Self.monitored {
            $0.maxPayload = 4096
            $0.maxPending = 64 * 1024
        }
        let stuck = try RawClient(port: broker.port, receiveBuffer: 4096)
        try stuck.send("CONNECT {\"verbose\":false,\"name\":\"stuck\"}\r\nSUB flood 1\r\nPING\r\n")
        let publisher = try broker.connected()
        #expect(eventually { broker.server.statistics().subscriptions == 1 })
        let payload = String(repeating: "x", count: 4000)
        var batch = ""
        for _ in 0..<100 { batch += "PUB flood 4000\r\n\(payload)\r\n" }
        for _ in 0..<25 { try publisher.send(batch) }
        #expect(try publisher.sync() == [])
        #expect(eventually { broker.server.statistics().slowConsumers == 1 })
        #expect(eventually { broker.server.statistics().connections == 1 })

        let closed = Self.connections(try await Self.json(port, "/connz?state=closed"))
        let entry = try #require(closed.first { $0["name"] as? String == "stuck" })
        #expect(entry["reason"] as? String == "Slow Consumer (Pending Bytes)")
    }

    @Test func subszReportsTrieStatsAndListsMatchingSubscriptions() async throws {
        let (broker, port) = try Self.monitored()
        let client = try broker.connected()
        try client.send("SUB orders.* 1\r\nSUB orders.new q 2\r\nSUB users.> 3\r\n")
        try client.sync()

        let stats = try await Self.json(port, "/subsz")
        for key in ["num_subscriptions", "num_cache", "num_inserts", "num_removes", "num_matches",
                    "cache_hit_rate", "max_fanout", "avg_fanout"] {
            #expect(stats[key] is NSNumber, "\(key) is a number")
        }
        #expect(stats["num_subscriptions"] as? Int == 3)
        #expect(stats["num_inserts"] as? Int == 3)
        #expect(stats["subscriptions_list"] == nil)

        let listed = try await Self.json(port, "/subsz?subs=1")
        #expect(listed["server_id"] is String && listed["now"] is String)
        #expect(listed["total"] as? Int == 3)
        #expect(listed["limit"] as? Int == 1024)
        let all = try #require(listed["subscriptions_list"] as? [[String: Any]])
        #expect(Set(all.compactMap { $0["subject"] as? String }) == ["orders.*", "orders.new", "users.>"])
        for sub in all {
            #expect(sub["account"] as? String == "$G")
            #expect(sub["sid"] is String && sub["msgs"] is NSNumber && sub["cid"] is NSNumber)
        }

        let tested = try await Self.json(port, "/subscriptionsz?subs=1&test=orders.new")
        let matching = try #require(tested["subscriptions_list"] as? [[String: Any]])
        #expect(Set(matching.compactMap { $0["subject"] as? String }) == ["orders.*", "orders.new"])
        #expect(matching.first { $0["subject"] as? String == "orders.new" }?["qgroup"] as? String == "q")
        #expect(tested["total"] as? Int == 2)
        let paged = try await Self.json(port, "/subsz?subs=1&offset=2&limit=5")
        #expect((paged["subscriptions_list"] as? [Any])?.count == 1)
    }

    @Test func routezAccountzAndTheIndexPage() async throws {
        let (broker, port) = try Self.monitored()
        let routez = try await Self.json(port, "/routez")
        #expect(routez["server_id"] as? String == broker.server.serverID)
        #expect(routez["now"] is String)
        #expect(routez["num_routes"] as? Int == 0)
        #expect((routez["routes"] as? [Any])?.isEmpty == true)

        let accountz = try await Self.json(port, "/accountz")
        #expect(accountz["system_account"] as? String == "$SYS")
        #expect(accountz["accounts"] as? [String] == ["$G", "$SYS"])
        let detail = try await Self.json(port, "/accountz?acc=$G")
        let account = try #require(detail["account_detail"] as? [String: Any])
        #expect(account["account_name"] as? String == "$G")
        #expect(account["client_connections"] is NSNumber)
        let (missing, _) = try await httpGet(port: port, path: "/accountz?acc=nope")
        #expect(missing == 400)

        let (status, body) = try await httpGet(port: port, path: "/")
        #expect(status == 200)
        let html = String(decoding: body, as: UTF8.self)
        for endpoint in ["varz", "connz", "routez", "subsz", "accountz", "healthz", "metrics"] {
            #expect(html.contains("href=\"./\(endpoint)\""), "index links \(endpoint)")
        }
    }

    @Test func aClosedClientKeepsItsSubscriptionsAsListedWhenItClosed() async throws {
        let (broker, port) = try Self.monitored()
        let leaving = try broker.connected(#"{"verbose":false,"name":"leaver"}"#)
        try leaving.send("SUB x.y 1\r\nSUB q.z grp 2\r\nSUB gone 3\r\nUNSUB 3\r\nSUB w 4\r\nUNSUB 4 5\r\nPUB w 1\r\nh\r\n")
        #expect(try leaving.sync() == ["MSG w 4 1", "h"])
        _ = Glibc.shutdown(leaving.fd, Int32(SHUT_RDWR))
        #expect(eventually { broker.server.statistics().connections == 0 })

        let counted = try #require(Self.connections(try await Self.json(port, "/connz?state=closed")).first)
        #expect(counted["subscriptions"] as? Int == 3)
        #expect(counted["subscriptions_list"] == nil)
        let listed = try #require(Self.connections(try await Self.json(port, "/connz?state=closed&subs=1")).first)
        #expect(Set(listed["subscriptions_list"] as? [String] ?? []) == ["x.y", "q.z", "w"])
        let detailed = try #require(Self.connections(try await Self.json(port, "/connz?state=closed&subs=detail")).first)
        let detail = try #require(detailed["subscriptions_list_detail"] as? [[String: Any]])
        #expect(detail.map { $0["sid"] as? String } == ["1", "2", "4"])
        #expect(detail[1]["qgroup"] as? String == "grp")
        #expect(detail[2]["msgs"] as? Int == 1)
    }

    /// Recorded from nats-server 2.9.10: the argument's error alone, as text/plain, status 400.
    @Test(arguments: [
        ("/connz?sort=bogus", "invalid sorting option: bogus"),
        ("/connz?limit=x", #"Error decoding int for 'limit': strconv.Atoi: parsing "x": invalid syntax"#),
        ("/connz?limit=99999999999999999999",
         #"Error decoding int for 'limit': strconv.Atoi: parsing "99999999999999999999": value out of range"#),
        ("/connz?offset=-1x", #"Error decoding int for 'offset': strconv.Atoi: parsing "-1x": invalid syntax"#),
        ("/connz?state=weird", "Error decoding state for weird"),
        ("/connz?sort=stop", "sort by stop only valid on closed connections"),
        ("/connz?sort=reason&state=any", "sort by reason only valid on closed connections"),
        ("/connz?subs=maybe", #"Error decoding boolean for 'subs': strconv.ParseBool: parsing "maybe": invalid syntax"#),
        ("/connz?auth=maybe", #"Error decoding boolean for 'auth': strconv.ParseBool: parsing "maybe": invalid syntax"#),
        ("/connz?cid=abc", #"Error decoding uint64 for 'cid': strconv.ParseUint: parsing "abc": invalid syntax"#),
        ("/connz?cid=-1", #"Error decoding uint64 for 'cid': strconv.ParseUint: parsing "-1": invalid syntax"#),
        ("/connz?sort=bogus&limit=x", #"Error decoding int for 'limit': strconv.Atoi: parsing "x": invalid syntax"#),
        ("/subsz?subs=detail", #"Error decoding boolean for 'subs': strconv.ParseBool: parsing "detail": invalid syntax"#),
        ("/subsz?limit=q", #"Error decoding int for 'limit': strconv.Atoi: parsing "q": invalid syntax"#),
        ("/subsz?subs=1&test=orders.*", "invalid test subject, must be valid publish subject: orders.*"),
    ])
    func badArgumentsGet400WithTheErrorAsPlainText(_ path: String, _ message: String) async throws {
        let (broker, port) = try Self.monitored()
        defer { withExtendedLifetime(broker) {} }
        // Blocking reads run on a thread of their own: the monitor answers on the concurrency pool.
        let reply = await withCheckedContinuation { (done: CheckedContinuation<Result<(String?, [String: String], [UInt8]), any Error>, Never>) in
            Thread {
                done.resume(returning: Result {
                    let client = try RawClient(port: port)
                    try client.send("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    let status = try client.readLine(timeout: 20)
                    var headers: [String: String] = [:]
                    while let line = try client.readLine(timeout: 20), !line.isEmpty {
                        let parts = line.split(separator: ":", maxSplits: 1)
                        headers[parts[0].lowercased()] = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
                    }
                    let length = headers["content-length"].flatMap { Int($0) } ?? 0
                    return (status, headers, try client.readBytes(count: length, timeout: 20))
                })
            }.start()
        }
        let (status, headers, body) = try reply.get()
        #expect(status == "HTTP/1.1 400 Bad Request", "\(status ?? "nothing")")
        #expect(headers["content-type"] == "text/plain; charset=utf-8")
        #expect(headers["date"]?.hasSuffix(" GMT") == true)
        #expect(String(decoding: body, as: UTF8.self) == message)
    }

    @Test(arguments: ["/connz?limit=-1&offset=-3", "/connz?subs=DETAIL", "/connz?cid=0", "/subsz?limit=-5", "/connz?sort="])
    func argumentsTheReferenceAcceptsAreAccepted(_ path: String) async throws {
        let (broker, port) = try Self.monitored()
        defer { withExtendedLifetime(broker) {} }
        _ = try await Self.json(port, path)
    }

    @Test func everyEndpointIsCountedInVarzHttpReqStats() async throws {
        let (broker, port) = try Self.monitored()
        defer { withExtendedLifetime(broker) {} }
        for path in ["/connz", "/connz?sort=bogus", "/subsz", "/routez", "/accountz", "/metrics", "/"] {
            _ = try await httpGet(port: port, path: path)
        }
        let varz = try await Self.json(port, "/varz")
        let stats = try #require(varz["http_req_stats"] as? [String: Int])
        #expect(stats["/connz"] == 2)
        #expect(stats["/subsz"] == 1)
        #expect(stats["/routez"] == 1)
        #expect(stats["/accountz"] == 1)
        #expect(stats["/metrics"] == 1)
        #expect(stats["/"] == 1)
        #expect(stats["/varz"] == 1)
    }

    @Test func metricsIsPrometheusTextThatARealParserAccepts() async throws {
        let (broker, port) = try Self.monitored()
        let client = try broker.connected()
        try client.send("SUB m 1\r\nPUB m 3\r\nabc\r\n")
        _ = try client.sync()
        _ = try await httpGet(port: port, path: "/varz")
        #expect(eventually { broker.server.statistics().outMsgs == 1 })
        let (status, body) = try await httpGet(port: port, path: "/metrics")
        #expect(status == 200)
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.contains("# TYPE nats_server_connections gauge\n"))
        #expect(text.contains("\nnats_server_in_msgs_total 1\n"))
        #expect(text.contains("nats_server_http_requests_total{endpoint=\"/varz\"} 1\n"))

        let script = """
            import sys
            try:
                from prometheus_client.parser import text_string_to_metric_families
            except ImportError:
                sys.exit(3)
            for family in text_string_to_metric_families(sys.stdin.read()):
                for sample in family.samples:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    print(f"{family.type} {sample.name} {labels} {sample.value:g}")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch {
            if ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1" { Issue.record("python3 is required: \(error)") }
            return
        }
        input.fileHandleForWriting.write(Data(body))
        try input.fileHandleForWriting.close()
        let parsed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 3 || process.terminationStatus == 127 {
            if ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1" {
                Issue.record("python3 with prometheus_client is required")
            }
            return
        }
        #expect(process.terminationStatus == 0, "the parser rejected:\n\(text)")
        let lines = Set(parsed.split(separator: "\n").map(String.init))
        #expect(lines.contains("gauge nats_server_connections  1"))
        #expect(lines.contains("counter nats_server_in_msgs_total  1"))
        #expect(lines.contains("counter nats_server_out_bytes_total  3"))
        #expect(lines.contains("gauge nats_server_subscriptions  1"))
        #expect(lines.contains("counter nats_server_http_requests_total endpoint=/varz 1"))
        #expect(lines.contains { $0.hasPrefix("gauge nats_server_uptime_seconds ") })
    }
}
