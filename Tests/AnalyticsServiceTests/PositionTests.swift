import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import TestSupport
@testable import AnalyticsService

/// Stream positions: counted together with the message, saved with the counts.
@Suite("Stream positions")
struct PositionTests {
    /// A message at or before the recorded position is skipped; positions survive a snapshot.
    @Test func aSequenceAlreadyCountedIsSkippedAndPositionsAreSaved() throws {
        let clock = ManualClock(baseTime)
        let e = try engine(clock)
        // Without an event id: only the position can keep these from counting twice.
        let body = Array(#"{"user_id":"u1","time":"\#(iso(baseTime))"}"#.utf8)
        for sequence in 1...3 as ClosedRange<UInt64> {
            #expect(e.apply(stream: "USER_EVENTS", sequence: sequence, subject: "user.registered", payload: body) != nil)
        }
        #expect(e.apply(stream: "USER_EVENTS", sequence: 2, subject: "user.registered", payload: body) == nil)
        #expect(e.apply(stream: "USER_EVENTS", sequence: 3, subject: "user.registered", payload: body) == nil)
        e.setPosition(.init(sequence: 10, streamCreated: 77), for: "EVENTS")
        #expect(e.apply(stream: "EVENTS", sequence: 10, subject: "events.user.registered", payload: body) == nil)
        #expect(e.apply(stream: "EVENTS", sequence: 11, subject: "events.user.registered", payload: body) != nil)
        #expect(e.statistics.counted == 4)
        #expect(e.position("EVENTS") == .init(sequence: 11, streamCreated: 77))

        let restored = try engine(clock)
        let report = try restored.restore(e.snapshot())
        #expect(report.positions == ["USER_EVENTS": .init(sequence: 3, streamCreated: 0), "EVENTS": .init(sequence: 11, streamCreated: 77)])
        #expect(restored.streamPositions == e.streamPositions)
        #expect(restored.apply(stream: "USER_EVENTS", sequence: 3, subject: "user.registered", payload: body) == nil)
        #expect(restored.apply(stream: "USER_EVENTS", sequence: 4, subject: "user.registered", payload: body) != nil)
        #expect(restored.statistics.counted == 5)
    }

    /// Snapshots taken while two streams are being counted (on threads of their own) each hold
    /// exactly the messages up to their saved positions: restored, the count equals the sum of
    /// the positions (every message is a distinct event), whenever the snapshot was taken.
    @Test func everySnapshotHoldsExactlyWhatItsPositionsSay() async throws {
        let clock = ManualClock(baseTime)
        let e = try engine(clock)
        let perStream = 20_000
        final class Shared: Sendable {
            let done = Atomic<Int>(0)
            let snapshots = Mutex<[[UInt8]]>([])
        }
        let shared = Shared()
        func count(_ stream: String) async throws {
            try await offPool {
                for sequence in 1...perStream {
                    // Barrier: halfway, wait until snapshots are being taken, so some fall mid-count.
                    if sequence == perStream / 2 {
                        while shared.snapshots.withLock({ $0.count }) < 3 { usleep(100) }
                    }
                    _ = e.apply(stream: stream, sequence: UInt64(sequence), subject: "user.logged_in",
                                payload: login("\(stream)-\(sequence)", at: baseTime))
                }
                shared.done.add(1, ordering: .relaxed)
            }
        }
        async let a: Void = count("A")
        async let b: Void = count("B")
        async let snapshotting: Void = offPool {
            while shared.done.load(ordering: .relaxed) < 2 {
                let bytes = e.snapshot()
                shared.snapshots.withLock { $0.append(bytes) }
            }
        }
        _ = try await (a, b, snapshotting)
        let taken = shared.snapshots.withLock { $0 }
        #expect(taken.count >= 3)
        for bytes in taken {
            let restored = try engine(clock)
            let report = try restored.restore(bytes)
            let sum = report.positions.values.reduce(0) { $0 + $1.sequence }
            #expect(report.counted == sum)
            #expect(restored.counts(.all).total == sum)
        }
    }
}
