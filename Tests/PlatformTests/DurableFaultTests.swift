import Foundation
import NATSClient
import TestSupport
import Testing

// Fault tests of the durable (at-least-once) platform: each service killed in the middle of its
// work, the broker killed and restarted on the same store, the outbox of auth-service across a
// broker outage, and a poison event reaching the dead-letter stream. Each test asserts effects:
// every event has exactly one effect after the fault.

/// Publishes `count` `user.logged_in` events into USER_EVENTS through JetStream (each acknowledged,
/// so stored; `Nats-Msg-Id` = event id as auth-service's outbox sends them); returns their ids.
func publishDurableLogins(_ client: NATSClient, user: (id: String, email: String, name: String), count: Int) async throws -> [String] {
    let js = try client.jetStream(timeout: .seconds(10))
    var ids: [String] = []
    for _ in 0..<count {
        let id = UUID().uuidString.lowercased()
        let event = ["event_id": id, "user_id": user.id, "email": user.email, "name": user.name,
                     "time": isoNow(), "client_address": "127.0.0.1"]
        var headers = Headers()
        try headers.set(name: "traceparent", value: newTraceparent().header)
        _ = try await js.publish("user.logged_in", payload: Array(jsonText(event).utf8), headers: headers,
                                 options: PublishOptions(msgID: id))
        ids.append(id)
    }
    return ids
}

/// The source event ids of a user's whole history in one notification instance (every page, over
/// raw HTTP: thousands of notifications are 100 per page).
/// - Throws: ``TestFailure`` for a non-200 page or a body without a list.
func historySources(_ platform: Platform, token: String, service: String = "notification-service") async throws -> [String] {
    let instance = try platform.service(service)
    var sources: [String] = []
    var cursor: String?
    for _ in 0..<1000 {
        let path = Contract.notificationsPath + "?limit=100" + (cursor.map { "&before=\($0)" } ?? "")
        let result = try await instance.request("GET", path, headers: ["Authorization": "Bearer \(token)"])
        guard result.status == 200, let page = notificationList(result.body) else {
            throw TestFailure("GET \(path) answered \(result.status): \(result.body)")
        }
        sources += page.items.map { $0["source_event_id"] as? String ?? "(none)" }
        guard let next = page.next, !page.items.isEmpty else { break }
        cursor = next
    }
    return sources
}

/// `by_type["user.logged_in"]` of analytics-service's all-time counts, nil if unreadable.
func analyticsLogins(_ platform: Platform) async -> Int? {
    guard let service = try? platform.service("analytics-service"),
          let result = try? await service.request("GET", Contract.statsPath), result.status == 200,
          let byType = result.json["by_type"] as? [String: Any] else { return nil }
    return byType["user.logged_in"] as? Int ?? 0
}

/// Every id in `expected` exactly once among `sources`; a message naming what is missing or doubled.
func exactlyOnce(_ expected: [String], in sources: [String]) -> String? {
    var seen: [String: Int] = [:]
    for source in sources { seen[source, default: 0] += 1 }
    let missing = expected.filter { seen[$0] == nil }
    let doubled = seen.filter { $0.value > 1 }
    if missing.isEmpty && doubled.isEmpty { return nil }
    return "\(missing.count) of \(expected.count) events have no notification (\(missing.prefix(3))), \(doubled.count) have several"
}

@Suite struct DurableFaultTests {
    static var curlMissing: Bool {
        guard Curl.path == nil else { return false }
        if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
        return true
    }

    /// notification-service is SIGKILLed while it works through a backlog of logins: after its
    /// restart every login has exactly one notification (stored ones are acknowledged or found again
    /// by event id; unacknowledged ones are redelivered).
    @Test func notificationKilledMidBatchLeavesEveryLoginExactlyOneNotification() async throws {
        if Self.curlMissing { return }
        try await Platform.with(["auth-service", "notification-service"]) { platform in
            try await platform.withClient { try await Self.notificationMidBatch(platform, $0) }
        }
    }

