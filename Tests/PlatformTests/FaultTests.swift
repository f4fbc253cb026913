import Foundation
import NATSClient
import TestSupport
import Testing

/// Publishes `count` `user.logged_in` events for `user` (as auth-service would) and returns their event ids.
private func publishLogins(_ platform: Platform, _ client: NATSClient, user: (id: String, email: String, name: String),
                           count: Int) async throws -> [String] {
    var ids: [String] = []
    for _ in 0..<count {
        let id = UUID().uuidString.lowercased()
        try await platform.publishLogin(client, userID: user.id, email: user.email, name: user.name, eventID: id)
        ids.append(id)
    }
    try await client.flush()
    return ids
}

/// auth-service goes away while logins' events are in flight: the notification service still
/// notifies (generic text, `personalized: false`, a reason), its circuit breaker for
/// `auth.user.get` opens, and once auth is back the breaker closes and notifications are
/// personalised again.
@Suite struct AuthOutageTests {
    @Test func notificationsFallBackWhileAuthIsDownAndThePersonalisationReturnsWithAuth() async throws {
        guard Curl.path != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
            return
        }
        try await Platform.with(["auth-service", "notification-service"]) { platform in
            try await platform.withClient { try await Self.exercise(platform, $0) }
        }
    }

    /// Publishes `count` logins for `user` and returns their `notification.sent` events, in order.
    /// - Throws: ``TestFailure`` when not all of them are notified within 30 s.
    static func notify(_ platform: Platform, _ client: NATSClient, _ sent: MessageLog,
                       user: (id: String, email: String, name: String), count: Int) async throws -> [[String: Any]] {
        let ids = try await publishLogins(platform, client, user: user, count: count)
        var events: [String: [String: Any]] = [:]
        _ = await eventually(30) {
            for event in sent.objects { if let id = event["source_event_id"] as? String, ids.contains(id) { events[id] = event } }
            return events.count == ids.count
        }
        guard events.count == ids.count else { throw TestFailure("\(events.count) of \(ids.count) logins notified within 30 s") }
        return ids.compactMap { events[$0] }
    }

    static func exercise(_ platform: Platform, _ client: NATSClient) async throws {
        let sent = MessageLog(try await client.subscribe("notification.sent"))
        try await client.flush()
        let email = uniqueEmail("outage")
        let (userID, token) = try await platform.registerAndLogin(name: "Grace Hopper", email: email)
        let user = (id: userID, email: email, name: "Grace Hopper")
        let first = try await sent.wait("the notification of the real login") { $0["user_id"] as? String == userID }.1
        #expect(first["personalized"] as? Bool == true)

        // auth stops while a burst of logins' events is in flight: each is notified exactly once,
        // personalised if auth still answered, generic with a reason if not.
        async let burst = publishLogins(platform, client, user: user, count: 20)
        async let stopped = platform.stop("auth-service")
        let inFlight = try await burst
        #expect(await stopped == 0)
        var inFlightEvents: [String: [[String: Any]]] = [:]
        let allNotified = await eventually(30) {
            inFlightEvents = Dictionary(grouping: sent.objects.filter { inFlight.contains($0["source_event_id"] as? String ?? "") }) {
                $0["source_event_id"] as? String ?? ""
            }
            return inFlightEvents.count == inFlight.count
        }
        #expect(allNotified, "\(inFlightEvents.count) of \(inFlight.count) in-flight logins notified")
        for (id, events) in inFlightEvents {
            #expect(events.count == 1, "login \(id) notified \(events.count) times")
            let personalised = events.first?["personalized"] as? Bool == true
            let reason = events.first?["fallback_reason"] as? String
            #expect(personalised ? reason == nil : reason?.isEmpty == false, "login \(id): personalized \(personalised), reason \(reason ?? "nil")")
        }

        // auth is gone; logins keep coming (published as auth would have).
        let failing = try await Self.notify(platform, client, sent, user: user, count: 6)
        for event in failing {
            #expect(event["personalized"] as? Bool == false)
            #expect((event["fallback_reason"] as? String)?.isEmpty == false, "fallback_reason: \(event["fallback_reason"] ?? "nil")")
        }
        // Those lookups failed (five in a row open the breaker); the next ones are not even tried.
        let rejected = try await Self.notify(platform, client, sent, user: user, count: 3)
        let reasons = rejected.map { $0["fallback_reason"] as? String ?? "nil" }
        #expect(rejected.allSatisfy { $0["personalized"] as? Bool == false })
        #expect(reasons == ["circuit open", "circuit open", "circuit open"],
                "the breaker for auth.user.get did not open after \(failing.map { $0["fallback_reason"] ?? "nil" }): \(reasons)")
        let metrics = try await platform.service("notification-service").request("GET", "/metrics").body
        #expect(metrics.split(separator: "\n").contains { $0.hasPrefix("notifications_fallback_total{") && $0.contains("circuit_open") },
                "/metrics counts no fallback for an open circuit")
        let during = (failing + rejected).compactMap { $0["source_event_id"] as? String }
        let stored = try await platform.notifications(token: token)
        #expect(stored.filter { during.contains($0["source_event_id"] as? String ?? "") && $0["personalized"] as? Bool == false }.count == during.count)

        // auth is back (same data): after the breaker's cool-down a trial lookup succeeds, the
        // breaker closes and notifications are personalised again.
        try await platform.start("auth-service")
        try await platform.waitReady("auth-service")
        // One login at a time, a quarter second apart, until one is personalised (the breaker's
        // cool-down is 10 s; the deadline is the bound, the pause only keeps the event count low).
        var attempts = 0
        var personalised = false
        let deadline = ContinuousClock.now + .seconds(40)
        while !personalised && ContinuousClock.now < deadline {
            attempts += 1
            let ids = try await publishLogins(platform, client, user: user, count: 1)
            let (_, event) = try await sent.wait("the notification of a login after auth came back", seconds: 10) {
                ids.contains($0["source_event_id"] as? String ?? "")
            }
            personalised = event["personalized"] as? Bool == true
            if !personalised { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(personalised, "no personalised notification within 40 s of auth coming back (\(attempts) logins tried)")
        // Closed, not half-open: every following login is personalised.
        let after = try await publishLogins(platform, client, user: user, count: 5)
        var settled: [[String: Any]] = []
        _ = await eventually(20) {
            settled = sent.objects.filter { after.contains($0["source_event_id"] as? String ?? "") }
            return settled.count >= after.count
        }
        #expect(settled.count == after.count)
        #expect(settled.allSatisfy { $0["personalized"] as? Bool == true && $0["fallback_reason"] is NSNull },
                "after recovery: \(settled.map { $0["fallback_reason"] ?? "nil" })")
    }
}

