// Pull consumers: fetch a batch, or consume continuously with a pull request kept open.

import Foundation
import Synchronization

extension JetStreamContext {
    /// A handle on an existing pull consumer (nothing is sent until it is used).
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for bad names.
    public func pullConsumer(stream: String, name: String) throws(JetStreamError) -> PullConsumer {
        try Self.validateName(stream, what: "stream")
        try Self.validateName(name, what: "consumer")
        return PullConsumer(context: self, stream: stream, name: name)
    }
}

/// The body of a `CONSUMER.MSG.NEXT` pull request.
struct PullRequest: Encodable {
    var batch: Int
    var expires: Int64?
    var noWait: Bool?
    var maxBytes: Int?
    var idleHeartbeat: Int64?

    enum CodingKeys: String, CodingKey {
        case batch, expires
        case noWait = "no_wait", maxBytes = "max_bytes", idleHeartbeat = "idle_heartbeat"
    }
}

/// The status of a header-only message from the server (`NATS/1.0 408 Request Timeout`), if it is one.
struct DeliveryStatus {
    var code: Int
    var description: String
    var headers: Headers

    init?(_ message: Message) {
        guard let code = message.status, message.payload.isEmpty || code == 100 else { return nil }
        let headers = message.headers ?? Headers()
        self.code = code
        self.description = headers.statusDescription ?? ""
        self.headers = headers
    }

    /// `Nats-Pending-Messages` of a 408/409: the part of the request left unfilled.
    var pendingMessages: Int? { headers["Nats-Pending-Messages"].flatMap { Int($0) } }
}

/// A pull consumer: the client asks for messages with `CONSUMER.MSG.NEXT` requests.
public struct PullConsumer: Sendable {
    public let context: JetStreamContext
    public let stream: String
    public let name: String

    var nextSubject: String { "\(context.apiPrefix).CONSUMER.MSG.NEXT.\(stream).\(name)" }

    /// The consumer's configuration and counters.
    ///
    /// - Throws: as ``JetStreamContext/consumerInfo(_:name:)``.
    public func info() async throws(JetStreamError) -> ConsumerInfo {
        try await context.consumerInfo(stream, name: name)
    }

    /// Asks for up to `batch` messages and returns what arrives: as soon as the stream has no
    /// more for this request, or when `expires` passes (then possibly none).
    ///
    /// As nats.go does, a batch of more than one is first asked for with `no_wait`, so messages
    /// already in the stream return at once; when there are none (`404`) the request is sent again
    /// to wait for new ones until `expires`. `408` ends the batch; `100` heartbeats are skipped.
    /// - Parameters:
    ///   - batch: the most messages to return.
    ///   - expires: how long the server keeps the request open.
    ///   - maxBytes: the most payload bytes for the batch, if limited.
    /// - Returns: the messages in delivery order (possibly empty).
    /// - Throws: ``JetStreamError/status(code:description:)`` for a `409` (consumer deleted, push
    ///   based, exceeded limits) or `400` before any message arrived; ``JetStreamError/invalidArgument(_:)``
    ///   for a batch below 1 or expires below 1 ms; ``JetStreamError/client(_:)``, ``JetStreamError/cancelled``.
    public func fetch(batch: Int, expires: Duration = .seconds(5), maxBytes: Int? = nil) async throws(JetStreamError) -> [JetStreamMessage] {
        guard batch >= 1 else { throw .invalidArgument("batch must be at least 1, got \(batch)") }
        guard expires >= .milliseconds(1) else { throw .invalidArgument("expires must be at least 1ms") }
        let client = context.client
        let inbox = "\(client.options.inboxPrefix).\(NUID.next())"
        let subscription: Subscription
        do {
            subscription = try await client.subscribe(inbox)
        } catch {
            throw .client(error)
        }
        defer { client.unsubscribe(sid: subscription.sid, after: nil) }
        var messages: [JetStreamMessage] = []
        var noWait = batch > 1
        let deadline = ContinuousClock.now + expires + .seconds(1)
        func send() async throws(JetStreamError) {
            let request = PullRequest(batch: batch - messages.count, expires: expires.nanosecondsSigned,
                                      noWait: noWait ? true : nil, maxBytes: maxBytes)
            let body = try JetStreamContext.encode(request)
            do {
                try await client.publish(body, subject: nextSubject, reply: inbox)
            } catch {
                throw JetStreamError.from(error, subject: nextSubject)
            }
        }
        try await send()
        while messages.count < batch {
            let left = deadline - ContinuousClock.now
            if left <= .zero { break }
            let wait: SubscriptionWait
            do {
                wait = try await subscription.next(timeout: left)
            } catch {
                throw JetStreamError.from(error)
            }
            guard case .message(let message) = wait else { break }
            if let status = DeliveryStatus(message) {
                switch status.code {
                case 100:
                    continue
                case 404:
                    // Nothing there now: wait for new messages until the request expires.
                    if messages.isEmpty && noWait {
                        noWait = false
                        try await send()
                        continue
                    }
                    return messages
                case 408:
                    return messages
                default:
                    if messages.isEmpty { throw .status(code: status.code, description: status.description) }
                    return messages
                }
            }
            messages.append(try JetStreamMessage(message))
        }
        return messages
    }

