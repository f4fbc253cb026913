import Formats
import Foundation
import HTTPServer
import NATSClient
import ServiceKit
import Synchronization

/// The notification service: turns each `user.logged_in` event into a durable "welcome back"
/// notification, personalised with the user's name from auth-service when it answers (a generic
/// text with the reason when it does not), and pushes it to the user's open Server-Sent Events
/// streams.
///
/// At-least-once (`EVENT_DELIVERY`, the default): the login events come from the durable
/// consumer `notification` on `USER_EVENTS`; each notification is published to the
/// `NOTIFICATIONS` stream (`notification.sent`, `Nats-Msg-Id` `notification-<event_id>`) before
/// the event is acknowledged. That stream is the service's one store: every instance follows it
/// into its local ``NotificationView``, which serves history, read marks and SSE.
///
/// At-most-once: core NATS in the queue group `notification`; each instance stores what it
/// handled in its own store and announces it on `notification.sent`; every instance pushes the
/// notifications the others announce to its own streams.
///
/// HTTP (bearer token required): `GET /v1/notifications` (history, newest first, paged),
/// `GET /v1/notifications/stream` (SSE), `POST /v1/notifications/{id}/read`.
///
/// Create it (opens the store), ``install(on:)`` it on a ``ServiceRuntime``, then run the runtime.
/// ``main(arguments:environment:)`` does all of that.
public final class NotificationService: Sendable {
    /// Expected `iss` of tokens.
    public static let tokenIssuer = "auth-service"
    /// Expected `aud` of tokens.
    public static let tokenAudience = "microservices-nats"
    /// Version in `$SRV.INFO`.
    public static let version = "1.0.0"
    /// The consumed event.
    public static let loginSubject = "user.logged_in"
    /// The queue group every instance joins (each event is handled by one of them).
    public static let queueGroup = "notification"
    /// The published event; every instance also reads it (no queue group) to push what other
    /// instances created to its own SSE streams.
    public static let sentSubject = "notification.sent"
    /// At-least-once: a read mark, published to `NOTIFICATIONS` and applied by every view.
    public static let readSubject = "notification.read"
    /// At-least-once: the durable consumer on `USER_EVENTS`.
    public static let consumerName = "notification"
    /// At-least-once: how long a read mark waits for the local view to apply it before 503.
    public static let readApplyTimeout = Duration.seconds(2)
    /// auth-service's user lookup.
    public static let userGetSubject = "auth.user.get"
    /// auth-service's token check (used when JWT_SECRET is not set).
    public static let tokenVerifySubject = "auth.token.verify"
    /// History page size when `limit` is absent.
    public static let defaultPageSize = 20
    /// Largest `limit`.
    public static let maxPageSize = 100
    /// Most notifications replayed to a stream resumed with `Last-Event-ID`.
    public static let replayLimit = 100

    /// This process's id in `notification.sent` (`instance_id`): an instance skips its own
    /// announcements when it fans out the others'.
    public let instanceID = UUID().uuidString.lowercased()
    /// The notifications (at-least-once: the local view's store, sequences are stream sequences).
    public let store: NotificationStore
    /// How events travel (`EVENT_DELIVERY`).
    public let deliveryMode: DeliveryMode
    /// At-least-once: the local view of the `NOTIFICATIONS` stream (nil at-most-once).
    public let view: NotificationView?
    /// The open SSE streams.
    public let hub: NotificationHub
    private let authTimeout: Duration
    private let concurrency: Int
    private let keepAliveInterval: Duration
    private let secret: String?
    private let logger: ServiceLogger
    private let metricsSlot = MetricsSlot()

    /// Holds the runtime's registry once installed (the hub reports to it).
    private final class MetricsSlot: Sendable {
        let registry = Mutex<MetricsRegistry?>(nil)
        func with(_ body: (MetricsRegistry) -> Void) { if let r = registry.withLock({ $0 }) { body(r) } }
    }

