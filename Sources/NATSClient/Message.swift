// A received message.

import Foundation

/// A message delivered to a subscription or returned by a request.
///
/// The payload stays bytes; ``data``, ``string`` and ``decode(_:decoder:)`` convert on demand.
public struct Message: Sendable {
    /// The subject the message was published to.
    public let subject: String
    /// The reply subject, if the publisher expects an answer.
    public let reply: String?
    /// The raw header block (`NATS/1.0...\r\n...\r\n\r\n`), if the message had headers.
    public let headerBytes: [UInt8]?
    /// The payload bytes.
    public let payload: [UInt8]
    /// The client that received the message (used by ``respond(_:headers:)``).
    let client: NATSClient?

    init(subject: String, reply: String?, headerBytes: [UInt8]?, payload: [UInt8], client: NATSClient?) {
        self.subject = subject
        self.reply = reply
        self.headerBytes = headerBytes
        self.payload = payload
        self.client = client
    }

    /// The inline status code of the header block (`NATS/1.0 503` gives 503), if any.
    public var status: Int? {
        guard let headerBytes else { return nil }
        return headerBytes.withUnsafeBytes { HeaderStatus.code(in: $0) }
    }

    /// The payload as `Data`.
    public var data: Data { Data(payload) }

    /// The payload decoded as UTF-8 (invalid sequences become U+FFFD).
    public var string: String { String(decoding: payload, as: UTF8.self) }

    /// Decodes the payload as JSON.
    ///
    /// - Throws: ``NATSError/json(_:)`` if the payload is not valid JSON for `T`.
    public func decode<T: Decodable>(_ type: T.Type = T.self, decoder: JSONDecoder = JSONDecoder()) throws(NATSError) -> T {
        do {
            return try decoder.decode(T.self, from: Data(payload))
        } catch {
            throw .json("cannot decode \(T.self) from message on \(subject): \(error)")
        }
    }

    /// Publishes `payload` to this message's reply subject.
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` if the message has no reply subject, and the
    ///   errors of ``NATSClient/publish(_:subject:reply:headers:)``.
    public func respond(_ payload: [UInt8], headers: Headers? = nil) async throws(NATSError) {
        guard let reply, !reply.isEmpty else {
            throw .invalidArgument("message on \(subject) has no reply subject to respond to")
        }
        guard let client else { throw .closed }
        try await client.publish(payload, subject: reply, reply: nil, headers: headers, urgent: true)
    }

    /// Publishes `payload` to this message's reply subject without suspending: the way to answer
    /// from a subscription handler (``NATSClient/subscribe(_:queue:handler:)``).
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` if the message has no reply subject, and the
    ///   errors of ``NATSClient/publishNow(_:subject:reply:headers:)``.
    public func respondNow(_ payload: [UInt8], headers: Headers? = nil) throws(NATSError) {
        guard let reply, !reply.isEmpty else {
            throw .invalidArgument("message on \(subject) has no reply subject to respond to")
        }
        guard let client else { throw .closed }
        try client.publishNow(payload, subject: reply, reply: nil, headers: headers)
    }

    /// Publishes the UTF-8 bytes of `text` to this message's reply subject.
    ///
    /// - Throws: as ``respond(_:headers:)``.
    public func respond(_ text: String, headers: Headers? = nil) async throws(NATSError) {
        try await respond(Array(text.utf8), headers: headers)
    }

    /// Publishes `value` encoded as JSON to this message's reply subject.
    ///
    /// - Throws: ``NATSError/json(_:)`` if `value` cannot be encoded, and the errors of ``respond(_:headers:)``.
    public func respond<T: Encodable>(json value: T, headers: Headers? = nil) async throws(NATSError) {
        try await respond(try JSONPayload.encode(value), headers: headers)
    }
}

/// Reads the status code from the first line of a header block without allocating.
enum HeaderStatus {
    /// `NATS/1.0 503...` gives 503; nil when there is no 3-digit status.
    static func code(in block: UnsafeRawBufferPointer) -> Int? {
        // "NATS/1.0" is 8 bytes, then a space and three digits.
        guard block.count >= 12, block[8] == 0x20 else { return nil }
        var value = 0
        for index in 9..<12 {
            let digit = block[index] &- 0x30
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}

enum JSONPayload {
    /// - Throws: ``NATSError/json(_:)``.
    static func encode<T: Encodable>(_ value: T) throws(NATSError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw .json("cannot encode \(T.self): \(error)")
        }
    }
}

extension Message {
    /// The parsed headers, if the message had a header block.
    public var headers: Headers? {
        guard let headerBytes else { return nil }
        return try? Headers(parsing: headerBytes)
    }
}
