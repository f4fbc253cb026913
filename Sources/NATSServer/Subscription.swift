// Subscription: one SUB of one connection, stored in the shared SubjectTrie.

import Synchronization

/// One client subscription. Its bytes (subject, queue, sid) are copied once at SUB time and reused
/// for every delivery.
///
/// Publishers on any loop read it while delivering: the byte fields are immutable, and the
/// delivery count and the auto-unsubscribe limit are atomics, so it is `Sendable`.
final class Subscription: Sendable {
    let subject: [UInt8]
    /// nil for a plain subscription.
    let queue: [UInt8]?
    let sid: [UInt8]
    /// The subscriber; a subscription never outlives its connection's registration in the trie.
    let client: ClientConnection

    /// Messages delivered (or reserved for delivery) so far.
    let delivered = Atomic<Int>(0)
    /// Auto-unsubscribe limit from `UNSUB <sid> <max>`; 0 means none.
    let maxMessages = Atomic<Int>(0)
    /// Set once the owner has been asked to drop this subscription after reaching its limit.
    let removalRequested = Atomic<Bool>(false)

    /// The sid bytes in memory this subscription owns, so deliveries use them without a closure.
    /// Immutable after init and freed in deinit, hence safe to read from any thread.
    nonisolated(unsafe) let sidBytes: UnsafeRawBufferPointer

    init(subject: [UInt8], queue: [UInt8]?, sid: [UInt8], client: ClientConnection) {
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.client = client
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, sid.count), alignment: 1)
        sid.withUnsafeBytes { storage.copyMemory(from: $0) }
        sidBytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[0..<sid.count])
    }

    deinit {
        UnsafeMutableRawPointer(mutating: sidBytes.baseAddress)?.deallocate()
    }

    /// Reserves one delivery. Any thread.
    /// - Returns: whether the message may be delivered, and whether this delivery reached the
    ///   auto-unsubscribe limit (the caller then asks the owner to remove the subscription).
    @inline(__always)
    func reserveDelivery() -> (deliver: Bool, reachedLimit: Bool) {
        let count = delivered.wrappingAdd(1, ordering: .relaxed).newValue
        let limit = maxMessages.load(ordering: .relaxed)
        if limit <= 0 { return (true, false) }
        if count < limit { return (true, false) }
        let first = !removalRequested.exchange(true, ordering: .relaxed)
        return (count == limit, first)
    }
}

/// A sid as a dictionary key. SUB/UNSUB are control operations, so one small array per lookup is
/// acceptable here; deliveries never touch this map.
struct SidKey: Hashable {
    let bytes: [UInt8]

    init(_ raw: UnsafeRawBufferPointer) { bytes = Array(raw) }
}
