import Foundation
import NATSClient
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