    /// Fetches one message, or nil when none arrives before `expires`.
    ///
    /// - Throws: as ``fetch(batch:expires:maxBytes:)``.
    public func next(expires: Duration = .seconds(5)) async throws(JetStreamError) -> JetStreamMessage? {
        try await fetch(batch: 1, expires: expires).first
    }

    /// Consumes continuously: keeps pull requests open for `batch` messages, asking for more once
    /// half of them arrived, and watches the server's heartbeats.
    ///
    /// Iteration ends when the iterating task is cancelled or breaks out (the inbox is
    /// unsubscribed then); it throws for a `409 Consumer Deleted` or `Consumer is push based`.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a batch below 1, or a heartbeat that
    ///   is not below half of `expires`.
    public func messages(batch: Int = 100, expires: Duration = .seconds(30),
                         heartbeat: Duration = .seconds(5)) throws(JetStreamError) -> PullMessages {
        guard batch >= 1 else { throw .invalidArgument("batch must be at least 1, got \(batch)") }
        guard heartbeat * 2 < expires else { throw .invalidArgument("heartbeat must be below half of expires") }
        return PullMessages(consumer: self, batch: batch, expires: expires, heartbeat: heartbeat)
    }
}

/// The messages of a pull consumer as an `AsyncSequence` (see ``PullConsumer/messages(batch:expires:heartbeat:)``).
public struct PullMessages: AsyncSequence, Sendable {
    public typealias Element = JetStreamMessage
    let consumer: PullConsumer
    let batch: Int
    let expires: Duration
    let heartbeat: Duration

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(state: PullState(consumer: consumer, batch: batch, expires: expires, heartbeat: heartbeat))
    }

    /// Sends pull requests from within `next()`: no task runs behind the iterator.
    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        let state: PullState

        /// The next message; nil once iteration ended.
        ///
        /// - Throws: ``JetStreamError/status(code:description:)`` when the consumer was deleted or
        ///   is push based, ``JetStreamError/client(_:)``; `CancellationError` when cancelled.
        public mutating func next() async throws -> JetStreamMessage? {
            try await state.next()
        }
    }
}

/// The state of one continuous pull; unsubscribes its inbox when released.
final class PullState: @unchecked Sendable {
    // @unchecked: used by one iterating task at a time, like the iterator that owns it.
    let consumer: PullConsumer
    let batch: Int
    let expires: Duration
    let heartbeat: Duration
    private var subscription: Subscription?
    private var inbox = ""
    /// Messages asked for and not yet delivered or expired.
    private var pending = 0
    private var finished = false

    init(consumer: PullConsumer, batch: Int, expires: Duration, heartbeat: Duration) {
        self.consumer = consumer
        self.batch = batch
        self.expires = expires
        self.heartbeat = heartbeat
    }

    deinit { end() }

    private func end() {
        finished = true
        if let subscription { consumer.context.client.unsubscribe(sid: subscription.sid, after: nil) }
        subscription = nil
    }

    private func pull(_ count: Int) async throws {
        let request = PullRequest(batch: count, expires: expires.nanosecondsSigned,
                                  idleHeartbeat: heartbeat.nanosecondsSigned)
        let body = try JetStreamContext.encode(request)
        try await consumer.context.client.publish(body, subject: consumer.nextSubject, reply: inbox)
        pending += count
    }

    func next() async throws -> JetStreamMessage? {
        if finished { return nil }
        do {
            if subscription == nil {
                inbox = "\(consumer.context.client.options.inboxPrefix).\(NUID.next())"
                subscription = try await consumer.context.client.subscribe(inbox)
            }
            guard let subscription else { return nil }
            while true {
                if pending <= batch / 2 { try await pull(batch - pending) }
                switch try await subscription.next(timeout: heartbeat * 2) {
                case .ended:
                    end()
                    return nil
                case .timedOut:
                    // Two heartbeats missed: the requests are gone (server restart, lost
                    // connection); forget them and ask again.
                    pending = 0
                case .message(let message):
                    if let status = DeliveryStatus(message) {
                        switch status.code {
                        case 100:
                            continue
                        case 408, 404:
                            pending = max(0, pending - (status.pendingMessages ?? pending))
                        case 409 where status.description.hasPrefix("Consumer Deleted")
                                    || status.description.hasPrefix("Consumer is push based"):
                            end()
                            throw JetStreamError.status(code: status.code, description: status.description)
                        case 409:
                            pending = max(0, pending - (status.pendingMessages ?? pending))
                        default:
                            end()
                            throw JetStreamError.status(code: status.code, description: status.description)
                        }
                        continue
                    }
                    pending = max(0, pending - 1)
                    return try JetStreamMessage(message)
                }
            }
        } catch is CancellationError {
            end()
            throw CancellationError()
        } catch {
            end()
            throw error
        }
    }
}
