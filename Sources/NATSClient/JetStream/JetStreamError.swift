// Errors of the JetStream API, one case per failure a caller can act on.

/// An error from a JetStream call.
///
/// API errors keep the server's `err_code` (for example 10059 stream not found, 10014 consumer not
/// found, 10071 wrong last sequence) so callers can tell them apart without parsing text.
public enum JetStreamError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with an API error: `code` is HTTP-like (400, 404, 500, 503), `errCode`
    /// the JetStream error number, `description` the server's text.
    case api(code: Int, errCode: Int, description: String)
    /// Nobody answered on the subject (status 503): JetStream is not enabled on the account, or no
    /// stream captures the published subject.
    case noResponders(subject: String)
    /// The server did not answer within the call's timeout.
    case timeout
    /// A pull request or consumer ended with a status the caller must handle (`409 Consumer
    /// Deleted`, `409 Consumer is push based`, `409 Exceeded MaxWaiting`, `400 Bad Request`...).
    case status(code: Int, description: String)
    /// A KV key has no value (never written, deleted or purged).
    case keyNotFound(key: String)
    /// A KV create found the key already holding a value, or an update named a revision that is
    /// not the key's latest.
    case wrongLastRevision(key: String, description: String)
    /// An argument was refused before anything was sent; the text says which and why.
    case invalidArgument(String)
    /// The server's reply could not be understood; the text says what was wrong.
    case invalidResponse(String)
    /// The underlying connection failed (closed, disconnected, payload too large...).
    case client(NATSError)
    /// The waiting task was cancelled (the operation itself may still happen on the server).
    case cancelled

    /// The JetStream `err_code` of an API error, else nil.
    public var errCode: Int? {
        if case .api(_, let errCode, _) = self { return errCode }
        return nil
    }

    /// A one-line explanation of the error.
    public var description: String {
        switch self {
        case .api(let code, let errCode, let text): return "JetStream API error \(code) (err_code \(errCode)): \(text)"
        case .noResponders(let subject): return "no JetStream responders on \(subject) (JetStream not enabled, or no stream for the subject)"
        case .timeout: return "JetStream request timed out"
        case .status(let code, let text): return "JetStream status \(code): \(text)"
        case .keyNotFound(let key): return "key \(key) not found"
        case .wrongLastRevision(let key, let text): return "key \(key): wrong last revision (\(text))"
        case .invalidArgument(let text): return "invalid argument: \(text)"
        case .invalidResponse(let text): return "invalid JetStream response: \(text)"
        case .client(let error): return error.description
        case .cancelled: return "cancelled"
        }
    }

    /// Converts a client error (request, publish, flush) to the JetStream error it means.
    static func from(_ error: NATSError, subject: String) -> JetStreamError {
        switch error {
        case .noResponders: return .noResponders(subject: subject)
        case .timeout: return .timeout
        case .cancelled: return .cancelled
        case .invalidArgument(let text): return .invalidArgument(text)
        default: return .client(error)
        }
    }

    /// Converts any error from a child task or continuation.
    static func from(_ error: any Error) -> JetStreamError {
        if let error = error as? JetStreamError { return error }
        if let error = error as? NATSError { return from(error, subject: "") }
        if error is CancellationError { return .cancelled }
        return .invalidResponse("\(error)")
    }
}

/// The `error` object of an API response.
struct APIErrorBody: Decodable, Sendable {
    var code: Int
    var errCode: Int?
    var description: String?

    enum CodingKeys: String, CodingKey {
        case code
        case errCode = "err_code"
        case description
    }
}

/// The part of every API response that says whether it failed.
struct APIResponseEnvelope: Decodable, Sendable {
    var type: String?
    var error: APIErrorBody?
}
