import Formats
import Foundation
import HTTPServer
import NATSClient
import ServiceKit

/// The auth service: registration, login with JWT access tokens, user lookups, over HTTP
/// (`/v1/...`) and NATS (`auth.user.get`, `auth.token.verify`), with `user.registered` and
/// `user.logged_in` events.
///
/// With `EVENT_DELIVERY=at-least-once` (the default) the users live in the KV bucket
/// `auth_users` that every instance shares (each keeps a replica under `DATA_DIR`), and the
/// events go through a transactional outbox to the `USER_EVENTS` stream; with `at-most-once`
/// each instance has its own users and publishes the events as core NATS messages.
///
/// Create it (opens the user store and the signing key), ``install(on:)`` it on a
/// ``ServiceRuntime``, then run the runtime. ``main(arguments:environment:)`` does all of that.
public final class AuthService: Sendable {
    /// `iss` of every token.
    public static let issuer = "auth-service"
    /// `aud` of every token.
    public static let audience = "microservices-nats"
    /// Name in `$SRV`.
    public static let defaultServiceName = "auth"
    /// Version in `$SRV.INFO`.
    public static let version = "1.0.0"
    /// Largest JSON body accepted on `POST /v1/users` and `POST /v1/login`.
    public static let bodyLimit = 16 * 1024

    /// The users.
    public let directory: UserDirectory
    /// Password hashing.
    public let hasher: PasswordHasher
    /// Token issue and verification.
    public let tokens: JWTAuthority
    /// Access token lifetime in seconds.
    public let tokenLifetime: Int
    /// Failed logins per account (normalized email).
    public let accountLimiter: LoginLimiter
    /// Failed logins per client address.
    public let addressLimiter: LoginLimiter
    /// The events not yet acknowledged by the stream (at-least-once mode only).
    public let outbox: Outbox?
    private let logger: ServiceLogger

    /// Opens the store under `DATA_DIR` (and the outbox in at-least-once mode) and the signing
    /// key (`JWT_SECRET`, or a key generated in `DATA_DIR` with a prominent warning).
    /// - Throws: ``UserDirectoryError``, ``OutboxError``, ``SigningKey/Failure``, `JWTError`, `CryptoError`.
    public init(configuration: Configuration, logger: ServiceLogger,
                clock: @escaping @Sendable () -> Double) throws {
        self.logger = logger
        let dataDirectory = configuration[AuthSettings.dataDirectory]
        let key = try SigningKey.resolve(configured: configuration[StandardSettings.jwtSecret], dataDirectory: dataDirectory)
        if let path = key.generatedPath {
            logger.warning("JWT_SECRET IS NOT SET: tokens are signed with a key \(key.created ? "generated now and " : "")kept in \(path). "
                           + "Other services cannot verify them unless they get the same secret; set JWT_SECRET for any real deployment.",
                           ["key_file": .string(path), "generated": .bool(key.created)])
        }
        tokens = try JWTAuthority(secret: key.secret, issuer: Self.issuer, audience: Self.audience)
        tokenLifetime = configuration[AuthSettings.tokenLifetime]
        hasher = try PasswordHasher(iterations: configuration[AuthSettings.passwordIterations])
        let window = Double(configuration[AuthSettings.failureWindow])
        let maxKeys = configuration[AuthSettings.limiterMaxKeys]
        accountLimiter = LoginLimiter(policy: .init(maxFailures: configuration[AuthSettings.maxFailuresPerAccount],
                                                    window: window, maxKeys: maxKeys), now: clock)
        addressLimiter = LoginLimiter(policy: .init(maxFailures: configuration[AuthSettings.maxFailuresPerAddress],
                                                    window: window, maxKeys: maxKeys), now: clock)
        directory = try UserDirectory(directory: dataDirectory)
        if configuration[StandardSettings.deliveryMode] == .atLeastOnce {
            let outbox = try Outbox(directory: dataDirectory)
            // Registrations not yet in the shared bucket can log in here meanwhile.
            for user in outbox.pendingCreates() { directory.addProvisional(user) }
            self.outbox = outbox
        } else {
            outbox = nil
            if FileManager.default.fileExists(atPath: dataDirectory + "/outbox.log"),
               let left = try? Outbox(directory: dataDirectory) {
                if left.pendingCount > 0 || !left.pendingCreates().isEmpty {
                    logger.warning("the outbox holds events (and registrations) of an at-least-once run; they are sent when the service runs with EVENT_DELIVERY=at-least-once again",
                                   ["events": .int(Int64(left.pendingCount)), "registrations": .int(Int64(left.pendingCreates().count))])
                }
                left.close()
            }
        }
        logger.info("user store open", ["users": .int(Int64(directory.count)), "data_dir": .string(dataDirectory),
                                        "password_iterations": .int(Int64(hasher.iterations)),
                                        "outbox_pending": .int(Int64(outbox?.pendingCount ?? 0))])
    }

