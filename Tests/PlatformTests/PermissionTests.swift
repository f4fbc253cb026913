import Foundation
import NATSClient
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Records an issue for permission violations a test did not provoke (``Platform/stop()``): a
/// service doing what it normally does must stay inside its row of nats-server/permissions.conf.
func recordUnexpected(violations: [String]) {
    guard !violations.isEmpty else { return }
    let lines = violations.prefix(20).joined(separator: "\n")
    Issue.record("permission violations during the test (a row of nats-server/permissions.conf misses something the service does):\n\(lines)")
}

/// A raw client session: CONNECT (with `user`/`password` when given), `commands`, then PING; read
/// until PONG, or until the broker closes the connection. Returns what the broker sent.
/// - Throws: ``TestFailure`` when the connection fails or nothing ends the session within 15 s.
func rawSession(port: Int, user: String?, password: String?, _ commands: [String]) async throws -> String {
    var connect: [String: Any] = ["verbose": false, "pedantic": false, "protocol": 1, "headers": true]
    if let user { connect["user"] = user }
    if let password { connect["pass"] = password }
    let json = String(decoding: try JSONSerialization.data(withJSONObject: connect, options: [.sortedKeys]), as: UTF8.self)
    let request = "CONNECT \(json)\r\n" + commands.map { $0 + "\r\n" }.joined() + "PING\r\n"
    return try await offPool {
        let fd = try connectLoopback(port: port, timeoutSeconds: 15)
        defer { close(fd) }
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TestFailure("write failed: errno \(errno)") }
            sent += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let text = String(decoding: received, as: UTF8.self)
            if text.contains("PONG\r\n") { return text }
            let n = read(fd, &buffer, buffer.count)
            if n == 0 { return text }
            guard n > 0 else { throw TestFailure("no PONG and no close within 15 s; received: \(text)") }
            received += buffer[0..<n]
        }
    }
}

/// The permission matrix (nats-server/permissions.conf) enforced on a running platform, by our
/// broker and by nats-server 2.9.10 with the same file: each identity is refused what belongs to
/// another row, nobody gets in without credentials, and a forged event never becomes an effect.
@Suite(.serialized) struct PermissionTests {
    /// What an identity tries that belongs to other rows, and something of its own row as a
    /// control (allowed, so the refusals above it are the matrix's and not a broken session).
    struct Row: Sendable, CustomStringConvertible {
        var identity: String
        var refusedPublish: [String]
        var refusedSubscribe: [String]
        var allowedPublish: [String]
        var allowedSubscribe: [String]
        var description: String { identity }
    }

    static let rows: [Row] = [
        Row(identity: "auth-service",
            refusedPublish: ["notification.sent", "events.user.logged_in", "auth.user.get", "data.jobs.submit",
                             "$JS.API.STREAM.DELETE.USER_EVENTS", "$JS.API.STREAM.INFO.NOTIFICATIONS", "$KV.data_job_results.x"],
            refusedSubscribe: ["user.logged_in", "notification.>", "_INBOX.notification-service.>", "_INBOX.>", ">", "data.transform"],
            allowedPublish: ["user.logged_in", "$KV.auth_users.x"], allowedSubscribe: ["auth.user.get", "_INBOX.auth-service.>"]),
        Row(identity: "notification-service",
            refusedPublish: ["user.logged_in", "user.registered", "events.notification.sent", "data.jobs.q.done",
                             "$JS.API.STREAM.DELETE.USER_EVENTS", "$JS.API.STREAM.PURGE.NOTIFICATIONS", "$KV.auth_users.x",
                             "$JS.API.CONSUMER.MSG.NEXT.USER_EVENTS.data-processing-events", "deadletter.auth.x",
                             // auth-service's stream: only its owner may create or change it.
                             "$JS.API.STREAM.UPDATE.USER_EVENTS", "$JS.API.STREAM.CREATE.USER_EVENTS",
                             // Its durable by the 2.9 subject only, no other name, no ephemeral on USER_EVENTS.
                             "$JS.API.CONSUMER.CREATE.USER_EVENTS.other", "$JS.API.CONSUMER.DURABLE.CREATE.USER_EVENTS.notification",
                             "$JS.API.CONSUMER.CREATE.USER_EVENTS"],
            refusedSubscribe: ["auth.user.get", "auth.token.verify", "_INBOX.auth-service.>", "_INBOX.>", "events.>", ">"],
            allowedPublish: ["notification.sent", "auth.user.get", "$JS.API.STREAM.INFO.USER_EVENTS", "$JS.API.STREAM.UPDATE.NOTIFICATIONS",
                             "$JS.API.CONSUMER.CREATE.USER_EVENTS.notification"], allowedSubscribe: ["user.logged_in", "_INBOX.notification-service.x"]),
        Row(identity: "data-processing-service",
            refusedPublish: ["user.logged_in", "user.registered", "notification.sent", "auth.user.get", "auth.token.verify",
                             "$JS.API.STREAM.DELETE.EVENTS", "$JS.API.CONSUMER.MSG.NEXT.USER_EVENTS.notification", "$KV.auth_users.x",
                             // The streams of auth-service and notification-service: it only reads them.
                             "$JS.API.STREAM.UPDATE.USER_EVENTS", "$JS.API.STREAM.CREATE.USER_EVENTS",
                             "$JS.API.STREAM.UPDATE.NOTIFICATIONS", "$JS.API.STREAM.CREATE.NOTIFICATIONS",
                             "$JS.API.CONSUMER.CREATE.USER_EVENTS.notification", "$JS.API.CONSUMER.CREATE.USER_EVENTS",
                             "$JS.API.CONSUMER.DURABLE.CREATE.DATA_JOBS.data-processing-jobs"],
            refusedSubscribe: ["auth.user.get", "analytics.query", "_INBOX.analytics-service.>", "_INBOX.>", ">"],
            allowedPublish: ["events.user.logged_in", "data.jobs.abc.done", "$JS.API.STREAM.INFO.NOTIFICATIONS", "$JS.API.STREAM.UPDATE.EVENTS",
                             "$JS.API.CONSUMER.CREATE.USER_EVENTS.data-processing-events"], allowedSubscribe: ["user.>", "data.jobs.submit"]),
        Row(identity: "analytics-service",
            refusedPublish: ["user.logged_in", "notification.sent", "events.user.logged_in", "auth.user.get", "data.transform",
                             "$JS.API.STREAM.CREATE.EVENTS", "$JS.API.STREAM.DELETE.NOTIFICATIONS", "$JS.ACK.USER_EVENTS.notification.1.1.1.1.0"],
            refusedSubscribe: ["auth.user.get", "auth.token.verify", "_INBOX.auth-service.>", "_INBOX.>", ">", "data.jobs.submit"],
            allowedPublish: ["$JS.API.INFO"], allowedSubscribe: ["events.>", "analytics.query", "_INBOX.analytics-service.>"]),
    ]