    /// Opens the store under `DATA_DIR`.
    /// - Throws: ``StoreError`` when the store cannot be opened.
    public init(configuration: Configuration, logger: ServiceLogger) throws {
        self.logger = logger
        let dataDirectory = configuration[NotificationSettings.dataDirectory]
        deliveryMode = configuration[StandardSettings.deliveryMode]
        // The two modes keep separate files: the view's sequences are the stream's.
        store = try NotificationStore(directory: dataDirectory, name: deliveryMode == .atLeastOnce ? "notifications-view" : "notifications",
                                      maxPerUser: configuration[NotificationSettings.maxPerUser],
                                      maxTotal: configuration[NotificationSettings.maxTotal])
        authTimeout = .milliseconds(configuration[NotificationSettings.authTimeout])
        concurrency = configuration[NotificationSettings.concurrency]
        keepAliveInterval = .seconds(configuration[NotificationSettings.keepAlive])
        secret = configuration[StandardSettings.jwtSecret]
        let slot = metricsSlot
        hub = NotificationHub(
            bufferSize: configuration[NotificationSettings.streamBuffer],
            maxPerUser: configuration[NotificationSettings.maxStreamsPerUser],
            onCountChange: { count in slot.with { $0.set("sse_clients", to: Double(count)) } },
            onDrop: { _ in slot.with { $0.increment("sse_clients_dropped_total") } })
        view = deliveryMode == .atLeastOnce ? NotificationView(store: store, hub: hub) : nil
        if store.skippedRecords > 0 {
            logger.error("notification store has records that do not decode; they are ignored",
                         ["skipped": .int(Int64(store.skippedRecords))])
        }
        logger.info("notification store open", ["notifications": .int(Int64(store.count)), "data_dir": .string(dataDirectory),
                                                "max_per_user": .int(Int64(store.maxPerUser)), "max_total": .int(Int64(store.maxTotal)),
                                                "event_delivery": .string(deliveryMode.rawValue),
                                                "view_sequence": .int(Int64(store.appliedSequence))])
    }

    /// Registers the consumer, the HTTP routes, the storage readiness check, the keep-alive
    /// ticker and the shutdown actions on `runtime`.
    public func install(on runtime: ServiceRuntime) {
        let m = runtime.metrics
        m.declareCounter("notifications_created_total", help: "notifications created, by personalized (true/false)")
        m.declareCounter("notifications_fallback_total", help: "generic notifications, by reason (timeout, circuit_open, no_responders, auth_error, unavailable)")
        m.declareCounter("notifications_duplicates_total", help: "login events whose notification already existed")
        m.declareCounter("notifications_evicted_total", help: "old notifications deleted for the per-user or total cap")
        m.declareGauge("notifications_stored", help: "notifications kept, all users")
        m.declareCounter("notifications_invalid_events_total", help: "user.logged_in events refused as malformed")
        m.declareCounter("notifications_published_total", help: "notification.sent events published")
        m.declareCounter("notifications_publish_failures_total", help: "notification.sent events that could not be published")
        m.declareCounter("notifications_read_total", help: "notifications marked read")
        m.declareHistogram("notification_latency_seconds", help: "login event time to notification stored and pushed")
        m.declareHistogram("notification_auth_lookup_seconds", help: "duration of the auth.user.get lookup, failures included")
        m.declareCounter("notifications_view_applied_total", help: "NOTIFICATIONS stream messages applied to this instance's view (at-least-once)")
        m.declareCounter("notifications_view_batches_total", help: "view batches written, one fsync each (at-least-once)")
        m.declareCounter("notifications_view_skipped_total", help: "NOTIFICATIONS messages the view could not use (unknown subject, malformed)")
        m.declareGauge("notifications_view_sequence", help: "last NOTIFICATIONS stream sequence applied to this instance's view")
        m.declareGauge("sse_clients", help: "open Server-Sent Events streams")
        m.declareCounter("sse_clients_dropped_total", help: "SSE streams dropped because the client fell behind")
        m.declareCounter("sse_events_sent_total", help: "notifications written to SSE streams")
        m.set("sse_clients", to: 0)
        m.set("notifications_stored", to: Double(store.count))
        metricsSlot.registry.withLock { $0 = m }

        let verifier: TokenVerifier
        if let secret, let local = try? TokenVerifier.local(secret: secret) {
            verifier = local
        } else {
            let timeout = authTimeout
            verifier = TokenVerifier(mode: .remote({ payload, context in
                try await runtime.request(payload, subject: NotificationService.tokenVerifySubject, context: context, timeout: timeout)
            }))
        }

        if let view {
            m.set("notifications_view_sequence", to: Double(store.appliedSequence))
            // auth-service's stream: this identity may not create or change it, so a start before
            // auth-service waits (not ready) until auth-service has created it.
            runtime.require(stream: PlatformStreams.userEvents)
            runtime.declare(stream: PlatformStreams.notifications)
            let consumer = Self.loginConsumer
            runtime.consumeDurable("login", consumer: consumer, batch: min(1024, max(64, concurrency * 4)), concurrency: concurrency) { [self] message, context in
                try await handleDurableLogin(message.payload, context, runtime)
            }
            let logger = self.logger
            runtime.spawn("notification view") { await view.run(runtime: runtime, logger: logger) }
            runtime.addReadinessCheck("notification_view") { view.isFollowing }
        } else {
            runtime.consume("login", subject: Self.loginSubject, queue: Self.queueGroup, concurrency: concurrency) { [self] message, context in
                try await handleLogin(message.payload, context, runtime)
            }
            runtime.consume("sse-fanout", subject: Self.sentSubject, concurrency: 1) { [self] message, context in
                fanOut(message.payload, logger: context.logger)
            }
        }
        runtime.route(.get, "/v1/notifications") { [self] request, context in
            let user = try await verifier.authenticate(request, context: context)
            return try history(request, user: user)
        }
        runtime.route(.get, "/v1/notifications/stream") { [self] request, context in
            let user = try await verifier.authenticate(request, context: context)
            return try stream(request, user: user, logger: context.logger, metrics: m)
        }
        runtime.route(.post, "/v1/notifications/{id}/read", bodyLimit: 1024) { [self] request, context in
            let user = try await verifier.authenticate(request, context: context)
            if view != nil { return try await markReadDurably(request, user: user, context: context, runtime: runtime) }
            return try await markRead(request, user: user, metrics: m)
        }
        runtime.addReadinessCheck("storage") { [store] in store.isOpen }

        let hub = self.hub, interval = keepAliveInterval
        // A child of the runtime's run: cancelled and awaited when the service stops.
        runtime.spawn("sse keep-alive") {
            while true {
                do { try await Task.sleep(for: interval) } catch { return }
                hub.keepAlive()
            }
        }
        runtime.onShutdown("notification store") { [store] in store.close() }
        runtime.onShutdown("sse streams") { [hub] in hub.closeAll() }
    }

