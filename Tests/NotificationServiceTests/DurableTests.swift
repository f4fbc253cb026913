import Foundation
import NATSClient
@testable import NotificationService
import ServiceKit
import TestSupport
import Testing

/// At-least-once mode: the service on a broker with JetStream, logins in USER_EVENTS, the
/// notifications in NOTIFICATIONS and each instance's view.
@Suite struct DurableTests {
    @Test(arguments: BrokerKind.available)
    func aLoginPublishedWhileTheServiceIsDownBecomesItsNotificationAfterStart(_ kind: BrokerKind) async throws {
        try await DurableStack.run(kind) { stack in
            let eventID = "down-" + UUID().uuidString.lowercased()
            try await stack.login("u-ann", eventID: eventID)
            let service = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await service.stop() }) {
                #expect(try await eventually { try await history(service, "u-ann").items.count == 1 })
                let item = try #require(try await history(service, "u-ann").items.first)
                #expect(item["id"] as? String == NotificationService.notificationID(sourceEventID: eventID))
                #expect(item["source_event_id"] as? String == eventID)
                #expect(item["message"] as? String == "Welcome back, Ann!")
                // In the stream, once, with the message id that makes a second publish a duplicate.
                let info = try await stack.js.streamInfo("NOTIFICATIONS")
                #expect(info.state.messages == 1)
                let stored = try await stack.js.getMessage("NOTIFICATIONS", sequence: info.state.lastSequence)
                #expect(stored.subject == "notification.sent")
                #expect(stored.headers?["Nats-Msg-Id"] == "notification-\(eventID)")
                #expect(jsonObject(stored.payload)["source_event_id"] as? String == eventID)
                // The event is acknowledged: nothing pending on the durable consumer.
                #expect(try await eventually { () async throws -> Bool in
                    let c = try await stack.js.consumerInfo("USER_EVENTS", name: "notification")
                    return c.numAckPending == 0 && c.numPending == 0
                })
            }
        }
    }

    @Test func aRedeliveredEventMakesOneNotification() async throws {
        try await DurableStack.run { stack in
            let eventID = "again-" + UUID().uuidString.lowercased()
            let service = try await startDurableService(stack.broker, data: stack.data)
            // The same event_id stored twice in USER_EVENTS (no Nats-Msg-Id: both copies kept).
            try await stack.login("u-bob", eventID: eventID)
            try await stack.login("u-bob", eventID: eventID)
            #expect(try await eventually { try await metric(service, "notifications_duplicates_total") >= 1 })
            #expect(try await eventually { try await history(service, "u-bob").items.count == 1 })
            _ = await service.stop()

            // The same messages delivered again: the consumer is recreated and starts over.
            try await stack.js.deleteConsumer("USER_EVENTS", name: "notification")
            let restarted = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await restarted.stop() }) { () async throws in
                #expect(try await eventually { () async throws -> Bool in
                    let c = try await stack.js.consumerInfo("USER_EVENTS", name: "notification")
                    return c.numAckPending == 0 && c.numPending == 0 && c.delivered.streamSequence >= 2
                })
                #expect(try await metric(restarted, "notifications_duplicates_total") == 2)
                #expect(try await history(restarted, "u-bob").items.count == 1)
                #expect(try await stack.js.streamInfo("NOTIFICATIONS").state.messages == 1)
            }
        }
    }

    @Test(arguments: BrokerKind.available)
    func twoInstancesShareHistoryStreamsAndReadMarks(_ kind: BrokerKind) async throws {
        try await DurableStack.run(kind) { stack in
            let dataB = try temporaryDirectory("notif-durable-b")
            defer { removeTemporary(dataB) }
            let a = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await a.stop() }) {
                let b = try await startDurableService(stack.broker, data: dataB)
                try await stopping({ await b.stop() }) {
                    let streamA = try SSEClient(port: a.port, headers: try bearer("u-ann"))
                    defer { streamA.cancel() }
                    let streamB = try SSEClient(port: b.port, headers: try bearer("u-ann"))
                    defer { streamB.cancel() }
                    try await streamA.waitUntilOpen()
                    try await streamB.waitUntilOpen()

                    let count = 20
                    for i in 0..<count { try await stack.login(i % 2 == 0 ? "u-ann" : "u-bob", eventID: "two-\(i)") }
                    let annIDs = Set((0..<count).filter { $0 % 2 == 0 }.map { NotificationService.notificationID(sourceEventID: "two-\($0)") })
                    for service in [a, b] {
                        #expect(try await eventually { try await history(service, "u-ann", query: "?limit=100").items.count == count / 2 })
                    }
                    // The same history, cursors included, from both.
                    let historyA = try await history(a, "u-ann", query: "?limit=100").items
                    let historyB = try await history(b, "u-ann", query: "?limit=100").items
                    #expect(historyA.map { $0["id"] as? String } == historyB.map { $0["id"] as? String })
                    #expect(historyA.map { $0["cursor"] as? String } == historyB.map { $0["cursor"] as? String })
                    #expect(Set(historyA.compactMap { $0["id"] as? String }) == annIDs)
                    // Every instance's stream gets every notification, whichever instance made it.
                    let createdA = try await metric(a, #"notifications_created_total{personalized="true"}"#)
                    let createdB = try await metric(b, #"notifications_created_total{personalized="true"}"#)
                    #expect(createdA + createdB == Double(count))
                    for (name, stream) in [("a", streamA), ("b", streamB)] {
                        #expect(await eventually { stream.events.count >= count / 2 }, "stream on \(name)")
                        #expect(Set(stream.events.compactMap(\.id)) == annIDs && stream.events.count == count / 2, "stream on \(name)")
                    }

                    // Marked read through A: the answer says read, and so does B once its view has it.
                    let id = try #require(annIDs.first)
                    let read = try await a.request("POST", "/v1/notifications/\(id)/read", headers: try bearer("u-ann"))
                    #expect(read.status == 200 && read.json["read"] as? Bool == true)
                    let afterA = try await history(a, "u-ann", query: "?limit=100").items.first { $0["id"] as? String == id }
                    #expect(afterA?["read"] as? Bool == true)
                    #expect(try await eventually { () async throws -> Bool in
                        try await history(b, "u-ann", query: "?limit=100").items.first { $0["id"] as? String == id }?["read"] as? Bool == true
                    })
                    #expect(try await b.request("POST", "/v1/notifications/\(id)/read", headers: try bearer("u-bob")).status == 404)
                }
            }
        }
    }

    /// A read mark is an event of the platform like notification.sent: data-processing normalises
    /// `notification.>` and dead-letters an event without `event_id`, analytics deduplicates by it.
    @Test func aReadMarkIsPublishedWithItsOwnEventIDAndTime() async throws {
        try await DurableStack.run { stack in
            let service = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await service.stop() }) {
                try await stack.login("u-ann", eventID: "read-mark")
                let id = NotificationService.notificationID(sourceEventID: "read-mark")
                #expect(try await eventually { try await history(service, "u-ann").items.count == 1 })
                let read = try await service.request("POST", "/v1/notifications/\(id)/read", headers: try bearer("u-ann"))
                #expect(read.status == 200 && read.json["read"] as? Bool == true)
                let info = try await stack.js.streamInfo("NOTIFICATIONS")
                let stored = try await stack.js.getMessage("NOTIFICATIONS", sequence: info.state.lastSequence)
                #expect(stored.subject == "notification.read")
                #expect(stored.headers?["Nats-Msg-Id"] == "read-\(id)")
                let mark = jsonObject(stored.payload)
                // Derived from the notification: every publish of this mark carries the same id.
                #expect(mark["event_id"] as? String == NotificationService.derivedID("notification.read", id))
                #expect(mark["notification_id"] as? String == id)
                #expect(mark["user_id"] as? String == "u-ann")
                let readAt = try #require(mark["read_at"] as? String)
                #expect(mark["time"] as? String == readAt)
                #expect(read.json["read_at"] as? String == readAt)
            }
        }
    }

    @Test(arguments: BrokerKind.available)
    func aPoisonEventReachesDeadLettersAndTheServiceGoesOn(_ kind: BrokerKind) async throws {
        try await DurableStack.run(kind) { stack in
            let service = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await service.stop() }) {
                let headers = try Headers([("X-Origin", "poison-test")])
                _ = try await stack.js.publish("user.logged_in", payload: Array(#"{"event_id": 7}"#.utf8), headers: headers)
                try await stack.login("u-ann", eventID: "after-poison")
                #expect(try await eventually { try await history(service, "u-ann").items.count == 1 })
                #expect(try await eventually { try await metric(service, #"dead_letters_total{consumer="login"}"#) == 1 })
                let dead = try await stack.js.getMessage("DEAD_LETTERS", sequence: 1)
                #expect(dead.subject == "deadletter.notification.notification")
                #expect(dead.payload == Array(#"{"event_id": 7}"#.utf8))
                #expect(dead.headers?["X-Origin"] == "poison-test")
                #expect(dead.headers?["Dead-Letter-Stream"] == "USER_EVENTS")
                #expect(dead.headers?["Dead-Letter-Consumer"] == "notification")
                #expect(dead.headers?["Dead-Letter-Subject"] == "user.logged_in")
                #expect(dead.headers?["Dead-Letter-Reason"]?.contains("malformed user.logged_in") == true)
                #expect(try await metric(service, "notifications_invalid_events_total") == 1)
            }
        }
    }

    @Test func aRestartedViewResumesFromItsRecordedSequence() async throws {
        try await DurableStack.run { stack in
            let service = try await startDurableService(stack.broker, data: stack.data)
            for i in 0..<5 { try await stack.login("u-ann", eventID: "first-\(i)") }
            #expect(try await eventually { try await history(service, "u-ann").items.count == 5 })
            await service.kill9()
            // Logins while it is down, then a restart on the same view.
            for i in 0..<5 { try await stack.login("u-ann", eventID: "second-\(i)") }
            let restarted = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await restarted.stop() }) {
                #expect(try await eventually { try await history(restarted, "u-ann", query: "?limit=100").items.count == 10 })
                let items = try await history(restarted, "u-ann", query: "?limit=100").items
                let sources = items.compactMap { $0["source_event_id"] as? String }
                #expect(Set(sources) == Set((0..<5).flatMap { ["first-\($0)", "second-\($0)"] }) && sources.count == 10)
                // It read only what followed its recorded position: the five new notifications.
                let opened = try await restarted.child.waitForLine("the store-open line") { $0.contains(#""message":"notification store open""#) }
                #expect(opened.contains(#""view_sequence":5"#))
                #expect(try await eventually { try await metric(restarted, "notifications_view_sequence") == 10 })
                #expect(try await metric(restarted, "notifications_view_applied_total") == 5)
            }
        }
    }

    @Test func aViewBehindTheStreamsFirstMessageStartsOver() async throws {
        try await DurableStack.run { stack in
            let service = try await startDurableService(stack.broker, data: stack.data)
            try await stack.login("u-ann", eventID: "old")
            #expect(try await eventually { try await history(service, "u-ann").items.count == 1 })
            _ = await service.stop()
            // While it is down, a notification comes and everything up to it is purged: the
            // stream's first message is now beyond the view's position + 1.
            let n = UserNotification(id: "n-new", userID: "u-ann", sourceEventID: "new", kind: "welcome", message: "Welcome back!",
                                     personalized: false, fallbackReason: "test", loginTime: "2026-01-01T00:00:00.000Z",
                                     createdAt: "2026-01-01T00:00:00.000Z", readAt: nil, sequence: 0)
            let payload = NotificationService.sentEvent(n, latencyMilliseconds: 0, instance: "test").serialized
            _ = try await stack.js.publish("notification.sent", payload: payload)
            let last = try await stack.js.publish("notification.sent", payload: payload, options: PublishOptions(msgID: "other"))
            _ = try await stack.js.purgeStream("NOTIFICATIONS", sequence: last.sequence)
            let restarted = try await startDurableService(stack.broker, data: stack.data)
            try await stopping({ await restarted.stop() }) { () async throws in
                #expect(try await eventually { () async throws -> Bool in
                    try await history(restarted, "u-ann").items.compactMap { $0["id"] as? String } == ["n-new"]
                })
                #expect(restarted.child.output.contains { $0.contains("notification view starts over") })
            }
        }
    }
}

