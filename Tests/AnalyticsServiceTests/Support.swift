// Test support for the analytics service: a settable wall clock and event payload builders.

import Foundation
import Synchronization
import TestSupport
@testable import AnalyticsService

/// A wall clock the test moves by hand (Unix milliseconds).
final class ManualClock: Sendable {
    private let value: Mutex<Int64>
    init(_ start: Int64) { value = Mutex(start) }
    var now: Int64 { value.withLock { $0 } }
    func set(_ ms: Int64) { value.withLock { $0 = ms } }
    func advance(_ ms: Int64) { value.withLock { $0 += ms } }
    var read: @Sendable () -> Int64 { { [self] in now } }
}

/// A minute-aligned instant (2023-11-14T22:14:00Z), so bucket edges are easy to name.
let baseTime: Int64 = 1_700_000_040_000

func iso(_ ms: Int64) -> String { AnalyticsEngine.iso8601(ms) }

func login(_ id: String, user: String = "u1", email: String = "ann@example.com", at ms: Int64) -> [UInt8] {
    Array(#"{"event_id":"\#(id)","user_id":"\#(user)","email":"\#(email)","name":"Ann","time":"\#(iso(ms))","client_address":"127.0.0.1"}"#.utf8)
}

func envelope(of raw: [UInt8], id: String, user: String = "u1", type: String = "user.logged_in", at ms: Int64) -> [UInt8] {
    Array(#"{"event_id":"\#(id)","type":"\#(type)","user_id":"\#(user)","occurred_at":"\#(iso(ms))","received_at":"\#(iso(ms + 5))","source_subject":"\#(type)","data":"#.utf8)
        + raw + Array(#","enrichment":{"email_domain":"example.com"}}"#.utf8)
}

func notificationSent(_ id: String, user: String = "u1", loginAt: Int64, latency: Int64) -> [UInt8] {
    Array(#"{"event_id":"\#(id)","notification_id":"n-\#(id)","user_id":"\#(user)","source_event_id":"src-\#(id)","kind":"welcome","personalized":false,"fallback_reason":"timeout","login_time":"\#(iso(loginAt))","time":"\#(iso(loginAt + latency))","latency_ms":\#(latency)}"#.utf8)
}

func engine(_ clock: ManualClock, _ options: AnalyticsEngine.Options = .init()) throws -> AnalyticsEngine {
    try AnalyticsEngine(options: options, clock: clock.read)
}

/// 8 bytes of `n` mixed with `seed`: distinct items for the sketches.
func item(_ n: UInt64, seed: UInt64) -> [UInt8] {
    let v = n &* 0x9E37_79B9_7F4A_7C15 ^ seed
    return (0..<8).map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) } + [UInt8(truncatingIfNeeded: seed)]
}
