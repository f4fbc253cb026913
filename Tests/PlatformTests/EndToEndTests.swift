import Foundation
import NATSClient
import TestSupport
import Testing

/// The whole platform as real processes (our nats-server, auth, notification, data-processing and
/// analytics), driven over HTTP with the real curl: a login becomes a personalised notification on
/// the user's SSE stream and in their history, analytics counts both once, and the login's trace
/// id reaches every service's logs.
@Suite struct EndToEndTests {
    @Test func aLoginBecomesANotificationOnTheStreamInTheHistoryAndInAnalyticsWithOneTrace() async throws {
        guard Curl.path != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
            return
        }
        let platform = try await Platform.start()
        do {
            try await platform.withClient { try await Self.exercise(platform, $0) }
        } catch {
            await platform.stop()
            throw error
        }
        // SIGTERM: every service drains and exits 0.
        let statuses = await platform.stop()
        #expect(statuses == Dictionary(uniqueKeysWithValues: Contract.services.map { ($0, Int32(0)) }), "exit statuses: \(statuses)")
    }

    static func exercise(_ platform: Platform, _ client: NATSClient) async throws {
        let logins = MessageLog(try await client.subscribe("user.logged_in"))
        let sent = MessageLog(try await client.subscribe("notification.sent"))
        let normalised = MessageLog(try await client.subscribe("events.>"))
        try await client.flush()

        // Register and log in once (curl, with a traceparent of our own) to get a token.
        let name = "Ada Lovelace"
        let email = uniqueEmail("e2e")
        let (userID, token) = try await platform.registerAndLogin(name: name, email: email, traceparent: newTraceparent().header)

        // Open the SSE stream, then log in again with the trace we follow.
        let stream = try await SSEStream.open(try platform.url("notification-service", Contract.notificationStreamPath), token: token)
        do {
            let trace = newTraceparent()
            _ = try await platform.login(email: email, traceparent: trace.header)

            // auth publishes user.logged_in continuing the login's trace.
            let (loginMessage, login) = try await logins.wait("user.logged_in of the traced login") { object in
                object["user_id"] as? String == userID
            } matching: { $0.headers?["traceparent"]?.contains(trace.traceID) == true }
            let eventID = try #require(login["event_id"] as? String)
            #expect(loginMessage.headers?["traceparent"]?.hasPrefix("00-\(trace.traceID)-") == true)

            // The notification arrives on the stream, personalised with the name auth holds.
            let live = try await stream.waitForEvent("the login's notification on the SSE stream") { $0["source_event_id"] as? String == eventID }
            #expect(live["user_id"] as? String == userID)
            #expect(live["kind"] as? String == "welcome")
            #expect(live["personalized"] as? Bool == true)
            #expect(live["fallback_reason"] is NSNull)
            #expect((live["message"] as? String)?.contains("Ada") == true, "message: \(live["message"] ?? "nil")")
            let notificationID = try #require(live["id"] as? String)

            // notification.sent as the contract describes it, in the same trace.
            let (sentMessage, event) = try await sent.wait("notification.sent for the login") { $0["source_event_id"] as? String == eventID }
            #expect(sentMessage.headers?["traceparent"]?.hasPrefix("00-\(trace.traceID)-") == true)
            #expect(event["notification_id"] as? String == notificationID)
            #expect(event["user_id"] as? String == userID)
            #expect(event["kind"] as? String == "welcome")
            #expect(event["personalized"] as? Bool == true)
            #expect(event["fallback_reason"] is NSNull)
            #expect(event["login_time"] as? String == login["time"] as? String)
            #expect((event["event_id"] as? String).map { !$0.isEmpty && $0 != eventID } == true)
            #expect((event["latency_ms"] as? Double).map { $0 >= 0 } == true, "latency_ms: \(event["latency_ms"] ?? "nil")")
            #expect((event["time"] as? String)?.hasSuffix("Z") == true)

            // data-processing republishes both as envelopes carrying the original event_id.
            let (envelopeMessage, envelope) = try await normalised.wait("events.user.logged_in for the login") { $0["event_id"] as? String == eventID }
            #expect(envelopeMessage.subject == "events.user.logged_in")
            #expect(envelopeMessage.headers?["traceparent"]?.hasPrefix("00-\(trace.traceID)-") == true)
            #expect(envelope["type"] as? String == "user.logged_in")
            #expect(envelope["source_subject"] as? String == "user.logged_in")
            #expect(envelope["user_id"] as? String == userID)
            #expect((envelope["occurred_at"] as? String)?.hasSuffix("Z") == true)
            #expect((envelope["data"] as? [String: Any])?["event_id"] as? String == eventID)
            #expect(envelope["enrichment"] is [String: Any])
            let sentEventID = try #require(event["event_id"] as? String)
            let (sentEnvelope, _) = try await normalised.wait("events.notification.sent for the notification") { $0["event_id"] as? String == sentEventID }
            #expect(sentEnvelope.subject == "events.notification.sent")

            // The history lists it (and the first login's, once that one is stored too).
            var history: [[String: Any]] = []
            let both = try await eventually(10) {
                history = try await platform.notifications(token: token)
                return history.count >= 2
            }
            #expect(both && history.count == 2, "two logins, two notifications: \(history.count)")
            let listed = history.first { $0["id"] as? String == notificationID }
            #expect(listed?["source_event_id"] as? String == eventID)
            #expect(listed?["personalized"] as? Bool == true)
            #expect(listed?["message"] as? String == live["message"] as? String)

            // Marked read: notification.read is normalised like every notification.> event (not
            // dead-lettered by data-processing) and counted once by analytics.
            let readURL = try platform.url("notification-service", Contract.notificationsPath + "/\(notificationID)/read")
            let read = try await Curl.post(readURL, json: "{}", headers: ["Authorization": "Bearer \(token)"])
            #expect(read.status == 200, "mark read answered \(read.status): \(read.body)")
            let (readEnvelope, readEvent) = try await normalised.wait("events.notification.read for the read mark") {
                $0["type"] as? String == "notification.read" && ($0["data"] as? [String: Any])?["notification_id"] as? String == notificationID
            }
            #expect(readEnvelope.subject == "events.notification.read")
            #expect(readEvent["user_id"] as? String == userID)
            #expect((readEvent["event_id"] as? String)?.isEmpty == false)
            let deadLetters = (try? await client.jetStream(timeout: .seconds(5)).streamInfo("DEAD_LETTERS"))?.state.messages ?? 0
            #expect(deadLetters == 0, "\(deadLetters) dead letters")

            // Analytics counts each login, notification and read mark once (directly and through
            // data-processing, deduplicated by event_id).
            let statsURL = try platform.url("analytics-service", Contract.statsPath)
            var counts: [String: Int] = [:]
            let counted = await eventually(20) {
                guard let result = try? await Curl.get(statsURL), result.status == 200,
                      let byType = result.json["by_type"] as? [String: Any] else { return false }
                counts = byType.compactMapValues { $0 as? Int }
                return counts["user.logged_in"] == 2 && counts["notification.sent"] == 2 && counts["notification.read"] == 1
            }
            #expect(counted, "analytics counts after two logins: \(counts)")
            #expect(counts["user.registered"] == 1, "analytics counts: \(counts)")

            // The login's trace id is in the logs of all four services.
            for name in Contract.services {
                let found = await eventually(10) { platform.logs(name).contains { $0.contains(#""trace_id":"\#(trace.traceID)""#) } }
                #expect(found, "\(name) logged nothing with the login's trace id \(trace.traceID)")
            }
            // ... on the lines the contract names.
            let expected = ["notification-service": "notification sent", "data-processing-service": "event normalised",
                            "analytics-service": "event counted"]
            for (name, message) in expected {
                #expect(platform.logs(name).contains { $0.contains(#""trace_id":"\#(trace.traceID)""#) && $0.contains(#""message":"\#(message)""#) },
                        "\(name): no \"\(message)\" line with the login's trace id")
            }
        } catch {
            await stream.close()
            throw error
        }
        await stream.close()
    }
}

extension MessageLog {
    /// Waits for a message whose payload satisfies `match` and whose headers satisfy `matching`.
    func wait(_ what: String, seconds: Double = 20, where match: @escaping ([String: Any]) -> Bool,
              matching: @escaping (Message) -> Bool) async throws -> (Message, [String: Any]) {
        var found: (Message, [String: Any])?
        _ = await eventually(seconds) {
            for message in all where matching(message) {
                if let object = (try? JSONSerialization.jsonObject(with: Data(message.payload))) as? [String: Any], match(object) {
                    found = (message, object)
                    return true
                }
            }
            return false
        }
        guard let found else { throw TestFailure("no \(what) within \(seconds) s (\(all.count) messages seen)") }
        return found
    }
}
