// A message delivered by a JetStream consumer: its metadata from the ack subject, and the acks.

import Foundation

/// A message a consumer delivered, with the means to acknowledge it.
public struct JetStreamMessage: Sendable {
    /// The message as received (its subject is the stored subject).
    public let message: Message
    /// The delivery metadata, parsed from the `$JS.ACK...` reply subject.
    public let metadata: Metadata

    /// The stored subject.
    public var subject: String { message.subject }
    /// The payload bytes.
    public var payload: [UInt8] { message.payload }
    /// The payload as UTF-8 text.
    public var string: String { message.string }
    /// The parsed headers, if any.
    public var headers: Headers? { message.headers }

    /// Where a message stands in its stream and consumer.
    public struct Metadata: Sendable, Equatable {
        public var domain: String?
        public var stream: String
        public var consumer: String
        /// How many times this message was delivered (1 the first time).
        public var delivered: UInt64
        public var streamSequence: UInt64
        public var consumerSequence: UInt64
        /// When the message was stored.
        public var timestamp: Date
        /// Unix nanoseconds of ``timestamp``.
        public var timestampNanos: Int64
        /// Messages left for the consumer after this one.
        public var pending: UInt64
    }

    /// Wraps a delivery whose reply is a JetStream ack subject.
    ///
    /// - Throws: ``JetStreamError/invalidResponse(_:)`` when the reply is not a JetStream ack subject.
    init(_ message: Message) throws(JetStreamError) {
        guard let reply = message.reply, let metadata = Self.parse(ackSubject: reply) else {
            throw .invalidResponse("message on \(message.subject) has no JetStream ack subject (reply \(message.reply ?? "none"))")
        }
        self.message = message
        self.metadata = metadata
    }

    /// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (9 tokens),
    /// or the 11- and 12-token form with domain and account hash.
    static func parse(ackSubject: String) -> Metadata? {
        let tokens = ackSubject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        let domain: String?
        let base: Int
        switch tokens.count {
        case 9:
            domain = nil
            base = 2
        case 11, 12:
            domain = tokens[2] == "_" ? nil : String(tokens[2])
            base = 4
        default:
            return nil
        }
        guard let delivered = UInt64(tokens[base + 2]), let streamSequence = UInt64(tokens[base + 3]),
              let consumerSequence = UInt64(tokens[base + 4]), let nanos = Int64(tokens[base + 5]),
              let pending = UInt64(tokens[base + 6]) else { return nil }
        return Metadata(domain: domain, stream: String(tokens[base]), consumer: String(tokens[base + 1]),
                        delivered: delivered, streamSequence: streamSequence, consumerSequence: consumerSequence,
                        timestamp: RFC3339Nano.date(unixNanos: nanos), timestampNanos: nanos, pending: pending)
    }

    private func send(_ body: String) async throws(JetStreamError) {
        guard let reply = message.reply, let client = message.client else { throw .client(.closed) }
        do {
            try await client.publish(Array(body.utf8), subject: reply)
        } catch {
            throw JetStreamError.from(error, subject: reply)
        }
    }

    /// Acknowledges the message (`+ACK`) without waiting for the server.
    ///
    /// - Throws: ``JetStreamError/client(_:)`` when the client is closed or the ack cannot be queued.
    public func ack() async throws(JetStreamError) {
        try await send("+ACK")
    }

    /// Acknowledges the message and waits until the server confirms it took the ack.
    ///
    /// - Throws: ``JetStreamError/timeout`` without a confirmation, ``JetStreamError/client(_:)``.
    public func ackSync(timeout: Duration = .seconds(5)) async throws(JetStreamError) {
        guard let reply = message.reply, let client = message.client else { throw .client(.closed) }
        do {
            _ = try await client.request(Array("+ACK".utf8), subject: reply, timeout: timeout)
        } catch {
            throw JetStreamError.from(error, subject: reply)
        }
    }

    /// Asks for redelivery (`-NAK`), after `delay` when given.
    ///
    /// - Throws: ``JetStreamError/client(_:)``.
    public func nak(delay: Duration? = nil) async throws(JetStreamError) {
        if let delay {
            try await send("-NAK {\"delay\":\(delay.nanosecondsSigned)}")
        } else {
            try await send("-NAK")
        }
    }

    /// Tells the server the message is still being worked on (`+WPI`): its ack timer restarts.
    ///
    /// - Throws: ``JetStreamError/client(_:)``.
    public func inProgress() async throws(JetStreamError) {
        try await send("+WPI")
    }

    /// Stops redelivery of the message for good (`+TERM`).
    ///
    /// - Throws: ``JetStreamError/client(_:)``.
    public func term() async throws(JetStreamError) {
        try await send("+TERM")
    }
}

/// What a wait on a subscription gave.
enum SubscriptionWait {
    case message(Message)
    case timedOut
    case ended
}

extension Subscription {
    /// The next message within `timeout`, without giving up messages that race with the deadline.
    ///
    /// - Throws: `CancellationError` when the calling task is cancelled, and what iteration throws.
    func next(timeout: Duration) async throws -> SubscriptionWait {
        switch buffer.withLock({ $0.take() }) {
        case .message(let message): return .message(message)
        case .end: return .ended
        case .failure(let error): throw error
        case .empty: break
        }
        try Task.checkCancellation()
        enum Outcome: Sendable {
            case message(Message?)
            case timer
        }
        let outcome = try await withThrowingTaskGroup(of: Outcome.self) { group -> Outcome in
            group.addTask { .message(try await self.next()) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .timer
            }
            var result: Outcome = .timer
            var messageResult: Outcome?
            do {
                let first = try await group.next() ?? .timer
                if case .message = first {
                    group.cancelAll()
                    result = first
                    _ = try? await group.next()
                    return result
                }
                group.cancelAll()
                // The read may have won the race right as the timer fired: keep its message.
                messageResult = try await group.next()
            } catch is CancellationError {
                messageResult = nil
            }
            if let messageResult, case .message(let message?) = messageResult {
                // Cancelling a read that already had its message leaves the buffer's cancel flag set.
                buffer.withLock { $0.cancelled = false }
                return .message(message)
            }
            return result
        }
        switch outcome {
        case .message(let message?): return .message(message)
        case .message(nil): return .ended
        case .timer:
            try Task.checkCancellation()
            return .timedOut
        }
    }
}
