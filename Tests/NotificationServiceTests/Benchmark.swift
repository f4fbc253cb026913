import Foundation
import NATSClient
import ServiceKit
import Synchronization
import TestSupport
import Testing

/// End-to-end benchmark, off by default: `NOTIFICATION_BENCH=<events>` runs it. Our broker, a fake
/// auth-service answering every `auth.user.get`, one notification-service process (the build next
/// to the tests: debug unless run with `-c release`). Two phases, measured from the test's publish
/// of `user.logged_in` to its receipt of the matching `notification.sent`:
/// - throughput: every event published at once, events/s until the last announcement;
/// - latency: events paced at `NOTIFICATION_BENCH_RATE` per second (default 200), p50/p99.
/// Prints the numbers; asserts only that every event was announced once.
@Suite struct Benchmark {
    static let events = Int(ProcessInfo.processInfo.environment["NOTIFICATION_BENCH"] ?? "") ?? 0
    static let rate = Int(ProcessInfo.processInfo.environment["NOTIFICATION_BENCH_RATE"] ?? "") ?? 200

    @Test(.enabled(if: events > 0)) func endToEnd() async throws {
        let users = Dictionary(uniqueKeysWithValues: (0..<100).map { ("bench-\($0)", "User \($0)") })
        try await Stack.run(names: users) { stack in
            let service = try await startService(stack.broker, data: stack.data,
                                                 extra: ["MAX_NOTIFICATIONS_PER_USER": "100000"])
            defer { Task { await service.stop() } }
            let sent = try await stack.client.subscribe("notification.sent")
            try await stack.client.flush()

            // Throughput: publish everything, then wait for every announcement.
            let n = Self.events
            let started = ContinuousClock.now
            for i in 0..<n {
                try await stack.client.publish(loginEvent(user: "bench-\(i % 100)", eventID: "burst-\(i)"), subject: "user.logged_in")
            }
            try await stack.client.flush()
            let published = ContinuousClock.now - started
            let seen = try await within(600, "\(n) announcements") {
                var seen = Set<String>()
                for try await message in sent {
                    if let id = jsonObject(message.payload)["source_event_id"] as? String, id.hasPrefix("burst-") { seen.insert(id) }
                    if seen.count == n { break }
                }
                return seen
            }
            let elapsed = ContinuousClock.now - started
            #expect(seen.count == n)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("notification bench: throughput \(n) events in \(String(format: "%.2f", seconds)) s = "
                  + "\(String(format: "%.0f", Double(n) / seconds)) events/s (publishing took \(published))")

            // Latency at a steady rate.
            let paced = min(n, 2000)
            let publishedAt = Mutex<[String: ContinuousClock.Instant]>([:])
            let interval = Duration.nanoseconds(1_000_000_000 / max(1, Self.rate))
            let publisher = Task {
                var next = ContinuousClock.now
                for i in 0..<paced {
                    let id = "paced-\(i)"
                    publishedAt.withLock { $0[id] = ContinuousClock.now }
                    try await stack.client.publish(loginEvent(user: "bench-\(i % 100)", eventID: id), subject: "user.logged_in")
                    try await stack.client.flush()
                    next += interval
                    try await Task.sleep(until: next, clock: .continuous)
                }
            }
            var latencies = try await within(600, "\(paced) paced announcements") {
                var latencies: [Double] = []
                for try await message in sent {
                    let received = ContinuousClock.now
                    guard let id = jsonObject(message.payload)["source_event_id"] as? String, id.hasPrefix("paced-"),
                          let at = publishedAt.withLock({ $0[id] }) else { continue }
                    let d = received - at
                    latencies.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
                    if latencies.count == paced { break }
                }
                return latencies
            }
            try await publisher.value
            latencies.sort()
            func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            print("notification bench: latency at \(Self.rate)/s over \(paced) events: p50 \(String(format: "%.2f", percentile(0.5))) ms, "
                  + "p99 \(String(format: "%.2f", percentile(0.99))) ms, max \(String(format: "%.2f", latencies.last ?? 0)) ms")
            #expect(latencies.count == paced)
        }
    }
}

/// notification-service alone, at-least-once against at-most-once, off by default:
/// `NOTIFICATION_DURABLE_BENCH=<events>` runs it (scripts/bench-notification builds the release
/// binaries and runs it with them: `NOTIFICATION_BENCH_BIN=<folder of notification-service and
/// nats-server>`; without it, the debug builds beside the tests). A fake auth-service in this
/// process answers every `auth.user.get`; the service logs at info, as in production.
/// - at-least-once: the events are stored in USER_EVENTS first, then the service starts; timed
///   from its start until its view has applied all of them (`notifications_view_sequence`), and
///   from its readiness.
/// - at-most-once (today): the service runs, the events are published on core NATS; timed from
///   the first publish until it has stored all of them (`notifications_stored`).
/// Prints notifications/s for both; asserts only that every event became one notification.
@Suite struct DurableBenchmark {
    static let events = Int(ProcessInfo.processInfo.environment["NOTIFICATION_DURABLE_BENCH"] ?? "") ?? 0
    static let binaries = ProcessInfo.processInfo.environment["NOTIFICATION_BENCH_BIN"]

