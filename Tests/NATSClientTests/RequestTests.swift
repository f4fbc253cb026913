// Request-reply through the shared wildcard inbox.

import Foundation
import TestSupport
import Testing
@testable import NATSClient

/// Answers every request on `subject` with `transform(payload)` until the subscription ends.
func startResponder(_ client: NATSClient, subject: String, queue: String? = nil,
                    _ transform: @escaping @Sendable ([UInt8]) -> [UInt8] = { $0 }) async throws -> Task<Void, Error> {
    let sub = try await client.subscribe(subject, queue: queue)
    try await client.flush()
    return Task {
        for try await message in sub { try await message.respond(transform(message.payload)) }
    }
}

@Suite("Request-reply", .timeLimit(.minutes(2)))
struct RequestTests {
    @Test("a request gets the responder's reply", arguments: Broker.enabled)
    func requestGetsReply(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let responder = try await NATSClient.connect(testOptions(server))
        let client = try await NATSClient.connect(testOptions(server))
        let task = try await startResponder(responder, subject: "echo") { Array("re:".utf8) + $0 }
        let reply = try await client.request(bytes("ping"), subject: "echo", timeout: .seconds(5))
        #expect(reply.string == "re:ping")
        task.cancel()
        await responder.close()
        await client.close()
    }

    @Test("concurrent requests share one inbox subscription and each gets its own reply", arguments: Broker.enabled)
    func concurrentRequestsShareOneInbox(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let responder = try await NATSClient.connect(testOptions(server))
        let client = try await NATSClient.connect(testOptions(server))
        let task = try await startResponder(responder, subject: "double") { payload in
            Array(String((Int(String(decoding: payload, as: UTF8.self)) ?? -1) * 2).utf8)
        }
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<200 {
                group.addTask { (index, try await client.request(bytes("\(index)"), subject: "double").string) }
            }
            var all: [Int: String] = [:]
            for try await (index, reply) in group { all[index] = reply }
            return all
        }
        #expect(results.count == 200)
        #expect(results.allSatisfy { $0.value == String($0.key * 2) })
        let (muxSid, subscriptions, pending) = client.state.withLock { ($0.muxSid, $0.subscriptions.count, $0.requests.count) }
        #expect(muxSid != 0)
        #expect(subscriptions == 0)
        #expect(pending == 0)
        task.cancel()
        await responder.close()
        await client.close()
    }

    @Test("a request with no responders fails with noResponders instead of waiting", arguments: Broker.enabled)
    func noRespondersFailsFast(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        // A long timeout: only the 503 status can end this within the test's bound.
        try await within(20, "request without responders") {
            await #expect(throws: NATSError.noResponders(subject: "nobody.home")) {
                _ = try await client.request(bytes("x"), subject: "nobody.home", timeout: .seconds(60))
            }
        }
        await client.close()
    }

    @Test("a timed-out request fails alone; other requests and the inbox keep working", arguments: Broker.enabled)
    func timeoutCancelsOnlyTheWait(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let silent = try await client.subscribe("silent")  // receives but never answers
        let task = try await startResponder(client, subject: "echo")
        try await client.flush()
        await #expect(throws: NATSError.timeout) {
            _ = try await client.request(bytes("x"), subject: "silent", timeout: .milliseconds(200))
        }
        #expect(silent.pendingMessages == 1)
        let reply = try await client.request(bytes("still works"), subject: "echo")
        #expect(reply.string == "still works")
        task.cancel()
        await client.close()
    }

    @Test("cancelling a waiting request throws cancelled and leaves nothing pending", arguments: Broker.enabled)
    func cancellingARequest(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let silent = try await client.subscribe("silent")
        try await client.flush()
        let waiting = Task { try await client.request(bytes("x"), subject: "silent", timeout: .seconds(60)) }
        #expect(await eventually { silent.pendingMessages == 1 })
        waiting.cancel()
        await #expect(throws: NATSError.cancelled) { _ = try await waiting.value }
        #expect(client.state.withLock { $0.requests.isEmpty })
        await client.close()
    }

    struct Question: Codable, Equatable { var a: Int; var b: Int }
    struct Answer: Codable, Equatable { var sum: Int }

    @Test("typed JSON request and respond(json:)", arguments: Broker.enabled)
    func jsonRequest(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("add")
        try await client.flush()
        let task = Task {
            for try await message in sub {
                let question = try message.decode(Question.self)
                try await message.respond(json: Answer(sum: question.a + question.b))
            }
        }
        let answer = try await client.request(json: Question(a: 2, b: 40), subject: "add", as: Answer.self)
        #expect(answer == Answer(sum: 42))
        task.cancel()
        await client.close()
    }

    @Test("respond without a reply subject is an invalid argument", arguments: Broker.enabled)
    func respondWithoutReply(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("noreply")
        try await client.flush()
        try await client.publish(bytes("x"), subject: "noreply")
        let message = try #require(try await take(1, from: sub).first)
        await #expect(throws: NATSError.self) { try await message.respond(bytes("y")) }
        await client.close()
    }
}
