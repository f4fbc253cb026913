// The JetStream context: the API prefix, JSON requests to `$JS.API.>`, and publishing with acks.

import Foundation
import Synchronization

extension NATSClient {
    /// A JetStream context on this connection.
    ///
    /// - Parameters:
    ///   - domain: the JetStream domain to address (`$JS.<domain>.API`); nil for the local one.
    ///   - prefix: an explicit API prefix (for imported JetStream); wins over `domain`.
    ///   - timeout: the default wait for API answers and publish acks.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a domain or prefix that is not a valid
    ///   subject or holds wildcards.
    public func jetStream(domain: String? = nil, prefix: String? = nil,
                          timeout: Duration = .seconds(5)) throws(JetStreamError) -> JetStreamContext {
        let apiPrefix: String
        if let prefix {
            apiPrefix = prefix.hasSuffix(".") ? String(prefix.dropLast()) : prefix
        } else if let domain, !domain.isEmpty {
            apiPrefix = "$JS.\(domain).API"
        } else {
            apiPrefix = "$JS.API"
        }
        do {
            try Self.validatePublishSubject(apiPrefix, what: "JetStream API prefix")
        } catch {
            throw .invalidArgument("\(error)")
        }
        return JetStreamContext(client: self, apiPrefix: apiPrefix, timeout: timeout)
    }
}

/// JetStream on one client: publishing with acknowledgements, stream and consumer management,
/// consumers and key-value buckets.
///
/// ```swift
/// let js = try client.jetStream()
/// _ = try await js.addStream(StreamConfig(name: "ORDERS", subjects: ["orders.>"]))
/// let ack = try await js.publish("orders.1", payload: Array("new".utf8))
/// let consumer = try await js.addConsumer("ORDERS", config: ConsumerConfig(durableName: "worker"))
/// for message in try await js.pullConsumer(stream: "ORDERS", name: "worker").fetch(batch: 10) {
///     try await message.ack()
/// }
/// ```
public struct JetStreamContext: Sendable {
    /// The client every call goes through.
    public let client: NATSClient
    /// The API subject prefix, `$JS.API` unless a domain or prefix was given.
    public let apiPrefix: String
    /// The default wait for API answers and publish acks.
    public let timeout: Duration

    init(client: NATSClient, apiPrefix: String, timeout: Duration) {
        self.client = client
        self.apiPrefix = apiPrefix
        self.timeout = timeout
    }

    // MARK: - API requests

    /// Sends `body` to `<apiPrefix>.<subject>` and decodes the answer as `Response`, throwing the
    /// API error the answer carries.
    ///
    /// - Throws: ``JetStreamError/api(code:errCode:description:)``, ``JetStreamError/noResponders(subject:)``,
    ///   ``JetStreamError/timeout``, ``JetStreamError/invalidResponse(_:)``, ``JetStreamError/client(_:)``,
    ///   ``JetStreamError/cancelled``.
    func api<Response: Decodable>(_ subject: String, body: [UInt8] = [], as type: Response.Type = Response.self)
        async throws(JetStreamError) -> Response {
        let full = "\(apiPrefix).\(subject)"
        let reply: Message
        do {
            reply = try await client.request(body, subject: full, timeout: timeout)
        } catch {
            throw JetStreamError.from(error, subject: full)
        }
        return try Self.decodeAPI(reply.payload, as: Response.self, subject: full)
    }

    /// Sends `request` encoded as JSON.
    ///
    /// - Throws: as ``api(_:body:as:)``, and ``JetStreamError/invalidArgument(_:)`` if it cannot be encoded.
    func api<Request: Encodable, Response: Decodable>(_ subject: String, json request: Request,
                                                      as type: Response.Type = Response.self)
        async throws(JetStreamError) -> Response {
        try await api(subject, body: try Self.encode(request), as: Response.self)
    }

    /// - Throws: ``JetStreamError/api(code:errCode:description:)`` if `payload` carries an error,
    ///   ``JetStreamError/invalidResponse(_:)`` if it is not the expected JSON.
    static func decodeAPI<Response: Decodable>(_ payload: [UInt8], as type: Response.Type, subject: String)
        throws(JetStreamError) -> Response {
        let decoder = JSONDecoder()
        let data = Data(payload)
        if let envelope = try? decoder.decode(APIResponseEnvelope.self, from: data), let error = envelope.error {
            throw .api(code: error.code, errCode: error.errCode ?? 0, description: error.description ?? "")
        }
        do {
            return try decoder.decode(Response.self, from: data)
        } catch {
            throw .invalidResponse("\(subject): cannot decode \(Response.self) from \(String(decoding: payload.prefix(200), as: UTF8.self)): \(error)")
        }
    }

