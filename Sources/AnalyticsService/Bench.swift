#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NATSClient
import ServiceKit

/// The benchmark tool behind `analytics-service bench` (used by `scripts/bench-analytics`).
///
/// - `bench ingest [--events N] [--batch B]`: decoding and counting in process, on realistic
///   payloads, one event at a time, in batches, and one event at a time from two threads.
/// - `bench publish --url URL [--events N] [--envelopes] [--streams]`: publishes N distinct
///   events to a broker as fast as it can (with `--envelopes`, each login also as its `events.*`
///   envelope, as data-processing would), for an end-to-end run against a live service. With
///   `--streams`, USER_EVENTS, NOTIFICATIONS and EVENTS are created first (as their owners declare
///   them) and every message is a JetStream publish whose ack is awaited (256 in flight), so
///   they are all stored when it returns: the backlog a starting service reads.
public enum AnalyticsBench {
    /// Runs the tool; returns the exit status.
    public static func main(_ arguments: [String]) async -> Int32 {
        var options: [String: String] = [:]
        var flags: Set<String> = []
        var i = 1
        while i < arguments.count {
            let a = arguments[i]
            if a == "--envelopes" || a == "--streams" { flags.insert(a); i += 1; continue }
            guard a.hasPrefix("--"), i + 1 < arguments.count else {
                FileHandle.standardError.write(Data("bench: unexpected argument \(a)\n".utf8))
                return 2
            }
            options[a] = arguments[i + 1]
            i += 2
        }
        let events = Int(options["--events"] ?? "") ?? 200_000
        switch arguments.first {
        case "ingest":
            return ingest(events: events, batch: Int(options["--batch"] ?? "") ?? 256)
        case "publish":
            guard let url = options["--url"] else {
                FileHandle.standardError.write(Data("bench publish: --url is required\n".utf8))
                return 2
            }
            if flags.contains("--streams") { return await publishToStreams(url: url, events: events, envelopes: flags.contains("--envelopes")) }
            return await publish(url: url, events: events, envelopes: flags.contains("--envelopes"))
        default:
            FileHandle.standardError.write(Data("usage: analytics-service bench ingest [--events N] [--batch B] | publish --url URL [--events N] [--envelopes] [--streams]\n".utf8))
            return 2
        }
    }

