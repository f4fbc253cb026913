import Foundation
import NATSClient
@testable import NotificationService
import ServiceKit
import TestSupport
import Testing

/// The broker, a fake auth-service and the real notification-service executable.
struct Stack {
    let broker: Broker
    let auth: FakeAuth?
    let client: NATSClient
    let data: String

    static func run(names: [String: String]? = ["u-ann": "Ann", "u-bob": "Bob"],
                    _ body: (Stack) async throws -> Void) async throws {
        let broker = try await Broker.start()
        let data = try temporaryDirectory("notif-data")
        var auth: FakeAuth?
        var client: NATSClient?
        do {
            if let names { auth = try await FakeAuth.start(broker.url, names: names) }
            client = try await NATSClient.connect(broker.url)
            try await body(Stack(broker: broker, auth: auth, client: try #require(client), data: data))
        } catch {
            await client?.close(); await auth?.stop(); await broker.stop(); removeTemporary(data)
            throw error
        }
        await client?.close(); await auth?.stop(); await broker.stop(); removeTemporary(data)
    }

    /// Publishes a login event (with a traceparent when given) and flushes.
    func login(_ user: String, eventID: String = UUID().uuidString.lowercased(), traceparent: String? = nil) async throws {
        var headers: Headers?
        if let traceparent { headers = try Headers([("traceparent", traceparent)]) }
        try await client.publish(loginEvent(user: user, eventID: eventID), subject: "user.logged_in", headers: headers)
        try await client.flush()
    }
}

func nextMessage(_ subscription: Subscription, _ what: String) async throws -> Message {
    try await within(15, what) {
        var it = subscription.makeAsyncIterator()
        guard let message = try await it.next() else { throw TestFailure("subscription ended before \(what)") }
        return message
    }
}

@Suite struct ProcessTests {
    @Test func aLoginBecomesAPersonalisedNotificationInHistoryAndOnTheStream() async throws {
        try await Stack.run { stack in
            let service = try await startService(stack.broker, data: stack.data, extra: ["SSE_KEEPALIVE_SECONDS": "1"])
            try await stopping({ await service.stop() }) {
                #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })

                // Errors: no token, bad token, bad paging parameters.
                let anonymous = try await service.request("GET", "/v1/notifications")
                #expect(anonymous.status == 401 && anonymous.json["status"] as? Int == 401 && anonymous.string("error") != nil)
                #expect(try await service.request("GET", "/v1/notifications", headers: ["Authorization": "Bearer x.y.z"]).status == 401)
                #expect(try await service.request("GET", "/v1/notifications/stream").status == 401)
                let badLimit = try await service.request("GET", "/v1/notifications?limit=0", headers: try bearer("u-ann"))
                #expect(badLimit.status == 400 && badLimit.json["status"] as? Int == 400)
                #expect(try await service.request("GET", "/v1/notifications?before=nope", headers: try bearer("u-ann")).status == 400)

                let stream = try SSEClient(port: service.port, headers: try bearer("u-ann"))
                defer { stream.cancel() }
                try await stream.waitUntilOpen()
                #expect(stream.status == 200)
                let sent = try await stack.client.subscribe("notification.sent")
                try await stack.client.flush()

                let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
                let eventID = UUID().uuidString.lowercased()
                try await stack.login("u-ann", eventID: eventID, traceparent: "00-\(traceID)-00f067aa0ba902b7-01")

                // Pushed on the stream...
                #expect(await eventually { stream.events.count == 1 })
                let pushed = try #require(stream.events.first)
                #expect(pushed.event == "notification")
                let body = pushed.json
                #expect(body["message"] as? String == "Welcome back, Ann!")
                #expect(body["personalized"] as? Bool == true)
                #expect(body["fallback_reason"] is NSNull)
                #expect(body["source_event_id"] as? String == eventID)
                let id = try #require(body["id"] as? String)
                #expect(pushed.id == id)

                // ... announced with the login's trace ...
                let announcement = try await nextMessage(sent, "notification.sent")
                #expect(announcement.headers?["traceparent"]?.hasPrefix("00-\(traceID)-") == true)
                let payload = jsonObject(announcement.payload)
                #expect(Set(payload.keys) == ["event_id", "notification_id", "user_id", "source_event_id", "kind", "personalized",
                                              "fallback_reason", "login_time", "time", "latency_ms", "message", "instance_id"])
                #expect(payload["notification_id"] as? String == id && payload["user_id"] as? String == "u-ann")
                #expect(payload["source_event_id"] as? String == eventID && payload["kind"] as? String == "welcome")
                #expect(payload["personalized"] as? Bool == true && payload["fallback_reason"] is NSNull)
                #expect((payload["latency_ms"] as? Double).map { $0 >= 0 } == true)
                #expect((payload["event_id"] as? String).flatMap(UUID.init(uuidString:)) != nil)
                // ... logged with the trace id ...
                let logged = try await service.child.waitForLine("the notification sent log line") { $0.contains(#""message":"notification sent""#) }
                #expect(logged.contains(#""trace_id":"\#(traceID)""#) && logged.contains(id) && logged.contains(#""level":"info""#))
                // ... and listed.
                let listed = try await history(service, "u-ann")
                #expect(listed.items.map { $0["id"] as? String } == [id])
                #expect(try await history(service, "u-bob").items.isEmpty)

                // The same event again: still one notification.
                try await stack.login("u-ann", eventID: eventID)
                #expect(try await eventually { try await metric(service, "notifications_duplicates_total") == 1 })
                #expect(try await history(service, "u-ann").items.count == 1)
                #expect(stream.events.count == 1)

                // Mark read: only by its owner.
                #expect(try await service.request("POST", "/v1/notifications/\(id)/read", headers: try bearer("u-bob")).status == 404)
                #expect(try await service.request("POST", "/v1/notifications/unknown/read", headers: try bearer("u-ann")).status == 404)
                let read = try await service.request("POST", "/v1/notifications/\(id)/read", headers: try bearer("u-ann"))
                #expect(read.status == 200 && read.json["read"] as? Bool == true && read.json["id"] as? String == id)

                // A second login; paging; a stream resumed with Last-Event-ID gets only what came after.
                try await stack.login("u-ann")
                #expect(await eventually { stream.events.count == 2 })
                let secondID = try #require(stream.events.last?.id)
                let page1 = try await history(service, "u-ann", query: "?limit=1")
                #expect(page1.items.map { $0["id"] as? String } == [secondID])
                let page2 = try await history(service, "u-ann", query: "?limit=1&before=\(try #require(page1.next))")
                #expect(page2.items.map { $0["id"] as? String } == [id] && page2.items.first?["read"] as? Bool == true)
                #expect(page2.next == nil)
                var resumeHeaders = try bearer("u-ann")
                resumeHeaders["Last-Event-ID"] = id
                let resumed = try SSEClient(port: service.port, headers: resumeHeaders)
                defer { resumed.cancel() }
                #expect(await eventually { resumed.events.count == 1 })
                #expect(resumed.events.map(\.id) == [secondID])
                #expect(try await eventually { try await metric(service, "sse_clients") == 2 })
                #expect(try await metric(service, #"notifications_created_total{personalized="true"}"#) == 2)
                // Idle streams get keep-alive comments.
                #expect(await eventually { resumed.comments.contains("keep-alive") })
                #expect(await service.stop() == 0)
            }
        }
    }

    /// Ownership: a valid token of another user neither lists, nor streams, nor replays, nor
    /// marks someone else's notification, and the refusals say no more than for an unknown id.
    @Test func anotherUsersNotificationsCannotBeReadStreamedOrMarked() async throws {
        try await Stack.run { stack in
            let service = try await startService(stack.broker, data: stack.data)
            try await stopping({ await service.stop() }) {
                #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
                let annStream = try SSEClient(port: service.port, headers: try bearer("u-ann"))
                defer { annStream.cancel() }
                let bobStream = try SSEClient(port: service.port, headers: try bearer("u-bob"))
                defer { bobStream.cancel() }
                try await annStream.waitUntilOpen()
                try await bobStream.waitUntilOpen()

                try await stack.login("u-ann")
                #expect(await eventually { annStream.events.count == 1 })
                let annID = try #require(annStream.events.first?.id)
                // Barrier: Bob's own login is pushed after Ann's was, so had Ann's reached Bob's
                // stream it would be there first.
                try await stack.login("u-bob")
                #expect(await eventually { bobStream.events.count >= 1 })
                #expect(bobStream.events.count == 1 && bobStream.events.allSatisfy { $0.json["user_id"] as? String == "u-bob" })
                #expect(!bobStream.events.contains { $0.id == annID })
                let bobID = try #require(bobStream.events.first?.id)

                // Reading: Bob's history has only his own, and Ann's id is no cursor for him.
                let bobHistory = try await history(service, "u-bob", query: "?limit=100").items
                #expect(bobHistory.map { $0["id"] as? String } == [bobID])
                #expect(bobHistory.allSatisfy { $0["user_id"] as? String == "u-bob" })
                let foreignCursor = try await service.request("GET", "/v1/notifications?before=\(annID)", headers: try bearer("u-bob"))
                let unknownCursor = try await service.request("GET", "/v1/notifications?before=no-such-id", headers: try bearer("u-bob"))
                #expect(foreignCursor.status == 400 && foreignCursor.body == unknownCursor.body)

                // Streaming: resuming after Ann's id replays nothing of hers; the next event on
                // that stream is Bob's next notification.
                var resumeHeaders = try bearer("u-bob")
                resumeHeaders["Last-Event-ID"] = annID
                let resumed = try SSEClient(port: service.port, headers: resumeHeaders)
                defer { resumed.cancel() }
                try await resumed.waitUntilOpen()
                try await stack.login("u-bob")
                #expect(await eventually { resumed.events.count >= 1 })
                #expect(resumed.events.allSatisfy { $0.json["user_id"] as? String == "u-bob" && $0.id != annID && $0.id != bobID })

                // Marking: 404 exactly as for an unknown id, and Ann's notification stays unread.
                let foreignMark = try await service.request("POST", "/v1/notifications/\(annID)/read", headers: try bearer("u-bob"))
                let unknownMark = try await service.request("POST", "/v1/notifications/no-such-id/read", headers: try bearer("u-bob"))
                #expect(foreignMark.status == 404 && foreignMark.body == unknownMark.body)
                #expect(!foreignMark.body.contains("u-ann"))
                let annHistory = try await history(service, "u-ann").items
                #expect(annHistory.map { $0["id"] as? String } == [annID] && annHistory.first?["read"] as? Bool == false)

                // Without a token, or with a forged one, none of the three answers.
                let forged = ["Authorization": "Bearer " + (try JWTAuthority(secret: Array("another-secret-0123456789".utf8), issuer: "auth-service",
                                                                              audience: "microservices-nats").issue(subject: "u-ann", lifetime: 60))]
                for headers in [[:], forged] {
                    #expect(try await service.request("GET", "/v1/notifications", headers: headers).status == 401)
                    #expect(try await service.request("GET", "/v1/notifications/stream", headers: headers).status == 401)
                    #expect(try await service.request("POST", "/v1/notifications/\(annID)/read", headers: headers).status == 401)
                }
                #expect(try await history(service, "u-ann").items.first?["read"] as? Bool == false)
                #expect(await service.stop() == 0)
            }
        }
    }

    @Test func withAuthDownTheNotificationIsGenericWithTheReason() async throws {
        try await Stack.run(names: nil) { stack in
            let service = try await startService(stack.broker, data: stack.data, extra: ["AUTH_TIMEOUT_MS": "1000"])
            try await stopping({ await service.stop() }) {
                // Nobody serves auth.user.get: the broker answers "no responders" at once.
                try await stack.login("u-ann")
                #expect(try await eventually { try await history(service, "u-ann").items.count == 1 })
                var item = try #require(try await history(service, "u-ann").items.first)
                #expect(item["message"] as? String == "Welcome back!")
                #expect(item["personalized"] as? Bool == false)
                #expect(item["fallback_reason"] as? String == "auth unavailable: no responders")

                // An auth-service that never answers: the request times out.
                let silent = try await FakeAuth.start(stack.broker.url, names: ["u-ann": "Ann"])
                try await stopping({ await silent.stop() }) {
                    silent.answering = false
                    try await stack.login("u-ann")
                    #expect(try await eventually { try await history(service, "u-ann").items.count == 2 })
                    item = try #require(try await history(service, "u-ann").items.first)
                    #expect(item["personalized"] as? Bool == false)
                    #expect(item["fallback_reason"] as? String == "auth unavailable: timeout")

                    // Auth answers, but the user is unknown to it.
                    silent.answering = true
                    try await stack.login("u-nobody")
                    #expect(try await eventually { try await history(service, "u-nobody").items.count == 1 })
                    item = try #require(try await history(service, "u-nobody").items.first)
                    #expect(item["fallback_reason"] as? String == "auth error: 404 user not found")
                    #expect(try await metric(service, #"notifications_created_total{personalized="false"}"#) == 3)
                    #expect(try await metric(service, #"notifications_fallback_total{reason="timeout"}"#) == 1)
                }
            }
        }
    }

    @Test func withoutJWTSecretTokensAreCheckedByAuthService() async throws {
        try await Stack.run(names: nil) { stack in
            let auth = try await FakeAuth.start(stack.broker.url, names: ["u-ann": "Ann"], tokens: ["opaque-ann": "u-ann"])
            try await stopping({ await auth.stop() }) {
                let service = try await startService(stack.broker, data: stack.data, secret: nil, extra: ["AUTH_TIMEOUT_MS": "1000"])
                try await stopping({ await service.stop() }) {
                    try await stack.login("u-ann")
                    #expect(try await eventually {
                        let page = try await service.request("GET", "/v1/notifications", headers: ["Authorization": "Bearer opaque-ann"])
                        return page.status == 200 && (page.json["notifications"] as? [Any])?.count == 1
                    })
                    // A locally valid token means nothing without the secret: auth-service says no.
                    let refused = try await service.request("GET", "/v1/notifications", headers: try bearer("u-ann"))
                    #expect(refused.status == 401 && refused.headers["www-authenticate"]?.contains("invalid_token") == true)
                    // auth-service not answering: the token cannot be checked, which is not the client's fault.
                    auth.answering = false
                    let unavailable = try await service.request("GET", "/v1/notifications", headers: ["Authorization": "Bearer opaque-ann"])
                    #expect(unavailable.status == 503 && unavailable.json["status"] as? Int == 503)
                }
            }
        }
    }