    /// The service process (the release build when asked for) and its HTTP port.
    static func launch(_ environment: [String: String]) async throws -> (ChildProcess, Int) {
        var merged = ProcessInfo.processInfo.environment
        for key in ServiceProcess.standardVariables { merged[key] = nil }
        merged["HTTP_PORT"] = "0"
        merged["JWT_SECRET"] = testSecret
        merged["MAX_NOTIFICATIONS_PER_USER"] = "100000"
        for (k, v) in environment { merged[k] = v }
        let executable = try binaries.map { $0 + "/notification-service" } ?? builtExecutable("notification-service")
        let child = try ChildProcess(executable: executable, environment: merged)
        let line = try await child.waitForLine("service started") { $0.contains(#""message":"service started""#) }
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let fields = object["fields"] as? [String: Any], let port = fields["http_port"] as? Int else {
            throw TestFailure("no http_port in \(line)")
        }
        return (child, port)
    }

    static func sample(_ port: Int, _ name: String) async throws -> Double {
        let text = try await offPool { try rawHTTP(port: port, method: "GET", path: "/metrics") }.body
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") { return Double(line.split(separator: " ").last ?? "") ?? 0 }
        return 0
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    @Test(.enabled(if: events > 0)) func atLeastOnceAgainstAtMostOnce() async throws {
        let n = Self.events
        let names = Dictionary(uniqueKeysWithValues: (0..<100).map { ("bench-\($0)", "User \($0)") })
        let broker = try await BrokerKind.ours.startJetStream(executable: Self.binaries.map { $0 + "/nats-server" })
        let data = try temporaryDirectory("notif-bench")
        let auth = try await FakeAuth.start(broker.url, names: names)
        let client = try await NATSClient.connect(broker.url)
        try await stopping({ await client.close(); await auth.stop(); await broker.stop(); removeTemporary(data) }) {
            // at-least-once: a backlog of n logins, then the service.
            let js = try client.jetStream()
            try await JetStreamSetup.ensure(PlatformStreams.userEvents, js)
            let publisher = try await js.asyncPublisher(maxPending: 512)
            for i in 0..<n {
                _ = try await publisher.publish("user.logged_in", payload: loginEvent(user: "bench-\(i % 100)", eventID: "durable-\(i)"))
            }
            #expect(await publisher.waitForAll() == 0)
            let started = ContinuousClock.now
            let (durable, durablePort) = try await Self.launch(["NATS_URL": broker.url, "DATA_DIR": data + "/durable",
                                                                "EVENT_DELIVERY": "at-least-once"])
            let (done, readyAt) = try await within(600, "\(n) notifications applied") { () async throws -> (ContinuousClock.Instant, ContinuousClock.Instant?) in
                var readyAt: ContinuousClock.Instant?
                while true {
                    if readyAt == nil, (try? await offPool { try rawHTTP(port: durablePort, method: "GET", path: "/readyz") })?.status == 200 {
                        readyAt = ContinuousClock.now
                    }
                    if try await Self.sample(durablePort, "notifications_view_sequence") >= Double(n) { return (ContinuousClock.now, readyAt) }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            let stored = try await Self.sample(durablePort, "notifications_stored")
            let batches = try await Self.sample(durablePort, "notifications_view_batches_total")
            _ = await durable.stop()
            #expect(stored == Double(n))
            let total = Self.seconds(done - started)
            let fromReady = Self.seconds(done - (readyAt ?? started))
            print("notification durable bench: at-least-once \(n) notifications in \(String(format: "%.2f", total)) s from process start = "
                  + "\(String(format: "%.0f", Double(n) / total))/s (from readiness \(String(format: "%.2f", fromReady)) s = "
                  + "\(String(format: "%.0f", Double(n) / fromReady))/s); view: \(Int(batches)) batches, "
                  + "\(String(format: "%.1f", Double(n) / max(1, batches))) notifications per fsync")

            // at-most-once: the running service, then n logins on core NATS.
            let (core, corePort) = try await Self.launch(["NATS_URL": broker.url, "DATA_DIR": data + "/core", "EVENT_DELIVERY": "at-most-once"])
            #expect(await eventually(20) { (try? await offPool { try rawHTTP(port: corePort, method: "GET", path: "/readyz") })?.status == 200 })
            let coreStarted = ContinuousClock.now
            for i in 0..<n {
                try await client.publish(loginEvent(user: "bench-\(i % 100)", eventID: "core-\(i)"), subject: "user.logged_in")
            }
            try await client.flush()
            let coreDone = try await within(600, "\(n) notifications stored") {
                while try await Self.sample(corePort, "notifications_stored") < Double(n) { try await Task.sleep(for: .milliseconds(20)) }
                return ContinuousClock.now
            }
            _ = await core.stop()
            let coreTotal = Self.seconds(coreDone - coreStarted)
            print("notification durable bench: at-most-once \(n) notifications in \(String(format: "%.2f", coreTotal)) s = "
                  + "\(String(format: "%.0f", Double(n) / coreTotal))/s (one fsync each)")
        }
    }
}
