// Monitoring (`-m`): the endpoints and JSON shapes of nats-server 2.9.10 against our broker.
import Foundation
import Testing

/// A minimal HTTP/1.1 GET over a raw socket (the broker's monitoring port).
struct HTTPReply: Sendable {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    /// GETs `path`, retrying connection failures until `timeout`. Throws when no reply comes.
    static func get(port: Int, path: String, timeout: Double = Peers.readTimeout) throws -> HTTPReply {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            do {
                let client = try RawClient(port: port)
                client.send(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
                client.read(timeout: max(0.1, deadline.timeIntervalSinceNow)) { HTTPReply.parse($0)?.complete == true }
                if let parsed = HTTPReply.parse(client.received) { return parsed.reply }
            } catch {
                if Date() >= deadline { throw error }
            }
            if Date() >= deadline { throw HarnessError.socket("no HTTP reply for \(path) on \(port)") }
            usleep(20_000)
        }
    }

    /// Parses a response; `complete` once Content-Length bytes of body are in.
    static func parse(_ bytes: [UInt8]) -> (reply: HTTPReply, complete: Bool)? {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
        let head = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = head.first?.split(separator: " "), statusLine.count >= 2,
              let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Array(bytes[(end + 4)...])
        let length = headers["content-length"].flatMap(Int.init)
        return (HTTPReply(status: status, headers: headers, body: length.map { Array(body.prefix($0)) } ?? body),
                length.map { body.count >= $0 } ?? false)
    }
}

/// The shape of a JSON value: its type, and for objects the keys in order with their shapes.
indirect enum JSONShape: Equatable, CustomStringConvertible {
    case string, number, bool, null, array, object([(String, JSONShape)])

    static func == (a: JSONShape, b: JSONShape) -> Bool { a.description == b.description }

    var description: String {
        switch self {
        case .string: "string"
        case .number: "number"
        case .bool: "bool"
        case .null: "null"
        case .array: "array"
        case .object(let fields): "{" + fields.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
        }
    }

    /// Top-level fields of `object` in wire order (JSONSerialization loses the order).
    static func of(_ bytes: [UInt8]) -> JSONShape? {
        guard let start = bytes.firstIndex(of: UInt8(ascii: "{")),
              let fields = InfoNormalizer.scanObject(bytes, from: start) else { return nil }
        return .object(fields.map { field in
            let raw = Array(bytes[field.value])
            let shape: JSONShape
            switch raw.first {
            case UInt8(ascii: "\""): shape = .string
            case UInt8(ascii: "{"): shape = JSONShape.of(raw) ?? .null
            case UInt8(ascii: "["): shape = .array
            case UInt8(ascii: "t"), UInt8(ascii: "f"): shape = .bool
            case UInt8(ascii: "n"): shape = .null
            default: shape = .number
            }
            return (field.key, shape)
        })
    }

    /// Keys of `self` (an object) that `other` lacks or types differently, and keys out of order.
    func differences(from reference: JSONShape, path: String = "") -> [String] {
        guard case .object(let ours) = self, case .object(let theirs) = reference else {
            return self == reference ? [] : ["\(path.isEmpty ? "value" : path): \(self) instead of \(reference)"]
        }
        var out: [String] = []
        let ourKeys = ours.map(\.0)
        for (key, shape) in theirs {
            let name = path.isEmpty ? key : "\(path).\(key)"
            guard let mine = ours.first(where: { $0.0 == key })?.1 else {
                out.append("\(name): missing")
                continue
            }
            out += mine.differences(from: shape, path: name)
        }
        let common = ourKeys.filter { key in theirs.contains { $0.0 == key } }
        let referenceOrder = theirs.map(\.0).filter { common.contains($0) }
        if common != referenceOrder {
            out.append("\(path.isEmpty ? "top level" : path): key order \(common) instead of \(referenceOrder)")
        }
        return out
    }
}