    /// - Throws: ``JetStreamError/invalidArgument(_:)``.
    static func encode<T: Encodable>(_ value: T) throws(JetStreamError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw .invalidArgument("cannot encode \(T.self): \(error)")
        }
    }

    /// The account's JetStream usage (`$JS.API.INFO`).
    ///
    /// - Throws: as ``api(_:body:as:)``; ``JetStreamError/noResponders(subject:)`` when JetStream is off.
    public func accountInfo() async throws(JetStreamError) -> AccountInfo {
        try await api("INFO")
    }

    // MARK: - Publishing

    /// Publishes to a stream subject and waits for the stream's acknowledgement.
    ///
    /// - Parameters:
    ///   - subject: a subject some stream captures.
    ///   - payload: the message body.
    ///   - headers: extra headers; the ``PublishOptions`` headers are added to them.
    ///   - options: de-duplication id and the stream's expectations.
    ///   - timeout: the wait for the ack; the context's timeout when nil.
    /// - Returns: the stream and sequence that stored the message.
    /// - Throws: ``JetStreamError/noResponders(subject:)`` when no stream captures `subject`,
    ///   ``JetStreamError/api(code:errCode:description:)`` when the stream refused it (10060 wrong
    ///   stream, 10070 wrong last msg id, 10071 wrong last sequence, 10077 store failed...),
    ///   ``JetStreamError/timeout``, ``JetStreamError/invalidArgument(_:)``, ``JetStreamError/client(_:)``.
    public func publish(_ subject: String, payload: [UInt8], headers: Headers? = nil,
                        options: PublishOptions = PublishOptions(), timeout: Duration? = nil) async throws(JetStreamError) -> PubAck {
        let merged = try options.merged(into: headers)
        let reply: Message
        do {
            reply = try await client.request(payload, subject: subject, headers: merged, timeout: timeout ?? self.timeout)
        } catch {
            throw JetStreamError.from(error, subject: subject)
        }
        return try Self.decodeAPI(reply.payload, as: PubAck.self, subject: subject)
    }

    /// Publishes the UTF-8 bytes of `text`.
    ///
    /// - Throws: as ``publish(_:payload:headers:options:timeout:)``.
    public func publish(_ subject: String, _ text: String, headers: Headers? = nil,
                        options: PublishOptions = PublishOptions()) async throws(JetStreamError) -> PubAck {
        try await publish(subject, payload: Array(text.utf8), headers: headers, options: options)
    }

    /// A publisher that keeps up to `maxPending` publishes waiting for their acks at once.
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` if `maxPending` is not positive.
    public func asyncPublisher(maxPending: Int = 256) throws(JetStreamError) -> AsyncPublisher {
        guard maxPending > 0 else { throw .invalidArgument("maxPending must be positive, got \(maxPending)") }
        return AsyncPublisher(context: self, maxPending: maxPending)
    }
}

/// The account's JetStream figures (`$JS.API.INFO`).
public struct AccountInfo: Decodable, Sendable {
    public var memory: UInt64
    public var storage: UInt64
    public var streams: Int
    public var consumers: Int
    public var domain: String?

    enum CodingKeys: String, CodingKey { case memory, storage, streams, consumers, domain }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        memory = try c.decodeIfPresent(UInt64.self, forKey: .memory) ?? 0
        storage = try c.decodeIfPresent(UInt64.self, forKey: .storage) ?? 0
        streams = try c.decodeIfPresent(Int.self, forKey: .streams) ?? 0
        consumers = try c.decodeIfPresent(Int.self, forKey: .consumers) ?? 0
        domain = try c.decodeIfPresent(String.self, forKey: .domain)
    }
}

/// What a JetStream publish asks of the stream, sent as `Nats-*` headers.
public struct PublishOptions: Sendable, Equatable {
    /// `Nats-Msg-Id`: the stream stores one message per id within its duplicate window.
    public var msgID: String?
    /// `Nats-Expected-Stream`: refused (10060) unless this stream captures the subject.
    public var expectedStream: String?
    /// `Nats-Expected-Last-Sequence`: refused (10071) unless the stream's last sequence is this.
    public var expectedLastSequence: UInt64?
    /// `Nats-Expected-Last-Subject-Sequence`: refused (10071) unless the subject's last sequence
    /// is this (0: the subject has no message).
    public var expectedLastSubjectSequence: UInt64?
    /// `Nats-Expected-Last-Msg-Id`: refused (10070) unless the last message had this id.
    public var expectedLastMsgID: String?

    public init(msgID: String? = nil, expectedStream: String? = nil, expectedLastSequence: UInt64? = nil,
                expectedLastSubjectSequence: UInt64? = nil, expectedLastMsgID: String? = nil) {
        self.msgID = msgID
        self.expectedStream = expectedStream
        self.expectedLastSequence = expectedLastSequence
        self.expectedLastSubjectSequence = expectedLastSubjectSequence
        self.expectedLastMsgID = expectedLastMsgID
    }

    /// `headers` plus these options; nil when both are empty.
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a value that cannot be a header.
    func merged(into headers: Headers?) throws(JetStreamError) -> Headers? {
        var fields: [(String, String)] = []
        if let msgID { fields.append(("Nats-Msg-Id", msgID)) }
        if let expectedStream { fields.append(("Nats-Expected-Stream", expectedStream)) }
        if let expectedLastSequence { fields.append(("Nats-Expected-Last-Sequence", String(expectedLastSequence))) }
        if let expectedLastSubjectSequence {
            fields.append(("Nats-Expected-Last-Subject-Sequence", String(expectedLastSubjectSequence)))
        }
        if let expectedLastMsgID { fields.append(("Nats-Expected-Last-Msg-Id", expectedLastMsgID)) }
        if fields.isEmpty { return headers }
        var result = headers ?? Headers()
        for (name, value) in fields {
            do {
                try result.set(name: name, value: value)
            } catch {
                throw .invalidArgument("\(name) value \"\(value)\" cannot be sent as a header: \(error)")
            }
        }
        return result
    }
}

/// Publishes without waiting for each ack, keeping at most `maxPending` acks outstanding.
///
/// ```swift
/// let publisher = try js.asyncPublisher(maxPending: 256)
/// for index in 0..<10_000 { _ = try await publisher.publish("events.\(index)", payload: body) }
/// let failures = await publisher.waitForAll()
/// ```
/// Each publish returns a ``PubAckFuture``; ``waitForAll()`` waits for every outstanding ack.
public final class AsyncPublisher: Sendable {
    let context: JetStreamContext
    /// The most publishes awaiting their ack at once.
    public let maxPending: Int
    private let state = Mutex(State())

