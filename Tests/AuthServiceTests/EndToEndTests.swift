import Foundation
import TestSupport
import NATSClient
import Testing

/// Broker (our nats-server) and auth-service as real processes; a NATS client watches and asks.
@Suite struct EndToEndTests {
    static func next(_ subscription: Subscription, _ what: String) async throws -> Message {
        try await within(15, what) {
            var it = subscription.makeAsyncIterator()
            guard let message = try await it.next() else { throw TestFailure("subscription ended before \(what)") }
            return message
        }
    }

    /// At-most-once against a core broker; at-least-once (the outbox, JetStream publishes that a
    /// core subscriber sees too) against a broker with JetStream.
    @Test(arguments: ["at-most-once", "at-least-once"])
    func eventsCarryTheHTTPTraceAndTheServiceAnswersOverNATS(delivery: String) async throws {
        let core = delivery == "at-most-once" ? try await Broker.start() : nil
        let jetStream = core == nil ? try await Broker.forAuth() : nil
        let url = core?.url ?? jetStream?.url ?? ""
        let service = try await AuthProcess.start(natsURL: url, extra: ["EVENT_DELIVERY": delivery])
        let client = try await NATSClient.connect(url)
        do {
            try await Self.exercise(service, client)
        } catch {
            await client.close(); await service.stop(); await core?.stop(); await jetStream?.stop()
            throw error
        }
        await client.close(); await service.stop(); await core?.stop(); await jetStream?.stop()
    }

