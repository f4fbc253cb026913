import Foundation
import HTTPServer
import ServiceKit

/// Who may read which statistics over HTTP.
///
/// The rule is per endpoint: an answer that names users needs a bearer token, an answer made
/// only of aggregates does not.
/// - `GET /v1/stats/counts`, `/unique_users`, `/latency`, `/ingest`: public (totals, estimates
///   and percentiles; no user id in them).
/// - `GET /v1/stats`, `GET /v1/stats/all` and `GET /v1/stats/top`: a valid token (HS256 with
///   `JWT_SECRET`, issued by auth-service for the platform's audience), else 401. The most
///   active users are then shown as counts only: the caller's own entry keeps its user id, every
///   other entry loses it, and `users.you` holds the caller's own counter (null when the summary
///   does not track them; their count is then at most `unlisted_max`).
///
/// The user ids themselves stay readable on NATS (`analytics.query`), for the identities the
/// broker's permissions let send it; no HTTP token shows them.
struct StatsAccess: Sendable {
    /// How tokens are checked: with the shared secret, or not at all (why).
    enum Verification: Sendable {
        case local(JWTAuthority)
        case unavailable(String)
    }

    let verification: Verification

    /// Checks tokens with `secret` (`JWT_SECRET`), the issuer and the audience auth-service
    /// puts in its tokens; without a secret every request that needs a token answers 503.
    init(secret: String?) {
        guard let secret else {
            verification = .unavailable("JWT_SECRET is not set")
            return
        }
        do {
            verification = .local(try JWTAuthority(secret: Array(secret.utf8), issuer: "auth-service",
                                                   audience: "microservices-nats"))
        } catch {
            verification = .unavailable(error.description)
        }
    }

    /// Whether the answer for `metric` (a ``Metric`` name or `all`) names users.
    static func needsToken(_ metric: String) -> Bool {
        metric == "all" || metric == Metric.top.rawValue
    }

    /// The user id (`sub`) of a request's `Authorization: Bearer <token>`.
    /// - Throws: `HTTPError` 401 (with `WWW-Authenticate`) for a missing, malformed, forged or
    ///   expired token, or one without a subject; 503 when the service has no `JWT_SECRET` to
    ///   check it with.
    func viewer(_ request: HTTPRequest) throws(HTTPError) -> String {
        func refuse(_ message: String, _ error: String?) -> HTTPError {
            let challenge = #"Bearer realm="analytics-service""# + (error.map { #", error="\#($0)""# } ?? "")
            return HTTPError(.unauthorized, message, headers: ["WWW-Authenticate": challenge])
        }
        guard let header = request.headers["Authorization"] else { throw refuse("missing bearer token", nil) }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw refuse("missing bearer token", "invalid_request") }
        switch verification {
        case .unavailable(let why):
            throw HTTPError(.serviceUnavailable, "per-user statistics are unavailable: tokens cannot be verified (\(why))")
        case .local(let authority):
            let token = parts[1].trimmingCharacters(in: .whitespaces)
            guard let claims = try? authority.verify(token), let subject = claims.subject, !subject.isEmpty else {
                throw refuse("invalid or expired token", "invalid_token")
            }
            return subject
        }
    }

    /// `answer` (the engine's answer for `metric`) as `viewer` may see it: the `top` object's
    /// user list reduced to counts but for the viewer's own entry, and `users.you` added.
    static func shown(_ answer: JSONValue, metric: String, viewer: String, engine: AnalyticsEngine) -> JSONValue {
        guard case .object(var members) = answer else { return answer }
        if metric == Metric.top.rawValue {
            return redactingTop(members, viewer: viewer, engine: engine)
        }
        if metric == "all", case .object(let top)? = members["top"] {
            members["top"] = redactingTop(top, viewer: viewer, engine: engine)
        }
        return .object(members)
    }

    private static func redactingTop(_ top: [String: JSONValue], viewer: String, engine: AnalyticsEngine) -> JSONValue {
        var top = top
        guard case .object(var users)? = top["users"] else { return .object(top) }
        if case .array(let items)? = users["items"] {
            users["items"] = .array(items.map { item in
                guard case .object(var entry) = item, entry["key"] != .string(viewer) else { return item }
                entry["key"] = nil
                return .object(entry)
            })
        }
        // Every tracked counter is searched, not only the top N: the viewer may be further down.
        if let own = engine.topUsers(engine.options.topCapacity).first(where: { $0.key == viewer }) {
            users["you"] = .object(["key": .string(own.key), "count": .int(Int64(clamping: own.count)),
                                    "error": .int(Int64(clamping: own.error))])
        } else {
            users["you"] = .null
        }
        top["users"] = .object(users)
        return .object(top)
    }
}
