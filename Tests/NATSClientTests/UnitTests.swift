// Pure pieces: containers, backoff bounds, wire helpers, time format.

import Foundation
import Testing
@testable import NATSClient

@Suite("Client internals")
struct UnitTests {
    @Test("FIFO keeps order across compaction")
    func fifoOrder() {
        var queue = FIFO<Int>()
        var expected = 0
        for round in 0..<5 {
            for value in 0..<3000 { queue.append(round * 3000 + value) }
            for _ in 0..<2500 {
                #expect(queue.popFirst() == expected)
                expected += 1
            }
        }
        #expect(queue.count == 2500)
        while let value = queue.popFirst() {
            #expect(value == expected)
            expected += 1
        }
        #expect(expected == 15000)
        #expect(queue.isEmpty)
    }

    @Test("the timer heap pops deadlines in order, only once expired")
    func timerHeap() {
        var heap = TimerHeap()
        var generator = SystemRandomNumberGenerator()
        let deadlines = (0..<500).map { _ in UInt64.random(in: 1...10_000, using: &generator) }
        for (index, deadline) in deadlines.enumerated() { heap.push(deadline, .request(UInt64(index))) }
        #expect(heap.popExpired(now: 0) == nil)
        var popped: [UInt64] = []
        while let kind = heap.popExpired(now: 10_000) {
            guard case .request(let index) = kind else { continue }
            popped.append(deadlines[Int(index)])
        }
        #expect(popped == deadlines.sorted())
        heap.push(5, .flush(1))
        heap.push(6, .flush(2))
        heap.compact { $0 != .flush(1) }
        #expect(heap.count == 1)
        #expect(heap.popExpired(now: 100) == .flush(2))
    }

    @Test("reconnect backoff doubles, is capped, and jitter stays within its fraction")
    func backoffIsBounded() async throws {
        // A client is needed for its options only; it never connects.
        var options = NATSClient.Options(url: "nats://127.0.0.1:1")
        options.reconnectWait = .milliseconds(100)
        options.reconnectMaxWait = .seconds(2)
        options.reconnectJitter = 0.25
        let client = NATSClient.forTesting(options)
        for attempt in 0..<40 {
            let base = min(UInt64(100_000_000) << UInt64(min(attempt, 30)), 2_000_000_000)
            for _ in 0..<20 {
                let delay = client.backoffNanos(attempt: attempt)
                #expect(delay >= base)
                #expect(delay <= base + base / 4)
            }
        }
    }

    @Test("status codes are read from header blocks, and inbox tokens from subjects")
    func wireHelpers() {
        func status(_ text: String) -> Int? { Array(text.utf8).withUnsafeBytes { HeaderStatus.code(in: $0) } }
        #expect(status("NATS/1.0 503\r\n\r\n") == 503)
        #expect(status("NATS/1.0 404 No Messages\r\n\r\n") == 404)
        #expect(status("NATS/1.0\r\nA: b\r\n\r\n") == nil)
        #expect(status("NATS/1.0 5x3\r\n\r\n") == nil)
        let prefix = Array("_INBOX.abc.".utf8)
        func token(_ text: String) -> UInt64? { Array(text.utf8).withUnsafeBytes { NATSClient.token(of: $0, prefix: prefix) } }
        #expect(token("_INBOX.abc.42") == 42)
        #expect(token("_INBOX.abc.") == nil)
        #expect(token("_INBOX.abd.42") == nil)
        #expect(token("_INBOX.abc.4x") == nil)
        #expect(token("_INBOX.abc.99999999999999999999999") == nil)
    }

    @Test("service start times are RFC 3339 in UTC with microseconds")
    func rfc3339() {
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000000Z")
        #expect(RFC3339.string(from: Date(timeIntervalSince1970: 1_700_000_000.25)) == "2023-11-14T22:13:20.250000Z")
    }

    @Test("NUIDs are 22 base-62 characters and differ")
    func nuid() {
        let ids = (0..<1000).map { _ in NUID.next() }
        #expect(Set(ids).count == 1000)
        #expect(ids.allSatisfy { $0.count == 22 && $0.allSatisfy { $0.isLetter || $0.isNumber } })
    }
}
