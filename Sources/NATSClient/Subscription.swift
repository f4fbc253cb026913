// A subscription: an AsyncSequence of messages with a bounded, observable buffer.

import Synchronization

/// Messages on a subject, in order, as an `AsyncSequence`.
///
/// ```swift
/// let sub = try await client.subscribe("orders.>", queue: "workers")
/// for try await message in sub { ... }
/// ```
/// Messages wait in a buffer bounded by ``pendingLimits`` (messages and bytes). When the consumer
/// falls behind and a limit is reached, new messages are dropped, ``droppedCount`` grows and the
/// client emits ``NATSClient/Event/slowConsumer(subject:dropped:)``: nothing is dropped silently.
/// Iteration ends after ``unsubscribe()``, after an auto-unsubscribe limit, after drain or close;
/// it throws if the server refused the subscription (for example after a reconnect).
///
/// A subscription made with a handler (``NATSClient/subscribe(_:queue:handler:)``) buffers nothing:
/// each message goes to the handler as it is read. Iterating such a subscription yields no
/// messages; it ends (or throws) when the subscription does, so it can be awaited.
public final class Subscription: AsyncSequence, Sendable {
    /// The element type: one message.
    public typealias Element = Message

    /// The subject (wildcards allowed) this subscription listens on.
    public let subject: String
    /// The queue group, if any: each message goes to one member of the group.
    public let queue: String?
    /// The subscription id on the connection.
    public let sid: UInt64
    let client: NATSClient
    let buffer: Mutex<SubscriptionBuffer>
    /// Called on the reader thread for each message instead of buffering it, if set.
    let handler: (@Sendable (Message) -> Void)?

    init(subject: String, queue: String?, sid: UInt64, client: NATSClient, limits: PendingLimits,
         handler: (@Sendable (Message) -> Void)? = nil) {
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.client = client
        self.buffer = Mutex(SubscriptionBuffer(limits: limits))
        self.handler = handler
    }

    /// Limits of the subscription's buffer.
    public struct PendingLimits: Sendable, Equatable {
        /// The most messages held; `0` or less means no limit.
        public var messages: Int
        /// The most payload and header bytes held; `0` or less means no limit.
        public var bytes: Int
        /// Limits of `messages` messages and `bytes` bytes.
        public init(messages: Int, bytes: Int) {
            self.messages = messages
            self.bytes = bytes
        }
    }

    /// The buffer limits. Setting them applies to messages that arrive afterwards.
    public var pendingLimits: PendingLimits {
        get { buffer.withLock { $0.limits } }
        set { buffer.withLock { $0.limits = newValue } }
    }

    /// Messages dropped because the buffer was full.
    public var droppedCount: Int { buffer.withLock { $0.dropped } }
    /// Messages waiting in the buffer.
    public var pendingMessages: Int { buffer.withLock { $0.queue.count } }
    /// Bytes waiting in the buffer.
    public var pendingBytes: Int { buffer.withLock { $0.pendingBytes } }
    /// Messages handed to the consumer (or to the handler) so far.
    public var deliveredCount: Int { buffer.withLock { $0.delivered } }

    /// Stops interest at once: no message arrives after this returns, and iteration ends after
    /// the messages already buffered.
    ///
    /// Calling it again, or after the client closed, does nothing.
    public func unsubscribe() async {
        client.unsubscribe(sid: sid, after: nil)
    }