/// The broker restarts on the same port: every service reconnects (readyz) and the events
/// published after the restart are each notified exactly once.
@Suite struct BrokerRestartTests {
    @Test func servicesReconnectAndNoEventAfterTheRestartIsLostOrDuplicated() async throws {
        guard Curl.path != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
            return
        }
        try await Platform.with { platform in try await Self.exercise(platform) }
    }

    static func exercise(_ platform: Platform) async throws {
        let email = uniqueEmail("restart")
        let (userID, token) = try await platform.registerAndLogin(name: "Barbara Liskov", email: email)
        let user = (id: userID, email: email, name: "Barbara Liskov")
        #expect(try await eventually(15) { try await platform.notifications(token: token).count == 1 })

        await platform.stopBroker()
        for name in Contract.services {
            let service = try platform.service(name)
            #expect(await eventually(15) { (try? await service.request("GET", "/readyz"))?.status == 503 },
                    "\(name) still reports ready without a broker")
        }
        try await platform.startBroker()
        for name in Contract.services { try await platform.waitReady(name) }

        try await platform.withClient { client in
            let envelopes = MessageLog(try await client.subscribe("events.user.logged_in"))
            try await client.flush()
            let ids = try await publishLogins(platform, client, user: user, count: 20)

            var history: [[String: Any]] = []
            let all = try await eventually(30) {
                history = try await platform.notifications(token: token)
                let sources = Set(history.compactMap { $0["source_event_id"] as? String })
                return ids.allSatisfy(sources.contains)
            }
            #expect(all, "notifications for \(history.count - 1) of \(ids.count) events published after the restart")
            let sources = history.compactMap { $0["source_event_id"] as? String }
            for id in ids { #expect(sources.filter { $0 == id }.count == 1, "event \(id) notified \(sources.filter { $0 == id }.count) times") }
            #expect(history.count == ids.count + 1)

            // data-processing is back on the new connection too, and analytics counts each once.
            #expect(await eventually(20) { Set(envelopes.objects.compactMap { $0["event_id"] as? String }).isSuperset(of: ids) })
            let statsURL = try platform.url("analytics-service", Contract.statsPath)
            var logins: Int?
            let counted = await eventually(20) {
                guard let result = try? await Curl.get(statsURL),
                      let byType = result.json["by_type"] as? [String: Any] else { return false }
                logins = byType["user.logged_in"] as? Int
                return logins == ids.count + 1
            }
            #expect(counted, "analytics counted \(logins.map(String.init) ?? "nil") logins, expected \(ids.count + 1)")
        }
    }
}

/// The notification service is killed (SIGKILL) and started again on the same data: every
/// notification it listed before is still there, unchanged, and new ones keep coming.
@Suite struct NotificationCrashTests {
    @Test func everyNotificationListedBeforeAKillIsStillThereAfterTheRestart() async throws {
        guard Curl.path != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
            return
        }
        try await Platform.with(["auth-service", "notification-service"]) { platform in try await Self.exercise(platform) }
    }

    static func exercise(_ platform: Platform) async throws {
        let email = uniqueEmail("crash")
        let (userID, token) = try await platform.registerAndLogin(name: "Edsger Dijkstra", email: email)
        let user = (id: userID, email: email, name: "Edsger Dijkstra")
        try await platform.withClient { try await exercise(platform, $0, user: user, token: token) }
    }

    static func exercise(_ platform: Platform, _ client: NATSClient, user: (id: String, email: String, name: String),
                         token: String) async throws {
        let ids = try await publishLogins(platform, client, user: user, count: 10)
        var before: [[String: Any]] = []
        let listed = try await eventually(20) {
            before = try await platform.notifications(token: token)
            return before.count == ids.count + 1
        }
        #expect(listed, "\(before.count) notifications listed, expected \(ids.count + 1)")

        await platform.kill9("notification-service")
        try await platform.start("notification-service")
        try await platform.waitReady("notification-service")

        let after = try await platform.notifications(token: token)
        let afterByID = Dictionary(after.compactMap { n in (n["id"] as? String).map { ($0, n) } }, uniquingKeysWith: { a, _ in a })
        for notification in before {
            let id = notification["id"] as? String ?? "?"
            let again = afterByID[id]
            #expect(again != nil, "notification \(id) lost by the kill")
            for field in ["source_event_id", "message", "personalized", "created_at", "user_id"] {
                #expect("\(again?[field] ?? "nil")" == "\(notification[field] ?? "nil")", "notification \(id): \(field) changed")
            }
        }
        #expect(after.count == before.count)

        // And it works on: one more login, one more notification.
        let more = try await publishLogins(platform, client, user: user, count: 1)
        #expect(try await eventually(20) {
            try await platform.notifications(token: token).contains { $0["source_event_id"] as? String == more[0] }
        })
    }
}