@Suite("Monitoring: our broker against nats-server 2.9.10")
struct MonitoringCompatibilityTests {
    static let config = BrokerConfig(monitoring: true)

    /// Both brokers started with `-m`; `body` runs on a thread of its own.
    static func withBothBrokers(_ body: @escaping @Sendable (BrokerProcess, BrokerProcess) throws -> Void) async throws {
        try #require(Peers.referenceAvailable, "nats-server 2.9.10 missing at \(Peers.referencePath)")
        await ConcurrencyGate.scenarios.acquire()
        let outcome: Result<Void, any Error>
        do {
            outcome = .success(try await runBlocking {
                let reference = try BrokerProcess.start(.reference, config: config)
                defer { reference.stop() }
                let ours = try BrokerProcess.start(.ours, config: config)
                defer { ours.stop() }
                try body(reference, ours)
            })
        } catch {
            outcome = .failure(error)
        }
        await ConcurrencyGate.scenarios.release()
        try outcome.get()
    }

    static let endpoints = ["/varz", "/healthz", "/connz", "/subsz", "/routez", "/accountz"]

    @Test("monitoring endpoints answer with 2.9.10's status, content type and JSON shape",
          .enabled(if: Peers.referenceAvailable || Peers.required, "nats-server 2.9.10 is not installed"),
          arguments: endpoints)
    func endpointMatches(_ path: String) async throws {
        try await Self.withBothBrokers { reference, ours in
            let theirs = try HTTPReply.get(port: reference.monitorPort ?? 0, path: path)
            let mine = try HTTPReply.get(port: ours.monitorPort ?? 0, path: path)
            var problems: [String] = []
            if mine.status != theirs.status { problems.append("status \(mine.status) instead of \(theirs.status)") }
            if mine.headers["content-type"] != theirs.headers["content-type"] {
                problems.append("content-type \(mine.headers["content-type"] ?? "none") instead of \(theirs.headers["content-type"] ?? "none")")
            }
            if let theirShape = JSONShape.of(theirs.body) {
                if let myShape = JSONShape.of(mine.body) {
                    problems += myShape.differences(from: theirShape)
                } else {
                    problems.append("body is not a JSON object: \(String(decoding: mine.body.prefix(200), as: UTF8.self))")
                }
            }
            if path == "/healthz", mine.body != theirs.body {
                problems.append("body \(String(decoding: mine.body, as: UTF8.self)) instead of \(String(decoding: theirs.body, as: UTF8.self))")
            }
            if !problems.isEmpty {
                let text = "monitoring \(path):\n  " + problems.joined(separator: "\n  ")
                ScenarioRunner.report(text)
                recordDifference(text, name: "monitoring \(path)")
            }
        }
    }

    @Test("/varz reports the same limits and settings as 2.9.10 started with the same flags",
          .enabled(if: Peers.referenceAvailable || Peers.required, "nats-server 2.9.10 is not installed"))
    func varzValuesMatch() async throws {
        try await Self.withBothBrokers { reference, ours in
            let theirs = try HTTPReply.get(port: reference.monitorPort ?? 0, path: "/varz")
            let mine = try HTTPReply.get(port: ours.monitorPort ?? 0, path: "/varz")
            let a = try #require(try JSONSerialization.jsonObject(with: Data(theirs.body)) as? [String: Any])
            let b = try #require(try JSONSerialization.jsonObject(with: Data(mine.body)) as? [String: Any])
            let fixed = ["version", "proto", "host", "max_connections", "ping_interval", "ping_max", "http_host",
                         "http_base_path", "https_port", "auth_timeout", "max_control_line", "max_payload",
                         "max_pending", "tls_timeout", "write_deadline", "routes", "remotes", "leafnodes",
                         "slow_consumers", "system_account"]
            // Not compared: `subscriptions` (2.9.10 counts its system account's internal ones) and
            // `connections` (the readiness probe's connection may still be closing).
            for key in fixed {
                let expected = a[key].map { "\($0)" } ?? "absent"
                let actual = b[key].map { "\($0)" } ?? "absent"
                #expect(actual == expected, "/varz \(key): ours \(actual), nats-server \(expected)")
            }
            #expect(b["port"] as? Int == ours.port)
            #expect(b["http_port"] as? Int == ours.monitorPort)
        }
    }
    static let badArguments = ["/connz?sort=bogus", "/connz?limit=x", "/connz?limit=99999999999999999999", "/connz?state=weird",
                               "/connz?sort=stop", "/connz?sort=reason&state=any", "/connz?subs=maybe", "/connz?auth=x",
                               "/connz?cid=-1", "/connz?cid=+1", "/connz?sort=bogus&offset=y", "/subsz?subs=detail",
                               "/subsz?test=a.*"]

