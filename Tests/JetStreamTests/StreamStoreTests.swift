import Foundation
import Testing
@testable import JetStream
import TestSupport

/// The two backends; every behavioural test runs against both.
enum Backend: String, CaseIterable, CustomStringConvertible, Sendable {
    case memory, file
    var description: String { rawValue }
}

/// A store under test, with its directory (file backend) removed by `finish()`.
final class Harness {
    let backend: Backend
    let directory: String?
    var limits: StreamLimits
    var store: StreamStore

    init(_ backend: Backend, limits: StreamLimits = StreamLimits(), options: FileStoreOptions = FileStoreOptions()) throws {
        self.backend = backend
        self.limits = limits
        switch backend {
        case .memory:
            directory = nil
            store = StreamStore(memory: limits)
        case .file:
            let dir = try temporaryDirectory("jsstore")
            directory = dir
            store = try StreamStore(directory: dir + "/stream", limits: limits, options: options, now: 0)
        }
    }

    func finish() {
        store.close()
        if let directory { removeTemporary(directory) }
    }

    @discardableResult
    func put(_ subject: String, _ text: String = "payload", headers: String = "", at timestamp: Int64 = 1) throws -> UInt64 {
        try store.store(subject: subject, headers: Array(headers.utf8), payload: Array(text.utf8), timestamp: timestamp)
    }

    func size(_ subject: String, _ text: String = "payload", headers: String = "") -> UInt64 {
        store.messageSize(subject: subject, headers: Array(headers.utf8), payload: Array(text.utf8))
    }

    func text(_ sequence: UInt64) throws -> String { String(decoding: try store.load(sequence).payload, as: UTF8.self) }
}

/// Runs `body` with a fresh harness and always cleans up.
func withHarness(_ backend: Backend, limits: StreamLimits = StreamLimits(), _ body: (Harness) throws -> Void) throws {
    let h = try Harness(backend, limits: limits)
    defer { h.finish() }
    try body(h)
}

