import Foundation
import Testing
import TestSupport
import ServiceKit
@testable import AnalyticsService

@Suite("Windows")
struct WindowTests {
    /// 1 m covers seconds s-59 ... s: an event at the first millisecond of second s-59 is in,
    /// one millisecond earlier (second s-60) is out, and moving the clock past the next second
    /// boundary drops it.
    @Test func oneMinuteWindowEdges() throws {
        let clock = ManualClock(baseTime + 59_999)   // second s = base/1000 + 59
        let e = try engine(clock)
        _ = e.ingest(subject: "user.logged_in", payload: login("in", at: baseTime))
        _ = e.ingest(subject: "user.logged_in", payload: login("out", at: baseTime - 1))
        #expect(e.counts(.oneMinute).total == 1)
        #expect(e.counts(.fiveMinutes).total == 2)
        #expect(e.counts(.all).total == 2)
        clock.advance(1)                              // second s+1: "in" is now 60 s old
        #expect(e.counts(.oneMinute).total == 0)
        #expect(e.counts(.fiveMinutes).total == 2)
    }

    @Test func fiveMinuteWindowEdges() throws {
        let clock = ManualClock(baseTime + 299_500)  // second s = base/1000 + 299
        let e = try engine(clock)
        _ = e.ingest(subject: "user.logged_in", payload: login("a", at: baseTime))          // s-299: in
        _ = e.ingest(subject: "user.logged_in", payload: login("b", at: baseTime - 1))      // s-300: out of 5m
        _ = e.ingest(subject: "user.logged_in", payload: login("c", at: baseTime + 299_999)) // the current second
        #expect(e.counts(.fiveMinutes).total == 2)
        #expect(e.counts(.oneMinute).total == 1)
        #expect(e.counts(.oneHour).total == 3)
        clock.set(baseTime + 300_000)
        #expect(e.counts(.fiveMinutes).total == 1)
    }

    /// 1 h covers minutes M-59 ... M, with one-minute buckets.
    @Test func oneHourWindowEdges() throws {
        let clock = ManualClock(baseTime + 59 * 60_000 + 30_000)   // minute M = base minute + 59
        let e = try engine(clock)
        _ = e.ingest(subject: "user.logged_in", payload: login("first", at: baseTime))             // M-59: in
        _ = e.ingest(subject: "user.logged_in", payload: login("older", at: baseTime - 1))         // M-60: out
        _ = e.ingest(subject: "notification.sent", payload: notificationSent("late", loginAt: baseTime + 59 * 60_000, latency: 10))
        #expect(e.counts(.oneHour).total == 2)
        #expect(e.counts(.oneHour).byType == ["user.logged_in": 1, "notification.sent": 1])
        #expect(e.counts(.all).total == 3)
        clock.set(baseTime + 60 * 60_000)                          // minute M+1
        #expect(e.counts(.oneHour).byType == ["notification.sent": 1])
        clock.advance(2 * 3_600_000)
        #expect(e.counts(.oneHour).total == 0)
        #expect(e.counts(.all).byType == ["user.logged_in": 2, "notification.sent": 1])
    }

