// The -ERR catalogue of nats-server 2.9.10 (nats-facts.md A.7): exact wire texts and which ones close.

/// Every `-ERR` a 2.9.10 server sends to a client, with its exact wire text.
///
/// The broker never writes error text itself: it picks a case and writes ``wireLine`` (or uses
/// ``Encoder/error(_:_:)``), then closes the connection when ``closesConnection`` is true.
public enum ServerError: Error, Sendable, Hashable {
    /// `Unknown Protocol Operation`: unknown op, op not allowed for clients, or a payload not
    /// terminated by CRLF. Closes.
    case unknownProtocolOperation
    /// `Authorization Violation`: bad credentials, first op not CONNECT under auth, `account` set. Closes.
    case authorizationViolation
    /// `Authentication Timeout`: no CONNECT within `auth_timeout`. Closes.
    case authenticationTimeout
    /// `Maximum Payload Violation`: PUB/HPUB size above `max_payload`. Closes.
    case maxPayloadViolation
    /// `maximum control line exceeded` (lower case, as 2.9.10 sends it). Closes.
    case maxControlLineExceeded
    /// `maximum connections exceeded`, sent right after INFO. Closes.
    case maxConnectionsExceeded
    /// `maximum account active connections exceeded` (JWT account limit). Closes.
    case maxAccountConnectionsExceeded
    /// `invalid client protocol`: CONNECT `protocol` other than 0 or 1. Closes.
    case invalidClientProtocol
    /// `no responders requires headers support`. Closes.
    case noRespondersRequiresHeaders
    /// `Stale Connection`: too many unanswered server PINGs. Closes.
    case staleConnection
    /// `Secure Connection - TLS Required`. Closes.
    case secureConnectionTLSRequired
    /// `User Authentication Expired` (JWT). Closes.
    case userAuthenticationExpired
    /// `Account Authentication Expired` (JWT). Closes.
    case accountAuthenticationExpired
    /// `User Authentication Revoked` (JWT). Closes.
    case userAuthenticationRevoked
    /// `Connection throttling is active. Please try again later.` (TLS handshake rate limit). Closes.
    case connectionThrottling
    /// `Invalid Subject`: bad SUB subject. The connection stays open.
    case invalidSubject
    /// `Invalid Publish Subject`: pedantic PUB/HPUB to a non-literal subject (still delivered).
    /// The connection stays open.
    case invalidPublishSubject
    /// `Permissions Violation for Publish to "<subject>"`. The connection stays open.
    case publishPermissionViolation(subject: String)
    /// `Permissions Violation for Subscription to "<subject>"`, with ` using queue "<queue>"`
    /// appended for a queue subscription. The connection stays open.
    case subscriptionPermissionViolation(subject: String, queue: String?)
    /// `Permissions Violation for Publish with Reply of "<reply>"`. The connection stays open.
    case replyPermissionViolation(reply: String)
    /// `maximum subscriptions exceeded`: the SUB is refused. The connection stays open.
    case maxSubscriptionsExceeded
    /// `Permissions Violation for Subscription to "<subject>", too many tokens`: a SUB subject
    /// longer than `max_sub_tokens`. The connection stays open.
    case tooManySubscriptionTokens(subject: String)

    /// The exact text between the quotes of `-ERR '...'`.
    public var text: String {
        switch self {
        case .unknownProtocolOperation: return "Unknown Protocol Operation"
        case .authorizationViolation: return "Authorization Violation"
        case .authenticationTimeout: return "Authentication Timeout"
        case .maxPayloadViolation: return "Maximum Payload Violation"
        case .maxControlLineExceeded: return "maximum control line exceeded"
        case .maxConnectionsExceeded: return "maximum connections exceeded"
        case .maxAccountConnectionsExceeded: return "maximum account active connections exceeded"
        case .invalidClientProtocol: return "invalid client protocol"
        case .noRespondersRequiresHeaders: return "no responders requires headers support"
        case .staleConnection: return "Stale Connection"
        case .secureConnectionTLSRequired: return "Secure Connection - TLS Required"
        case .userAuthenticationExpired: return "User Authentication Expired"
        case .accountAuthenticationExpired: return "Account Authentication Expired"
        case .userAuthenticationRevoked: return "User Authentication Revoked"
        case .connectionThrottling: return "Connection throttling is active. Please try again later."
        case .invalidSubject: return "Invalid Subject"
        case .invalidPublishSubject: return "Invalid Publish Subject"
        case .publishPermissionViolation(let subject):
            return "Permissions Violation for Publish to " + Self.goQuoted(subject)
        case .subscriptionPermissionViolation(let subject, let queue):
            var text = "Permissions Violation for Subscription to " + Self.goQuoted(subject)
            if let queue, !queue.isEmpty { text += " using queue " + Self.goQuoted(queue) }
            return text
        case .replyPermissionViolation(let reply):
            return "Permissions Violation for Publish with Reply of " + Self.goQuoted(reply)
        case .maxSubscriptionsExceeded: return "maximum subscriptions exceeded"
        case .tooManySubscriptionTokens(let subject):
            return "Permissions Violation for Subscription to " + Self.goQuoted(subject) + ", too many tokens"
        }
    }

