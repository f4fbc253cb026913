// What the request parser reports when a request cannot be served. No Foundation (fuzz target).

/// Why a request could not be parsed, with the status the server answers it with.
///
/// After any of these the connection's framing is lost, so the server answers once and closes.
package enum HTTPParseError: Error, Equatable, Sendable {
    /// Request line plus headers (or the chunked trailers) exceed the head limit: 431.
    case headTooLarge
    /// The body exceeds the route's limit: 413.
    case bodyTooLarge
    /// Malformed syntax or framing: 400, with what was wrong.
    case malformed(String)
    /// A transfer coding other than `chunked`: 501.
    case unsupportedTransferEncoding(String)
    /// An HTTP major version other than 1: 505.
    case unsupportedVersion

    /// The response status for this error.
    package var status: HTTPStatus {
        switch self {
        case .headTooLarge: .requestHeaderFieldsTooLarge
        case .bodyTooLarge: .contentTooLarge
        case .malformed: .badRequest
        case .unsupportedTransferEncoding: .notImplemented
        case .unsupportedVersion: .httpVersionNotSupported
        }
    }

    /// The message put in the JSON error body.
    package var message: String {
        switch self {
        case .headTooLarge: "http: request line and headers too large"
        case .bodyTooLarge: "http: request body too large"
        case .malformed(let what): "http: \(what)"
        case .unsupportedTransferEncoding(let coding): "http: unsupported transfer-encoding '\(coding)'"
        case .unsupportedVersion: "http: unsupported HTTP version"
        }
    }
}
