// Subscription: one SUB of one connection, stored in the shared SubjectTrie.

/// One client subscription. Its bytes (subject, queue, sid) are copied once at SUB time and reused
/// for every delivery.
///
/// `@unchecked Sendable`: the byte fields are immutable, and the delivery state (`delivered`,
/// `maxMessages`, `removed`, `removalRequested`) is read and written only while holding the
/// subscriber's `ClientConnection.out` lock, which every delivery takes anyway.
final class Subscription: @unchecked Sendable {
    let subject: [UInt8]
    /// nil for a plain subscription.
    let queue: [UInt8]?
    let sid: [UInt8]
    /// The subscriber; a subscription never outlives its connection's registration in the trie.
    let client: ClientConnection
    /// The sid bytes in memory this subscription owns, so deliveries use them without a closure.
    /// Immutable after init and freed in deinit.
    let sidBytes: UnsafeRawBufferPointer
    /// The subscriber's delivery checks (subscribe deny filter, allow_responses); nil for most users.
    let deliveryGuard: DeliveryGuard?
    /// Set for a subscription inside the broker (JetStream's captures): deliveries go to it instead
    /// of `client`'s socket.
    let sink: InternalSink?
    /// Set (with `sink`) for a subscription carrying messages into another account.
    let importRoute: ImportRoute?

    // Guarded by `client.out`.
    /// Messages delivered so far.
    var delivered = 0
    /// Auto-unsubscribe limit from `UNSUB <sid> <max>`; 0 means none.
    var maxMessages = 0
    /// Unsubscribed: stale match results (another loop's cache) must not deliver to it.
    var removed = false
    /// The owner has been asked to drop it after it reached `maxMessages`.
    var removalRequested = false

    init(subject: [UInt8], queue: [UInt8]?, sid: [UInt8], client: ClientConnection, guard: DeliveryGuard? = nil,
         sink: InternalSink? = nil, importRoute: ImportRoute? = nil) {
        self.deliveryGuard = `guard`
        self.sink = importRoute ?? sink
        self.importRoute = importRoute
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

    /// Counts one delivery against the auto-unsubscribe limit. Caller holds `client.out`.
    /// - Returns: whether to deliver, and whether the owner must now be asked to remove it.
    @inline(__always)
    func reserveDelivery() -> (deliver: Bool, requestRemoval: Bool) {
        if removed { return (false, false) }
        delivered &+= 1
        if maxMessages <= 0 || delivered < maxMessages { return (true, false) }
        let first = !removalRequested
        removalRequested = true
        return (delivered == maxMessages, first)
    }
}

/// A subscriber inside the broker. It gets every message routed to its subscription on the
/// publisher's loop thread and must copy what it keeps before returning.
protocol InternalSink: AnyObject, Sendable {
    /// Takes one message.
    /// - Returns: false when the sink's backlog is over its limit: the caller stops reading from
    ///   the publisher until ``ClientConnection/waitForJetStream()`` lets it go on.
    func receive(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                 headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool
}

/// A sid as a dictionary key. SUB/UNSUB are control operations, so one small array per lookup is
/// acceptable here; deliveries never touch this map.
struct SidKey: Hashable {
    let bytes: [UInt8]

    init(_ raw: UnsafeRawBufferPointer) { bytes = Array(raw) }
    init(bytes: [UInt8]) { self.bytes = bytes }
}