    // MARK: Events

    /// The event in a `user.logged_in` payload, or nil when the store already has its
    /// notification (counted and logged as a duplicate). A malformed payload is counted and
    /// logged before its error is thrown, so that each mode only decides what refusal means.
    /// - Throws: ``LoginEvent/Invalid`` for a malformed payload.
    private func newLogin(_ payload: [UInt8], _ context: RequestContext, _ m: MetricsRegistry) throws(LoginEvent.Invalid) -> LoginEvent? {
        let event: LoginEvent
        do {
            event = try LoginEvent(payload: payload)
        } catch {
            m.increment("notifications_invalid_events_total")
            context.logger.warning("login event refused", ["error": .string(error.description), "subject": .string(Self.loginSubject)])
            throw error
        }
        if store.contains(sourceEventID: event.eventID) {
            Self.ignoreDuplicate(event, context, m)
            return nil
        }
        return event
    }

    /// Counts and logs a login event whose notification already exists.
    private static func ignoreDuplicate(_ event: LoginEvent, _ context: RequestContext, _ m: MetricsRegistry) {
        m.increment("notifications_duplicates_total")
        context.logger.debug("duplicate login event ignored", ["event_id": .string(event.eventID), "user_id": .string(event.userID)])
    }

    /// Handles one `user.logged_in` payload: refuses malformed events, skips duplicates, looks
    /// the user up (falling back to the generic text), stores, pushes and announces the notification.
    /// - Throws: ``StoreError`` when the notification cannot be stored (the runtime logs and counts it).
    func handleLogin(_ payload: [UInt8], _ context: RequestContext, _ runtime: ServiceRuntime) async throws {
        let m = runtime.metrics
        let event: LoginEvent
        do {
            guard let fresh = try newLogin(payload, context, m) else { return }
            event = fresh
        } catch {
            return
        }
        let outcome = try await lookUp(event, context, runtime)
        let now = Date()
        let draft = NotificationDraft(userID: event.userID, sourceEventID: event.eventID, message: outcome.message,
                                      personalized: outcome.personalized, fallbackReason: outcome.fallbackReason,
                                      loginTime: event.time, createdAt: RFC3339.format(now))
        guard case .created(let notification, let evicted) = try await store.insert(draft) else {
            Self.ignoreDuplicate(event, context, m)
            return
        }
        // Acknowledged: the notification is durable. Now push and announce it.
        m.increment("notifications_created_total", labels: [("personalized", String(notification.personalized))])
        if !notification.personalized {
            m.increment("notifications_fallback_total", labels: [("reason", AuthLookup.metricLabel(notification.fallbackReason))])
        }
        if evicted > 0 { m.increment("notifications_evicted_total", by: Double(evicted)) }
        m.set("notifications_stored", to: Double(store.count))
        hub.deliver(notification)
        let latency = Self.latencyMilliseconds(from: event.date, to: now)
        m.observe("notification_latency_seconds", latency / 1000)

        let sent = Self.sentEvent(notification, latencyMilliseconds: latency, instance: instanceID)
        var fields: [String: JSONValue] = [
            "user_id": .string(notification.userID), "notification_id": .string(notification.id),
            "source_event_id": .string(notification.sourceEventID), "personalized": .bool(notification.personalized),
            "fallback_reason": notification.fallbackReason.map(JSONValue.string) ?? .null, "latency_ms": .double(latency),
        ]
        do {
            try await runtime.publish(sent.serialized, subject: Self.sentSubject, context: context)
            m.increment("notifications_published_total")
            context.logger.info("notification sent", fields)
        } catch {
            // Stored and pushed to this instance's streams, but not announced.
            m.increment("notifications_publish_failures_total")
            fields["error"] = .string("\(error)")
            context.logger.warning("notification stored but notification.sent not published", fields)
        }
    }

