import NATSClient
import ServiceKit

/// Turns the outcome of an `auth.user.get` request into the text of a login notification:
/// personalised with the user's name when auth-service answered with one, the generic text with
/// a `fallback_reason` otherwise.
public enum AuthLookup {
    /// The text and whether (or why not) it is personalised.
    public struct Outcome: Sendable, Equatable {
        /// The notification text.
        public var message: String
        /// True when it uses the name from auth-service.
        public var personalized: Bool
        /// Why it is generic (nil when personalised).
        public var fallbackReason: String?
    }

    /// A personalised text for a reply carrying a usable `name`; the generic text for a service
    /// error reply (`auth error: <code> <description>`) or a reply without a name.
    public static func outcome(reply: Message) -> Outcome {
        if let failure = reply.serviceError {
            return fallback("auth error: \(failure.code) \(failure.description)")
        }
        guard case .object(let user)? = JSONValue.parse(reply.payload) else { return fallback("auth error: reply is not a JSON object") }
        guard let name = user["name"]?.stringValue, let message = WelcomeMessage.personalized(name: name) else {
            return fallback("auth error: user has no usable name")
        }
        return Outcome(message: message, personalized: true, fallbackReason: nil)
    }

    /// The generic text for a request that failed with `error`.
    public static func outcome(error: any Error) -> Outcome { fallback(reason(for: error)) }

    /// The generic text with `reason`.
    public static func fallback(_ reason: String) -> Outcome {
        Outcome(message: WelcomeMessage.generic, personalized: false, fallbackReason: reason)
    }

    /// A short reason for a failed request to auth-service: `circuit open`,
    /// `auth unavailable: timeout`, `auth unavailable: no responders` ...
    public static func reason(for error: any Error) -> String {
        switch error {
        case let breaker as CircuitBreakerError:
            switch breaker {
            case .open: return "circuit open"
            case .timedOut: return "auth unavailable: timeout"
            }
        case let nats as NATSError:
            switch nats {
            case .timeout: return "auth unavailable: timeout"
            case .noResponders: return "auth unavailable: no responders"
            default: return "auth unavailable: \(nats.description)"
            }
        case ServiceRuntimeError.natsUnavailable:
            return "auth unavailable: not connected to NATS"
        default:
            return "auth unavailable: \(error)"
        }
    }

    /// A label for the `reason` metric label (a small fixed set).
    static func metricLabel(_ reason: String?) -> String {
        guard let reason else { return "none" }
        if reason == "circuit open" { return "circuit_open" }
        if reason.hasSuffix(": timeout") { return "timeout" }
        if reason.hasSuffix(": no responders") { return "no_responders" }
        if reason.hasPrefix("auth error") { return "auth_error" }
        return "unavailable"
    }
}
