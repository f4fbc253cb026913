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
        // Only a reply that mentions "error" can be one: the common case decodes once.
        if payload.contains(subsequence: errorKey),
           let envelope = try? decoder.decode(APIResponseEnvelope.self, from: data), let error = envelope.error {
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
        if let ack = PubAck(fastParsing: reply.payload) { return ack }
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
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` if `maxPending` is not positive,
    ///   ``JetStreamError/client(_:)`` if its reply subscription cannot be made.
    public func asyncPublisher(maxPending: Int = 256) async throws(JetStreamError) -> AsyncPublisher {
        guard maxPending > 0 else { throw .invalidArgument("maxPending must be positive, got \(maxPending)") }
        let inbox = "\(client.options.inboxPrefix).\(NUID.next())"
        let subscription = try await subscribeRaw(inbox + ".*", queue: nil)
        subscription.pendingLimits = .init(messages: 0, bytes: 0)
        return AsyncPublisher(context: self, maxPending: maxPending, inbox: inbox, subscription: subscription)
    }
}

private let errorKey = Array("\"error\"".utf8)

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in the bytes.
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, count >= needle.count else { return false }
        let first = needle[0]
        var index = 0
        while index <= count - needle.count {
            if self[index] == first && self[index..<index + needle.count].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}

extension PubAck {
    /// Reads the PubAck the server writes (`{"stream":"S", "seq":N[,"duplicate": true][,"domain":"D"]}`)
    /// without JSONDecoder, the cost that dominated windowed publishing. Nil for anything else
    /// (errors, escapes, unknown fields), which then goes through the full decoder.
    init?(fastParsing payload: [UInt8]) {
        var stream: String?
        var sequence: UInt64?
        var duplicate = false
        var domain: String?
        var index = 0
        let count = payload.count
        func skipSpaces() {
            while index < count && (payload[index] == 0x20 || payload[index] == 0x0A || payload[index] == 0x0D || payload[index] == 0x09) {
                index += 1
            }
        }
        /// A string without escapes, starting at a quote.
        func string() -> String? {
            guard index < count, payload[index] == 0x22 else { return nil }
            let start = index + 1
            var end = start
            while end < count && payload[end] != 0x22 {
                if payload[end] == 0x5C { return nil }
                end += 1
            }
            guard end < count else { return nil }
            index = end + 1
            return String(decoding: payload[start..<end], as: UTF8.self)
        }
        skipSpaces()
        guard index < count, payload[index] == 0x7B else { return nil }
        index += 1
        while true {
            skipSpaces()
            guard let key = string() else { return nil }
            skipSpaces()
            guard index < count, payload[index] == 0x3A else { return nil }
            index += 1
            skipSpaces()
            switch key {
            case "stream": stream = string()
            case "domain": domain = string()
            case "seq":
                var value: UInt64 = 0
                var digits = 0
                while index < count, (0x30...0x39).contains(payload[index]) {
                    let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                    guard !overflow else { return nil }
                    value = times + UInt64(payload[index] - 0x30)
                    digits += 1
                    index += 1
                }
                guard digits > 0 else { return nil }
                sequence = value
            case "duplicate":
                if payload[index...].starts(with: Array("true".utf8)) {
                    duplicate = true
                    index += 4
                } else if payload[index...].starts(with: Array("false".utf8)) {
                    index += 5
                } else {
                    return nil
                }
            default:
                return nil
            }
            skipSpaces()
            guard index < count else { return nil }
            if payload[index] == 0x2C {
                index += 1
                continue
            }
            guard payload[index] == 0x7D else { return nil }
            break
        }
        guard let stream, let sequence else { return nil }
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
        self.domain = domain
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
