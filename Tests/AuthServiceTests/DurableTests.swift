import Foundation
import NATSClient
import TestSupport
import Testing

/// At-least-once mode (the default): the outbox, the shared user directory in `auth_users`, and
/// the start-up check for JetStream, with real processes.
@Suite(.serialized) struct DurableTests {
    /// Every message of USER_EVENTS, in stream order.
    static func userEvents(_ url: String) async throws -> [StoredMessage] {
        let client = try await NATSClient.connect(url)
        do {
            let js = try client.jetStream()
            let state = try await js.streamInfo("USER_EVENTS").state
            var messages: [StoredMessage] = []
            if state.messages > 0 {
                for sequence in state.firstSequence...state.lastSequence {
                    messages.append(try await js.getMessage("USER_EVENTS", sequence: sequence))
                }
            }
            await client.close()
            return messages
        } catch {
            await client.close()
            throw error
        }
    }

    static func eventID(_ message: StoredMessage) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any])?["event_id"] as? String
    }

    /// Waits until `service`'s outbox is empty, then returns the stream's messages.
    static func deliveredEvents(_ service: AuthProcess, _ url: String, count: Int) async throws -> [StoredMessage] {
        var messages: [StoredMessage] = []
        let arrived = try await eventually(30) {
            messages = (try? await userEvents(url)) ?? []
            return try await service.metric("auth_outbox_pending") == 0 && messages.count >= count
        }
        #expect(arrived, "expected \(count) events, have \(messages.count)")
        return messages
    }

    /// Each event once, with Nats-Msg-Id = its event_id.
    static func expectOnceEach(_ messages: [StoredMessage], subjects: [String]) {
        #expect(messages.map(\.subject) == subjects)
        let ids = messages.compactMap(eventID)
        #expect(ids.count == messages.count && Set(ids).count == ids.count)
        for message in messages {
            #expect(message.headers?["Nats-Msg-Id"] == eventID(message))
            #expect(message.headers?["traceparent"] != nil)
        }
    }

    @Test(arguments: [false, true])
    func eventsRecordedWhileTheBrokerIsDownSurviveARestartAndArriveOnce(reference: Bool) async throws {
        if reference && !Broker.referenceAvailable {
            if peersRequired { throw TestFailure("\(Broker.referenceExecutable) is missing") }
            return
        }
        let port = try freePort()
        let data = try temporaryDirectory("auth-outbox")
        let url = "nats://127.0.0.1:\(port)"
        let email = uniqueEmail("outbox")
        var broker: Broker?
        var service = try await AuthProcess.start(dataDirectory: data, natsURL: url)
        do {
            // Broker down: registration and login answer, their events wait in the outbox.
            let id = try #require(try await service.register(email).string("id"))
            #expect(try await service.login(email).status == 200)
            #expect(try await service.metric("auth_outbox_pending") == 2)
            await service.stop(keepData: true)

            // Restarted without a broker: the provisional user logs in from the local files.
            service = try await AuthProcess.start(dataDirectory: data, natsURL: url)
            #expect(try await service.login(email).status == 200)
            #expect(try await service.metric("auth_outbox_pending") == 3)

            broker = try await Broker.forAuth(port: port, reference: reference)
            let messages = try await Self.deliveredEvents(service, url, count: 3)
            Self.expectOnceEach(messages, subjects: ["user.registered", "user.logged_in", "user.logged_in"])
            #expect(messages.allSatisfy { message in
                (try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any])?["user_id"] as? String == id
            })
            #expect(try await service.metric(#"auth_events_published_total{subject="user.logged_in"}"#) == 2)

            // The user is in the shared bucket under its email key.
            let client = try await NATSClient.connect(url)
            let entry = try await client.jetStream().keyValue("auth_users").get(
                "email." + email.utf8.map { String(format: "%02x", $0) }.joined())
            #expect(entry.string.contains(id))
            await client.close()

            // Nothing is sent twice after another restart.
            await service.stop(keepData: true)
            service = try await AuthProcess.start(dataDirectory: data, natsURL: url)
            #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
            #expect(try await Self.userEvents(url).count == 3)
        } catch {
            await service.stop()
            await broker?.stop()
            throw error
        }
        #expect(await service.stop() == 0)
        await broker?.stop()
    }

    @Test func aCrashBetweenTheOutboxWriteAndThePublishSendsEachEventOnce() async throws {
        let port = try freePort()
        let data = try temporaryDirectory("auth-crash")
        let url = "nats://127.0.0.1:\(port)"
        let email = uniqueEmail("crash")
        var broker: Broker?
        var service = try await AuthProcess.start(dataDirectory: data, natsURL: url)
        do {
            #expect(try await service.register(email).status == 201)
            #expect(try await service.login(email).status == 200)
            await service.kill9()
            // The outbox as the crash left it, to put back after it was sent (a crash after the
            // publish, before the sent records were removed).
            let saved = try Data(contentsOf: URL(fileURLWithPath: data + "/outbox.log"))

            broker = try await Broker.forAuth(port: port)
            service = try await AuthProcess.start(dataDirectory: data, natsURL: url)
            let messages = try await Self.deliveredEvents(service, url, count: 2)
            Self.expectOnceEach(messages, subjects: ["user.registered", "user.logged_in"])

            await service.kill9()
            try saved.write(to: URL(fileURLWithPath: data + "/outbox.log"))
            service = try await AuthProcess.start(dataDirectory: data, natsURL: url)
            let opened = try await service.child.waitForLine("the store-open line") { $0.contains("user store open") }
            #expect(opened.contains(#""outbox_pending":2"#))
            // Sent again with the same Nats-Msg-Id: the stream keeps one copy of each.
            #expect(try await eventually(30) { try await service.metric("auth_outbox_pending") == 0 })
            Self.expectOnceEach(try await Self.userEvents(url), subjects: ["user.registered", "user.logged_in"])
            #expect(try await service.login(email).status == 200)
        } catch {
            await service.stop()
            await broker?.stop()
            throw error
        }
        await service.stop()
        await broker?.stop()
    }

    @Test func loginsDuringABrokerRestartAreSentWhenItIsBack() async throws {
        let broker = try await Broker.forAuth()
        let service = try await AuthProcess.start(natsURL: broker.url)
        do {
            #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
            let email = uniqueEmail("restart")
            #expect(try await service.register(email).status == 201)
            _ = try await Self.deliveredEvents(service, broker.url, count: 1)
            await broker.terminate()
            for _ in 0..<3 { #expect(try await service.login(email).status == 200) }
            let registeredMeanwhile = uniqueEmail("restart-new")
            #expect(try await service.register(registeredMeanwhile).status == 201)
            try await broker.restart()
            let messages = try await Self.deliveredEvents(service, broker.url, count: 5)
            Self.expectOnceEach(messages, subjects: ["user.registered"] + Array(repeating: "user.logged_in", count: 3) + ["user.registered"])
            // The registration made during the outage reached the shared bucket.
            let client = try await NATSClient.connect(broker.url)
            let key = "email." + registeredMeanwhile.utf8.map { String(format: "%02x", $0) }.joined()
            #expect(try await client.jetStream().keyValue("auth_users").get(key).string.contains(registeredMeanwhile))
            await client.close()
        } catch {
            await service.stop(); await broker.stop()
            throw error
        }
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func aUserRegisteredThroughOneInstanceLogsInThroughAnother() async throws {
        let broker = try await Broker.forAuth()
        let a = try await AuthProcess.start(natsURL: broker.url)
        let b = try await AuthProcess.start(natsURL: broker.url)
        do {
            for service in [a, b] {
                #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
            }
            let email = uniqueEmail("shared")
            let id = try #require(try await a.register(email, name: "Ada").string("id"))
            var token: String?
            #expect(try await eventually {
                token = try await b.login(email).string("access_token")
                return token != nil
            })
            let shown = try await b.request("GET", "/v1/users/\(id)", headers: ["Authorization": "Bearer \(token ?? "")"])
            #expect(shown.status == 200 && shown.string("name") == "Ada")
            // Taken everywhere: B refuses the email (from its replica or the bucket's create).
            #expect(try await b.register(email.uppercased()).status == 409)
            let messages = try await Self.deliveredEvents(b, broker.url, count: 2)
            Self.expectOnceEach(messages, subjects: ["user.registered", "user.logged_in"])
        } catch {
            await a.stop(); await b.stop(); await broker.stop()
            throw error
        }
        await a.stop(); await b.stop(); await broker.stop()
    }

    @Test func twoInstancesGivingOneEmailToTwoUsersWhileTheBrokerIsAwayKeepOne() async throws {
        let port = try freePort()
        let url = "nats://127.0.0.1:\(port)"
        let a = try await AuthProcess.start(natsURL: url)
        let b = try await AuthProcess.start(natsURL: url)
        var broker: Broker?
        do {
            let email = uniqueEmail("conflict")
            #expect(try await a.register(email, "password of a 1").status == 201)
            #expect(try await b.register(email, "password of b 2").status == 201)
            #expect(try await a.login(email, "password of a 1").status == 200)
            broker = try await Broker.forAuth(port: port)
            var conflicts = 0.0
            #expect(try await eventually(30) {
                conflicts = try await a.metric("auth_registration_conflicts_total") + b.metric("auth_registration_conflicts_total")
                return conflicts >= 1
            })
            #expect(conflicts == 1)
            #expect(try await eventually(30) {
                try await a.metric("auth_outbox_pending") + b.metric("auth_outbox_pending") == 0
            })
            // One user.registered; the winner's password works on both instances, the loser's on neither.
            let registered = try await Self.userEvents(url).filter { $0.subject == "user.registered" }
            #expect(registered.count == 1)
            let winnerIsA = try await a.metric("auth_registration_conflicts_total") == 0
            let (winning, losing) = winnerIsA ? ("password of a 1", "password of b 2") : ("password of b 2", "password of a 1")
            for service in [a, b] {
                #expect(try await eventually { try await service.login(email, winning).status == 200 })
                #expect(try await service.login(email, losing).status == 401)
            }
            #expect(try await eventually(30) {
                try await a.metric("auth_outbox_pending") + b.metric("auth_outbox_pending") == 0
            })
            // The loser's login event (if A lost) was dropped with it.
            let loggedIn = try await Self.userEvents(url).filter { $0.subject == "user.logged_in" }
            #expect(loggedIn.count == (winnerIsA ? 1 : 0) + 2)

            // With the broker up, the bucket's create refuses a second user at once.
            let other = uniqueEmail("online")
            #expect(try await a.register(other).status == 201)
            #expect(try await b.register(other).status == 409)
        } catch {
            await a.stop(); await b.stop(); await broker?.stop()
            throw error
        }
        await a.stop(); await b.stop(); await broker?.stop()
    }

    @Test func aBrokerWithoutJetStreamStopsTheServiceNamingTheAtMostOnceSetting() async throws {
        let broker = try await Broker.forAuth(jetStream: false)
        let data = try temporaryDirectory("auth-nojs")
        var environment = ProcessInfo.processInfo.environment
        for key in ["JWT_SECRET", "HTTP_PORT", "DATA_DIR", "NATS_URL", "LOG_LEVEL", "SERVICE_NAME", "EVENT_DELIVERY"] { environment[key] = nil }
        environment["HTTP_PORT"] = "0"
        environment["DATA_DIR"] = data
        environment["NATS_URL"] = broker.url
        environment["JWT_SECRET"] = AuthProcess.testSecret
        let child = try ChildProcess(executable: try builtExecutable("auth-service"), environment: environment)
        let exited = await eventually(30) { !child.process.isRunning }
        let status = await child.stop()
        await broker.stop()
        removeTemporary(data)
        #expect(exited)
        #expect(status == 1)
        #expect(child.output.contains { $0.contains("EVENT_DELIVERY=at-most-once") && $0.contains("JetStream") },
                "output:\n\(child.output.suffix(10).joined(separator: "\n"))")
    }
}