    static func publishRefusal(_ subject: String) -> String { "-ERR 'Permissions Violation for Publish to \"\(subject)\"'" }
    static func subscribeRefusal(_ subject: String) -> String { "-ERR 'Permissions Violation for Subscription to \"\(subject)\"'" }

    /// Skips the reference broker when it is not installed (a failure under REQUIRE_PEERS=1).
    static func available(_ broker: BrokerKind) -> Bool {
        if broker.executable != nil { return true }
        if peersRequired { Issue.record("REQUIRE_PEERS=1 but \(broker) is not installed") }
        return false
    }

    @Test(arguments: BrokerKind.allCases)
    func everyIdentityIsRefusedWhatBelongsToAnotherRowAndNobodyGetsInAnonymously(_ broker: BrokerKind) async throws {
        guard Self.available(broker) else { return }
        // The broker alone: the rows are the broker's to enforce.
        try await Platform.with([], broker: broker) { platform in
            platform.allowPermissionViolations()
            let anonymous = try await rawSession(port: platform.brokerPort, user: nil, password: nil, ["SUB > 1"])
            #expect(anonymous.contains("-ERR 'Authorization Violation'") && !anonymous.contains("PONG"), "anonymous: \(anonymous)")
            let wrong = try await rawSession(port: platform.brokerPort, user: "auth-service", password: platform.passwords["admin"], [])
            #expect(wrong.contains("-ERR 'Authorization Violation'") && !wrong.contains("PONG"), "another identity's password: \(wrong)")

            for row in Self.rows {
                var commands: [String] = []
                for (index, subject) in (row.refusedSubscribe + row.allowedSubscribe).enumerated() { commands.append("SUB \(subject) \(index + 1)") }
                for subject in row.refusedPublish + row.allowedPublish { commands += ["PUB \(subject) 0", ""] }
                let session = try await rawSession(port: platform.brokerPort, user: row.identity, password: platform.passwords[row.identity], commands)
                #expect(session.contains("PONG"), "\(row): the session did not complete: \(session)")
                for subject in row.refusedPublish {
                    #expect(session.contains(Self.publishRefusal(subject)), "\(row) may publish \(subject): \(session)")
                }
                for subject in row.refusedSubscribe {
                    #expect(session.contains(Self.subscribeRefusal(subject)), "\(row) may subscribe to \(subject): \(session)")
                }
                for subject in row.allowedPublish {
                    #expect(!session.contains(Self.publishRefusal(subject)), "\(row) is refused its own publish \(subject)")
                }
                for subject in row.allowedSubscribe {
                    #expect(!session.contains(Self.subscribeRefusal(subject)), "\(row) is refused its own subscription \(subject)")
                }
            }
            // admin (people, the CLI, the tests) may do anything.
            let admin = try await rawSession(port: platform.brokerPort, user: "admin", password: platform.passwords["admin"],
                                             ["SUB > 1", "PUB user.logged_in 0", ""])
            #expect(admin.contains("PONG") && !admin.contains("-ERR"), "admin: \(admin)")
        }
    }