    static func notificationMidBatch(_ platform: Platform, _ client: NATSClient) async throws {
            let email = uniqueEmail("midbatch")
            let (userID, token) = try await platform.registerAndLogin(name: "Frances Allen", email: email)
            let first = try await eventually(20) { try await historySources(platform, token: token).count == 1 }
            #expect(first, "the real login was not notified")
            let initial = try await historySources(platform, token: token)
            do {
                // 800: under the service's 1000 kept per user (MAX_NOTIFICATIONS_PER_USER), so all stay listed.
                let ids = try await publishDurableLogins(client, user: (userID, email, "Frances Allen"), count: 800)
                // Killed as soon as part of the backlog is stored.
                _ = try await eventually(30) { try await historySources(platform, token: token).count > 1 }
                let beforeKill = try await historySources(platform, token: token).count
                await platform.kill9("notification-service")
                try await platform.start("notification-service")
                try await platform.waitReady("notification-service")
                var sources: [String] = []
                let complete = try await eventually(90) {
                    sources = try await historySources(platform, token: token)
                    return Set(sources).isSuperset(of: ids)
                }
                #expect(complete, "\(Set(sources).intersection(ids).count) of \(ids.count) notified 90 s after the restart")
                #expect(exactlyOnce(ids + initial, in: sources) == nil, "\(exactlyOnce(ids + initial, in: sources) ?? "")")
                #expect(sources.count == ids.count + 1, "\(sources.count) notifications for \(ids.count + 1) logins (\(beforeKill) just before the kill)")
            }
    }

    /// analytics-service is SIGKILLed while it counts a backlog: after its restart it resumes where
    /// its snapshot ends and has counted every login exactly once.
    @Test func analyticsKilledMidBatchCountsEveryLoginOnce() async throws {
        // Every service: analytics reads the streams of the other three and is ready once they exist.
        try await Platform.with { platform in
            try await platform.withClient { try await Self.analyticsMidBatch(platform, $0) }
        }
    }

    static func analyticsMidBatch(_ platform: Platform, _ client: NATSClient) async throws {
            do {
                let user = (id: UUID().uuidString.lowercased(), email: uniqueEmail("count"), name: "Count Me")
                let ids = try await publishDurableLogins(client, user: user, count: 2000)
                _ = await eventually(30) { (await analyticsLogins(platform) ?? 0) > 0 }
                let atKill = await analyticsLogins(platform)
                await platform.kill9("analytics-service")
                try await platform.start("analytics-service")
                try await platform.waitReady("analytics-service")
                var counted: Int?
                let all = await eventually(60) {
                    counted = await analyticsLogins(platform)
                    return (counted ?? 0) >= ids.count
                }
                #expect(all, "counted \(counted.map(String.init) ?? "nil") of \(ids.count) (\(atKill.map(String.init) ?? "nil") at the kill)")
                // Anything redelivered twice would show up a moment later.
                try await Task.sleep(for: .seconds(2))
                let final = await analyticsLogins(platform)
                #expect(final == ids.count, "counted \(final ?? -1), expected \(ids.count)")
            }
    }

    /// data-processing-service is SIGKILLed right after accepting jobs: the jobs live in the
    /// DATA_JOBS work queue, so after the restart each has its result in data.jobs.status.
    @Test func dataProcessingKilledMidBatchStillFinishesEveryAcceptedJob() async throws {
        // With the owners of the two streams data-processing reads: it waits for them to exist.
        try await Platform.with(["auth-service", "notification-service", "data-processing-service"]) { platform in
            try await platform.withClient { try await Self.jobsMidBatch(platform, $0) }
        }
    }

    /// The status of each job in `ids` that is not `done` yet (its status, or what answered instead).
    static func unfinishedJobs(_ client: NATSClient, _ ids: [String]) async -> [String: String] {
        var unfinished: [String: String] = [:]
        for id in ids {
            let reply = try? await client.request(Array(jsonText(["job_id": id]).utf8), subject: "data.jobs.status", timeout: .seconds(5))
            let status = reply.flatMap { jsonObject($0.string)?["status"] as? String }
            if status != "done" { unfinished[id] = status ?? reply?.string ?? "no reply" }
        }
        return unfinished
    }