    /// Unsubscribes automatically once `count` messages in total have been received
    /// (counting those already received); the limit survives reconnects.
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` if `count` is not positive.
    public func unsubscribe(after count: Int) async throws(NATSError) {
        guard count > 0 else { throw .invalidArgument("unsubscribe(after:) needs a positive count, got \(count)") }
        client.unsubscribe(sid: sid, after: count)
    }

    /// Unsubscribes, waits until the server has delivered every message in flight, and ends
    /// iteration after those messages.
    ///
    /// - Throws: ``NATSError/closed``, ``NATSError/timeout``, ``NATSError/disconnected``.
    public func drain(timeout: Duration = .seconds(30)) async throws(NATSError) {
        try await client.drainSubscription(sid: sid, timeout: timeout)
    }

    /// Creates the iterator. A subscription is meant for one consumer at a time.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }

    /// Yields buffered messages, suspending while the buffer is empty.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: Subscription

        /// The next message, or nil once the subscription ended.
        ///
        /// - Throws: ``NATSError/permissionViolation(_:)`` or ``NATSError/resubscribeFailed(subject:reason:)``
        ///   when the server refused the subscription; `CancellationError` when the task is cancelled.
        public mutating func next() async throws -> Message? {
            try await subscription.next()
        }
    }

    func next() async throws -> Message? {
        // Fast path: a buffered message, no suspension.
        switch buffer.withLock({ $0.take() }) {
        case .message(let message): return message
        case .end: return nil
        case .failure(let error): throw error
        case .empty: break
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message?, any Error>) in
                let outcome = buffer.withLock { state -> SubscriptionBuffer.Take in
                    let outcome = state.take()
                    if case .empty = outcome {
                        if state.cancelled {
                            state.cancelled = false
                            return .failure(CancellationError())
                        }
                        state.waiter = continuation
                    }
                    return outcome
                }
                switch outcome {
                case .message(let message): continuation.resume(returning: message)
                case .end: continuation.resume(returning: nil)
                case .failure(let error): continuation.resume(throwing: error)
                case .empty: break
                }
            }
        } onCancel: {
            let waiter = buffer.withLock { state -> CheckedContinuation<Message?, any Error>? in
                guard let waiter = state.waiter else {
                    state.cancelled = true
                    return nil
                }
                state.waiter = nil
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Buffers a message for the consumer. Reader thread only.
    ///
    /// A waiting consumer is not resumed here: the reader collects subscriptions with waiters
    /// and calls ``wakeConsumer()`` once per socket read, so a read holding many messages costs
    /// one task wake-up instead of one per message.
    func enqueue(_ message: Message) -> EnqueueResult {
        let size = message.payload.count + (message.headerBytes?.count ?? 0)
        return buffer.withLock { state -> EnqueueResult in
            if state.finished { return .ignored }
            let limits = state.limits
            if (limits.messages > 0 && state.queue.count >= limits.messages)
                || (limits.bytes > 0 && state.pendingBytes + size > limits.bytes) {
                state.dropped += 1
                if !state.slow {
                    state.slow = true
                    return .droppedFirst(state.dropped)
                }
                return .dropped
            }
            state.slow = false
            state.queue.append(message)
            state.pendingBytes += size
            if state.waiter != nil && !state.wakeScheduled {
                state.wakeScheduled = true
                return .queuedWakeNeeded
            }
            return .queued
        }
    }

    /// Passes a message to the handler unless the subscription has ended. Reader thread only.
    ///
    /// The check and the count happen under the buffer's lock, the call outside it, so the handler
    /// may unsubscribe or read the counters.
    func handle(_ message: Message, handler: (Message) -> Void) {
        let live = buffer.withLock { state -> Bool in
            if state.finished { return false }
            state.delivered += 1
            return true
        }
        if live { handler(message) }
    }

    enum EnqueueResult {
        case queued
        /// The consumer waits: call ``wakeConsumer()`` after this read.
        case queuedWakeNeeded
        case ignored
        case dropped
        /// The first drop of a slow-consumer episode; the total dropped so far.
        case droppedFirst(Int)
    }

    /// Resumes a waiting consumer with the oldest buffered message. Reader thread only.
    func wakeConsumer() {
        let handoff = buffer.withLock { state -> (CheckedContinuation<Message?, any Error>, Message)? in
            state.wakeScheduled = false
            guard let waiter = state.waiter, let message = state.queue.popFirst() else { return nil }
            state.waiter = nil
            state.pendingBytes -= message.payload.count + (message.headerBytes?.count ?? 0)
            state.delivered += 1
            return (waiter, message)
        }
        if let (waiter, message) = handoff { waiter.resume(returning: message) }
    }

    /// Ends the subscription: iteration finishes after buffered messages, or throws `error` first.
    func finish(error: NATSError? = nil) {
        let handoff = buffer.withLock { state -> (CheckedContinuation<Message?, any Error>, SubscriptionBuffer.Take)? in
            if state.finished { return nil }
            state.finished = true
            state.failure = error
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            // A waiting consumer gets the error, else the next buffered message, else the end.
            return (waiter, state.take())
        }
        guard let (waiter, outcome) = handoff else { return }
        switch outcome {
        case .message(let message): waiter.resume(returning: message)
        case .failure(let error): waiter.resume(throwing: error)
        case .end, .empty: waiter.resume(returning: nil)
        }
    }

    /// Whether the subscription ended and its buffer is empty.
    var isFinishedAndEmpty: Bool { buffer.withLock { $0.finished && $0.queue.isEmpty } }
}

/// The state of one subscription's buffer, kept inside the subscription's Mutex.
struct SubscriptionBuffer {
    var queue = FIFO<Message>()
    var pendingBytes = 0
    var limits: Subscription.PendingLimits
    var dropped = 0
    var delivered = 0
    var slow = false
    var finished = false
    var cancelled = false
    /// The reader has this subscription on its list of consumers to wake after the current read.
    var wakeScheduled = false
    var failure: NATSError?
    var waiter: CheckedContinuation<Message?, any Error>?

    init(limits: Subscription.PendingLimits) { self.limits = limits }

    enum Take {
        case message(Message)
        case empty
        case end
        case failure(any Error)
    }

    mutating func take() -> Take {
        if let failure {
            // A refused subscription throws before anything else and then ends.
            self.failure = nil
            queue = FIFO()
            pendingBytes = 0
            return .failure(failure)
        }
        if let message = queue.popFirst() {
            pendingBytes -= message.payload.count + (message.headerBytes?.count ?? 0)
            delivered += 1
            return .message(message)
        }
        return finished ? .end : .empty
    }
}