    static func exercise(_ service: AuthProcess, _ client: NATSClient) async throws {
        // Ready once connected; endpoints registered once $SRV.INFO lists them.
        #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
        var info: ServiceInfo?
        _ = await eventually {
            guard let reply = try? await client.request([], subject: "$SRV.INFO", timeout: .milliseconds(500)),
                  let decoded = try? reply.decode(ServiceInfo.self), decoded.endpoints.count == 2 else { return false }
            info = decoded
            return true
        }
        let listed = try #require(info)
        #expect(listed.name == "auth" && listed.version == "1.0.0")
        #expect(Set(listed.endpoints.map(\.subject)) == ["auth.user.get", "auth.token.verify"])

        let events = try await client.subscribe("user.*")
        try await client.flush()

        // Registration with a traceparent: the event continues the trace.
        let email = uniqueEmail("e2e")
        let registerTrace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let registered = try await service.request("POST", "/v1/users",
                                                   json: jsonText(["email": email, "password": "correct horse 9", "name": "Eve"]),
                                                   headers: ["traceparent": registerTrace])
        #expect(registered.status == 201)
        let id = try #require(registered.string("id"))
        let registeredEvent = try await Self.next(events, "user.registered")
        #expect(registeredEvent.subject == "user.registered")
        let registeredParent = try #require(registeredEvent.headers?["traceparent"])
        #expect(registeredParent.hasPrefix("00-0af7651916cd43dd8448eb211c80319c-"))

        // Login: the user.logged_in event carries the login's trace (the same span the HTTP
        // response announces).
        let loginTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let login = try await service.login(email, headers: ["traceparent": loginTrace])
        #expect(login.status == 200)
        let token = try #require(login.string("access_token"))
        let loggedIn = try await Self.next(events, "user.logged_in")
        #expect(loggedIn.subject == "user.logged_in")
        let parent = try #require(loggedIn.headers?["traceparent"])
        #expect(parent.hasPrefix("00-4bf92f3577b34da6a3ce929d0e0e4736-"))
        #expect(parent == login.headers["traceparent"])
        #expect(parent != loginTrace)   // a child span of the caller's
        let event = try #require(try JSONSerialization.jsonObject(with: Data(loggedIn.payload)) as? [String: Any])
        #expect(event["user_id"] as? String == id)
        #expect(event["email"] as? String == email)
        #expect(event["name"] as? String == "Eve")
        #expect(event["client_address"] as? String == "127.0.0.1")
        #expect((event["event_id"] as? String)?.isEmpty == false)
        let time = try #require(event["time"] as? String)
        #expect(ISO8601DateFormatter().date(from: time.replacingOccurrences(of: #"\.\d+"#, with: "", options: .regularExpression)) != nil)

        // auth.user.get by id and by email; never the hash or salt.
        let byID = try await client.request(Array(#"{"id":"\#(id)"}"#.utf8), subject: "auth.user.get", timeout: .seconds(5))
        #expect(byID.serviceError == nil)
        let user = try #require(try JSONSerialization.jsonObject(with: Data(byID.payload)) as? [String: Any])
        #expect(user["email"] as? String == email && user["name"] as? String == "Eve")
        #expect(Set(user.keys) == ["id", "email", "name", "created_at"])
        let byEmail = try await client.request(Array(#"{"email":"\#(email.uppercased())"}"#.utf8), subject: "auth.user.get", timeout: .seconds(5))
        #expect((try JSONSerialization.jsonObject(with: Data(byEmail.payload)) as? [String: Any])?["id"] as? String == id)
        let missing = try await client.request(Array(#"{"id":"nobody"}"#.utf8), subject: "auth.user.get", timeout: .seconds(5))
        #expect(missing.serviceError?.code == 404)
        let malformed = try await client.request(Array("[1,2]".utf8), subject: "auth.user.get", timeout: .seconds(5))
        #expect(malformed.serviceError?.code == 400)

        // auth.token.verify: claims for a good token, 401 for a bad one.
        let verified = try await client.request(Array(token.utf8), subject: "auth.token.verify", timeout: .seconds(5))
        #expect(verified.serviceError == nil)
        let claims = try #require(try JSONSerialization.jsonObject(with: Data(verified.payload)) as? [String: Any])
        #expect(claims["sub"] as? String == id)
        #expect(claims["email"] as? String == email && claims["name"] as? String == "Eve")
        #expect(claims["iss"] as? String == "auth-service" && claims["aud"] as? String == "microservices-nats")
        #expect(claims["exp"] as? Int != nil && claims["iat"] as? Int != nil)
        let wrapped = try await client.request(Array(#"{"token":"\#(token)"}"#.utf8), subject: "auth.token.verify", timeout: .seconds(5))
        #expect(wrapped.serviceError == nil)
        let refused = try await client.request(Array("\(token.dropLast(3))abc".utf8), subject: "auth.token.verify", timeout: .seconds(5))
        #expect(refused.serviceError?.code == 401)
    }

    @Test func theServiceStartsWithoutNATSAndBecomesReadyWhenTheBrokerComesUp() async throws {
        let port = try freePort()
        let service = try await AuthProcess.start(natsURL: "nats://127.0.0.1:\(port)", extra: ["EVENT_DELIVERY": "at-most-once"])
        var broker: Broker?
        do {
            #expect(try await service.request("GET", "/readyz").status == 503)
            // HTTP works meanwhile; the registration event cannot be sent and is logged as such.
            let email = uniqueEmail("early")
            #expect(try await service.register(email).status == 201)
            _ = try await service.child.waitForLine("the unpublished-event warning") { $0.contains("event not published") }
            let started = try await Broker.start(port: port)
            broker = started
            #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
            let client = try await NATSClient.connect(started.url)
            var answered = false
            _ = await eventually {
                let payload = Array(#"{"email":"\#(email)"}"#.utf8)
                guard let reply = try? await client.request(payload, subject: "auth.user.get", timeout: .milliseconds(500)) else { return false }
                answered = reply.serviceError == nil && reply.string.contains(email)
                return answered
            }
            #expect(answered)
            await client.close()
        } catch {
            await service.stop()
            await broker?.stop()
            throw error
        }
        // The service first (it drains its NATS connection), then the broker.
        #expect(await service.stop() == 0)
        await broker?.stop()
    }
}