@Suite struct ViewStoreTests {
    static func sent(_ id: String, user: String = "u", source: String, sequence: UInt64) -> ViewChange {
        .sent(UserNotification(id: id, userID: user, sourceEventID: source, kind: "welcome", message: "m", personalized: false,
                               fallbackReason: nil, loginTime: "t", createdAt: "t", readAt: nil, sequence: sequence))
    }

    @Test func theFirstInStreamOrderWinsAndTheAppliedSequenceSurvivesReopening() async throws {
        let dir = try temporaryDirectory("notif-view")
        defer { removeTemporary(dir) }
        var store = try NotificationStore(directory: dir, name: "view", maxPerUser: 100)
        let first = try await store.apply([Self.sent("a", source: "e1", sequence: 1), Self.sent("b", source: "e1", sequence: 2),
                                           Self.sent("c", source: "e2", sequence: 3), .read(id: "c", user: "u", at: "r1"),
                                           .read(id: "a", user: "someone-else", at: "r0")], through: 3)
        #expect(first.created.map(\.id) == ["a", "c"] && first.duplicates == 1)
        #expect(first.created.last?.readAt == "r1" && first.created.first?.readAt == nil)
        let second = try await store.apply([Self.sent("a", source: "e9", sequence: 4), .read(id: "a", user: "u", at: "r2"),
                                            .read(id: "c", user: "u", at: "r3")], through: 5)
        #expect(second.created.isEmpty && second.duplicates == 1 && second.read.map(\.id) == ["a"])
        #expect(store.appliedSequence == 5)
        store.close()

        store = try NotificationStore(directory: dir, name: "view", maxPerUser: 100)
        #expect(store.appliedSequence == 5)
        let items = store.page(user: "u", limit: 10).items
        #expect(items.map(\.id) == ["c", "a"] && items.map(\.sequence) == [3, 1])
        #expect(items.map(\.readAt) == ["r1", "r2"])
        try await store.resetView()
        #expect(store.appliedSequence == 0 && store.count == 0)
        store.close()
        store = try NotificationStore(directory: dir, name: "view", maxPerUser: 100)
        #expect(store.appliedSequence == 0 && store.count == 0)
        store.close()
    }

    @Test func derivedIDsAreStableUUIDs() {
        let id = NotificationService.notificationID(sourceEventID: "e-1")
        #expect(id == NotificationService.notificationID(sourceEventID: "e-1"))
        #expect(id != NotificationService.notificationID(sourceEventID: "e-2"))
        #expect(UUID(uuidString: id) != nil && id == id.lowercased())
    }
}
