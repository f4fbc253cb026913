import Formats

/// A response: status, header fields and either a body or a Server-Sent Events stream.
public struct HTTPResponse: Sendable {
    /// The status.
    public var status: HTTPStatus
    /// Header fields. The server adds `Content-Length` (or the SSE framing), `Connection` and `Date`-free
    /// framing itself; a `Content-Length` set here is replaced.
    public var headers: HTTPHeaders
    /// What follows the head.
    public var body: Body

    /// The body of a response.
    public enum Body: Sendable {
        /// A complete body.
        case bytes([UInt8])
        /// A Server-Sent Events stream: the closure runs until it returns, the client goes away or the
        /// server stops (then the writer's `send` throws).
        case serverSentEvents(@Sendable (ServerSentEventWriter) async throws -> Void)
    }

    /// Creates a response with a complete body.
    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = .bytes(body)
    }

    /// The body bytes, or empty for a stream.
    public var bodyBytes: [UInt8] {
        if case .bytes(let bytes) = body { return bytes }
        return []
    }

    /// A plain-text response (`text/plain; charset=utf-8`).
    public static func text(_ text: String, status: HTTPStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"], body: Array(text.utf8))
    }

    /// A JSON response from bytes that already hold JSON.
    public static func json(bytes: [UInt8], status: HTTPStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: bytes)
    }

    /// The project's error shape: `{"error":"<message>","status":<code>}`.
    public static func error(_ status: HTTPStatus, _ message: String) -> HTTPResponse {
        var body = Array(#"{"error":"#.utf8)
        JSONWriter.appendQuoted(message, to: &body)
        body.append(contentsOf: Array(#","status":\#(status.code)}"#.utf8))
        return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
    }

    /// A Server-Sent Events response (`text/event-stream`); `produce` sends events through the writer.
    public static func serverSentEvents(
        headers: HTTPHeaders = [:], _ produce: @escaping @Sendable (ServerSentEventWriter) async throws -> Void
    ) -> HTTPResponse {
        var response = HTTPResponse(status: .ok, headers: headers)
        response.headers.replaceOrAdd(name: "Content-Type", value: "text/event-stream")
        response.headers.replaceOrAdd(name: "Cache-Control", value: "no-cache")
        response.body = .serverSentEvents(produce)
        return response
    }
}

/// An error a handler throws to answer with a JSON error response.
public struct HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The response status.
    public var status: HTTPStatus
    /// The message put in `{"error": ...}`.
    public var message: String
    /// Extra header fields for the response (e.g. `Allow`, `Retry-After`).
    public var headers: HTTPHeaders

    /// Creates an error.
    public init(_ status: HTTPStatus, _ message: String, headers: HTTPHeaders = [:]) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    /// The JSON error response for this error.
    public var response: HTTPResponse {
        var response = HTTPResponse.error(status, message)
        for field in headers { response.headers.replaceOrAdd(name: field.name, value: field.value) }
        return response
    }

    public var description: String { "HTTP \(status.code): \(message)" }
}
