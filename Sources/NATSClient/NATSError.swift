// Errors thrown by the client, one case per failure a caller can act on.

/// An error from the NATS client.
///
/// Each case names one failure a caller can tell apart and act on; ``description`` is a
/// one-line, human-readable explanation.
public enum NATSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A server URL could not be parsed. The associated value is the URL and the reason.
    case invalidURL(String)
    /// Nothing is listening at `host:port` (ECONNREFUSED).
    case connectionRefused(host: String, port: Int)
    /// Connecting failed for another reason (resolution, network unreachable, reset, ...).
    case connectionFailed(String)
    /// The operation did not complete within its deadline.
    case timeout
    /// The server rejected the credentials (`-ERR 'Authorization Violation'`).
    case authorizationViolation
    /// The server denied a publish or subscribe (`-ERR 'Permissions Violation ...'`); the text is the server's.
    case permissionViolation(String)
    /// Any other `-ERR` the server sent; the associated value is the text inside the quotes.
    case serverError(String)
    /// The server sent bytes that are not NATS protocol.
    case protocolError(String)
    /// The client was closed (by ``NATSClient/close()``, ``NATSClient/drain(timeout:)`` or after
    /// reconnecting failed for good).
    case closed
    /// The connection was lost while this operation waited for the server (a flush whose PING may
    /// not have reached the server). Publishes queued after the loss are kept for the reconnect.
    case disconnected
    /// Reconnecting gave up after the configured number of attempts.
    case reconnectFailed(attempts: Int)
    /// A request found no subscriber on its subject (the server answered with status 503).
    case noResponders(subject: String)
    /// The message (headers plus payload) is larger than the server's `max_payload`.
    case maxPayloadExceeded(size: Int, limit: Int)
    /// A publish made while disconnected did not fit in the reconnect buffer.
    case reconnectBufferExceeded(limit: Int)
    /// A subject, queue group or argument is not valid; the text says which and why.
    case invalidArgument(String)
    /// Re-establishing a subscription after a reconnect failed; the text is the server's error.
    case resubscribeFailed(subject: String, reason: String)
    /// A JSON payload could not be encoded or decoded; the text is the underlying error.
    case json(String)
    /// The task waiting for the operation was cancelled (the operation itself may still happen).
    case cancelled

    /// A one-line explanation of the error.
    public var description: String {
        switch self {
        case .invalidURL(let text): return "invalid server URL: \(text)"
        case .connectionRefused(let host, let port): return "connection refused by \(host):\(port) (is a NATS server running there?)"
        case .connectionFailed(let text): return "connection failed: \(text)"
        case .timeout: return "timed out"
        case .authorizationViolation: return "authorization violation: the server rejected the credentials"
        case .permissionViolation(let text): return "permission denied by the server: \(text)"
        case .serverError(let text): return "server error: \(text)"
        case .protocolError(let text): return "protocol error: \(text)"
        case .closed: return "the client is closed"
        case .disconnected: return "the connection was lost before the server answered"
        case .reconnectFailed(let attempts): return "reconnecting failed after \(attempts) attempts"
        case .noResponders(let subject): return "no responders are subscribed to \(subject)"
        case .maxPayloadExceeded(let size, let limit): return "message of \(size) bytes exceeds the server's max_payload of \(limit) bytes"
        case .reconnectBufferExceeded(let limit): return "disconnected and the reconnect buffer (\(limit) bytes) is full"
        case .invalidArgument(let text): return "invalid argument: \(text)"
        case .resubscribeFailed(let subject, let reason): return "resubscribing to \(subject) after reconnect failed: \(reason)"
        case .json(let text): return "JSON: \(text)"
        case .cancelled: return "cancelled"
        }
    }

    /// Converts any error from a continuation to the client's error type.
    static func from(_ error: any Error) -> NATSError {
        if let error = error as? NATSError { return error }
        if error is CancellationError { return .cancelled }
        return .protocolError("\(error)")
    }

    /// Maps the text of a server `-ERR` to the matching case (as nats.go does, case-insensitively).
    static func fromServer(_ text: String) -> NATSError {
        let lower = text.lowercased()
        if lower.hasPrefix("authorization violation") || lower.contains("authentication") {
            return .authorizationViolation
        }
        if lower.hasPrefix("permissions violation") { return .permissionViolation(text) }
        return .serverError(text)
    }
}
