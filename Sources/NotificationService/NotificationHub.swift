import Synchronization

/// Fans new notifications out to the open Server-Sent Events streams of their user.
///
/// Each stream has a bounded queue (``bufferSize`` items). A stream whose queue is full when
/// something must be added (its client reads too slowly) is dropped: marked, finished, removed.
/// The client reconnects with `Last-Event-ID` and the store replays what it missed, so memory
/// stays bounded whatever the clients do.
public final class NotificationHub: Sendable {
    /// What a stream receives.
    public enum Item: Sendable, Equatable {
        /// A new notification for the stream's user, from this instance's store.
        case notification(UserNotification)
        /// A new notification for the stream's user that another instance created and stored
        /// (from its `notification.sent`; it has no place in this instance's store).
        case remote(UserNotification)
        /// Time for a keep-alive comment.
        case keepAlive
    }

    /// One open stream.
    public final class Stream: Sendable {
        /// The user it belongs to.
        public let user: String
        /// Its items, in order; ends when the stream is dropped, closed or its reader is cancelled.
        public let items: AsyncStream<Item>
        let id: UInt64
        let continuation: AsyncStream<Item>.Continuation
        private let droppedFlag = Atomic(false)

        init(id: UInt64, user: String, bufferSize: Int) {
            self.id = id
            self.user = user
            (items, continuation) = AsyncStream.makeStream(of: Item.self, bufferingPolicy: .bufferingOldest(bufferSize))
        }

        /// True once the hub dropped it for falling behind: the reader should stop at once.
        public var isDropped: Bool { droppedFlag.load(ordering: .acquiring) }

        /// Ends the stream (the reader's loop finishes) and removes it from the hub.
        public func close() { continuation.finish() }

        func markDropped() { droppedFlag.store(true, ordering: .releasing) }
    }

    private struct State {
        var streams: [String: [UInt64: Stream]] = [:]
        var nextID: UInt64 = 1
        var total = 0
    }
    private let state = Mutex(State())
    /// Items queued per stream before it is dropped.
    public let bufferSize: Int
    /// Streams one user may hold.
    public let maxPerUser: Int
    private let onCountChange: @Sendable (Int) -> Void
    private let onDrop: @Sendable (String) -> Void

    /// - Parameters:
    ///   - bufferSize: items queued per stream.
    ///   - maxPerUser: streams per user.
    ///   - onCountChange: called with the number of open streams after each change (for a gauge).
    ///   - onDrop: called with the user of each dropped stream.
    public init(bufferSize: Int, maxPerUser: Int, onCountChange: @escaping @Sendable (Int) -> Void = { _ in },
                onDrop: @escaping @Sendable (String) -> Void = { _ in }) {
        self.bufferSize = max(1, bufferSize)
        self.maxPerUser = max(1, maxPerUser)
        self.onCountChange = onCountChange
        self.onDrop = onDrop
    }

    /// Open streams, all users.
    public var count: Int { state.withLock { $0.total } }

    /// Open streams of `user`.
    public func count(user: String) -> Int { state.withLock { $0.streams[user]?.count ?? 0 } }

    /// Opens a stream for `user`, or nil when the user already has ``maxPerUser`` of them (the
    /// check and the insert are one step under the lock).
    public func open(user: String) -> Stream? {
        let result = state.withLock { s -> (Stream, Int)? in
            guard (s.streams[user]?.count ?? 0) < maxPerUser else { return nil }
            let stream = Stream(id: s.nextID, user: user, bufferSize: bufferSize)
            // Before the stream is visible to deliver(): a stream finished at any time after the
            // insert is removed. (onTermination runs later, on the finishing thread, and takes
            // the lock itself; setting it here does not run it.)
            stream.continuation.onTermination = { [weak self] _ in self?.remove(stream) }
            s.nextID += 1
            s.streams[user, default: [:]][stream.id] = stream
            s.total += 1
            return (stream, s.total)
        }
        guard let (stream, total) = result else { return nil }
        onCountChange(total)
        return stream
    }

    /// Queues `notification` on every stream of its user; returns how many took it.
    /// `fromAnotherInstance`: it was created by another instance (see ``Item/remote(_:)``).
    @discardableResult
    public func deliver(_ notification: UserNotification, fromAnotherInstance: Bool = false) -> Int {
        let targets = state.withLock { s in s.streams[notification.userID].map { Array($0.values) } ?? [] }
        let item: Item = fromAnotherInstance ? .remote(notification) : .notification(notification)
        return targets.reduce(0) { $0 + (offer(item, to: $1) ? 1 : 0) }
    }

    /// Queues a keep-alive on every stream.
    public func keepAlive() {
        let targets = state.withLock { s in s.streams.values.flatMap(\.values) }
        for stream in targets { _ = offer(.keepAlive, to: stream) }
    }

    /// Ends every stream (shutdown).
    public func closeAll() {
        let targets = state.withLock { s in s.streams.values.flatMap(\.values) }
        for stream in targets { stream.close() }
    }

    // Yields outside the lock: finishing a stream runs onTermination, which takes the lock.
    private func offer(_ item: Item, to stream: Stream) -> Bool {
        switch stream.continuation.yield(item) {
        case .enqueued: return true
        case .dropped:
            stream.markDropped()
            stream.close()
            onDrop(stream.user)
            return false
        case .terminated: return false
        @unknown default: return false
        }
    }

    private func remove(_ stream: Stream) {
        let total = state.withLock { s -> Int? in
            guard s.streams[stream.user]?.removeValue(forKey: stream.id) != nil else { return nil }
            if s.streams[stream.user]?.isEmpty == true { s.streams[stream.user] = nil }
            s.total -= 1
            return s.total
        }
        if let total { onCountChange(total) }
    }
}