    /// Registers the HTTP routes, the NATS endpoints, the storage readiness check and the store's
    /// shutdown action on `runtime`.
    public func install(on runtime: ServiceRuntime) {
        let m = runtime.metrics
        m.declareCounter("auth_registrations_total", help: "users registered")
        m.declareCounter("auth_logins_total", help: "login attempts by result (success, failure, limited)")
        m.declareCounter("auth_events_published_total", help: "events published by subject")
        let shared = outbox.map { SharedDirectory(outbox: $0, directory: directory, runtime: runtime) }
        if let shared {
            m.declareCounter("auth_events_failed_total", help: "event publish attempts that failed and will be retried, by subject")
            shared.install()
        } else {
            m.declareCounter("auth_events_failed_total", help: "events that could not be published, by subject")
        }

        runtime.route(.post, "/v1/users", bodyLimit: Self.bodyLimit) { [self] request, context in
            try await register(request, context, runtime, shared)
        }
        runtime.route(.post, "/v1/login", bodyLimit: Self.bodyLimit) { [self] request, context in
            try await login(request, context, runtime, shared)
        }
        runtime.route(.get, "/v1/users/me") { [self] request, _ in
            let (_, user) = try authenticate(request)
            return .json(bytes: user.publicView.json)
        }
        runtime.route(.get, "/v1/users/{id}") { [self] request, _ in
            let (_, caller) = try authenticate(request)
            return .json(bytes: try userByID(request.pathParameters["id"], caller: caller).json)
        }
        runtime.endpoint("user-get", subject: "auth.user.get") { [self] request, _ in
            try await request.respond(try userGet(request.payload).json)
        }
        runtime.endpoint("token-verify", subject: "auth.token.verify") { [self] request, _ in
            try await request.respond(try tokenVerify(request.payload))
        }
        runtime.addReadinessCheck("storage") { [directory, outbox] in directory.isOpen && outbox?.isOpen != false }
        runtime.onShutdown("user store") { [directory] in directory.close() }
        if let outbox { runtime.onShutdown("outbox") { outbox.close() } }
    }

    // MARK: HTTP handlers