    @Test func futureAndMissingTimesCountNowAndRingSlotsAreReused() throws {
        let clock = ManualClock(baseTime)
        let e = try engine(clock)
        _ = e.ingest(subject: "user.logged_in", payload: login("future", at: baseTime + 3_600_000))
        _ = e.ingest(subject: "user.custom", payload: Array(#"{"event_id":"no-time","user_id":"u2"}"#.utf8))
        #expect(e.counts(.oneMinute).byType == ["user.logged_in": 1, "user.custom": 1])
        // 300 s later the same ring slot holds a new second: the old events are gone from 5m.
        clock.advance(300_000)
        _ = e.ingest(subject: "user.logged_in", payload: login("again", at: clock.now))
        #expect(e.counts(.fiveMinutes).total == 1)
        #expect(e.counts(.oneHour).total == 3)
        // An event older than the slot's current second is not put in the ring (but counted in all).
        _ = e.ingest(subject: "user.logged_in", payload: login("ancient", at: baseTime - 1))
        #expect(e.counts(.fiveMinutes).total == 1)
        #expect(e.counts(.all).total == 4)
    }

    @Test func uniqueUsersPerWindow() throws {
        let clock = ManualClock(baseTime + 30 * 60_000)
        let e = try engine(clock)
        for k in 0..<40 {
            _ = e.ingest(subject: "user.logged_in", payload: login("old-\(k)", user: "old-\(k)", at: baseTime))
        }
        for k in 0..<10 {
            for repeat_ in 0..<3 {
                _ = e.ingest(subject: "user.logged_in", payload: login("new-\(k)-\(repeat_)", user: "new-\(k)", at: clock.now))
            }
        }
        #expect(e.uniqueUsers(.oneMinute).estimate.rounded() == 10)
        #expect(e.uniqueUsers(.fiveMinutes).estimate.rounded() == 10)
        #expect(e.uniqueUsers(.oneHour).estimate.rounded() == 50)
        #expect(e.uniqueUsers(.all).estimate.rounded() == 50)
        #expect(e.uniqueUsers(.oneMinute).standardError == 1.04 / 32)
    }

    @Test func typesBeyondTheLimitCountAsOther() throws {
        let clock = ManualClock(baseTime)
        let e = try engine(clock)
        for k in 0..<(WindowedCounters.maxTypes + 5) {
            _ = e.ingest(subject: "user.kind\(k)", payload: Array(#"{"event_id":"k\#(k)"}"#.utf8))
        }
        let byType = e.counts(.all).byType
        #expect(byType.count == WindowedCounters.maxTypes + 1)
        #expect(byType[WindowedCounters.otherType] == 5)
    }
}

@Suite("Deduplication and ingest")
struct IngestTests {
    @Test func anEventSeenRawAndAsAnEnvelopeCountsOnce() throws {
        let clock = ManualClock(baseTime)
        let e = try engine(clock)
        let raw = login("ev-1", user: "u-1", at: baseTime)
        guard case .counted(_, let type) = e.ingest(subject: "user.logged_in", payload: raw) else { Issue.record("not counted"); return }
        #expect(type == "user.logged_in")
        guard case .duplicate = e.ingest(subject: "events.user.logged_in", payload: envelope(of: raw, id: "ev-1", at: baseTime)) else {
            Issue.record("envelope not recognised as a duplicate"); return
        }
        // The other order too: envelope first.
        let raw2 = login("ev-2", user: "u-2", at: baseTime)
        guard case .counted(_, let type2) = e.ingest(subject: "events.user.logged_in", payload: envelope(of: raw2, id: "ev-2", user: "u-2", at: baseTime)) else {
            Issue.record("envelope not counted"); return
        }
        #expect(type2 == "user.logged_in")
        _ = e.ingest(subject: "user.logged_in", payload: raw2)
        #expect(e.counts(.all).byType == ["user.logged_in": 2])
        #expect(e.uniqueUsers(.all).estimate.rounded() == 2)
        #expect(e.topUsers().map(\.count) == [1, 1])
        #expect(e.statistics.counted == 2 && e.statistics.duplicates == 2)
    }

    @Test func eventsWithoutIDCountEveryTimeAndInvalidOnesNever() throws {
        let e = try engine(ManualClock(baseTime))
        let noID = Array(#"{"user_id":"u"}"#.utf8)
        _ = e.ingest(subject: "user.logged_in", payload: noID)
        _ = e.ingest(subject: "user.logged_in", payload: noID)
        guard case .invalid = e.ingest(subject: "user.logged_in", payload: Array("not json".utf8)) else { Issue.record("accepted"); return }
        let s = e.statistics
        #expect(s.counted == 2 && s.withoutID == 2 && s.invalid == 1)
    }

    @Test func theIDMemoryIsBounded() throws {
        let e = try engine(ManualClock(baseTime), .init(dedupCapacity: 4))
        for k in 0..<5 { _ = e.ingest(subject: "user.logged_in", payload: login("id-\(k)", at: baseTime)) }
        // id-0 was pushed out by four newer ids, id-4 is still remembered.
        guard case .counted = e.ingest(subject: "user.logged_in", payload: login("id-0", at: baseTime)) else { Issue.record("kept"); return }
        guard case .duplicate = e.ingest(subject: "user.logged_in", payload: login("id-4", at: baseTime)) else { Issue.record("forgot"); return }
    }

    @Test func batchIngestMatchesOneAtATime() throws {
        let clock = ManualClock(baseTime)
        let payloads = AnalyticsBench.samplePayloads(count: 3000, seed: 9, envelopes: true, now: baseTime)
        let single = try engine(clock), batched = try engine(clock)
        for m in payloads { _ = single.ingest(subject: m.subject, payload: m.payload) }
        var k = 0
        while k < payloads.count { batched.ingest(batch: Array(payloads[k..<min(k + 100, payloads.count)])); k += 100 }
        #expect(single.allStats() == batched.allStats())
        #expect(single.statistics.counted == 3000)
        #expect(single.statistics.duplicates == UInt64(payloads.count - 3000))
    }

    @Test func topListsAndLatencyFromEvents() throws {
        let clock = ManualClock(baseTime)
        let e = try engine(clock, .init(topN: 2, topCapacity: 200))
        for (user, n) in [("alice", 5), ("bob", 3), ("carol", 1)] {
            for k in 0..<n {
                _ = e.ingest(subject: "user.logged_in", payload: login("\(user)-\(k)", user: user, email: "\(user)@\(user == "carol" ? "B.example" : "a.example")", at: baseTime))
            }
        }
        for (k, latency) in [100, 200, 300, 400].enumerated() {
            _ = e.ingest(subject: "notification.sent", payload: notificationSent("n\(k)", user: "alice", loginAt: baseTime, latency: Int64(latency)))
        }
        #expect(e.topUsers().map(\.key) == ["alice", "bob"])
        #expect(e.topUsers().first?.count == 9)
        #expect(e.topEmailDomains().map(\.key) == ["a.example", "B.example"])
        // Within the histogram's documented relative error of the exact 200 and 400.
        #expect(abs((e.latency.percentile(0.5) ?? 0) - 200) <= 200 * LatencyHistogram.relativeError)
        #expect(abs((e.latency.percentile(0.99) ?? 0) - 400) <= 400 * LatencyHistogram.relativeError)
    }
}

@Suite("Snapshots and queries")
struct SnapshotQueryTests {
    static func populated(_ clock: ManualClock) throws -> AnalyticsEngine {
        let e = try engine(clock)
        for m in AnalyticsBench.samplePayloads(count: 2000, seed: 4, envelopes: true, now: clock.now) {
            _ = e.ingest(subject: m.subject, payload: m.payload)
        }
        return e
    }

    @Test func snapshotRestoresEveryAnswer() throws {
        let clock = ManualClock(baseTime)
        let a = try Self.populated(clock)
        let b = try engine(clock)
        let report = try b.restore(a.snapshot())
        #expect(report.counted == 2000 && report.savedAt == baseTime && !report.uniqueUsersReset)
        #expect(b.allStats() == a.allStats())
        // Deduplication continues across the restore.
        let again = AnalyticsBench.samplePayloads(count: 10, seed: 4, now: baseTime)
        for m in again { if case .counted = b.ingest(subject: m.subject, payload: m.payload) { Issue.record("counted twice") } }
        // And it is a true copy: b moves on without a.
        _ = b.ingest(subject: "user.logged_in", payload: login("fresh", at: baseTime))
        #expect(b.counts(.all).total == a.counts(.all).total + 1)
    }

    @Test func restoreAfterALongGapEmptiesTheWindowsOnly() throws {
        let clock = ManualClock(baseTime)
        let a = try Self.populated(clock)
        let saved = a.snapshot()
        clock.advance(30 * 60_000)
        let b = try engine(clock)
        try b.restore(saved)
        #expect(b.counts(.fiveMinutes).total == 0)
        #expect(b.counts(.oneHour).total > 0 && b.counts(.oneHour).total < 2000)
        clock.advance(2 * 3_600_000)
        #expect(b.counts(.oneHour).total == 0 && b.counts(.oneMinute).total == 0)
        #expect(b.counts(.all) == a.counts(.all))
        #expect(b.uniqueUsers(.all).estimate == a.uniqueUsers(.all).estimate)
        #expect(b.topUsers() == a.topUsers())
        #expect(b.latency == a.latency)
    }

    @Test func aDamagedSnapshotIsRefusedAndChangesNothing() throws {
        let clock = ManualClock(baseTime)
        let a = try Self.populated(clock)
        let saved = a.snapshot()
        let b = try engine(clock)
        _ = b.ingest(subject: "user.logged_in", payload: login("keep", at: baseTime))
        let before = b.allStats()
        for cut in [0, 5, 8, 100, saved.count / 2, saved.count - 1] {
            #expect(throws: SnapshotError.self) { try b.restore(Array(saved.prefix(cut))) }
        }
        #expect(throws: SnapshotError.self) { try b.restore(saved + [0]) }
        var flipped = saved
        flipped[6] ^= 0xFF   // the version
        #expect(throws: SnapshotError.self) { try b.restore(flipped) }
        #expect(b.allStats() == before)
    }

    /// Every bucket full (dense window sketches), full top-N summaries, a wide latency spread and
    /// the saved ids: the snapshot stays around 1 MiB.
    @Test func snapshotSizeIsBounded() throws {
        let clock = ManualClock(baseTime + 3_600_000)
        let e = try engine(clock)
        var n = 0
        for second in 0..<300 {
            for user in 0..<80 {
                let at = clock.now - Int64(second) * 1000 - (second % 12 == 0 ? Int64(second) * 11_000 : 0)
                _ = e.ingest(subject: "notification.sent", payload: notificationSent("s\(n)", user: "user-\(second)-\(user)", loginAt: at - Int64(n % 5000), latency: Int64(n % 5000)))
                n += 1
            }
        }
        let size = e.snapshot().count
        #expect(size < 1_300_000, "snapshot of \(size) bytes")
    }

    @Test func nonFiniteValuesNeverBreakAnAnswer() {
        #expect(AnalyticsEngine.integer(.infinity) == .null)
        #expect(AnalyticsEngine.integer(.nan) == .null)
        #expect(AnalyticsEngine.integer(1e30) == .int(9_000_000_000_000_000_000))
        #expect(AnalyticsEngine.integer(41.6) == .int(42))
    }

    @Test func aChangedPrecisionResetsOnlyUniqueUsers() throws {
        let clock = ManualClock(baseTime)
        let a = try Self.populated(clock)
        let b = try engine(clock, .init(hllPrecision: 12))
        let report = try b.restore(a.snapshot())
        #expect(report.uniqueUsersReset)
        #expect(b.uniqueUsers(.all).estimate == 0)
        #expect(b.counts(.all) == a.counts(.all))
    }

    @Test func queriesAnswerAndRefuse() throws {
        let clock = ManualClock(baseTime)
        let e = try Self.populated(clock)
        let counts = try e.answer(request: Array(#"{"metric":"counts","window":"all"}"#.utf8))
        guard case .object(let c) = counts, case .int(let total)? = c["total"] else { Issue.record("\(counts)"); return }
        #expect(total == 2000 && c["window"] == .string("all") && c["metric"] == .string("counts"))
        guard case .object(let hour) = try e.answer(metric: "counts", window: "1h"), case .int(let inHour)? = hour["total"] else {
            Issue.record("1h"); return
        }
        #expect(inHour > 1900 && inHour <= 2000)
        guard case .object(let all) = try e.answer(metric: "unique_users", window: nil), case .object(let windows)? = all["windows"] else {
            Issue.record("no windows"); return
        }
        #expect(Set(windows.keys) == ["1m", "5m", "1h", "all"])
        guard case .object(let latency) = try e.answer(metric: "latency", window: nil) else { Issue.record("latency"); return }
        #expect(latency["p50_ms"]?.numberValue != nil && latency["count"] == .int(1000))
        guard case .object(let stats) = e.allStats() else { Issue.record("stats"); return }
        #expect(Set(stats.keys) == ["counts", "unique_users", "top", "latency", "ingest", "time"])

        func refused(_ body: String) -> Int? {
            do { _ = try e.answer(request: Array(body.utf8)); return nil } catch { return error.status }
        }
        #expect(refused(#"{"metric":"bogus"}"#) == 404)
        #expect(refused(#"{"metric":"counts","window":"2m"}"#) == 400)
        #expect(refused(#"{"metric":"top","window":"1m"}"#) == 400)
        #expect(refused(#"{"metric":"counts","window":5}"#) == 400)
        #expect(refused(#"{"window":"1m"}"#) == 400)
        #expect(refused("not json") == 400)
        #expect(refused("[1]") == 400)
        #expect(refused(#"{"metric":"top"}"#) == nil)
        // Names are echoed without control characters (service errors travel in headers) and cut.
        do {
            _ = try e.answer(metric: "a\r\nb" + String(repeating: "x", count: 100), window: nil)
            Issue.record("answered")
        } catch {
            #expect(error.status == 404)
            #expect(!error.message.contains("\r") && !error.message.contains("\n") && error.message.contains("a??bxx"))
            #expect(error.message.count < 200)
        }
        #expect(refused(#"{"metric":"all"}"#) == nil)
    }
}

@Suite("Documentation")
struct DocumentationTests {
    /// docs/analytics.md carries the settings table generated from the code.
    @Test func theDocsListEverySetting() throws {
        let doc = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/analytics.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let table = Configuration.documentationTable(AnalyticsSettings.all)
        #expect(text.contains(table), "docs/analytics.md must contain this table:\n\(table)")
    }
}
