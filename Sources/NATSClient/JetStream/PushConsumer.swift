// Push consumers (the server delivers to a subject) and ordered consumers built from them.

import Foundation

extension JetStreamContext {
    /// Subscribes to an existing push consumer's deliver subject (in its deliver group, if any).
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` when the consumer is a pull consumer; the
    ///   errors of ``consumerInfo(_:name:)``; ``JetStreamError/client(_:)`` when subscribing fails.
    public func pushSubscribe(stream: String, consumer: String) async throws(JetStreamError) -> PushSubscription {
        let info = try await consumerInfo(stream, name: consumer)
        guard let deliver = info.config.deliverSubject else {
            throw .invalidArgument("consumer \(consumer) on \(stream) is a pull consumer (no deliver subject)")
        }
        return try await subscribePush(deliver, queue: info.config.deliverGroup, stream: stream, consumer: info.name)
    }

    /// Creates a push consumer (on a new inbox when ``ConsumerConfig/deliverSubject`` is nil) and
    /// subscribes to its deliver subject, in ``ConsumerConfig/deliverGroup`` when set.
    ///
    /// - Throws: the errors of ``addConsumer(_:config:)``; ``JetStreamError/client(_:)`` when
    ///   subscribing fails.
    public func pushSubscribe(stream: String, config: ConsumerConfig) async throws(JetStreamError) -> PushSubscription {
        var config = config
        let deliver = config.deliverSubject ?? "\(client.options.inboxPrefix).\(NUID.next())"
        config.deliverSubject = deliver
        // Subscribe first so the first deliveries find interest.
        let subscription = try await subscribeRaw(deliver, queue: config.deliverGroup)
        do {
            let info = try await addConsumer(stream, config: config)
            return PushSubscription(subscription: subscription, stream: stream, consumer: info.name)
        } catch {
            client.unsubscribe(sid: subscription.sid, after: nil)
            throw error
        }
    }

    /// - Throws: ``JetStreamError/client(_:)``, ``JetStreamError/invalidArgument(_:)``.
    func subscribeRaw(_ subject: String, queue: String?) async throws(JetStreamError) -> Subscription {
        do {
            return try await client.subscribe(subject, queue: queue)
        } catch {
            throw JetStreamError.from(error, subject: subject)
        }
    }

    /// - Throws: as ``subscribeRaw(_:queue:)``.
    func subscribePush(_ subject: String, queue: String?, stream: String, consumer: String)
        async throws(JetStreamError) -> PushSubscription {
        PushSubscription(subscription: try await subscribeRaw(subject, queue: queue), stream: stream, consumer: consumer)
    }

    /// An ordered consumer: an ephemeral push consumer without acks that delivers the stream (or
    /// `filterSubject`) in order, recreating itself from the next stream sequence after a gap or
    /// two missed heartbeats.
    ///
    /// - Parameters:
    ///   - stream: the stream to read.
    ///   - filterSubject: only messages on this subject (wildcards allowed).
    ///   - deliverPolicy: where to start (`byStartSequence` uses `startSequence`).
    ///   - headersOnly: deliver headers and `Nats-Msg-Size` without payloads.
    ///   - heartbeat: the server's idle heartbeat interval.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a bad stream name or a heartbeat below 100 ms.
    public func orderedConsumer(stream: String, filterSubject: String? = nil, deliverPolicy: DeliverPolicy = .all,
                                startSequence: UInt64? = nil, headersOnly: Bool = false,
                                heartbeat: Duration = .seconds(5)) throws(JetStreamError) -> OrderedConsumer {
        try Self.validateName(stream, what: "stream")
        guard heartbeat >= .milliseconds(100) else { throw .invalidArgument("heartbeat must be at least 100ms") }
        var config = ConsumerConfig()
        config.deliverPolicy = deliverPolicy
        config.optStartSeq = startSequence
        config.ackPolicy = .none
        config.maxDeliver = 1
        config.flowControl = true
        config.idleHeartbeat = heartbeat
        config.memoryStorage = true
        config.headersOnly = headersOnly
        config.filterSubject = filterSubject
        return OrderedConsumer(context: self, stream: stream, config: config)
    }
}

/// Handles the server's control messages on a push deliver subject. Returns true when `message`
/// was one (a flow control request is answered, a stalled heartbeat's flow control too).
func handlePushControl(_ message: Message, client: NATSClient) async -> DeliveryStatus? {
    guard let status = DeliveryStatus(message), status.code == 100 else { return nil }
    if let reply = message.reply, !reply.isEmpty {
        // A flow control request: the server pauses delivery until it is answered.
        try? await client.publish([], subject: reply)
    } else if let stalled = status.headers["Nats-Consumer-Stalled"], !stalled.isEmpty {
        try? await client.publish([], subject: stalled)
    }
    return status
}

/// Deliveries of a push consumer, as an `AsyncSequence` of ``JetStreamMessage``.
///
/// Flow control requests are answered when the consumer reaches them (so the server paces itself
/// to the consumer) and idle heartbeats are skipped. ``unsubscribe()`` ends it.
public struct PushSubscription: AsyncSequence, Sendable {
    public typealias Element = JetStreamMessage
    /// The core subscription on the deliver subject.
    public let subscription: Subscription
    public let stream: String
    public let consumer: String

    /// Stops receiving; iteration ends after what is buffered.
    public func unsubscribe() async {
        await subscription.unsubscribe()
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: subscription) }

    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        let subscription: Subscription

        /// The next delivery; nil once unsubscribed.
        ///
        /// - Throws: ``JetStreamError/invalidResponse(_:)`` for a delivery without ack subject, and
        ///   what the subscription throws.
        public mutating func next() async throws -> JetStreamMessage? {
            while let message = try await subscription.next() {
                if await handlePushControl(message, client: subscription.client) != nil { continue }
                return try JetStreamMessage(message)
            }
            return nil
        }
    }
}

/// An ordered consumer's deliveries (see ``JetStreamContext/orderedConsumer(stream:filterSubject:deliverPolicy:startSequence:headersOnly:heartbeat:)``).
public struct OrderedConsumer: AsyncSequence, Sendable {
    public typealias Element = JetStreamMessage
    let context: JetStreamContext
    let stream: String
    let config: ConsumerConfig

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(state: OrderedState(context: context, stream: stream, config: config))
    }

    /// Creates the server-side consumer, consumes from within `next()` and recreates on gaps.
    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        let state: OrderedState

        /// The next message in stream order; nil once the client closed.
        ///
        /// - Throws: ``JetStreamError/api(code:errCode:description:)`` when the consumer cannot be
        ///   (re)created (10059: the stream is gone); `CancellationError` when cancelled.
        public mutating func next() async throws -> JetStreamMessage? {
            try await state.next()
        }
    }
}

/// One ordered consumption; unsubscribes its inbox when released (the server then removes the
/// ephemeral consumer after its inactivity threshold).
final class OrderedState: @unchecked Sendable {
    // @unchecked: used by one iterating task at a time, like the iterator that owns it.
    let context: JetStreamContext
    let stream: String
    let config: ConsumerConfig
    private var subscription: Subscription?
    private var lastConsumerSequence: UInt64 = 0
    private var lastStreamSequence: UInt64 = 0
    /// `num_pending` when the first consumer was created (KV watch uses it for its initial values).
    private(set) var initialPending: UInt64?
    /// Consumers created so far (1 plus the resets).
    private(set) var creations = 0

    init(context: JetStreamContext, stream: String, config: ConsumerConfig) {
        self.context = context
        self.stream = stream
        self.config = config
    }

    deinit { dropSubscription() }

    private func dropSubscription() {
        if let subscription { context.client.unsubscribe(sid: subscription.sid, after: nil) }
        subscription = nil
    }

    /// (Re)creates the consumer on a fresh inbox from the sequence after the last one delivered;
    /// retries while the server cannot be reached.
    ///
    /// - Throws: ``JetStreamError/api(code:errCode:description:)``, ``JetStreamError/client(_:)``
    ///   once the client is closed, `CancellationError`.
    func create() async throws {
        dropSubscription()
        var config = self.config
        if lastStreamSequence > 0 {
            config.deliverPolicy = .byStartSequence
            config.optStartSeq = lastStreamSequence + 1
        }
        lastConsumerSequence = 0
        var delay = Duration.milliseconds(50)
        while true {
            try Task.checkCancellation()
            let inbox = "\(context.client.options.inboxPrefix).\(NUID.next())"
            config.deliverSubject = inbox
            let subscription = try await context.subscribeRaw(inbox, queue: nil)
            do {
                let info = try await context.addConsumer(stream, config: config)
                self.subscription = subscription
                if initialPending == nil { initialPending = info.numPending }
                creations += 1
                return
            } catch {
                context.client.unsubscribe(sid: subscription.sid, after: nil)
                switch error {
                case .timeout, .noResponders, .client(.disconnected), .client(.reconnectBufferExceeded):
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(2))
                default:
                    throw error
                }
            }
        }
    }

    func next() async throws -> JetStreamMessage? {
        let heartbeat = config.idleHeartbeat ?? .seconds(5)
        while true {
            if subscription == nil { try await create() }
            guard let subscription else { return nil }
            switch try await subscription.next(timeout: heartbeat * 2) {
            case .ended:
                if context.client.isClosed { return nil }
                self.subscription = nil
            case .timedOut:
                try await create()
            case .message(let message):
                if let status = await handlePushControl(message, client: context.client) {
                    if let last = status.headers["Nats-Last-Consumer"].flatMap({ UInt64($0) }),
                       last != lastConsumerSequence {
                        try await create()
                    }
                    continue
                }
                let delivered = try JetStreamMessage(message)
                guard delivered.metadata.consumerSequence == lastConsumerSequence + 1 else {
                    try await create()
                    continue
                }
                lastConsumerSequence = delivered.metadata.consumerSequence
                lastStreamSequence = delivered.metadata.streamSequence
                return delivered
            }
        }
    }
}