    private func register(_ request: HTTPRequest, _ context: RequestContext, _ runtime: ServiceRuntime,
                          _ shared: SharedDirectory?) async throws -> HTTPResponse {
        let body = try Self.jsonObject(request)
        let email = EmailAddress.normalized(try Self.string(body, "email"))
        let password = try Self.string(body, "password")
        let rawName = try Self.string(body, "name")
        let name: String
        do throws(ValidationFailure) {
            try EmailAddress.validate(email)
            name = try DisplayName.validated(rawName)
            try PasswordPolicy.validate(password, email: email)
        } catch {
            return Self.errorResponse(.unprocessableContent, error.message, ["field": .string(error.field), "rule": .string(error.rule)])
        }
        guard directory.reserve(email: email) else {
            return Self.errorResponse(.conflict, "a user with this email already exists", ["field": .string("email")])
        }
        let record: PasswordRecord
        do {
            record = try await hasher.makeRecord(password)
        } catch {
            directory.release(email: email)
            if error is HashingBusy { throw Self.busy }
            throw error
        }
        let user = User(id: UUID().uuidString.lowercased(), email: email, name: name, createdAt: Self.now(), password: record)
        if let shared {
            let event = Self.event("user.registered", user: user, request: request, context: context)
            let created: Bool
            do {
                created = try await shared.register(user, event: event)
            } catch {
                context.logger.error("registration not stored", ["error": .string("\(error)")])
                throw HTTPError(.internalServerError, "the registration could not be stored; retry")
            }
            guard created else {
                return Self.errorResponse(.conflict, "a user with this email already exists", ["field": .string("email")])
            }
            runtime.metrics.increment("auth_registrations_total")
            context.logger.info("user registered", ["user_id": .string(user.id), "provisional": .bool(directory.isProvisional(id: user.id))])
        } else {
            try directory.insert(user)
            runtime.metrics.increment("auth_registrations_total")
            context.logger.info("user registered", ["user_id": .string(user.id)])
            await publish(event: "user.registered", user: user, request: request, context: context, runtime: runtime)
        }
        var response = HTTPResponse.json(bytes: user.publicView.json, status: .created)
        response.headers.replaceOrAdd(name: "Location", value: "/v1/users/\(user.id)")
        return response
    }

    private func login(_ request: HTTPRequest, _ context: RequestContext, _ runtime: ServiceRuntime,
                       _ shared: SharedDirectory?) async throws -> HTTPResponse {
        let body = try Self.jsonObject(request)
        let email = EmailAddress.normalized(try Self.string(body, "email"))
        let password = try Self.string(body, "password")
        let address = Self.clientAddress(request)
        let accountKey = "account:" + email, addressKey = "address:" + address

        if let wait = accountLimiter.acquire(accountKey) {
            return limited(wait, runtime, context, reason: "account")
        }
        if let wait = addressLimiter.acquire(addressKey) {
            accountLimiter.forgive(accountKey)
            return limited(wait, runtime, context, reason: "address")
        }
        let user = directory.user(email: email)
        let valid: Bool
        do {
            valid = try await hasher.verify(password, against: user?.password)
        } catch {
            accountLimiter.forgive(accountKey)
            addressLimiter.forgive(addressKey)
            throw Self.busy
        }
        guard valid, let user else {
            runtime.metrics.increment("auth_logins_total", labels: [("result", "failure")])
            context.logger.info("login failed", ["client_address": .string(address)])
            var response = Self.errorResponse(.unauthorized, "invalid email or password")
            response.headers.replaceOrAdd(name: "WWW-Authenticate", value: #"Bearer realm="auth-service""#)
            return response
        }
        accountLimiter.reset(accountKey)
        addressLimiter.forgive(addressKey)
        let token = try tokens.issue(subject: user.id, lifetime: Int64(tokenLifetime),
                                     custom: ["email": .string(user.email), "name": .string(user.name)])
        if let shared {
            do {
                try await shared.recordLogin(Self.event("user.logged_in", user: user, request: request, context: context))
            } catch {
                context.logger.error("login event not stored", ["error": .string("\(error)")])
                throw HTTPError(.internalServerError, "the login could not be recorded; retry")
            }
            runtime.metrics.increment("auth_logins_total", labels: [("result", "success")])
            context.logger.info("user logged in", ["user_id": .string(user.id)])
        } else {
            runtime.metrics.increment("auth_logins_total", labels: [("result", "success")])
            context.logger.info("user logged in", ["user_id": .string(user.id)])
            await publish(event: "user.logged_in", user: user, request: request, context: context, runtime: runtime)
        }
        let answer = JSONValue.object(["access_token": .string(token), "token_type": .string("Bearer"),
                                       "expires_in": .int(Int64(tokenLifetime))])
        var response = HTTPResponse.json(bytes: answer.serialized)
        response.headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
        return response
    }

    private func limited(_ seconds: Int, _ runtime: ServiceRuntime, _ context: RequestContext, reason: String) -> HTTPResponse {
        runtime.metrics.increment("auth_logins_total", labels: [("result", "limited")])
        context.logger.notice("login refused: too many failed attempts", ["limit": .string(reason), "retry_after": .int(Int64(seconds))])
        var response = Self.errorResponse(.tooManyRequests, "too many failed logins; retry later",
                                          ["retry_after": .int(Int64(seconds))])
        response.headers.replaceOrAdd(name: "Retry-After", value: String(seconds))
        return response
    }

    /// The token's claims and user for a request with `Authorization: Bearer <token>`.
    /// - Throws: `HTTPError` 401 (with `WWW-Authenticate`) when the header is missing, the token
    ///   does not verify, or its user no longer exists.
    func authenticate(_ request: HTTPRequest) throws(HTTPError) -> (JWTClaims, User) {
        func refuse(_ message: String, _ error: String?) -> HTTPError {
            let challenge = #"Bearer realm="auth-service""# + (error.map { #", error="\#($0)""# } ?? "")
            return HTTPError(.unauthorized, message, headers: ["WWW-Authenticate": challenge])
        }
        guard let header = request.headers["Authorization"] else { throw refuse("missing bearer token", nil) }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw refuse("missing bearer token", "invalid_request") }
        let claims: JWTClaims
        do {
            claims = try tokens.verify(parts[1].trimmingCharacters(in: .whitespaces))
        } catch {
            throw refuse("invalid or expired token", "invalid_token")
        }
        guard let id = claims.subject, let user = directory.user(id: id) else { throw refuse("invalid or expired token", "invalid_token") }
        return (claims, user)
    }