@Suite struct StreamStoreBehaviourTests {
    @Test(arguments: Backend.allCases)
    func storesAndLoadsInSequence(_ backend: Backend) throws {
        try withHarness(backend) { h in
            #expect(h.store.state == StreamState())
            #expect(try h.put("orders.new", "one", at: 10) == 1)
            #expect(try h.put("orders.old", "two", headers: "NATS/1.0\r\nA: b\r\n\r\n", at: 20) == 2)
            let second = try h.store.load(2)
            #expect(second == StoredMessage(subject: "orders.old", headers: Array("NATS/1.0\r\nA: b\r\n\r\n".utf8),
                                            payload: Array("two".utf8), sequence: 2, timestamp: 20))
            let state = h.store.state
            #expect(state.messages == 2 && state.firstSequence == 1 && state.lastSequence == 2)
            #expect(state.firstTime == 10 && state.lastTime == 20 && state.subjects == 2 && state.deleted == 0)
            #expect(state.bytes == h.size("orders.new", "one") + h.size("orders.old", "two", headers: "NATS/1.0\r\nA: b\r\n\r\n"))
            #expect(throws: StreamStoreError.notFound) { try h.store.load(0) }
            #expect(throws: StreamStoreError.notFound) { try h.store.load(3) }
            #expect(throws: StreamStoreError.invalidSubject) { try h.put("") }
        }
    }

    /// Loads served from the file backend's read-ahead window: records appended after a window was
    /// read, records larger than the window and loads out of order all return what was stored.
    @Test(arguments: Backend.allCases)
    func loadsAroundTheReadAheadWindowReturnWhatWasStored(_ backend: Backend) throws {
        try withHarness(backend) { h in
            let sizes = [10, 3000, 300_000, 7, 120_000, 200_000, 1, 500_000, 64]
            func payload(_ n: Int) -> [UInt8] { (0..<sizes[n - 1]).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) } }
            func check(_ n: Int) throws {
                let message = try h.store.load(UInt64(n))
                #expect(message.payload == payload(n) && message.subject == "s.\(n)" && message.sequence == UInt64(n))
            }
            for n in 1...sizes.count {
                #expect(try h.store.store(subject: "s.\(n)", payload: payload(n), timestamp: Int64(n)) == UInt64(n))
                // The newest record is past any window read before it.
                try check(n)
                if n > 1 { try check(n - 1) }
            }
            for n in 1...sizes.count { try check(n) }
            for n in (1...sizes.count).reversed() { try check(n) }
        }
    }

    @Test(arguments: Backend.allCases)
    func countsBytesAs2_9_10(_ backend: Backend) throws {
        try withHarness(backend) { h in
            // fileStoreMsgSize: 22 + subject + payload + 8, plus 4 + headers; memStoreMsgSize: all + 16.
            let plain = h.size("foo", "hello")
            let withHeaders = h.size("foo", "hello", headers: "NATS")
            switch backend {
            case .file:
                #expect(plain == 22 + 3 + 5 + 8)
                #expect(withHeaders == 22 + 3 + 4 + 4 + 5 + 8)
            case .memory:
                #expect(plain == 3 + 5 + 16)
                #expect(withHeaders == 3 + 4 + 5 + 16)
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func maxMessagesDiscardOldDropsTheOldest(_ backend: Backend) throws {
        try withHarness(backend, limits: StreamLimits(maxMessages: 3)) { h in
            for i in 1...5 { try h.put("s", "m\(i)") }
            let state = h.store.state
            #expect(state.messages == 3 && state.firstSequence == 3 && state.lastSequence == 5)
            #expect(throws: StreamStoreError.notFound) { try h.store.load(2) }
            #expect(try h.text(3) == "m3")
        }
    }

    @Test(arguments: Backend.allCases)
    func maxMessagesDiscardNewRefuses(_ backend: Backend) throws {
        try withHarness(backend, limits: StreamLimits(maxMessages: 3, discard: .new)) { h in
            for i in 1...3 { try h.put("s", "m\(i)") }
            #expect(throws: StreamStoreError.maximumMessagesExceeded) { try h.put("s", "m4") }
            let state = h.store.state
            #expect(state.messages == 3 && state.firstSequence == 1 && state.lastSequence == 3)
        }
    }

    @Test(arguments: Backend.allCases)
    func maxBytesDiscardOldDropsTheOldest(_ backend: Backend) throws {
        let probe = try Harness(backend)
        let size = probe.size("s", "12345")
        probe.finish()
        try withHarness(backend, limits: StreamLimits(maxBytes: Int64(3 * size))) { h in
            for _ in 1...5 { try h.put("s", "12345") }
            let state = h.store.state
            #expect(state.messages == 3 && state.bytes == 3 * size && state.firstSequence == 3)
            // A message larger than max_bytes on its own is stored, then removed with everything else.
            try h.put("s", String(repeating: "x", count: Int(3 * size)))
            #expect(h.store.state.messages == 0)
            #expect(h.store.state.firstSequence == 7 && h.store.state.lastSequence == 6)
        }
    }

    @Test(arguments: Backend.allCases)
    func maxBytesDiscardNewRefusesWhenTheTotalWouldReachTheLimit(_ backend: Backend) throws {
        let probe = try Harness(backend)
        let size = probe.size("s", "12345")
        probe.finish()
        // 2.9.10 checks bytes + headers + payload >= max_bytes: reaching the limit exactly is refused.
        try withHarness(backend, limits: StreamLimits(maxBytes: Int64(size + 5), discard: .new)) { h in
            try h.put("s", "12345")
            #expect(throws: StreamStoreError.maximumBytesExceeded) { try h.put("s", "12345") }
            try h.put("s", "1234")
            #expect(h.store.state.messages == 1 && h.store.state.lastSequence == 2)
        }
        try withHarness(backend, limits: StreamLimits(maxBytes: Int64(3 * size), discard: .new)) { h in
            for _ in 1...3 { try h.put("s", "12345") }
            #expect(h.store.state.bytes == 3 * size)
            #expect(throws: StreamStoreError.maximumBytesExceeded) { try h.put("s", "12345") }
            #expect(h.store.state.messages == 3)
        }
    }

    @Test(arguments: Backend.allCases)
    func maxMessageSizeCountsHeadersAndPayload(_ backend: Backend) throws {
        try withHarness(backend, limits: StreamLimits(maxMessageSize: 10)) { h in
            try h.put("s", "12345", headers: "abcde")
            #expect(throws: StreamStoreError.messageTooLarge(size: 11, limit: 10)) { try h.put("s", "123456", headers: "abcde") }
            #expect(h.store.state.messages == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func maxMessagesPerSubjectDropsThatSubjectsOldest(_ backend: Backend) throws {
        try withHarness(backend, limits: StreamLimits(maxMessagesPerSubject: 2)) { h in
            try h.put("b", "b1")
            try h.put("a", "a1")
            try h.put("a", "a2")
            try h.put("a", "a3")
            let state = h.store.state
            #expect(state.messages == 3 && state.firstSequence == 1 && state.deleted == 1)
            #expect(throws: StreamStoreError.notFound) { try h.store.load(2) }
            #expect(h.store.subjectCounts() == ["a": 2, "b": 1])
        }
    }

    @Test(arguments: Backend.allCases)
    func discardNewPerSubjectRefusesAtTheSubjectLimit(_ backend: Backend) throws {
        let limits = StreamLimits(maxMessagesPerSubject: 1, discard: .new, discardNewPerSubject: true)
        try withHarness(backend, limits: limits) { h in
            try h.put("a", "a1")
            #expect(throws: StreamStoreError.maximumMessagesPerSubjectExceeded) { try h.put("a", "a2") }
            try h.put("b", "b1")
            #expect(h.store.state.messages == 2 && h.store.state.lastSequence == 2)
        }
    }

    @Test(arguments: Backend.allCases)
    func discardNewLetsAMessageReplaceItsSubjectsOldestAtTheStreamLimit(_ backend: Backend) throws {
        // KV with history 1: a full stream still takes an update of an existing key.
        try withHarness(backend, limits: StreamLimits(maxMessages: 2, maxMessagesPerSubject: 1, discard: .new)) { h in
            try h.put("a", "a1")
            try h.put("b", "b1")
            #expect(try h.put("a", "a2") == 3)
            #expect(throws: StreamStoreError.maximumMessagesExceeded) { try h.put("c", "c1") }
            #expect(h.store.state.messages == 2)
            #expect(try h.store.last(bySubject: "a").payload == Array("a2".utf8))
        }
    }

    @Test(arguments: Backend.allCases)
    func discardNewMaxBytesAtSubjectLimitComparesWithTheReplacedMessage(_ backend: Backend) throws {
        let probe = try Harness(backend)
        let size = probe.size("a", "12345")
        probe.finish()
        let limits = StreamLimits(maxBytes: Int64(size + 5), maxMessagesPerSubject: 1, discard: .new)
        try withHarness(backend, limits: limits) { h in
            try h.put("a", "12345")
            // At the byte limit, but it replaces a message whose counted size is larger than it.
            try h.put("a", "54321")
            #expect(try h.store.last(bySubject: "a").payload == Array("54321".utf8))
            // Larger than the counted size of the message it would replace: refused.
            #expect(throws: StreamStoreError.maximumBytesExceeded) { try h.put("a", String(repeating: "x", count: Int(size) + 1)) }
            #expect(h.store.state.messages == 1 && h.store.state.lastSequence == 2)
            // The check adds only headers + payload, so a small message passes it; the counted total
            // then exceeds max_bytes and, as in 2.9.10, the oldest message goes even with discard new.
            #expect(try h.put("b", "1") == 3)
            #expect(h.store.state.messages == 1 && h.store.state.firstSequence == 3)
        }
    }

    @Test(arguments: Backend.allCases)
    func expireRemovesMessagesOlderThanMaxAge(_ backend: Backend) throws {
        try withHarness(backend, limits: StreamLimits(maxAge: 1_000)) { h in
            try h.put("s", "old1", at: 100)
            try h.put("s", "old2", at: 200)
            try h.put("s", "new", at: 1_500)
            #expect(h.store.nextExpiry == 1_100)
            #expect(try h.store.expire(now: 1_200) == 2)
            #expect(h.store.state.messages == 1 && h.store.state.firstSequence == 3 && h.store.state.firstTime == 1_500)
            #expect(h.store.nextExpiry == 2_500)
            #expect(try h.store.expire(now: 2_499) == 0)
            #expect(try h.store.expire(now: 2_500) == 1)
            #expect(h.store.nextExpiry == nil && h.store.state.firstSequence == 4)
        }
    }

    @Test(arguments: Backend.allCases)
    func removeMarksInteriorGapsAndMovesTheFront(_ backend: Backend) throws {
        try withHarness(backend) { h in
            for i in 1...5 { try h.put("s.\(i % 2)", "m\(i)") }
            try h.store.remove(3)
            #expect(h.store.state.deleted == 1)
            #expect(throws: StreamStoreError.notFound) { try h.store.remove(3) }
            #expect(throws: StreamStoreError.notFound) { try h.store.remove(9) }
            try h.store.remove(1)
            try h.store.remove(2)
            let state = h.store.state
            #expect(state.firstSequence == 4 && state.messages == 2 && state.deleted == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func lastAndNextBySubject(_ backend: Backend) throws {
        try withHarness(backend) { h in
            try h.put("kv.a", "a1")
            try h.put("kv.b", "b1")
            try h.put("kv.a", "a2")
            try h.put("other", "o1")
            #expect(try h.store.last(bySubject: "kv.a").sequence == 3)
            #expect(try h.store.last(bySubject: "kv.*").sequence == 3)
            #expect(try h.store.last(bySubject: ">").sequence == 4)
            #expect(throws: StreamStoreError.notFound) { try h.store.last(bySubject: "kv.c") }
            try h.store.remove(3)
            #expect(try h.store.last(bySubject: "kv.a").sequence == 1)
            #expect(try h.store.next(bySubject: "kv.b", from: 1).sequence == 2)
            #expect(throws: StreamStoreError.notFound) { try h.store.next(bySubject: "kv.>", from: 3) }
            #expect(try h.store.next(bySubject: "", from: 3).sequence == 4)
        }
    }

    @Test(arguments: Backend.allCases)
    func purgeEverything(_ backend: Backend) throws {
        try withHarness(backend) { h in
            for i in 1...4 { try h.put("s", "m\(i)") }
            #expect(try h.store.purge() == 4)
            let state = h.store.state
            #expect(state.messages == 0 && state.bytes == 0 && state.firstSequence == 5 && state.lastSequence == 4)
            #expect(try h.put("s") == 5)
        }
    }

    @Test(arguments: Backend.allCases)
    func purgeUpToASequenceAndKeepingTheNewest(_ backend: Backend) throws {
        try withHarness(backend) { h in
            for i in 1...10 { try h.put("s", "m\(i)") }
            #expect(try h.store.purge(upTo: 4) == 3)
            #expect(h.store.state.firstSequence == 4)
            #expect(try h.store.purge(keep: 2) == 5)
            #expect(h.store.state.firstSequence == 9 && h.store.state.messages == 2)
            #expect(try h.store.purge(keep: 5) == 0)
            #expect(throws: StreamStoreError.invalidPurge) { try h.store.purge(upTo: 10, keep: 1) }
        }
    }

    @Test(arguments: Backend.allCases)
    func purgeBySubjectFilter(_ backend: Backend) throws {
        try withHarness(backend) { h in
            for i in 1...9 { try h.put(["kv.a", "kv.b", "x"][i % 3], "m\(i)") }
            // kv.a: 3, 6, 9; kv.b: 1, 4, 7; x: 2, 5, 8
            #expect(try h.store.purge(subject: "kv.a", keep: 1) == 2)
            #expect(try h.store.last(bySubject: "kv.a").sequence == 9)
            #expect(try h.store.purge(subject: "kv.b", upTo: 5) == 2)
            #expect(try h.store.next(bySubject: "kv.b", from: 0).sequence == 7)
            #expect(try h.store.purge(subject: "x.*") == 0)
            #expect(try h.store.purge(subject: "kv.*") == 2)
            #expect(h.store.subjectCounts() == ["x": 3])
            let state = h.store.state
            #expect(state.messages == 3 && state.firstSequence == 2 && state.lastSequence == 9 && state.deleted == 5)
        }
    }

    @Test(arguments: Backend.allCases)
    func compactPastTheEndRestartsNumbering(_ backend: Backend) throws {
        try withHarness(backend) { h in
            for _ in 1...3 { try h.put("s") }
            #expect(try h.store.compact(below: 100) == 3)
            let state = h.store.state
            #expect(state.firstSequence == 100 && state.lastSequence == 99 && state.messages == 0)
            #expect(try h.put("s") == 100)
        }
    }

    @Test(arguments: Backend.allCases)
    func shrinkingLimitsRemovesAtOnce(_ backend: Backend) throws {
        try withHarness(backend) { h in
            for i in 1...6 { try h.put("s.\(i % 2)") }
            try h.store.update(limits: StreamLimits(maxMessages: 4, maxMessagesPerSubject: 1))
            #expect(h.store.state.messages == 2)
            #expect(h.store.subjectCounts() == ["s.0": 1, "s.1": 1])
            #expect(try h.store.last(bySubject: "s.0").sequence == 6)
        }
    }

    @Test(arguments: Backend.allCases)
    func closedStoreRefusesCalls(_ backend: Backend) throws {
        try withHarness(backend) { h in
            try h.put("s")
            h.store.close()
            #expect(throws: StreamStoreError.closed) { try h.put("s") }
            #expect(throws: StreamStoreError.closed) { try h.store.load(1) }
        }
    }

    @Test(arguments: Backend.allCases)
    func aLongRunningStreamKeepsItsIndexConsistent(_ backend: Backend) throws {
        // Enough traffic that the index drops its dead front many times over.
        try withHarness(backend, limits: StreamLimits(maxMessages: 100, maxMessagesPerSubject: 30)) { h in
            for i in 1...20_000 { try h.put("s.\(i % 7)", "m\(i)", at: Int64(i)) }
            let state = h.store.state
            #expect(state.messages == 100 && state.firstSequence == 19_901 && state.lastSequence == 20_000)
            #expect(try h.text(19_901) == "m19901" && h.text(20_000) == "m20000")
            #expect(try h.store.last(bySubject: "s.3").sequence == 19_995)
            #expect(try h.store.next(bySubject: "s.3", from: 0).sequence == 19_904)
            #expect(h.store.subjectCounts().values.reduce(0, +) == 100)
        }
    }

    @Test func indexCostsTwentyFourBytesPerMessage() {
        #expect(MemoryLayout<IndexEntry>.stride == 24)
    }
}
