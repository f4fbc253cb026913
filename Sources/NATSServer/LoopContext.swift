// LoopContext: what the broker keeps per event loop (read buffer, pending-flush set, match cache,
// scratch space, counters).

import CSystem
import EventLoop
import Glibc
import NATSProtocol
import Synchronization

/// Per-loop broker state.
///
/// `@unchecked Sendable`: every `var` is touched only on `loop`'s thread (reads, deliveries and
/// flushes of the connections this loop owns or publishes from); the cross-loop flush inbox is a
/// `Mutex` and the counters are atomics. The hot `var`s skip dynamic exclusivity checks: they are
/// loop-confined and never accessed re-entrantly.
final class LoopContext: @unchecked Sendable {
    let loop: EventLoop
    let index: Int
    let counters = LoopCounters()
    unowned(unsafe) let broker: Broker

    /// One read buffer for every connection of this loop: a read is parsed before the next one.
    /// Being one per loop, it may grow past nats-server's per-connection 64 KiB: four 16 KiB
    /// messages per read syscall become sixteen.
    @exclusivity(unchecked) var readBuffer = ReadBuffer(maximum: LoopContext.readBufferMaximum)
    static let readBufferMaximum = 256 * 1024
    /// Bytes one connection may read in one readiness turn before the loop moves on (fairness).
    static let bytesPerTurn = 1 << 20
    /// Scratch for writev snapshots.
    @exclusivity(unchecked) var iovecs: [iovec] = []
    /// Receivers that got bytes during this batch and have not been scheduled for a flush.
    @exclusivity(unchecked) var pendingFlush: [ClientConnection] = []
    /// Message counts of this batch, added to `counters` at batch end.
    @exclusivity(unchecked) var batch = BatchCounters()
    @exclusivity(unchecked) private var cache: LocalMatchCache
    @exclusivity(unchecked) private var randomState: UInt64
    /// How many import routes the message being routed has gone through (a cycle stops).
    @exclusivity(unchecked) var importDepth = 0
    /// Set while a stream import delivers into the importing account: 2.9.10 hands such a message
    /// to that account's own subscribers only, never to its import routes (so A exported to B
    /// alone never reaches C through B).
    @exclusivity(unchecked) var deliveringStreamImport = false

    /// Where a whole small MSG/HMSG frame is assembled before one copy into the receiver's buffer.
    let scratch: UnsafeMutableRawPointer
    let scratchCapacity: Int

    /// Connections owned by other loops' publishers asked this loop to flush.
    private let remoteFlushes = Mutex<[ClientConnection]>([])
    private var draining: [ClientConnection] = []

    init(loop: EventLoop, index: Int, broker: Broker) {
        self.loop = loop
        self.index = index
        self.broker = broker
        var seed: UInt64 = 0
        while seed == 0 { seed = UInt64.random(in: 1...UInt64.max) }
        randomState = seed
        iovecs.reserveCapacity(IO.maxVectors)
        cache = LocalMatchCache(slots: 1024)
        // A frame head is at most two control lines plus numbers; small bodies ride along.
        scratchCapacity = 2 * broker.options.maxControlLine + 256 + 16 * 1024
        scratch = .allocate(byteCount: scratchCapacity, alignment: 16)
    }

    deinit { scratch.deallocate() }

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

    /// The subscriptions of `account` matching `subject`: from this loop's cache when no
    /// subscription of the account changed since it was filled, else from the account's trie (one
    /// lock). Loop thread only.
    @inline(__always)
    func match(_ subject: UnsafeRawBufferPointer, in account: Account) -> MatchResult<Subscription> {
        let generation = account.generation.load(ordering: .acquiring)
        let hash = LocalMatchCache.hash(subject, account: account.index)
        if let hit = cache.lookup(subject, hash: hash, generation: generation, account: account.index) { return hit }
        nonisolated(unsafe) var result = MatchResult<Subscription>()
        var filledAt: UInt64 = 0
        account.subscriptions.withLock { trie in
            result = trie.match(subject)
            filledAt = account.generation.load(ordering: .relaxed)
        }
        cache.store(subject, hash: hash, generation: filledAt, result: result, account: account.index)
        return result
    }

    /// ``match(_:in:)`` for an account held without a reference count (a connection's own).
    @inline(__always)
    func match(_ subject: UnsafeRawBufferPointer, in account: Unmanaged<Account>) -> MatchResult<Subscription> {
        account._withUnsafeGuaranteedRef { match(subject, in: $0) }
    }

    /// The subscriptions of JetStream's account matching `subject` (JetStream's deliveries).
    @inline(__always)
    func match(_ subject: UnsafeRawBufferPointer) -> MatchResult<Subscription> {
        match(subject, in: broker.jetStreamAccount)
    }

