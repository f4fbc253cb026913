// Handler subscriptions (messages handled on the reader thread) and the non-suspending
// publishNow / respondNow: against both brokers.

import Foundation
import Synchronization
import TestSupport
import Testing
@testable import NATSClient
#if canImport(Glibc)
import Glibc
#endif

/// What a handler saw, collected for the test to poll.
final class Seen: Sendable {
    let messages = Mutex<[Message]>([])
    /// Calls that did not run on the client's reader thread.
    let offReader = Mutex(0)

    var count: Int { messages.withLock { $0.count } }
    var strings: [String] { messages.withLock { $0.map(\.string) } }

    /// A handler that records each message and whether it ran on `client`'s reader thread.
    func recorder(_ client: NATSClient) -> @Sendable (Message) -> Void {
        { message in
            if !client.readerExecutor.onReaderThread { self.offReader.withLock { $0 += 1 } }
            self.messages.withLock { $0.append(message) }
        }
    }
}

@Suite("Handler subscriptions", .timeLimit(.minutes(2)))
struct HandlerTests {
    @Test("a handler gets every message in order, with subject, reply and payload, on the reader thread",
          arguments: Broker.enabled)
    func handlerGetsMessagesInOrder(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sender = try await NATSClient.connect(testOptions(server))
        let seen = Seen()
        let sub = try await client.subscribe("h.*", handler: seen.recorder(client))
        try await client.flush()
        try await sender.publish(bytes("first"), subject: "h.a", reply: "answers.1")
        let count = 2_000
        for index in 0..<count { try await sender.publish(bytes(String(index)), subject: "h.b") }
        try await sender.flush()
        #expect(await eventually { seen.count == count + 1 })
        let messages = seen.messages.withLock { $0 }
        #expect(messages[0].subject == "h.a")
        #expect(messages[0].reply == "answers.1")
        #expect(messages[0].string == "first")
        #expect(messages.dropFirst().map(\.string) == (0..<count).map(String.init))
        #expect(messages.dropFirst().allSatisfy { $0.subject == "h.b" && $0.reply == nil })
        #expect(seen.offReader.withLock { $0 } == 0)
        #expect(sub.deliveredCount == count + 1)
        #expect(sub.pendingMessages == 0)
        #expect(sub.droppedCount == 0)
        await sender.close()
        await client.close()
    }

