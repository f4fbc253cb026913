// Tasks on a client's reader executor: run on the reader thread between reads, resumed by it
// without another thread; on the global pool while the client is not reading.

import Foundation
import Synchronization
import TestSupport
import Testing
@testable import NATSClient

@Suite("Reader executor", .timeLimit(.minutes(2)))
struct ReaderExecutorTests {
    @Test("sequential requests from a task on the reader executor get their replies on the reader thread",
          arguments: Broker.enabled)
    func requestsOnReaderThread(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let responder = try await NATSClient.connect(testOptions(server))
        let client = try await NATSClient.connect(testOptions(server))
        try await responder.subscribe("inc") { message in
            try? message.respondNow(Array(String((Int(message.string) ?? -1) + 1).utf8))
        }
        try await responder.flush()
        // The task's first job comes from this thread while the reader blocks in recv: the kick wakes it.
        let task = Task(executorPreference: client.readerExecutor) { () -> (wrong: Int, offReader: Int) in
            var wrong = 0, offReader = 0
            for index in 0..<300 {
                let reply = try await client.request(bytes("\(index)"), subject: "inc", timeout: .seconds(5))
                if reply.string != String(index + 1) { wrong += 1 }
                if !client.readerExecutor.onReaderThread { offReader += 1 }
            }
            return (wrong, offReader)
        }
        let outcome = try await within(60) { try await task.value }
        #expect(outcome.wrong == 0)
        #expect(outcome.offReader == 0)
        await client.close()
        await responder.close()
    }

    @Test("a task on the reader executor resumed from other threads (sleep, another client) runs on",
          arguments: Broker.enabled)
    func resumedFromOtherThreads(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let other = try await NATSClient.connect(testOptions(server))
        try await other.subscribe("svc") { message in try? message.respondNow(message.payload) }
        try await other.flush()
        let task = Task(executorPreference: client.readerExecutor) { () -> [String] in
            var log: [String] = []
            for round in 0..<20 {
                try await Task.sleep(for: .milliseconds(1))
                log.append(client.readerExecutor.onReaderThread ? "reader" : "elsewhere")
                // Resumed by the other client's reader thread.
                let echoed = try await other.request(bytes("r\(round)"), subject: "svc", timeout: .seconds(5))
                if echoed.string != "r\(round)" { log.append("wrong reply") }
                log.append(client.readerExecutor.onReaderThread ? "reader" : "elsewhere")
            }
            return log
        }
        let log = try await within(60) { try await task.value }
        #expect(log.count == 40)
        #expect(log.allSatisfy { $0 == "reader" })
        await other.close()
        await client.close()
    }

    @Test("a subscription consumed on the reader executor gets every message in order", arguments: Broker.enabled)
    func subscriptionOnReaderExecutor(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sender = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("feed")
        try await client.flush()
        let count = 5_000
        let consumer = Task(executorPreference: client.readerExecutor) { () -> ([String], Int) in
            var received: [String] = []
            var offReader = 0
            for try await message in sub {
                received.append(message.string)
                if !client.readerExecutor.onReaderThread { offReader += 1 }
                if received.count == count { break }
            }
            return (received, offReader)
        }
        for index in 0..<count { try await sender.publish(bytes(String(index)), subject: "feed") }
        try await sender.flush()
        let (received, offReader) = try await within(60) { try await consumer.value }
        #expect(received == (0..<count).map(String.init))
        #expect(offReader == 0)
        await sender.close()
        await client.close()
    }

    @Test("publishNow from a task on the reader executor is sent without a flush", arguments: Broker.enabled)
    func publishNowFromReaderExecutor(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let receiver = try await NATSClient.connect(testOptions(server))
        let sub = try await receiver.subscribe("out")
        try await receiver.flush()
        let sender = Task(executorPreference: client.readerExecutor) { () -> Int in
            var offReader = 0
            for round in 0..<5 {
                // After a sleep the task runs on the reader again; nothing else makes the reader send.
                try await Task.sleep(for: .milliseconds(2))
                if !client.readerExecutor.onReaderThread { offReader += 1 }
                for index in 0..<10 { try client.publishNow(bytes("\(round).\(index)"), subject: "out") }
            }
            return offReader
        }
        #expect(try await within(20) { try await sender.value } == 0)
        let messages = try await take(50, from: sub)
        #expect(messages.map(\.string) == (0..<5).flatMap { round in (0..<10).map { "\(round).\($0)" } })
        await receiver.close()
        await client.close()
    }

    @Test("close from a task on the reader executor returns, and tasks on it still run after close",
          arguments: Broker.enabled)
    func closeFromReaderExecutor(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let closer = Task(executorPreference: client.readerExecutor) {
            try await client.flush()
            await client.close()
            return client.isClosed
        }
        #expect(try await within(20) { try await closer.value })
        let after = Task(executorPreference: client.readerExecutor) { () -> String in
            do {
                _ = try await client.request(bytes("x"), subject: "any", timeout: .seconds(1))
                return "answered"
            } catch {
                return "\(error)"
            }
        }
        #expect(try await within(20) { await after.value } == "\(NATSError.closed)")
    }

    @Test("a task on the reader executor keeps working across a reconnect", arguments: [Broker.ours])
    func acrossReconnect(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let responder = try await NATSClient.connect(testOptions(server))
        try await responder.subscribe("again") { message in try? message.respondNow(bytes("ok")) }
        try await responder.flush()
        let first = Task(executorPreference: client.readerExecutor) {
            try await client.request(bytes("1"), subject: "again", timeout: .seconds(5)).string
        }
        #expect(try await within(20) { try await first.value } == "ok")
        await server.kill()
        try await server.start()
        // Requests wait out the reconnect on the executor (run elsewhere meanwhile), then succeed.
        let second = Task(executorPreference: client.readerExecutor) { () -> String in
            for _ in 0..<400 {
                if let reply = try? await client.request(bytes("2"), subject: "again", timeout: .milliseconds(250)) {
                    return reply.string
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            return "no reply"
        }
        #expect(try await within(60) { try await second.value } == "ok")
        await responder.close()
        await client.close()
    }
}
