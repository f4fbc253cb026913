import Foundation
import HTTPServer
import NATSClient
import ServiceKit

/// Checks the bearer tokens of HTTP requests: locally with `JWT_SECRET` when it is set (HS256,
/// iss `auth-service`, aud `microservices-nats`), otherwise by asking auth-service
/// (`auth.token.verify`, through the runtime's circuit breaker).
public struct TokenVerifier: Sendable {
    /// The result of a check.
    public enum Outcome: Sendable, Equatable {
        /// The token is valid for this user id (`sub`).
        case valid(userID: String)
        /// The token is missing, malformed, expired, for another audience ... (401).
        case invalid(String)
        /// The token could not be checked: auth-service is unavailable (503).
        case unavailable(String)
    }

    /// How tokens are checked.
    public enum Mode: Sendable {
        /// With the shared secret.
        case local(JWTAuthority)
        /// By a request to `auth.token.verify`; the closure sends the request (continuing the
        /// HTTP request's trace when given one).
        case remote(@Sendable (_ payload: [UInt8], _ context: RequestContext?) async throws -> Message)
    }

    /// The current Unix time in seconds (the default clock of local verification).
    public static let unixNow: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }

    /// The mode in use.
    public let mode: Mode

    /// A verifier in `mode`.
    public init(mode: Mode) { self.mode = mode }

    /// A local verifier for `secret` with the platform's issuer and audience.
    /// - Throws: `JWTError.secretTooShort`.
    public static func local(secret: String, now: @escaping @Sendable () -> Int64 = TokenVerifier.unixNow) throws(JWTError) -> TokenVerifier {
        TokenVerifier(mode: .local(try JWTAuthority(secret: Array(secret.utf8), issuer: NotificationService.tokenIssuer,
                                                     audience: NotificationService.tokenAudience, now: now)))
    }

    /// Checks `token` (`context`: the trace of a remote check).
    public func verify(_ token: String, context: RequestContext? = nil) async -> Outcome {
        guard !token.isEmpty else { return .invalid("missing bearer token") }
        switch mode {
        case .local(let authority):
            do {
                let claims = try authority.verify(token)
                guard let subject = claims.subject, !subject.isEmpty else { return .invalid("token has no subject") }
                return .valid(userID: subject)
            } catch {
                return .invalid(error.description)
            }
        case .remote(let send):
            let reply: Message
            do {
                reply = try await send(JSONValue.object(["token": .string(token)]).serialized, context)
            } catch {
                return .unavailable(AuthLookup.reason(for: error))
            }
            if let failure = reply.serviceError {
                if failure.code == 400 || failure.code == 401 { return .invalid(failure.description) }
                return .unavailable("auth error: \(failure.code) \(failure.description)")
            }
            guard case .object(let claims)? = JSONValue.parse(reply.payload), let subject = claims["sub"]?.stringValue,
                  !subject.isEmpty else {
                return .unavailable("auth error: verification reply has no subject")
            }
            return .valid(userID: subject)
        }
    }

    /// The user id of a request's `Authorization: Bearer <token>`.
    /// - Throws: `HTTPError` 401 (with `WWW-Authenticate`) for a missing or invalid token, 503
    ///   when the token cannot be checked now.
    public func authenticate(_ request: HTTPRequest, context: RequestContext? = nil) async throws(HTTPError) -> String {
        func refuse(_ message: String, _ error: String?) -> HTTPError {
            let challenge = #"Bearer realm="notification-service""# + (error.map { #", error="\#($0)""# } ?? "")
            return HTTPError(.unauthorized, message, headers: ["WWW-Authenticate": challenge])
        }
        guard let header = request.headers["Authorization"] else { throw refuse("missing bearer token", nil) }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw refuse("missing bearer token", "invalid_request") }
        switch await verify(parts[1].trimmingWhitespace(), context: context) {
        case .valid(let user): return user
        case .invalid: throw refuse("invalid or expired token", "invalid_token")
        case .unavailable(let why):
            throw HTTPError(.serviceUnavailable, "cannot verify the token now (\(why)); retry shortly", headers: ["Retry-After": "1"])
        }
    }
}


extension Substring {
    func trimmingWhitespace() -> String {
        String(self).trimmingCharacters(in: .whitespaces)
    }
}