    @Test("respondNow from a handler answers requests, one at a time and many at once", arguments: Broker.enabled)
    func respondNowAnswersRequests(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let responder = try await NATSClient.connect(testOptions(server))
        let client = try await NATSClient.connect(testOptions(server))
        try await responder.subscribe("double") { message in
            let value = Int(message.string) ?? -1
            try? message.respondNow(Array(String(value * 2).utf8))
        }
        try await responder.flush()
        for index in 0..<50 {
            let reply = try await client.request(bytes("\(index)"), subject: "double", timeout: .seconds(5))
            #expect(reply.string == String(index * 2))
        }
        // Concurrent requests arrive several per read: their replies leave in one send after the read.
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<500 {
                group.addTask { (index, try await client.request(bytes("\(index)"), subject: "double").string) }
            }
            var all: [Int: String] = [:]
            for try await (index, reply) in group { all[index] = reply }
            return all
        }
        #expect(results.count == 500)
        #expect(results.allSatisfy { $0.value == String($0.key * 2) })
        await client.close()
        await responder.close()
    }

    @Test("headers from respondNow and publishNow reach the receiver", arguments: Broker.enabled)
    func headersFromHandler(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let responder = try await NATSClient.connect(testOptions(server))
        let client = try await NATSClient.connect(testOptions(server))
        let forwarded = try await client.subscribe("forwarded")
        try await client.flush()
        let replyHeaders = try Headers([(name: "X-Answer", value: "yes")])
        try await responder.subscribe("ask") { message in
            try? responder.publishNow(message.payload, subject: "forwarded", headers: replyHeaders)
            try? message.respondNow(bytes("ok"), headers: replyHeaders)
        }
        try await responder.flush()
        let reply = try await client.request(bytes("q"), subject: "ask", timeout: .seconds(5))
        #expect(reply.string == "ok")
        #expect(reply.headers?["X-Answer"] == "yes")
        let copy = try await take(1, from: forwarded)
        #expect(copy[0].string == "q")
        #expect(copy[0].headers?["X-Answer"] == "yes")
        await client.close()
        await responder.close()
    }

    @Test("unsubscribe stops the handler and ends iteration of the subscription", arguments: Broker.enabled)
    func unsubscribeStopsHandler(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let seen = Seen()
        let sub = try await client.subscribe("u", handler: seen.recorder(client))
        let watcher = try await client.subscribe("u")
        try await client.flush()
        let ended = Task { () -> Int in
            var yielded = 0
            for try await _ in sub { yielded += 1 }
            return yielded
        }
        try await client.publish(bytes("before"), subject: "u")
        _ = try await take(1, from: watcher)
        #expect(await eventually { seen.count == 1 })
        await sub.unsubscribe()
        try await client.publish(bytes("after"), subject: "u")
        _ = try await take(1, from: watcher)
        #expect(try await within(10) { try await ended.value } == 0)
        #expect(seen.strings == ["before"])
        await client.close()
    }

    @Test("unsubscribe(after:) calls the handler exactly N times", arguments: Broker.enabled)
    func autoUnsubscribeHandler(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let seen = Seen()
        let sub = try await client.subscribe("auto", handler: seen.recorder(client))
        try await sub.unsubscribe(after: 3)
        try await client.flush()
        for index in 0..<10 { try await client.publish(bytes("\(index)"), subject: "auto") }
        try await client.flush()
        try await within(10) { for try await _ in sub {} }
        #expect(seen.strings == ["0", "1", "2"])
        #expect(sub.deliveredCount == 3)
        await client.close()
    }

    @Test("a queue group of handlers gets each message once", arguments: Broker.enabled)
    func queueGroupOfHandlers(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let first = Seen(), second = Seen()
        try await client.subscribe("work", queue: "workers", handler: first.recorder(client))
        try await client.subscribe("work", queue: "workers", handler: second.recorder(client))
        try await client.flush()
        for index in 0..<200 { try await client.publish(bytes("\(index)"), subject: "work") }
        try await client.flush()
        #expect(await eventually { first.count + second.count == 200 })
        #expect(Set(first.strings + second.strings).count == 200)
        await client.close()
    }

    @Test("drain handles the messages in flight, ends the subscription and closes", arguments: Broker.enabled)
    func drainWithHandler(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let publisher = try await NATSClient.connect(testOptions(server))
        let seen = Seen()
        let sub = try await client.subscribe("d", handler: seen.recorder(client))
        try await client.flush()
        for index in 0..<500 { try await publisher.publish(bytes("\(index)"), subject: "d") }
        try await publisher.flush()
        try await client.drain(timeout: .seconds(20))
        #expect(seen.count == 500)
        #expect(client.isClosed)
        try await within(10) { for try await _ in sub {} }
        await publisher.close()
    }

    @Test("publishNow from a plain thread reaches a subscriber; bad input and a closed client throw",
          arguments: Broker.enabled)
    func publishNowOffTheReader(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("plain")
        try await client.flush()
        let failures = await onThread { () -> [String] in
            var failures: [String] = []
            for index in 0..<100 {
                do {
                    try client.publishNow(bytes("\(index)"), subject: "plain")
                } catch {
                    failures.append("\(error)")
                }
            }
            return failures
        }
        #expect(failures.isEmpty)
        let messages = try await take(100, from: sub)
        #expect(messages.map(\.string) == (0..<100).map(String.init))
        #expect(throws: NATSError.self) { try client.publishNow(bytes("x"), subject: "bad.*") }
        #expect(throws: NATSError.self) { try client.publishNow(bytes("x"), subject: "ok", reply: "bad reply") }
        let tooBig = [UInt8](repeating: 0, count: 1_048_577)
        #expect(throws: NATSError.maxPayloadExceeded(size: 1_048_577, limit: 1_048_576)) {
            try client.publishNow(tooBig, subject: "ok")
        }
        await client.close()
        #expect(throws: NATSError.closed) { try client.publishNow(bytes("x"), subject: "ok") }
    }

    @Test("respondNow on a message without a reply subject is refused", arguments: Broker.enabled)
    func respondNowNeedsReply(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let outcome = Mutex<[String]>([])
        try await client.subscribe("noreply") { message in
            do {
                try message.respondNow(bytes("x"))
                outcome.withLock { $0.append("sent") }
            } catch {
                outcome.withLock { $0.append("\(error)") }
            }
        }
        try await client.flush()
        try await client.publish(bytes("q"), subject: "noreply")
        #expect(await eventually { outcome.withLock { $0.count } == 1 })
        let result = outcome.withLock { $0 }
        #expect(result.count == 1 && result[0].contains("no reply subject"))
        await client.close()
    }
}
