// Counters: per-loop accumulation flushed into atomics once per batch, summed on demand.

import Synchronization

/// A point-in-time copy of the broker's counters (the /varz numbers).
public struct ServerStatistics: Sendable, Equatable {
    /// Messages received from clients.
    public var inMsgs: Int = 0
    /// Bytes received from clients in messages (headers plus payload).
    public var inBytes: Int = 0
    /// Messages delivered to clients.
    public var outMsgs: Int = 0
    /// Bytes delivered to clients in messages (headers plus payload).
    public var outBytes: Int = 0
    /// Connections closed as slow consumers.
    public var slowConsumers: Int = 0
    /// Open client connections.
    public var connections: Int = 0
    /// Client connections accepted since start.
    public var totalConnections: Int = 0
    /// Subscriptions in the subject trie.
    public var subscriptions: Int = 0

    /// Creates zeroed statistics.
    public init() {}
}

/// Message counters of one event loop. The loop adds its batch totals with one atomic add each.
final class LoopCounters: Sendable {
    let inMsgs = Atomic<Int>(0)
    let inBytes = Atomic<Int>(0)
    let outMsgs = Atomic<Int>(0)
    let outBytes = Atomic<Int>(0)
}

/// Per-batch message counts kept in plain integers on the loop thread.
struct BatchCounters {
    var inMsgs = 0
    var inBytes = 0
    var outMsgs = 0
    var outBytes = 0

    /// Adds the batch into `counters` and resets. Loop thread only.
    mutating func publish(to counters: LoopCounters) {
        if inMsgs != 0 {
            counters.inMsgs.wrappingAdd(inMsgs, ordering: .relaxed)
            counters.inBytes.wrappingAdd(inBytes, ordering: .relaxed)
        }
        if outMsgs != 0 {
            counters.outMsgs.wrappingAdd(outMsgs, ordering: .relaxed)
            counters.outBytes.wrappingAdd(outBytes, ordering: .relaxed)
        }
        self = BatchCounters()
    }
}
