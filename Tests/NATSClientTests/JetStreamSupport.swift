// JetStream test support: the broker under test started with `-js -sd <tmp>`, and a connected
// client with its JetStream context.

import Foundation
import Synchronization
import TestSupport
import Testing
@testable import NATSClient

/// The brokers the JetStream tests run against: both, like every client test (`NATS_TEST_BROKERS`
/// narrows the list).
enum JetStreamBrokers {
    static var enabled: [Broker] { Broker.enabled }
}

/// A broker with JetStream enabled on a fresh store directory.
final class JetStreamServer: Sendable {
    let process: BrokerProcess
    let storeDirectory: String

    init(_ broker: Broker) async throws {
        let directory = try temporaryDirectory("js-\(broker)")
        storeDirectory = directory
        do {
            process = try await BrokerProcess(broker, arguments: ["-js", "-sd", directory])
        } catch {
            removeTemporary(directory)
            throw error
        }
    }

    var url: String { process.url }

    func stop() {
        process.stop()
        removeTemporary(storeDirectory)
    }
}

/// Starts a JetStream broker, connects a client and runs `body` with its context; closes and
/// stops everything afterwards, also when `body` throws.
func withJetStream(_ broker: Broker, _ body: (NATSClient, JetStreamContext) async throws -> Void) async throws {
    let server = try await JetStreamServer(broker)
    defer { server.stop() }
    let client = try await NATSClient.connect(testOptions(server.process))
    do {
        try await body(client, try client.jetStream())
    } catch {
        await client.close()
        throw error
    }
    await client.close()
}

/// The `err_code` of a JetStream API error thrown by `body`, or nil when it threw something else
/// or nothing.
func apiErrorCode(_ body: () async throws -> Void) async -> Int? {
    do {
        try await body()
        return nil
    } catch let error as JetStreamError {
        return error.errCode
    } catch {
        return nil
    }
}

/// A value shared between a test and the tasks it starts.
final class Locked<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>

    init(_ value: Value) { storage = Mutex(value) }

    func withLock<T>(_ body: (inout Value) -> T) -> T { storage.withLock { body(&$0) } }
}