    /// auth.user.get hands out a user's record by id: only notification-service (and admin) may ask.
    @Test(arguments: BrokerKind.allCases)
    func onlyTheIdentitiesAllowedToAskForAUserRecordGetAnAnswer(_ broker: BrokerKind) async throws {
        guard Self.available(broker) else { return }
        try await Platform.with(["auth-service"], broker: broker) { platform in
            platform.allowPermissionViolations()
            let user = try await platform.registerAndLogin(name: "Private Person")
            let question = Array(jsonText(["id": user.id]).utf8)
            // The control: the one service whose row has the request gets the record.
            let allowed = try await Self.connect(platform, as: "notification-service")
            let answer = try await allowed.request(question, subject: "auth.user.get", timeout: .seconds(5))
            #expect(String(decoding: answer.payload, as: UTF8.self).contains(user.id))
            await allowed.close()

            for identity in ["analytics-service", "data-processing-service", "auth-service"] {
                let client = try await Self.connect(platform, as: identity)
                let error = await thrownError { _ = try await client.request(question, subject: "auth.user.get", timeout: .seconds(3)) }
                #expect(error != nil, "\(identity) got a user record")
                await client.close()
                let session = try await rawSession(port: platform.brokerPort, user: identity, password: platform.passwords[identity],
                                                   ["SUB _INBOX.\(identity).q 1", "PUB auth.user.get _INBOX.\(identity).q \(question.count)",
                                                    String(decoding: question, as: UTF8.self)])
                #expect(session.contains(Self.publishRefusal("auth.user.get")), "\(identity): \(session)")
                #expect(!session.contains(user.id), "\(identity) received the record: \(session)")
            }
        }
    }

    /// A login event published by anyone but auth-service is refused by the broker, so it never
    /// reaches USER_EVENTS and makes no notification; auth-service's own events still do.
    @Test(arguments: BrokerKind.allCases)
    func aForgedLoginEventFromAnotherIdentityMakesNoNotification(_ broker: BrokerKind) async throws {
        guard Self.available(broker) else { return }
        try await Platform.with(["auth-service", "notification-service"], broker: broker) { platform in
            platform.allowPermissionViolations()
            let email = uniqueEmail("forged")
            let user = try await platform.registerAndLogin(name: "Target", email: email)
            let first = try await eventually(20) { try await platform.notifications(token: user.token).count >= 1 }
            #expect(first, "the real login made no notification")

            let forgedIDs = Contract.services.filter { $0 != "auth-service" }.map { _ in UUID().uuidString.lowercased() }
            for (identity, eventID) in zip(Contract.services.filter { $0 != "auth-service" }, forgedIDs) {
                let client = try await Self.connect(platform, as: identity)
                try await platform.publishLogin(client, userID: user.id, email: email, name: "Forged by \(identity)", eventID: eventID)
                let flushed = await thrownError { try await client.flush() }
                _ = flushed   // the publish is refused asynchronously; the connection stays usable or not
                await client.close()
            }
            // A real login after the forgeries: once its notification is there, anything stored
            // before it in USER_EVENTS has been handled too.
            _ = try await platform.login(email: email)
            let second = try await eventually(20) { try await platform.notifications(token: user.token).count >= 2 }
            #expect(second, "the second real login made no notification")
            let notifications = try await platform.notifications(token: user.token)
            let sources = notifications.compactMap { $0["source_event_id"] as? String }
            #expect(notifications.count == 2, "notifications: \(notifications)")
            #expect(Set(sources).isDisjoint(with: forgedIDs), "a forged event made a notification: \(sources)")
            #expect(!notifications.contains { ($0["message"] as? String ?? "").contains("Forged") })

            // Nothing forged is in the stream either.
            try await platform.withClient { admin in
                let js = try admin.jetStream()
                let info = try await js.streamInfo("USER_EVENTS")
                var seen: [String] = []
                if info.state.firstSequence > 0 {
                    for sequence in info.state.firstSequence...info.state.lastSequence {
                        guard let message = try? await js.getMessage("USER_EVENTS", sequence: sequence) else { continue }
                        seen.append(String(decoding: message.payload, as: UTF8.self))
                    }
                }
                #expect(!seen.isEmpty)
                for id in forgedIDs { #expect(!seen.contains { $0.contains(id) }, "USER_EVENTS holds the forged event \(id)") }
            }
        }
    }

    /// A client of `identity` with the platform's password and that identity's inbox prefix (the
    /// one ServiceKit sets), so that only the matrix decides what it may do.
    static func connect(_ platform: Platform, as identity: String) async throws -> NATSClient {
        var options = NATSClient.Options(url: platform.brokerURL)
        options.user = identity
        options.password = platform.passwords[identity]
        options.inboxPrefix = "_INBOX.\(identity)"
        options.allowReconnect = false
        return try await NATSClient.connect(options)
    }
}