    /// `count` distinct, realistic events (45 % logins, 5 % registrations, 50 % notifications,
    /// 20,000 users over 40 email domains, times within the last hour); with `envelopes`, every
    /// login is followed by its `events.user.logged_in` envelope (a duplicate to drop).
    public static func samplePayloads(count: Int, seed: UInt64 = 1, envelopes: Bool = false,
                                      now: Int64 = AnalyticsEngine.systemClock()) -> [(subject: String, payload: [UInt8])] {
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            return ByteHash.finalise(state)
        }
        func uuid(_ a: UInt64, _ b: UInt64) -> String {
            func hex(_ v: UInt64, _ digits: Int) -> String {
                let s = String(v, radix: 16)
                return String(repeating: "0", count: max(0, digits - s.count)) + s.suffix(digits)
            }
            return "\(hex(a >> 32, 8))-\(hex((a >> 16) & 0xFFFF, 4))-4\(hex(a & 0xFFF, 3))-a\(hex(b >> 52, 3))-\(hex(b & 0xFFFF_FFFF_FFFF, 12))"
        }
        func time(_ ms: Int64) -> String { AnalyticsEngine.iso8601(ms) }
        var out: [(subject: String, payload: [UInt8])] = []
        out.reserveCapacity(envelopes ? count * 3 / 2 : count)
        for n in 0..<count {
            let user = Int(next() % 20_000)
            let userID = uuid(UInt64(user) &* 0x9E37_79B9, UInt64(user))
            let email = "user\(user)@domain\(user % 40).example.com"
            let eventID = uuid(next(), next())
            let at = now - Int64(next() % 3_600_000)
            let kind = n % 20
            if kind < 9 || kind == 19 {
                let subject = kind == 19 ? "user.registered" : "user.logged_in"
                let body = #"{"event_id":"\#(eventID)","user_id":"\#(userID)","email":"\#(email)","name":"User \#(user)","time":"\#(time(at))","client_address":"10.0.\#(user % 256).\#(user % 199)"}"#
                out.append((subject, Array(body.utf8)))
                if envelopes && kind != 19 {
                    let envelope = #"{"event_id":"\#(eventID)","type":"user.logged_in","user_id":"\#(userID)","occurred_at":"\#(time(at))","received_at":"\#(time(at + 3))","source_subject":"user.logged_in","data":\#(body),"enrichment":{"email_domain":"domain\#(user % 40).example.com","hour_of_day":13}}"#
                    out.append(("events.user.logged_in", Array(envelope.utf8)))
                }
            } else {
                let latency = Int64(next() % 400) + 20
                let body = #"{"event_id":"\#(eventID)","notification_id":"\#(uuid(next(), next()))","user_id":"\#(userID)","source_event_id":"\#(uuid(next(), next()))","kind":"welcome","personalized":true,"fallback_reason":null,"login_time":"\#(time(at - latency))","time":"\#(time(at))","latency_ms":\#(latency)}"#
                out.append(("notification.sent", Array(body.utf8)))
            }
        }
        return out
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func ingest(events: Int, batch: Int) -> Int32 {
        let payloads = samplePayloads(count: events, envelopes: true)
        let bytes = payloads.reduce(0) { $0 + $1.payload.count }
        print("payloads: \(payloads.count) messages (\(events) distinct events, logins also as envelopes), mean \(bytes / max(1, payloads.count)) B")
        func fresh() -> AnalyticsEngine {
            // Default options are valid.
            try! AnalyticsEngine()
        }
        func report(_ label: String, _ engine: AnalyticsEngine, _ elapsed: Duration) {
            let s = seconds(elapsed)
            let counted = engine.statistics.counted
            print(label + String(format: ": %.0f messages/s, %.0f events counted/s (%llu counted, %llu duplicates, %.3f s)",
                         Double(payloads.count) / s, Double(counted) / s, counted, engine.statistics.duplicates, s))
        }
        // Warm-up (first-touch of the aggregates' memory and the type table).
        let warm = fresh()
        for m in payloads.prefix(10_000) { _ = warm.ingest(subject: m.subject, payload: m.payload) }

        var engine = fresh()
        var start = ContinuousClock.now
        for m in payloads { _ = engine.ingest(subject: m.subject, payload: m.payload) }
        report("in-process, one message at a time", engine, ContinuousClock.now - start)

        engine = fresh()
        let size = max(1, batch)
        var batches: [[(subject: String, payload: [UInt8])]] = []
        var k = 0
        while k < payloads.count { batches.append(Array(payloads[k..<min(k + size, payloads.count)])); k += size }
        start = ContinuousClock.now
        for b in batches { engine.ingest(batch: b) }
        report("in-process, batches of \(size)", engine, ContinuousClock.now - start)

        engine = fresh()
        let shared = engine
        let threads = 2
        let done = DispatchGroup()
        start = ContinuousClock.now
        for t in 0..<threads {
            done.enter()
            let part = Array(payloads.enumerated().filter { $0.offset % threads == t }.map(\.element))
            Thread {
                for m in part { _ = shared.ingest(subject: m.subject, payload: m.payload) }
                done.leave()
            }.start()
        }
        done.wait()
        report("in-process, one message at a time, \(threads) threads", engine, ContinuousClock.now - start)
        return 0
    }

    static func publish(url: String, events: Int, envelopes: Bool) async -> Int32 {
        let payloads = samplePayloads(count: events, envelopes: envelopes)
        do {
            let client = try await NATSClient.connect(url)
            let start = ContinuousClock.now
            for m in payloads { try await client.publish(m.payload, subject: m.subject) }
            try await client.flush()
            let s = seconds(ContinuousClock.now - start)
            print(String(format: "published %d messages (%d distinct events) in %.3f s: %.0f messages/s", payloads.count, events, s, Double(payloads.count) / s))
            try await client.drain()
            return 0
        } catch {
            FileHandle.standardError.write(Data("bench publish: \(error)\n".utf8))
            return 1
        }
    }

    static func publishToStreams(url: String, events: Int, envelopes: Bool) async -> Int32 {
        let payloads = samplePayloads(count: events, envelopes: envelopes)
        do {
            let client = try await NATSClient.connect(url)
            let js = try client.jetStream()
            for spec in [PlatformStreams.userEvents, PlatformStreams.notifications, PlatformStreams.events] {
                try await JetStreamSetup.ensure(spec, js)
            }
            let publisher = try await js.asyncPublisher(maxPending: 256)
            let start = ContinuousClock.now
            for m in payloads { _ = try await publisher.publish(m.subject, payload: m.payload) }
            let failures = await publisher.waitForAll()
            let s = seconds(ContinuousClock.now - start)
            print(String(format: "stored %d messages (%d distinct events) in the streams in %.3f s: %.0f messages/s; %d failed",
                         payloads.count, events, s, Double(payloads.count) / s, failures))
            try await client.drain()
            return failures == 0 ? 0 : 1
        } catch {
            FileHandle.standardError.write(Data("bench publish: \(error)\n".utf8))
            return 1
        }
    }
}