    /// Asks auth-service for the user's name: the personalised text, or the generic one with the reason.
    /// - Throws: `CancellationError` only.
    private func lookUp(_ event: LoginEvent, _ context: RequestContext, _ runtime: ServiceRuntime) async throws -> AuthLookup.Outcome {
        let started = ContinuousClock.now
        let outcome: AuthLookup.Outcome
        do {
            let reply = try await runtime.request(JSONValue.object(["id": .string(event.userID)]).serialized,
                                                  subject: Self.userGetSubject, context: context, timeout: authTimeout)
            outcome = AuthLookup.outcome(reply: reply)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            outcome = AuthLookup.outcome(error: error)
        }
        runtime.metrics.observe("notification_auth_lookup_seconds", Self.seconds(ContinuousClock.now - started))
        return outcome
    }

    /// The durable consumer on `USER_EVENTS`: login events only, 5 deliveries at most, 30 s to
    /// handle each before the server redelivers it.
    public static var loginConsumer: ConsumerSpec {
        ConsumerSpec(stream: PlatformStreams.userEvents.config.name, name: consumerName) { c in
            c.description = "notification-service: one notification per user.logged_in"
            c.filterSubject = loginSubject
            c.ackWait = .seconds(30)
            c.maxDeliver = 5
        }
    }