    /// Receivers on other loops this loop writes to directly per batch; the rest are handed to
    /// their own loops (so one publisher's batch cannot serialise a large fan-out on one thread).
    static let directWritesPerBatch = 16

    /// One writev per receiver: on this loop, and (up to ``directWritesPerBatch``) for receivers
    /// owned by other loops, which are then spared a wake-up; beyond that, one wake-up per other
    /// loop. Loop thread only.
    private func batchEnd() {
        if !pendingFlush.isEmpty {
            var i = 0
            var directBudget = Self.directWritesPerBatch
            // A flush never delivers, so the set cannot grow while it is walked; index anyway.
            while i < pendingFlush.count {
                let connection = pendingFlush[i]
                if connection.context === self {
                    connection.flush()
                } else if directBudget > 0 {
                    directBudget -= 1
                    connection.writeFromOtherLoop(self)
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

/// A direct-mapped cache of match results keyed by subject bytes, private to one loop, so a
/// repeated subject costs one hash and one compare, and no shared lock.
///
/// Each slot remembers the trie generation it was filled at; any subscribe or unsubscribe bumps the
/// generation and so invalidates every slot at once. A subject is stored on its second miss (or when
/// its slot still holds it from an older generation), so one-off subjects such as request inboxes
/// neither allocate nor evict the subjects that repeat. Memory is bounded by the slot count.
struct LocalMatchCache {
    private struct Slot {
        var hash: UInt64 = 0
        /// 0 marks an empty slot (generations start at 1).
        var generation: UInt64 = 0
        /// The account's index (``Account/index``): equal subjects of two accounts are two entries.
        var account = 0
        var key: [UInt8] = []
        var result = MatchResult<Subscription>()
    }

    private var slots: [Slot]
    /// Subjects that missed once and were not stored.
    private var recentMisses: RecentMisses
    private let mask: Int

    /// - Parameter slots: a power of two.
    init(slots: Int) {
        precondition(slots > 0 && slots & (slots - 1) == 0, "slot count must be a power of two")
        self.slots = Array(repeating: Slot(), count: slots)
        recentMisses = RecentMisses(capacity: slots)
        mask = slots - 1
    }

    /// A 64-bit hash of the subject, 8 bytes per step (multiply-xorshift), then a final mix.
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer, account: Int = 0) -> UInt64 {
        let n = bytes.count
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(truncatingIfNeeded: n) ^ (UInt64(truncatingIfNeeded: account) &<< 32)
        guard let base = bytes.baseAddress else { return h }
        var i = 0
        while i &+ 8 <= n {
            h = (h ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            h ^= h &>> 29
            i &+= 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) &<< shift
            shift &+= 8
            i &+= 1
        }
        h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        h ^= h &>> 31
        return h
    }

    @inline(__always)
    func lookup(_ subject: UnsafeRawBufferPointer, hash: UInt64, generation: UInt64,
                account: Int = 0) -> MatchResult<Subscription>? {
        let index = Int(truncatingIfNeeded: hash) & mask
        guard holds(subject, hash: hash, account: account, at: index) else { return nil }
        return slots.withUnsafeBufferPointer { all -> MatchResult<Subscription>? in
            let slot = all.baseAddress! + index
            return slot.pointee.generation == generation ? slot.pointee.result : nil
        }
    }

    /// Stores a result that missed, if the subject missed before; else only remembers its hash.
    mutating func store(_ subject: UnsafeRawBufferPointer, hash: UInt64, generation: UInt64,
                        result: MatchResult<Subscription>, account: Int = 0) {
        let index = Int(truncatingIfNeeded: hash) & mask
        if holds(subject, hash: hash, account: account, at: index) {
            // Refilled after an invalidation: the key is already there.
            slots[index].generation = generation
            slots[index].result = result
        } else if recentMisses.admit(hash) {
            slots[index] = Slot(hash: hash, generation: generation, account: account, key: Array(subject), result: result)
        }
    }

    /// Whether slot `index` holds `subject` of `account` (of any generation).
    @inline(__always)
    private func holds(_ subject: UnsafeRawBufferPointer, hash: UInt64, account: Int, at index: Int) -> Bool {
        slots.withUnsafeBufferPointer { all -> Bool in
            let slot = all.baseAddress! + index
            guard slot.pointee.hash == hash, slot.pointee.account == account,
                  slot.pointee.key.count == subject.count else { return false }
            return slot.pointee.key.withUnsafeBytes { key in
                subject.count == 0 || memcmp(key.baseAddress!, subject.baseAddress!, subject.count) == 0
            }
        }
    }
}