    static func jobsMidBatch(_ platform: Platform, _ client: NATSClient) async throws {
        let body = #"{"format":"csv","csv":"user,ms\nann,120\nbo,30\nann,80\n","pipeline":[{"op":"sort","by":["user"]}]}"#
            do {
                var accepted: [String] = []
                for _ in 0..<30 {
                    let reply = try await client.request(Array(body.utf8), subject: "data.jobs.submit", timeout: .seconds(10))
                    let id = try #require(jsonObject(reply.string)?["job_id"] as? String, "submit answered \(reply.string)")
                    accepted.append(id)
                }
                await platform.kill9("data-processing-service")
                try await platform.start("data-processing-service")
                try await platform.waitReady("data-processing-service")
                let finished = await eventually(60) { await unfinishedJobs(client, accepted).isEmpty }
                let unfinished = await unfinishedJobs(client, accepted)
                #expect(finished && unfinished.isEmpty,
                        "\(unfinished.count) of \(accepted.count) jobs without a result after the restart: \(unfinished.prefix(3))")
            }
    }

    /// The broker is SIGKILLed while notification-service is down and logins wait in USER_EVENTS;
    /// restarted on the same store, it still has them, and each becomes exactly one notification.
    @Test(arguments: BrokerKind.allCases)
    func brokerKilledAndRestartedOnTheSameStoreKeepsPendingEvents(_ broker: BrokerKind) async throws {
        if Self.curlMissing { return }
        guard broker.executable != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but \(BrokerKind.referencePath) is missing") }
            return
        }
        try await Platform.with(["auth-service", "notification-service"], broker: broker) { platform in
            let email = uniqueEmail("store")
            let (userID, token) = try await platform.registerAndLogin(name: "Jean Sammet", email: email)
            #expect(try await eventually(20) { try await historySources(platform, token: token).count == 1 })
            #expect(await platform.stop("notification-service") == 0)
            let ids = try await platform.withClientReturning { client in
                try await publishDurableLogins(client, user: (userID, email, "Jean Sammet"), count: 50)
            }
            await platform.killBroker()
            try await platform.startBroker()
            try await platform.start("notification-service")
            try await platform.waitReady("notification-service")
            try await platform.waitReady("auth-service")
            var sources: [String] = []
            let complete = try await eventually(60) {
                sources = try await historySources(platform, token: token)
                return Set(sources).isSuperset(of: ids)
            }
            #expect(complete, "\(Set(sources).intersection(ids).count) of \(ids.count) pending logins notified after the broker's restart")
            #expect(exactlyOnce(ids, in: sources) == nil, "\(exactlyOnce(ids, in: sources) ?? "")")
            #expect(sources.count == ids.count + 1)
        }
    }

    /// auth-service keeps answering logins while the broker is down (the outbox stores each event
    /// with the login), survives a SIGKILL with the events still unsent, and sends them when the
    /// broker is back: each login becomes exactly one notification.
    @Test func authOutboxKeepsLoginsMadeWhileTheBrokerIsDown() async throws {
        if Self.curlMissing { return }
        try await Platform.with(["auth-service", "notification-service"]) { try await Self.outbox($0) }
    }

    static func outbox(_ platform: Platform) async throws {
        let email = uniqueEmail("outbox")
        let token = try await platform.registerAndLogin(name: "Mary Keller", email: email).token
        #expect(try await eventually(20) { try await historySources(platform, token: token).count == 1 })
        await platform.stopBroker()
        for _ in 0..<5 { _ = try await platform.login(email: email) }
        await platform.kill9("auth-service")
        try await platform.startBroker()
        try await platform.start("auth-service")
        try await platform.waitReady("auth-service")
        try await platform.waitReady("notification-service")
        let all = try await eventually(60) { try await historySources(platform, token: token).count >= 6 }
        try await Task.sleep(for: .seconds(1))
        let sources = try await historySources(platform, token: token)
        #expect(all, "\(sources.count) notifications for 6 logins (5 while the broker was down)")
        #expect(sources.count == 6 && Set(sources).count == 6, "notifications: \(sources)")
    }
}

extension Platform {
    /// Runs `body` with a client connected to the broker and returns its result; the client is
    /// closed however `body` ends.
    func withClientReturning<T: Sendable>(_ body: (NATSClient) async throws -> T) async throws -> T {
        let client = try await NATSClient.connect(natsURL)
        do {
            let value = try await body(client)
            await client.close()
            return value
        } catch {
            await client.close()
            throw error
        }
    }
}
