// LoopContext: what the broker keeps per event loop (read buffer, pending-flush set, counters).

import CSystem
import EventLoop
import Glibc
import Synchronization

/// Per-loop broker state.
///
/// `@unchecked Sendable`: every `var` is touched only on `loop`'s thread (reads, deliveries and
/// flushes of the connections this loop owns or publishes from); the cross-loop flush inbox is a
/// `Mutex` and the counters are atomics.
final class LoopContext: @unchecked Sendable {
    let loop: EventLoop
    let index: Int
    let counters = LoopCounters()

    /// One read buffer for every connection of this loop: a read is parsed before the next one.
    var readBuffer = ReadBuffer()
    /// Scratch for writev snapshots.
    var iovecs: [iovec] = []
    /// Receivers that got bytes during this batch and have not been scheduled for a flush.
    var pendingFlush: [ClientConnection] = []
    /// Message counts of this batch, added to `counters` at batch end.
    var batch = BatchCounters()

    /// Connections owned by other loops' publishers asked this loop to flush.
    private let remoteFlushes = Mutex<[ClientConnection]>([])
    private var draining: [ClientConnection] = []
    private var randomState: UInt64

    init(loop: EventLoop, index: Int) {
        self.loop = loop
        self.index = index
        var seed: UInt64 = 0
        while seed == 0 { seed = UInt64.random(in: 1...UInt64.max) }
        randomState = seed
        iovecs.reserveCapacity(IO.maxVectors)
    }

    /// Registers the batch-end hook. Before the loop runs.
    func installHooks() {
        loop.onBatchEnd { [unowned self] in self.batchEnd() }
    }

    /// A pseudo-random number in `0..<bound` (queue member selection). Loop thread only.
    @inline(__always)
    func random(below bound: Int) -> Int {
        randomState ^= randomState << 13
        randomState ^= randomState >> 7
        randomState ^= randomState << 17
        return Int(truncatingIfNeeded: randomState % UInt64(bound))
    }

    /// One writev per receiver on this loop; one wake-up per other loop. Loop thread only.
    private func batchEnd() {
        if !pendingFlush.isEmpty {
            var i = 0
            // A flush never delivers, so the set cannot grow while it is walked; index anyway.
            while i < pendingFlush.count {
                let connection = pendingFlush[i]
                if connection.context === self {
                    connection.flush()
                } else {
                    connection.context.enqueueRemoteFlush(connection)
                }
                i += 1
            }
            pendingFlush.removeAll(keepingCapacity: true)
        }
        batch.publish(to: counters)
    }

    /// Asks this loop to flush `connection`. Any thread. Only the first request since the last
    /// drain wakes the loop.
    func enqueueRemoteFlush(_ connection: ClientConnection) {
        let wasEmpty = remoteFlushes.withLock { list in
            let empty = list.isEmpty
            list.append(connection)
            return empty
        }
        if wasEmpty {
            loop.execute { [unowned self] in self.drainRemoteFlushes() }
        }
    }

    private func drainRemoteFlushes() {
        remoteFlushes.withLock { swap(&$0, &draining) }
        for connection in draining { connection.flush() }
        draining.removeAll(keepingCapacity: true)
    }

    /// Monotonic nanoseconds.
    @inline(__always)
    static func now() -> UInt64 { csys_monotonic_ns() }
}