    /// Handles one `user.logged_in` from the durable consumer (at-least-once): a malformed event
    /// is poison (dead letter at once); an event whose notification the view already has is only
    /// acknowledged; otherwise the user is looked up (as ``handleLogin(_:_:_:)``) and the
    /// notification is published to `NOTIFICATIONS` with `Nats-Msg-Id` `notification-<event_id>`
    /// (the stream drops a second copy). Returning acknowledges the event: it happens only after
    /// the stream's PubAck. The view lists and pushes the notification when it applies it.
    /// - Throws: ``PoisonMessage`` for a malformed event; what ``ServiceRuntime/publishDurable(_:subject:msgID:context:timeout:)``
    ///   throws (the event is redelivered later, and dead-lettered after its last delivery).
    func handleDurableLogin(_ payload: [UInt8], _ context: RequestContext, _ runtime: ServiceRuntime) async throws {
        let m = runtime.metrics
        let event: LoginEvent
        do {
            guard let fresh = try newLogin(payload, context, m) else { return }
            event = fresh
        } catch {
            throw PoisonMessage("malformed user.logged_in: \(error.description)")
        }
        let outcome = try await lookUp(event, context, runtime)
        let now = Date()
        let n = UserNotification(id: Self.notificationID(sourceEventID: event.eventID), userID: event.userID,
                                 sourceEventID: event.eventID, kind: "welcome", message: outcome.message,
                                 personalized: outcome.personalized, fallbackReason: outcome.fallbackReason,
                                 loginTime: event.time, createdAt: RFC3339.format(now), readAt: nil, sequence: 0)
        let latency = Self.latencyMilliseconds(from: event.date, to: now)
        let sent = Self.sentEvent(n, latencyMilliseconds: latency, instance: instanceID,
                                  eventID: Self.derivedID("notification.sent", event.eventID))
        let ack = try await runtime.publishDurable(sent.serialized, subject: Self.sentSubject, msgID: "notification-\(event.eventID)",
                                                   context: context)
        if ack.duplicate {
            m.increment("notifications_duplicates_total")
            context.logger.debug("duplicate login event: its notification was already published",
                                 ["event_id": .string(event.eventID), "stream_seq": .int(Int64(ack.sequence))])
            return
        }
        m.increment("notifications_created_total", labels: [("personalized", String(n.personalized))])
        if !n.personalized {
            m.increment("notifications_fallback_total", labels: [("reason", AuthLookup.metricLabel(n.fallbackReason))])
        }
        m.increment("notifications_published_total")
        m.observe("notification_latency_seconds", latency / 1000)
        context.logger.info("notification sent", [
            "user_id": .string(n.userID), "notification_id": .string(n.id), "source_event_id": .string(n.sourceEventID),
            "personalized": .bool(n.personalized), "fallback_reason": n.fallbackReason.map(JSONValue.string) ?? .null,
            "latency_ms": .double(latency), "stream_seq": .int(Int64(ack.sequence)),
        ])
    }

    /// The notification id for a login event (at-least-once): every instance, and every
    /// redelivery, makes the same one.
    public static func notificationID(sourceEventID: String) -> String { derivedID("notification", sourceEventID) }