    @Test("a bad monitoring argument gets 2.9.10's status, content type and text",
          .enabled(if: Peers.referenceAvailable || Peers.required, "nats-server 2.9.10 is not installed"),
          arguments: badArguments)
    func badArgumentMatches(_ path: String) async throws {
        try await Self.withBothBrokers { reference, ours in
            let theirs = try HTTPReply.get(port: reference.monitorPort ?? 0, path: path)
            let mine = try HTTPReply.get(port: ours.monitorPort ?? 0, path: path)
            #expect(mine.status == theirs.status)
            #expect(mine.headers["content-type"] == theirs.headers["content-type"])
            #expect(Set(mine.headers.keys) == Set(theirs.headers.keys), "header names differ")
            #expect(String(decoding: mine.body, as: UTF8.self) == String(decoding: theirs.body, as: UTF8.self))
        }
    }

    @Test("a closed connection keeps its subscription count and lists as 2.9.10 reports them",
          .enabled(if: Peers.referenceAvailable || Peers.required, "nats-server 2.9.10 is not installed"))
    func closedConnectionSubscriptionsMatch() async throws {
        try await Self.withBothBrokers { reference, ours in
            func closedEntry(_ broker: BrokerProcess, _ query: String) throws -> [String: Any]? {
                let reply = try HTTPReply.get(port: broker.monitorPort ?? 0, path: "/connz?state=closed" + query)
                let document = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any]
                let list = document?["connections"] as? [[String: Any]] ?? []
                return list.first { $0["name"] as? String == "closer" }
            }
            func summary(_ broker: BrokerProcess) throws -> String {
                do {  // the client's deinit closes its socket at the end of this scope
                    let client = try RawClient(port: broker.port)
                    client.send(Array((#"CONNECT {"verbose":false,"name":"closer"}"# + "\r\nSUB x.y 1\r\nSUB q.z grp 2\r\n"
                                       + "SUB gone 3\r\nUNSUB 3\r\nSUB w 4\r\nUNSUB 4 5\r\nPUB w 1\r\nh\r\nPING\r\n").utf8))
                    _ = client.read(timeout: Peers.readTimeout) { String(decoding: $0, as: UTF8.self).contains("PONG") }
                }
                let deadline = Date().addingTimeInterval(Peers.readTimeout)
                var counted: [String: Any]?
                while counted == nil && Date() < deadline {
                    counted = try closedEntry(broker, "")
                    if counted == nil { usleep(20_000) }
                }
                let listed = try closedEntry(broker, "&subs=1")?["subscriptions_list"] as? [String] ?? []
                let detail = try closedEntry(broker, "&subs=detail")?["subscriptions_list_detail"] as? [[String: Any]] ?? []
                let details = detail.map { "\($0["subject"] ?? "")/\($0["qgroup"] ?? "-")/\($0["sid"] ?? "")/\($0["msgs"] ?? "")" }
                return "subscriptions \(counted?["subscriptions"] ?? "absent"); list \(listed.sorted()); detail \(details.sorted())"
            }
            let mine = try summary(ours), theirs = try summary(reference)
            #expect(mine == theirs)
        }
    }
}

