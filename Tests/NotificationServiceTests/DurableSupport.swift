// Support for the at-least-once tests: a broker with JetStream (ours, or nats-server 2.9.10),
// the service started in at-least-once mode, login events published into USER_EVENTS.

import Foundation
import NATSClient
@testable import NotificationService
import ServiceKit
import TestSupport
import Testing

/// Which broker a test runs against.
enum BrokerKind: String, CustomStringConvertible, CaseIterable, Sendable {
    /// Ours (built beside the tests).
    case ours
    /// nats-server 2.9.10 (/usr/sbin/nats-server).
    case reference
    var description: String { rawValue }

    /// The kinds present on this machine (the reference broker may be missing).
    static var available: [BrokerKind] {
        Broker.referenceAvailable ? [.ours, .reference] : [.ours]
    }
}

extension BrokerKind {
    /// A broker of this kind with JetStream (`-js -sd <dir>`) on a port it chooses; `executable`:
    /// our broker at that path instead of the one built beside the tests.
    func startJetStream(executable path: String? = nil) async throws -> Broker {
        try await Broker.start(jetStream: true, executable: self == .ours ? path : Broker.referenceExecutable)
    }
}

/// A JetStream broker, a fake auth-service, a client and a data folder; torn down after `body`.
struct DurableStack {
    let broker: Broker
    let auth: FakeAuth
    let client: NATSClient
    let js: JetStreamContext
    let data: String

    static func run(_ kind: BrokerKind = .ours, names: [String: String] = ["u-ann": "Ann", "u-bob": "Bob"],
                    _ body: (DurableStack) async throws -> Void) async throws {
        let broker = try await kind.startJetStream()
        let data = try temporaryDirectory("notif-durable")
        var auth: FakeAuth?
        var client: NATSClient?
        func tearDown() async { await client?.close(); await auth?.stop(); await broker.stop(); removeTemporary(data) }
        do {
            auth = try await FakeAuth.start(broker.url, names: names)
            client = try await NATSClient.connect(broker.url)
            let js = try #require(client).jetStream()
            // USER_EVENTS as auth-service declares it, so logins can be stored before the service starts.
            try await JetStreamSetup.ensure(PlatformStreams.userEvents, js)
            try await body(DurableStack(broker: broker, auth: try #require(auth), client: try #require(client), js: js, data: data))
        } catch {
            await tearDown()
            throw error
        }
        await tearDown()
    }

    /// Publishes a login event into USER_EVENTS (waits for its PubAck); `msgID` nil stores every copy.
    @discardableResult
    func login(_ user: String, eventID: String = UUID().uuidString.lowercased(), msgID: String? = nil,
               headers: Headers? = nil) async throws -> PubAck {
        try await js.publish("user.logged_in", payload: loginEvent(user: user, eventID: eventID), headers: headers,
                             options: PublishOptions(msgID: msgID))
    }
}

/// The notification-service executable in at-least-once mode; returns once `/readyz` says ready
/// (JetStream set up, the durable consumer pulling, the view following).
func startDurableService(_ broker: Broker, data: String, extra: [String: String] = [:]) async throws -> ServiceProcess {
    var environment = ["NATS_URL": broker.url, "DATA_DIR": data, "AUTH_TIMEOUT_MS": "5000", "JWT_SECRET": testSecret,
                       "EVENT_DELIVERY": "at-least-once"]
    for (k, v) in extra { environment[k] = v }
    let service = try await ServiceProcess.start("notification-service", environment: environment)
    let ready = await eventually(20) { ((try? await service.request("GET", "/readyz"))?.status) == 200 }
    if !ready {
        await service.stop()
        throw TestFailure("notification-service (at-least-once) not ready; output:\n" + service.child.output.suffix(20).joined(separator: "\n"))
    }
    return service
}