    /// A UUID-shaped id derived from `name` and `eventID` (SHA-256, version and variant bits set).
    static func derivedID(_ name: String, _ eventID: String) -> String {
        var input = Array(name.utf8)
        input.append(0)
        input.append(contentsOf: eventID.utf8)
        let digest = SHA256.hash(input)
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(36)
        for index in 0..<16 {
            var byte = digest[index]
            if index == 6 { byte = (byte & 0x0F) | 0x80 }   // version 8: custom
            if index == 8 { byte = (byte & 0x3F) | 0x80 }   // RFC 4122 variant
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Milliseconds from the login event's time to `sent`, rounded to the microsecond and never
    /// negative: a login time ahead of this host's clock (clock skew between hosts) counts as 0.
    static func latencyMilliseconds(from login: Date, to sent: Date) -> Double {
        max(0, (sent.timeIntervalSince(login) * 1_000_000).rounded() / 1000)
    }

    /// The `notification.sent` payload: the platform contract's fields, plus `message` and
    /// `instance_id` (what another instance needs to push it to its own SSE streams).
    /// `eventID`: the event's own id (a new UUID unless given).
    public static func sentEvent(_ n: UserNotification, latencyMilliseconds: Double, instance: String,
                                 eventID: String = UUID().uuidString.lowercased()) -> JSONValue {
        .object([
            "event_id": .string(eventID), "notification_id": .string(n.id), "user_id": .string(n.userID),
            "source_event_id": .string(n.sourceEventID), "kind": .string(n.kind), "personalized": .bool(n.personalized),
            "fallback_reason": n.fallbackReason.map(JSONValue.string) ?? .null, "login_time": .string(n.loginTime),
            "time": .string(n.createdAt), "latency_ms": .double(latencyMilliseconds),
            "message": .string(n.message), "instance_id": .string(instance),
        ])
    }

    /// Pushes a notification another instance created (a `notification.sent` payload) to this
    /// instance's open streams of its user. Our own announcements, events of users with no
    /// stream here and payloads without the fields a stream needs are ignored.
    func fanOut(_ payload: [UInt8], logger: ServiceLogger) {
        guard case .object(let o)? = JSONValue.parse(payload), let instance = o["instance_id"]?.stringValue,
              instance != instanceID, let user = o["user_id"]?.stringValue, hub.count(user: user) > 0 else { return }
        guard let id = o["notification_id"]?.stringValue, let source = o["source_event_id"]?.stringValue,
              let kind = o["kind"]?.stringValue, let message = o["message"]?.stringValue,
              case .bool(let personalized)? = o["personalized"], let login = o["login_time"]?.stringValue,
              let time = o["time"]?.stringValue else {
            logger.warning("notification.sent without the fields a stream needs; not pushed", ["user_id": .string(user)])
            return
        }
        let n = UserNotification(id: id, userID: user, sourceEventID: source, kind: kind, message: message, personalized: personalized,
                                 fallbackReason: o["fallback_reason"]?.stringValue, loginTime: login, createdAt: time,
                                 readAt: nil, sequence: 0)
        hub.deliver(n, fromAnotherInstance: true)
    }

    // MARK: HTTP

    /// `GET /v1/notifications?limit=&before=`: newest first; `before` is a `cursor` from an
    /// earlier page (`next_before`) or a notification id of this user.
    /// - Throws: `HTTPError` 400 for a bad `limit` or `before`.
    func history(_ request: HTTPRequest, user: String) throws(HTTPError) -> HTTPResponse {
        let (limit, before) = try Self.pageParameters(request.query, resolveID: { store.notification(id: $0, user: user)?.sequence })
        let page = store.page(user: user, limit: limit, before: before)
        let body = JSONValue.object([
            "notifications": .array(page.items.map(\.json)),
            "next_before": page.next.map { .string(String($0)) } ?? .null,
        ])
        return .json(bytes: body.serialized)
    }

    /// `POST /v1/notifications/{id}/read`: 200 with the notification, marked read.
    /// - Throws: `HTTPError` 404 when `user` has no such notification, 503 once the store is
    ///   closed (shutdown); ``StoreError`` when the mark cannot be made durable (500).
    func markRead(_ request: HTTPRequest, user: String, metrics: MetricsRegistry) async throws -> HTTPResponse {
        guard let id = request.pathParameters["id"] else { throw HTTPError(.notFound, "notification not found") }
        let marked: UserNotification?
        do {
            marked = try await store.markRead(id: id, user: user, at: RFC3339.format(Date()))
        } catch StoreError.closed {
            throw HTTPError(.serviceUnavailable, "the service is shutting down", headers: ["Retry-After": "5"])
        }
        guard let updated = marked else { throw HTTPError(.notFound, "notification not found") }
        metrics.increment("notifications_read_total")
        return .json(bytes: updated.json.serialized)
    }

    /// `POST /v1/notifications/{id}/read` at-least-once: publishes `notification.read` to
    /// `NOTIFICATIONS` and answers once this instance's view has applied it, so the answer and
    /// a following history agree (on every instance once their views have it too).
    /// - Throws: `HTTPError` 404 when `user` has no such notification in the view; 503 with
    ///   `Retry-After` when the mark cannot be published or the view has not applied it within
    ///   ``readApplyTimeout``.
    func markReadDurably(_ request: HTTPRequest, user: String, context: RequestContext, runtime: ServiceRuntime) async throws -> HTTPResponse {
        guard let id = request.pathParameters["id"], let view, let current = store.notification(id: id, user: user) else {
            throw HTTPError(.notFound, "notification not found")
        }
        if current.readAt != nil { return .json(bytes: current.json.serialized) }
        let readAt = RFC3339.format(Date())
        // An event of the platform like notification.sent: data-processing dead-letters an event
        // without event_id and analytics counts one without it every time it sees it. The id is
        // derived from the notification, so a repeated mark carries the same one.
        let mark = JSONValue.object([
            "event_id": .string(Self.derivedID(Self.readSubject, id)), "notification_id": .string(id), "user_id": .string(user),
            "read_at": .string(readAt), "time": .string(readAt),
        ])
        let ack: PubAck
        do {
            ack = try await runtime.publishDurable(mark.serialized, subject: Self.readSubject, msgID: "read-\(id)", context: context)
        } catch {
            context.logger.warning("notification.read not published", ["notification_id": .string(id), "error": .string("\(error)")])
            throw HTTPError(.serviceUnavailable, "cannot store the read mark now; retry shortly", headers: ["Retry-After": "1"])
        }
        guard await view.waitApplied(ack.sequence, timeout: Self.readApplyTimeout),
              let updated = store.notification(id: id, user: user) else {
            throw HTTPError(.serviceUnavailable, "the read mark is stored but not yet visible here; retry shortly", headers: ["Retry-After": "1"])
        }
        if !ack.duplicate { runtime.metrics.increment("notifications_read_total") }
        return .json(bytes: updated.json.serialized)
    }

    /// Validates `limit` (1...100, default 20) and `before` (a cursor, or an id `resolveID` knows).
    /// - Throws: `HTTPError` 400 naming the bad parameter.
    static func pageParameters(_ query: HTTPQuery, resolveID: (String) -> UInt64?) throws(HTTPError) -> (limit: Int, before: UInt64?) {
        var limit = defaultPageSize
        if let text = query["limit"] {
            guard let value = Int(text), (1...maxPageSize).contains(value) else {
                throw HTTPError(.badRequest, "limit must be an integer in 1...\(maxPageSize)")
            }
            limit = value
        }
        var before: UInt64?
        if let text = query["before"] {
            if let cursor = UInt64(text), cursor > 0 {
                before = cursor
            } else if let sequence = resolveID(text) {
                before = sequence
            } else {
                throw HTTPError(.badRequest, "before must be a cursor (next_before of a page) or the id of one of your notifications")
            }
        }
        return (limit, before)
    }

    /// `GET /v1/notifications/stream`: Server-Sent Events. Opens with a comment, replays what the
    /// client missed after `Last-Event-ID` (at most ``replayLimit``), then sends each new
    /// notification and a keep-alive comment when idle. A stream the hub dropped (its client fell
    /// behind) ends as soon as the write in progress completes: nothing more is queued for it,
    /// and the HTTP server bounds what is already written but unsent.
    ///
    /// The stream is opened here, in one step with the per-user limit check (so a client over the
    /// limit always gets 429, never a 200 that ends at once). It is held by a ``StreamLease``
    /// that the response's producer captures: it closes when the producer ends, or when the
    /// response is dropped without its producer running (connection closed first), so a stream
    /// never outlives its response.
    /// - Throws: `HTTPError` 429 when the user already has the most streams allowed.
    func stream(_ request: HTTPRequest, user: String, logger: ServiceLogger, metrics: MetricsRegistry) throws(HTTPError) -> HTTPResponse {
        guard let opened = hub.open(user: user) else {
            throw HTTPError(.tooManyRequests, "too many open notification streams for this user", headers: ["Retry-After": "5"])
        }
        let lease = StreamLease(opened)
        let lastEventID = request.headers["Last-Event-ID"]
        let store = self.store
        return .serverSentEvents(headers: ["X-Accel-Buffering": "no"]) { writer in
            let stream = lease.stream
            defer { stream.close() }
            logger.debug("notification stream opened", ["user_id": .string(user)])
            try await writer.comment("notifications for \(user)")
            var replayedUpTo: UInt64 = 0
            if let lastEventID, let last = store.notification(id: lastEventID, user: user) {
                for n in store.after(user: user, sequence: last.sequence, limit: Self.replayLimit) {
                    try await writer.send(n.serverSentEvent)
                    metrics.increment("sse_events_sent_total")
                    replayedUpTo = n.sequence
                }
            }
            for await item in stream.items {
                if stream.isDropped {
                    logger.notice("notification stream dropped: client too slow", ["user_id": .string(user)])
                    return
                }
                switch item {
                case .keepAlive:
                    try await writer.comment("keep-alive")
                case .notification(let n):
                    if n.sequence <= replayedUpTo { continue }   // already replayed
                    try await writer.send(n.serverSentEvent)
                    metrics.increment("sse_events_sent_total")
                case .remote(let n):
                    try await writer.send(n.remoteServerSentEvent)
                    metrics.increment("sse_events_sent_total")
                }
            }
        }
    }

    /// Owns an open hub stream for a response: closes it when the last reference goes (the
    /// response and its producer), whether or not the producer ever ran.
    final class StreamLease: Sendable {
        let stream: NotificationHub.Stream
        init(_ stream: NotificationHub.Stream) { self.stream = stream }
        deinit { stream.close() }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