    /// Whether 2.9.10 closes the connection after sending this error.
    public var closesConnection: Bool {
        switch self {
        case .unknownProtocolOperation, .authorizationViolation, .authenticationTimeout,
             .maxPayloadViolation, .maxControlLineExceeded, .maxConnectionsExceeded,
             .maxAccountConnectionsExceeded, .invalidClientProtocol, .noRespondersRequiresHeaders,
             .staleConnection, .secureConnectionTLSRequired, .userAuthenticationExpired,
             .accountAuthenticationExpired, .userAuthenticationRevoked, .connectionThrottling:
            return true
        case .invalidSubject, .invalidPublishSubject, .publishPermissionViolation,
             .subscriptionPermissionViolation, .replyPermissionViolation, .maxSubscriptionsExceeded,
             .tooManySubscriptionTokens:
            return false
        }
    }

    /// The full wire line `-ERR '<text>'\r\n`. Precomputed for the constant cases.
    public var wireLine: [UInt8] {
        switch self {
        case .unknownProtocolOperation: return Self.unknownProtocolOperationLine
        case .authorizationViolation: return Self.authorizationViolationLine
        case .maxPayloadViolation: return Self.maxPayloadViolationLine
        case .maxControlLineExceeded: return Self.maxControlLineExceededLine
        case .invalidSubject: return Self.invalidSubjectLine
        case .invalidPublishSubject: return Self.invalidPublishSubjectLine
        case .staleConnection: return Self.staleConnectionLine
        default: return Self.line(for: text)
        }
    }

    /// Every constant case (the ones without a subject), for tables and tests.
    public static let constantCases: [ServerError] = [
        .unknownProtocolOperation, .authorizationViolation, .authenticationTimeout,
        .maxPayloadViolation, .maxControlLineExceeded, .maxConnectionsExceeded,
        .maxAccountConnectionsExceeded, .invalidClientProtocol, .noRespondersRequiresHeaders,
        .staleConnection, .secureConnectionTLSRequired, .userAuthenticationExpired,
        .accountAuthenticationExpired, .userAuthenticationRevoked, .connectionThrottling,
        .invalidSubject, .invalidPublishSubject, .maxSubscriptionsExceeded,
    ]

    static let unknownProtocolOperationLine = line(for: "Unknown Protocol Operation")
    static let authorizationViolationLine = line(for: "Authorization Violation")
    static let maxPayloadViolationLine = line(for: "Maximum Payload Violation")
    static let maxControlLineExceededLine = line(for: "maximum control line exceeded")
    static let invalidSubjectLine = line(for: "Invalid Subject")
    static let invalidPublishSubjectLine = line(for: "Invalid Publish Subject")
    static let staleConnectionLine = line(for: "Stale Connection")

    static func line(for text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 9)
        bytes.append(contentsOf: "-ERR '".utf8)
        bytes.append(contentsOf: text.utf8)
        bytes.append(contentsOf: "'\r\n".utf8)
        return bytes
    }

    /// Quotes `value` the way Go's `%q` does for the strings that reach this catalogue:
    /// double quotes, `"` and `\` escaped, control characters as `\n`, `\t`, ... or `\xNN`.
    /// Printable non-ASCII characters are kept as they are.
    public static func goQuoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{07}": out += "\\a"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\u{0B}": out += "\\v"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }
}

extension ServerError {
    /// The -ERR the broker sends for a client parse error, or nil when 2.9.10 closes without one
    /// (``ClientParseError/badArguments(_:)``). Every non-nil result closes the connection.
    public init?(_ parseError: ClientParseError) {
        switch parseError {
        case .unknownOperation: self = .unknownProtocolOperation
        case .authorizationViolation: self = .authorizationViolation
        case .maxControlLineExceeded: self = .maxControlLineExceeded
        case .maxPayloadViolation: self = .maxPayloadViolation
        case .badArguments: return nil
        }
    }
}
