// Support for the durable-delivery tests: a broker (ours or nats-server 2.9.10) with or without
// JetStream on a port of its own, restartable on the same or an empty store, and runtimes in a
// chosen delivery mode.

import Foundation
import NATSClient
import Synchronization
import Testing
import TestSupport
@testable import ServiceKit

/// The brokers the durable tests run against.
enum DurableBroker: String, CaseIterable, Sendable, CustomStringConvertible {
    /// This package's `nats-server`.
    case ours
    /// Debian's nats-server 2.9.10.
    case reference

    var description: String { rawValue }

    /// Ours always; the reference broker when installed (or when REQUIRE_PEERS=1, so that its
    /// absence fails instead of skipping).
    static var enabled: [DurableBroker] {
        ReferenceBroker.available || Peers.required ? [.ours, .reference] : [.ours]
    }

    var executable: String {
        switch self {
        case .reference: return ReferenceBroker.executable
        case .ours:
            if let path = ProcessInfo.processInfo.environment["NATS_SERVER_BIN"] { return path }
            return (try? builtExecutable("nats-server")) ?? "nats-server-not-found-next-to-the-test-bundle"
        }
    }
}

/// A plain client of `broker` with short reconnect waits, and its JetStream context.
func testClient(_ broker: Broker) async throws -> (NATSClient, JetStreamContext) {
    var options = NATSClient.Options(url: broker.url)
    options.reconnectWait = .milliseconds(20)
    options.reconnectMaxWait = .milliseconds(200)
    options.maxReconnectAttempts = nil
    let client = try await NATSClient.connect(options)
    return (client, try client.jetStream())
}

/// A runtime named `name` connected to `broker` in delivery mode `mode`, logging into `sink`.
func durableRuntime(_ broker: Broker, name: String = "orders-service", mode: DeliveryMode = .atLeastOnce,
                    sink: MemoryLogSink = MemoryLogSink(), shutdownDeadline: Duration = .seconds(10)) throws -> ServiceRuntime {
    let config = try Configuration.load(
        [AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.logLevel),
         AnySetting(StandardSettings.deliveryMode)],
        arguments: [], environment: ["NATS_URL": broker.url, "HTTP_PORT": "0", "LOG_LEVEL": "debug", "EVENT_DELIVERY": mode.rawValue],
        workingDirectory: "/nonexistent")
    return ServiceRuntime(name: name, version: "1.0.0", configuration: config,
                          logger: ServiceLogger(service: name, level: .debug, sink: sink), shutdownDeadline: shutdownDeadline)
}

/// The test stream: `orders.>`, limits retention, file storage, one hour of messages.
func ordersStream(subjects: [String] = ["orders.>"], maxAge: Duration = .seconds(3600)) -> StreamSpec {
    var config = StreamConfig(name: "ORDERS", subjects: subjects)
    config.maxAge = maxAge
    config.duplicateWindow = .seconds(120)
    return StreamSpec(config, owner: "orders-service")
}

/// The test consumer `worker` on ORDERS: `orders.created`, explicit acks.
func workerConsumer(maxDeliver: Int = 5, ackWait: Duration = .seconds(30)) -> ConsumerSpec {
    ConsumerSpec(stream: "ORDERS", name: "worker") {
        $0.filterSubject = "orders.created"
        $0.maxDeliver = maxDeliver
        $0.ackWait = ackWait
    }
}

/// The consumer's info, or nil while the broker does not have it (or does not answer).
func consumerState(_ js: JetStreamContext, _ stream: String, _ name: String) async -> ConsumerInfo? {
    try? await js.consumerInfo(stream, name: name)
}

/// Every message in `stream`, read one by one by sequence (the stream is small in these tests).
func storedMessages(_ js: JetStreamContext, _ stream: String) async throws -> [StoredMessage] {
    let info = try await js.streamInfo(stream)
    var messages: [StoredMessage] = []
    guard info.state.messages > 0 else { return [] }
    for sequence in info.state.firstSequence...info.state.lastSequence {
        if let message = try? await js.getMessage(stream, sequence: sequence) { messages.append(message) }
    }
    return messages
}

/// A value shared between a test and its handlers.
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { storage.withLock { body(&$0) } }
    var value: Value { storage.withLock { $0 } }
}

/// Starts a broker of `kind`, connects a test client and runs `body`; closes the client and
/// stops the broker afterwards, also when `body` throws.
func withBroker(_ kind: DurableBroker, jetStream: Bool = true,
                _ body: (Broker, NATSClient, JetStreamContext) async throws -> Void) async throws {
    let broker = try await Broker.start(port: freePort(), jetStream: jetStream, executable: kind.executable)
    let client: NATSClient, js: JetStreamContext
    do {
        (client, js) = try await testClient(broker)
    } catch {
        await broker.stop()
        throw error
    }
    do {
        try await body(broker, client, js)
    } catch {
        await client.close()
        await broker.stop()
        throw error
    }
    await client.close()
    await broker.stop()
}