    /// `GET /v1/users/{id}`: the record of `id` when it is the caller's own, and 404 for any
    /// other id, the same answer as for an id nobody has.
    ///
    /// Another user's record is refused whole rather than shown as a public profile without the
    /// email: nothing in the platform needs it over HTTP (notification-service reads names over
    /// NATS, under its own identity), a display name is personal data too (often a real name),
    /// and an answer identical to "no such user" does not even tell whether the id exists.
    /// - Throws: `HTTPError` 404 for any id other than the caller's.
    func userByID(_ id: String?, caller: User) throws(HTTPError) -> PublicUser {
        guard let id, id == caller.id else { throw HTTPError(.notFound, "user not found") }
        return caller.publicView
    }

    // MARK: NATS endpoints

    /// `auth.user.get`: `{"id": ...}` or `{"email": ...}` to the user.
    /// - Throws: ``ServiceError`` 400 for a bad request, 404 when there is no such user.
    public func userGet(_ payload: [UInt8]) throws(ServiceError) -> PublicUser {
        guard case .object(let request)? = JSONValue.parse(payload) else {
            throw ServiceError(code: 400, #"request must be a JSON object {"id":...} or {"email":...}"#)
        }
        let user: User?
        if let id = request["id"] {
            guard let id = id.stringValue else { throw ServiceError(code: 400, "id must be a string") }
            user = directory.user(id: id)
        } else if let email = request["email"] {
            guard let email = email.stringValue else { throw ServiceError(code: 400, "email must be a string") }
            user = directory.user(email: EmailAddress.normalized(email))
        } else {
            throw ServiceError(code: 400, #"request must have "id" or "email""#)
        }
        guard let user else { throw ServiceError(code: 404, "user not found") }
        return user.publicView
    }

    /// `auth.token.verify`: a token (the raw payload, or `{"token": ...}`) to its claims as JSON.
    /// - Throws: ``ServiceError`` 401 when the token does not verify.
    public func tokenVerify(_ payload: [UInt8]) throws(ServiceError) -> [UInt8] {
        var token = String(decoding: payload, as: UTF8.self).trimmingWhitespace()
        if token.hasPrefix("{") {
            guard case .object(let o)? = JSONValue.parse(payload), let t = o["token"]?.stringValue else {
                throw ServiceError(code: 400, #"request must be a token or {"token":...}"#)
            }
            token = t
        }
        let claims: JWTClaims
        do {
            claims = try tokens.verify(token)
        } catch {
            throw ServiceError(code: 401, "invalid token: \(error.description)")
        }
        var object = claims.custom
        if let v = claims.subject { object["sub"] = .string(v) }
        if let v = claims.issuer { object["iss"] = .string(v) }
        if let v = claims.audience { object["aud"] = v.count == 1 ? .string(v[0]) : .array(v.map(JSONValue.string)) }
        if let v = claims.expiresAt { object["exp"] = .int(v) }
        if let v = claims.issuedAt { object["iat"] = .int(v) }
        if let v = claims.notBefore { object["nbf"] = .int(v) }
        if let v = claims.id { object["jti"] = .string(v) }
        return JSONValue.object(object).serialized
    }

    // MARK: Events

    /// The event `subject` about `user` for the outbox, with a new `event_id` and the request's span.
    static func event(_ subject: String, user: User, request: HTTPRequest, context: RequestContext) -> OutboxEvent {
        let (eventID, payload) = eventPayload(user: user, request: request)
        return OutboxEvent(subject: subject, eventID: eventID, userID: user.id,
                           payload: String(decoding: payload, as: UTF8.self), traceparent: context.trace.traceparent)
    }

    static func eventPayload(user: User, request: HTTPRequest) -> (eventID: String, payload: [UInt8]) {
        let eventID = UUID().uuidString.lowercased()
        let event = JSONValue.object([
            "event_id": .string(eventID), "user_id": .string(user.id), "email": .string(user.email),
            "name": .string(user.name), "time": .string(Self.now()), "client_address": .string(Self.clientAddress(request)),
        ])
        return (eventID, event.serialized)
    }

    /// At-most-once: publishes the event as a core NATS message; a failure is logged and counted.
    private func publish(event subject: String, user: User, request: HTTPRequest, context: RequestContext,
                         runtime: ServiceRuntime) async {
        let (eventID, payload) = Self.eventPayload(user: user, request: request)
        do {
            try await runtime.publish(payload, subject: subject, context: context)
            runtime.metrics.increment("auth_events_published_total", labels: [("subject", subject)])
        } catch {
            runtime.metrics.increment("auth_events_failed_total", labels: [("subject", subject)])
            context.logger.warning("event not published", ["subject": .string(subject), "event_id": .string(eventID),
                                                           "user_id": .string(user.id), "error": .string("\(error)")])
        }
    }

    // MARK: Helpers

    static let busy = HTTPError(.serviceUnavailable, "password hashing is saturated; retry shortly", headers: ["Retry-After": "1"])

    static func jsonObject(_ request: HTTPRequest) throws(HTTPError) -> [String: JSONValue] {
        guard case .object(let object)? = JSONValue.parse(request.body) else {
            throw HTTPError(.badRequest, "the body must be a JSON object")
        }
        return object
    }

    static func string(_ object: [String: JSONValue], _ key: String) throws(HTTPError) -> String {
        guard let value = object[key] else { throw HTTPError(.unprocessableContent, "\(key) is required") }
        guard let text = value.stringValue else { throw HTTPError(.unprocessableContent, "\(key) must be a string") }
        return text
    }

    /// `{"error": message, "status": code, ...extra}`.
    static func errorResponse(_ status: HTTPStatus, _ message: String, _ extra: [String: JSONValue] = [:]) -> HTTPResponse {
        var object = extra
        object["error"] = .string(message)
        object["status"] = .int(Int64(status.code))
        return .json(bytes: JSONValue.object(object).serialized, status: status)
    }

    /// The peer's IP address without the port.
    static func clientAddress(_ request: HTTPRequest) -> String {
        let remote = request.remoteAddress
        if remote.hasPrefix("["), let close = remote.firstIndex(of: "]") {
            return String(remote[remote.index(after: remote.startIndex)..<close])
        }
        if let colon = remote.lastIndex(of: ":"), remote.firstIndex(of: ":") == colon { return String(remote[..<colon]) }
        return remote.isEmpty ? "unknown" : remote
    }

    static func now() -> String {
        RFC3339.format(.now(), fractionDigits: 3)
    }
}