    struct State {
        var inFlight = 0
        var failures = 0
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    init(context: JetStreamContext, maxPending: Int) {
        self.context = context
        self.maxPending = maxPending
    }

    /// Publishes awaiting their ack right now.
    public var pending: Int { state.withLock { $0.inFlight } }

    /// Publishes whose ack was an error or never came, since the publisher was created.
    public var failedCount: Int { state.withLock { $0.failures } }

    /// Sends a publish and returns at once with a handle to its ack; suspends first while
    /// ``maxPending`` acks are outstanding.
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for bad options (nothing was sent),
    ///   ``JetStreamError/cancelled`` if the task was cancelled while waiting for room.
    ///   Failures of the publish itself surface through the returned future.
    public func publish(_ subject: String, payload: [UInt8], headers: Headers? = nil,
                        options: PublishOptions = PublishOptions()) async throws(JetStreamError) -> PubAckFuture {
        let merged = try options.merged(into: headers)
        while true {
            if Task.isCancelled { throw .cancelled }
            let admitted = state.withLock { s -> Bool in
                guard s.inFlight < maxPending else { return false }
                s.inFlight += 1
                return true
            }
            if admitted { break }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let wait = state.withLock { s -> Bool in
                    guard s.inFlight >= maxPending else { return false }
                    s.roomWaiters.append(continuation)
                    return true
                }
                if !wait { continuation.resume() }
            }
        }
        let context = self.context
        let task = Task { () async throws -> PubAck in
            defer { self.completed() }
            do {
                return try await context.publish(subject, payload: payload, headers: merged)
            } catch {
                self.state.withLock { $0.failures += 1 }
                throw error
            }
        }
        return PubAckFuture(task: task)
    }

    private func completed() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.inFlight -= 1
            var wake: [CheckedContinuation<Void, Never>] = []
            if !s.roomWaiters.isEmpty { wake.append(s.roomWaiters.removeFirst()) }
            if s.inFlight == 0 {
                wake.append(contentsOf: s.idleWaiters)
                s.idleWaiters = []
            }
            return wake
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until every publish sent so far has its ack (or failed).
    ///
    /// - Returns: ``failedCount`` at that point.
    @discardableResult
    public func waitForAll() async -> Int {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { s -> Bool in
                guard s.inFlight > 0 else { return false }
                s.idleWaiters.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
        return failedCount
    }
}

/// The acknowledgement of an asynchronous publish, once it comes.
public struct PubAckFuture: Sendable {
    let task: Task<PubAck, any Error>

    /// Waits for the ack.
    ///
    /// - Throws: the errors of ``JetStreamContext/publish(_:payload:headers:options:timeout:)``.
    public func value() async throws(JetStreamError) -> PubAck {
        do {
            return try await task.value
        } catch {
            throw JetStreamError.from(error)
        }
    }
}
