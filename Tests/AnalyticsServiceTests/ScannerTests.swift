import Foundation
import Testing
import TestSupport
@testable import AnalyticsService
import Formats

@Suite("Event scanner")
struct ScannerTests {
    @Test func readsARawLogin() throws {
        let e = try #require(EventScanner.decode(login("e-1", user: "u-9", email: "Ann@Example.COM", at: baseTime + 123)))
        #expect(e.eventIDText == "e-1")
        #expect(e.userIDText == "u-9")
        #expect(e.emailDomainText == "Example.COM")
        #expect(e.time == baseTime + 123)
        #expect(e.latency == nil)
    }

    @Test func readsANotificationLatencyFromTheFieldOrFromTheTimes() throws {
        let sent = try #require(EventScanner.decode(notificationSent("n1", loginAt: baseTime, latency: 250)))
        #expect(sent.latency == 250)
        #expect(sent.time == baseTime + 250)
        let noField = Array(#"{"event_id":"x","user_id":"u","login_time":"2026-11-23T17:02:14.100Z","time":"2026-11-23T17:02:14.350Z"}"#.utf8)
        #expect(EventScanner.decode(noField)?.latency == 250)
    }

    @Test func readsAnEnvelopeAndItsOriginalEvent() throws {
        let raw = notificationSent("n2", user: "u-5", loginAt: baseTime, latency: 75)
        let wrapped = Array(#"{"event_id":"n2","type":"notification.sent","user_id":null,"occurred_at":"\#(iso(baseTime + 75))","data":"#.utf8)
            + raw + Array(#","enrichment":{"nested":[1,{"a":"}"}],"s":"a\"b"}}"#.utf8)
        let e = try #require(EventScanner.decode(wrapped))
        #expect(e.eventIDText == "n2")
        #expect(e.userIDText == "u-5")      // null at the top level, taken from data
        #expect(e.latency == 75)
        #expect(e.time == baseTime + 75)
        let withEmail = try #require(EventScanner.decode(envelope(of: login("l1", email: "bob@corp.example", at: baseTime), id: "l1", at: baseTime)))
        #expect(withEmail.emailDomainText == "corp.example")
    }

    @Test func escapedStringsTakeTheSlowPathAndDecodeCorrectly() throws {
        let payload = Array(#"{"event_id":"a\"b","user_id":"\u0075-1","email":"x@d\u00e9.example","time":"2026-11-23T17:02:14Z"}"#.utf8)
        let e = try #require(EventScanner.decode(payload))
        #expect(e.eventIDText == "a\"b")
        #expect(e.userIDText == "u-1")
        #expect(e.emailDomainText == "dé.example")
        #expect(e.time == 1_795_453_334_000)
    }

    @Test func refusesWhatIsNotAnObject() {
        for text in ["", "[]", "null", "\"s\"", "{", #"{"event_id":"#, #"{"event_id":"x""#, #"{"event_id" "x"}"#,
                     #"{"a":[1,2}"#, #"{"data":{"user_id":"u"}"#, #"{"a":1,}"#, "{}garbage"] {
            // A trailing garbage after a complete object is not read: the scanner is a field finder.
            if text == "{}garbage" { #expect(EventScanner.decode(Array(text.utf8)) != nil); continue }
            #expect(EventScanner.decode(Array(text.utf8)) == nil, "\(text)")
        }
        // Bad field values are absent, not fatal.
        let bad = EventScanner.decode(Array(#"{"event_id":7,"time":"yesterday","latency_ms":"fast"}"#.utf8))
        #expect(bad != nil && bad?.eventIDText == nil && bad?.time == nil && bad?.latency == nil)
    }

    @Test func neverCrashesOnRandomBytes() {
        var rng = SeededGenerator(seed: 42)
        let alphabet = Array(#"{}[]":,\ ae0123-.tTZ"#.utf8)
        for _ in 0..<3000 {
            let n = Int.random(in: 0..<64, using: &rng)
            let bytes = (0..<n).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }
            _ = EventScanner.decode(bytes)
            _ = EventScanner.decode(Array(#"{"event_id":"#.utf8) + bytes)
        }
    }

    @Test(arguments: [
        ("2026-11-23T17:02:14Z", Int64(1_795_453_334_000)),
        ("2026-11-23T17:02:14.123Z", 1_795_453_334_123),
        ("2026-11-23T17:02:14.1Z", 1_795_453_334_100),
        ("2026-11-23T17:02:14.123456789Z", 1_795_453_334_123),
        ("2026-11-23T18:02:14+01:00", 1_795_453_334_000),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.5Z", -500),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("2000-02-29T00:00:00Z", 951_782_400_000),
        ("2026-12-31T00:00:00Z", 1_798_675_200_000),
    ])
    func parsesTimestamps(_ text: String, _ ms: Int64) {
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBufferPointer { RFC3339.parse($0)?.milliseconds } == ms)
    }

    @Test func formatsTimestampsThatParseBack() {
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<2000 {
            let ms = Int64.random(in: 0...253_402_300_799_999, using: &rng)
            let bytes = Array(AnalyticsEngine.iso8601(ms).utf8)
            #expect(bytes.count == 24)
            #expect(bytes.withUnsafeBufferPointer { RFC3339.parse($0)?.milliseconds } == ms)
        }
        #expect(AnalyticsEngine.iso8601(1_795_453_334_123) == "2026-11-23T17:02:14.123Z")
        #expect(AnalyticsEngine.iso8601(-5) == "1970-01-01T00:00:00.000Z")
    }

    @Test func refusesMalformedTimestamps() {
        for text in ["2026-11-23", "2026-13-01T00:00:00Z", "2026-11-23T25:00:00Z", "2026-11-23T17:02:14", "2026-11-23T17:02:14.Z",
                     "2026-11-23T17:02:14Zx", "x026-11-23T17:02:14Z",
                     // Days that do not exist: 31 in a 30-day month, 29 February outside leap years.
                     "2026-02-31T00:00:00Z", "2026-04-31T00:00:00Z", "2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
                     "2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z"] {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBufferPointer { RFC3339.parse($0)?.milliseconds } == nil, "\(text)")
        }
    }

    @Test func parsesNumbers() {
        for (text, value) in [("0", 0.0), ("250", 250), ("-3", -3), ("12.5", 12.5), ("1e3", 1000), ("2.5E-1", 0.25)] as [(String, Double)] {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBufferPointer { JSONNumber.double($0) } == value, "\(text)")
        }
        for text in ["", "-", "1.", ".5", "1e", "12a", "null"] {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBufferPointer { JSONNumber.double($0) } == nil, "\(text)")
        }
    }
}
