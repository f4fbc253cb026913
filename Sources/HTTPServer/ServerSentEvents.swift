/// One Server-Sent Event (WHATWG HTML, "Server-sent events").
public struct ServerSentEvent: Sendable, Equatable {
    /// The `data` payload; each of its lines becomes one `data:` field.
    public var data: String
    /// The `event` type, or nil for the default `message`.
    public var event: String?
    /// The `id` field, or nil.
    public var id: String?
    /// The `retry` reconnection time in milliseconds, or nil.
    public var retry: Int?

    /// Creates an event.
    public init(data: String, event: String? = nil, id: String? = nil, retry: Int? = nil) {
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
    }

    /// The event in wire form, ending with the blank line that dispatches it. Line breaks inside `event`
    /// and `id` are replaced by spaces so they cannot inject fields.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        func field(_ name: String, _ value: String) {
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: [0x3A, 0x20])
            out.append(contentsOf: value.utf8)
            out.append(0x0A)
        }
        func singleLine(_ s: String) -> String {
            String(decoding: s.utf8.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 }, as: UTF8.self)
        }
        if let event { field("event", singleLine(event)) }
        if let id { field("id", singleLine(id)) }
        if let retry { field("retry", String(retry)) }
        var line: [UInt8] = []
        var previousCR = false
        for b in data.utf8 {
            if b == 0x0A && previousCR { previousCR = false; continue }
            previousCR = b == 0x0D
            if b == 0x0A || b == 0x0D {
                field("data", String(decoding: line, as: UTF8.self))
                line.removeAll()
            } else {
                line.append(b)
            }
        }
        field("data", String(decoding: line, as: UTF8.self))
        out.append(0x0A)
        return out
    }
}

/// Thrown by `ServerSentEventWriter` once the stream is over: the client went away, a write failed, or
/// the server is stopping.
public struct ServerSentEventStreamClosed: Error, Sendable, Equatable {
    /// Creates the error.
    public init() {}
}

/// Sends events on a Server-Sent Events response. Given to the closure of
/// `HTTPResponse.serverSentEvents(_:)`; valid until that closure returns.
///
/// `send` returns once the event is queued on the connection and the connection's unsent bytes are under
/// its limit, so a slow reader slows the producer down instead of growing memory.
public final class ServerSentEventWriter: Sendable {
    private let sink: @Sendable ([UInt8]) async throws -> Void

    /// Creates a writer whose bytes go to `sink` (the server's connection, or a test collector).
    /// `sink` throws `ServerSentEventStreamClosed` when the stream is over.
    public init(sink: @escaping @Sendable ([UInt8]) async throws -> Void) {
        self.sink = sink
    }

    /// Sends one event.
    /// - Throws: `ServerSentEventStreamClosed` when the client is gone or the server is stopping.
    public func send(_ event: ServerSentEvent) async throws {
        try await sink(event.encoded)
    }

    /// Sends one event built from its fields.
    /// - Throws: `ServerSentEventStreamClosed` when the client is gone or the server is stopping.
    public func send(data: String, event: String? = nil, id: String? = nil) async throws {
        try await send(ServerSentEvent(data: data, event: event, id: id))
    }

    /// Sends a comment line (`: text`), e.g. as a keep-alive that clients ignore.
    /// - Throws: `ServerSentEventStreamClosed` when the client is gone or the server is stopping.
    public func comment(_ text: String = "") async throws {
        var out: [UInt8] = [0x3A, 0x20]
        out.append(contentsOf: text.utf8.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 })
        out.append(contentsOf: [0x0A, 0x0A])
        try await sink(out)
    }
}