    @Test func aNotificationListedBeforeKillDashNineIsThereAfterTheRestart() async throws {
        try await Stack.run { stack in
            var service = try await startService(stack.broker, data: stack.data)
            let eventID = UUID().uuidString.lowercased()
            try await stack.login("u-bob", eventID: eventID)
            #expect(try await eventually { try await history(service, "u-bob").items.count == 1 })
            let before = try await history(service, "u-bob").items
            await service.kill9()

            service = try await startService(stack.broker, data: stack.data)
            let after = try await history(service, "u-bob").items
            #expect(after.map { $0["id"] as? String } == before.map { $0["id"] as? String })
            #expect(after.first?["message"] as? String == "Welcome back, Bob!")
            // Still idempotent after the restart.
            try await stack.login("u-bob", eventID: eventID)
            #expect(try await eventually { try await metric(service, "notifications_duplicates_total") == 1 })
            #expect(try await history(service, "u-bob").items.count == 1)
            #expect(await service.stop() == 0)
        }
    }

    @Test func twoInstancesInTheQueueGroupHandleEachEventOnce() async throws {
        try await Stack.run { stack in
            let dataB = try temporaryDirectory("notif-data-b")
            defer { removeTemporary(dataB) }
            let a = try await startService(stack.broker, data: stack.data)
            try await stopping({ await a.stop() }) {
                let b = try await startService(stack.broker, data: dataB)
                try await stopping({ await b.stop() }) {
                    // Every consumer subscribed (logins and the SSE fan-out) on both.
                    for service in [a, b] {
                        #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
                    }
                    // u-ann has a stream on each instance: each must get all of u-ann's
                    // notifications, whichever instance handled the login.
                    let streamA = try SSEClient(port: a.port, headers: try bearer("u-ann"))
                    defer { streamA.cancel() }
                    let streamB = try SSEClient(port: b.port, headers: try bearer("u-ann"))
                    defer { streamB.cancel() }
                    try await streamA.waitUntilOpen()
                    try await streamB.waitUntilOpen()
                    let sent = try await stack.client.subscribe("notification.sent")
                    try await stack.client.flush()
                    // The startup probes (malformed logins) count as handled messages too.
                    let probesA = try await metric(a, #"nats_consumer_messages_total{consumer="login"}"#)
                    let probesB = try await metric(b, #"nats_consumer_messages_total{consumer="login"}"#)

                    let count = 40
                    var published = Set<String>()
                    for i in 0..<count {
                        let eventID = "queue-\(i)-" + UUID().uuidString.lowercased()
                        published.insert(eventID)
                        try await stack.login(i % 2 == 0 ? "u-ann" : "u-bob", eventID: eventID)
                    }
                    var seen: [String] = []
                    var annIDs = Set<String>()
                    for _ in 0..<count {
                        let message = try await nextMessage(sent, "notification.sent \(seen.count + 1) of \(count)")
                        let payload = jsonObject(message.payload)
                        seen.append(try #require(payload["source_event_id"] as? String))
                        if payload["user_id"] as? String == "u-ann" { annIDs.insert(try #require(payload["notification_id"] as? String)) }
                    }
                    #expect(Set(seen) == published && seen.count == count)
                    #expect(annIDs.count == count / 2)
                    for (name, stream) in [("a", streamA), ("b", streamB)] {
                        #expect(await eventually { stream.events.count >= count / 2 }, "stream on \(name): \(stream.events.count) events")
                        #expect(Set(stream.events.compactMap(\.id)) == annIDs && stream.events.count == count / 2, "stream on \(name)")
                        #expect(stream.events.allSatisfy { $0.json["message"] as? String == "Welcome back, Ann!" })
                    }
                    let handledA = try await metric(a, #"nats_consumer_messages_total{consumer="login"}"#) - probesA
                    let handledB = try await metric(b, #"nats_consumer_messages_total{consumer="login"}"#) - probesB
                    #expect(handledA + handledB == Double(count))
                    #expect(handledA > 0 && handledB > 0)
                    let createdA = try await metric(a, #"notifications_created_total{personalized="true"}"#)
                    let createdB = try await metric(b, #"notifications_created_total{personalized="true"}"#)
                    #expect(createdA + createdB == Double(count))
                }
            }
        }
    }
}

/// The service in this process (so the test can read the runtime's circuit breaker).
@Suite struct BreakerTests {
    @Test func theBreakerOpensAfterRepeatedTimeoutsAndClosesWhenAuthAnswersAgain() async throws {
        try await Stack.run { stack in
            let auth = try #require(stack.auth)
            auth.answering = false
            let sink = MemoryLogSink()
            let configuration = try Configuration.load(NotificationSettings.all, arguments: [], environment: [
                "NATS_URL": stack.broker.url, "DATA_DIR": stack.data, "HTTP_PORT": "0", "JWT_SECRET": testSecret,
                "AUTH_TIMEOUT_MS": "1000", "LOG_LEVEL": "info", "EVENT_DELIVERY": "at-most-once",
            ], workingDirectory: stack.data)
            let logger = ServiceLogger(service: "notification", level: .info, sink: sink)
            let service = try NotificationService(configuration: configuration, logger: logger)
            let runtime = ServiceRuntime(name: "notification", version: NotificationService.version,
                                         configuration: configuration, logger: logger)
            service.install(on: runtime)
            let running = Task { try await runtime.run(handleSignals: false) }
            // Whatever happens below, the runtime is shut down and awaited (its shutdown closes the store).
            try await stopping({ runtime.shutdown(); _ = try? await running.value }) {
                // The login consumer's subscription is live at the broker: a malformed probe is refused.
            #expect(await eventually {
                try? await stack.client.publish(Array("probe".utf8), subject: "user.logged_in")
                try? await stack.client.flush()
                return sink.lines.contains { $0.contains(#""message":"login event refused""#) }
            })

                // Five timeouts in a row open the circuit (the runtime's policy) ...
                for _ in 0..<5 { try await stack.login("u-ann") }
                #expect(await eventually { service.store.count == 5 })
                guard case .open? = runtime.breakerState(for: "auth.user.get") else {
                    throw TestFailure("breaker not open: \(String(describing: runtime.breakerState(for: "auth.user.get")))")
                }
                let timeouts = service.store.page(user: "u-ann", limit: 10).items
                #expect(timeouts.allSatisfy { $0.fallbackReason == "auth unavailable: timeout" && !$0.personalized })
                // ... then events fail fast without asking auth-service.
                let asked = auth.requests
                try await stack.login("u-ann")
                #expect(await eventually { service.store.count == 6 })
                #expect(service.store.page(user: "u-ann", limit: 1).items.first?.fallbackReason == "circuit open")
                #expect(auth.requests == asked)
                // (Counted by the handler just after the store lists the notification.)
                #expect(await eventually { runtime.metrics.value("notifications_fallback_total", labels: [("reason", "circuit_open")]) == 1 })

                // Auth is back: once the cool-down has passed, the next lookup is the breaker's probe;
                // it succeeds and the circuit closes. (Polls the breaker's deadline, no fixed pacing.)
                auth.answering = true
                #expect(await eventually(30) {
                    guard case .open(let until)? = runtime.breakerState(for: "auth.user.get") else { return true }
                    return ContinuousClock.now >= until
                })
                var personalised = false
                let deadline = ContinuousClock.now + .seconds(30)
                while !personalised && ContinuousClock.now < deadline {
                    let before = service.store.count
                    try await stack.login("u-ann")
                    _ = await eventually(5) { service.store.count > before }
                    personalised = service.store.page(user: "u-ann", limit: 1).items.first?.personalized == true
                }
                #expect(personalised)
                #expect(runtime.breakerState(for: "auth.user.get") == .closed)
                #expect(service.store.page(user: "u-ann", limit: 1).items.first?.message == "Welcome back, Ann!")
            }
            try await running.value
            #expect(!service.store.isOpen)
        }
    }
}
