// NATSClient's JetStream API against a broker with -js: publish with acks, stream and consumer
// management, pull (fetch and continuous), push and ordered consumers, acks.

import Foundation
import Synchronization
import TestSupport
import Testing
@testable import NATSClient

@Suite("JetStream client", .timeLimit(.minutes(2)))
struct JetStreamClientTests {
    @Test("a publish to a stream subject returns the stream's PubAck; ids de-duplicate; expectations are enforced",
          arguments: JetStreamBrokers.enabled)
    func publishWithAck(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            let info = try await js.addStream(StreamConfig(name: "ORDERS", subjects: ["orders.>"]))
            #expect(info.didCreate)
            #expect(info.config.subjects == ["orders.>"])
            let first = try await js.publish("orders.new", payload: bytes("one"), options: PublishOptions(msgID: "a"))
            #expect(first.stream == "ORDERS")
            #expect(first.sequence == 1)
            #expect(!first.duplicate)
            let again = try await js.publish("orders.new", payload: bytes("one"), options: PublishOptions(msgID: "a"))
            #expect(again.sequence == 1)
            #expect(again.duplicate)
            let second = try await js.publish("orders.paid", "two", options: PublishOptions(msgID: "b"))
            #expect(second.sequence == 2)

            #expect(await apiErrorCode { _ = try await js.publish("orders.x", "x", options: PublishOptions(expectedStream: "OTHER")) } == 10060)
            #expect(await apiErrorCode { _ = try await js.publish("orders.x", "x", options: PublishOptions(expectedLastSequence: 7)) } == 10071)
            #expect(await apiErrorCode { _ = try await js.publish("orders.x", "x", options: PublishOptions(expectedLastSubjectSequence: 1)) } == 10071)
            #expect(await apiErrorCode { _ = try await js.publish("orders.x", "x", options: PublishOptions(expectedLastMsgID: "zzz")) } == 10070)
            let expected = try await js.publish("orders.new", "three", options: PublishOptions(
                expectedStream: "ORDERS", expectedLastSequence: 2, expectedLastSubjectSequence: 1, expectedLastMsgID: "b"))
            #expect(expected.sequence == 3)

            let error = await thrownError { _ = try await js.publish("nowhere.at.all", "x") }
            #expect(error as? JetStreamError == .noResponders(subject: "nowhere.at.all"))
            #expect(try await js.streamInfo("ORDERS").state.messages == 3)
        }
    }

    @Test("the asynchronous publisher keeps at most maxPending acks outstanding and gets every ack",
          arguments: JetStreamBrokers.enabled)
    func asyncPublisher(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "EVENTS", subjects: ["events.*"]))
            let publisher = try js.asyncPublisher(maxPending: 32)
            var futures: [PubAckFuture] = []
            var mostPending = 0
            for index in 0..<1000 {
                futures.append(try await publisher.publish("events.\(index % 7)", payload: bytes("e\(index)")))
                mostPending = max(mostPending, publisher.pending)
            }
            #expect(await publisher.waitForAll() == 0)
            #expect(publisher.pending == 0)
            #expect(mostPending <= 32)
            var sequences = Set<UInt64>()
            for future in futures { sequences.insert(try await future.value().sequence) }
            #expect(sequences == Set(1...1000))
            #expect(try await js.streamInfo("EVENTS").state.messages == 1000)

            let failing = try await publisher.publish("nowhere", payload: [])
            await publisher.waitForAll()
            #expect(publisher.failedCount == 1)
            #expect(await thrownError { _ = try await failing.value() } as? JetStreamError == .noResponders(subject: "nowhere"))
            #expect(throws: JetStreamError.self) { _ = try js.asyncPublisher(maxPending: 0) }
        }
    }

    @Test("streams: add, info, update, names, list, purge (filter, seq, keep), get and delete messages, delete",
          arguments: JetStreamBrokers.enabled)
    func streamManagement(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            var config = StreamConfig(name: "S1", subjects: ["s1.>"])
            config.storage = .memory
            config.maxMsgs = 100
            _ = try await js.addStream(config)
            _ = try await js.addStream(StreamConfig(name: "S2", subjects: ["s2"]))
            #expect(try await js.streamNames() == ["S1", "S2"])
            #expect(try await js.streamNames(subject: "s2") == ["S2"])
            #expect(try await js.streams().map(\.config.name).sorted() == ["S1", "S2"])

            config.maxMsgs = 50
            let updated = try await js.updateStream(config)
            #expect(updated.config.maxMsgs == 50)
            #expect(updated.config.storage == .memory)

            var headers = Headers()
            try headers.append(name: "X-Tag", value: "t")
            for index in 1...10 {
                _ = try await js.publish("s1.\(index % 2 == 0 ? "even" : "odd")", payload: bytes("m\(index)"),
                                         headers: index == 3 ? headers : nil)
            }
            let info = try await js.streamInfo("S1", subjectsFilter: ">")
            #expect(info.state.messages == 10)
            #expect(info.state.firstSequence == 1)
            #expect(info.state.lastSequence == 10)
            #expect(info.state.subjects == ["s1.even": 5, "s1.odd": 5])

            let third = try await js.getMessage("S1", sequence: 3)
            #expect(third.subject == "s1.odd")
            #expect(String(decoding: third.payload, as: UTF8.self) == "m3")
            #expect(third.headers?["X-Tag"] == "t")
            #expect(third.time != nil)
            let lastEven = try await js.getLastMessage("S1", subject: "s1.even")
            #expect(lastEven.sequence == 10)
            #expect(await apiErrorCode { _ = try await js.getMessage("S1", sequence: 99) } == 10037)

            try await js.deleteMessage("S1", sequence: 4)
            #expect(await apiErrorCode { _ = try await js.getMessage("S1", sequence: 4) } == 10037)
            #expect(try await js.streamInfo("S1").state.messages == 9)

            #expect(try await js.purgeStream("S1", filter: "s1.odd", keep: 1) == 4)
            #expect(try await js.purgeStream("S1", sequence: 8) == 2)  // 6 is left below 8 (4 deleted)
            #expect(try await js.streamInfo("S1").state.messages == 3)
            #expect(try await js.purgeStream("S1") == 3)
            #expect(await thrownError { try await js.purgeStream("S1", sequence: 1, keep: 1) } is JetStreamError)

            try await js.deleteStream("S2")
            #expect(await apiErrorCode { _ = try await js.streamInfo("S2") } == 10059)
            #expect(await apiErrorCode { try await js.deleteStream("S2") } == 10059)
            #expect(await apiErrorCode { _ = try await js.addStream(StreamConfig(name: "S3", subjects: ["s1.x"])) } == 10065)
            let bad = await thrownError { _ = try await js.addStream(StreamConfig(name: "a.b")) }
            guard case .invalidArgument = bad as? JetStreamError else {
                Issue.record("a dotted stream name gave \(String(describing: bad))")
                return
            }
            let account = try await js.accountInfo()
            #expect(account.streams == 1)
        }
    }

    @Test("consumers: add durable and ephemeral, info, update, names, list, delete", arguments: JetStreamBrokers.enabled)
    func consumerManagement(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "C", subjects: ["c.>"]))
            for index in 0..<3 { _ = try await js.publish("c.\(index)", "x") }
            var config = ConsumerConfig(durableName: "worker")
            config.ackWait = .seconds(10)
            config.filterSubject = "c.>"
            config.description = "first"
            let created = try await js.addConsumer("C", config: config)
            #expect(created.name == "worker")
            #expect(created.stream == "C")
            #expect(created.numPending == 3)
            #expect(created.config.ackWait == .seconds(10))
            #expect(created.config.ackPolicy == .explicit)

            config.description = "second"
            let updated = try await js.updateConsumer("C", config: config)
            #expect(updated.config.description == "second")
            config.ackPolicy = .none
            #expect(await apiErrorCode { _ = try await js.updateConsumer("C", config: config) } == 10012)

            var ephemeral = ConsumerConfig()
            ephemeral.ackPolicy = .none
            ephemeral.inactiveThreshold = .seconds(30)
            let unnamed = try await js.addConsumer("C", config: ephemeral)
            #expect(!unnamed.name.isEmpty)
            #expect(unnamed.config.durableName == nil)

            #expect(try await js.consumerNames("C") == [unnamed.name, "worker"].sorted())
            #expect(try await js.consumers("C").map(\.name).sorted() == [unnamed.name, "worker"].sorted())
            #expect(try await js.consumerInfo("C", name: "worker").config.description == "second")
            try await js.deleteConsumer("C", name: "worker")
            #expect(await apiErrorCode { _ = try await js.consumerInfo("C", name: "worker") } == 10014)
            #expect(await apiErrorCode { _ = try await js.addConsumer("NOPE", config: ConsumerConfig(durableName: "x")) } == 10059)
        }
    }

    @Test("fetch returns what is there at once, waits for new messages, and parses the ack metadata",
          arguments: JetStreamBrokers.enabled)
    func fetchBatches(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "F", subjects: ["f"]))
            for index in 1...5 { _ = try await js.publish("f", "m\(index)") }
            _ = try await js.addConsumer("F", config: ConsumerConfig(durableName: "pull"))
            let consumer = try js.pullConsumer(stream: "F", name: "pull")

            let three = try await consumer.fetch(batch: 3)
            #expect(three.map(\.string) == ["m1", "m2", "m3"])
            let metadata = try #require(three.first?.metadata)
            #expect(metadata.stream == "F")
            #expect(metadata.consumer == "pull")
            #expect(metadata.delivered == 1)
            #expect(metadata.streamSequence == 1)
            #expect(metadata.consumerSequence == 1)
            #expect(metadata.pending == 4)
            #expect(abs(metadata.timestamp.timeIntervalSinceNow) < 600)
            for message in three { try await message.ackSync() }

            // Two are left: a batch of ten returns them without waiting for the expiry.
            let rest = try await within(4, "fetching the rest") { try await consumer.fetch(batch: 10, expires: .seconds(30)) }
            #expect(rest.map(\.string) == ["m4", "m5"])
            for message in rest { try await message.ack() }

            // Nothing is there: the request waits for a new message.
            let waiting = Task { try await consumer.fetch(batch: 2, expires: .seconds(10)) }
            try await Task.sleep(for: .milliseconds(100))
            _ = try await js.publish("f", "late")
            let late = try await waiting.value
            #expect(late.map(\.string) == ["late"])
            try await late[0].ackSync()

            #expect(try await consumer.fetch(batch: 4, expires: .milliseconds(300)).isEmpty)
            #expect(try await consumer.next(expires: .milliseconds(200)) == nil)
            let info = try await consumer.info()
            #expect(info.numAckPending == 0)
            #expect(info.ackFloor.streamSequence == 6)
        }
    }

    @Test("fetch on a push consumer throws the 409 status", arguments: JetStreamBrokers.enabled)
    func fetchOnPushConsumer(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "P", subjects: ["p"]))
            var config = ConsumerConfig(durableName: "pushed")
            config.deliverSubject = "deliver.here"
            _ = try await js.addConsumer("P", config: config)
            let error = await thrownError { _ = try await js.pullConsumer(stream: "P", name: "pushed").fetch(batch: 1) }
            guard case .status(409, _) = error as? JetStreamError else {
                Issue.record("expected a 409 status, got \(String(describing: error))")
                return
            }
        }
    }

    @Test("nak redelivers (also after a delay), term stops redelivery, in-progress keeps the message",
          arguments: JetStreamBrokers.enabled)
    func acknowledgements(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "A", subjects: ["a.*"]))
            var config = ConsumerConfig(durableName: "acks")
            config.ackWait = .seconds(30)
            _ = try await js.addConsumer("A", config: config)
            let consumer = try js.pullConsumer(stream: "A", name: "acks")
            _ = try await js.publish("a.1", "one")
            _ = try await js.publish("a.2", "two")

            let first = try await consumer.fetch(batch: 2)
            #expect(first.count == 2)
            try await first[0].nak()
            try await first[1].inProgress()
            try await first[1].term()
            let again = try #require(try await consumer.next())
            #expect(again.string == "one")
            #expect(again.metadata.delivered == 2)
            #expect(again.metadata.consumerSequence == 3)

            try await again.nak(delay: .milliseconds(300))
            #expect(try await consumer.fetch(batch: 1, expires: .milliseconds(50)).isEmpty)
            let third = try #require(try await consumer.next(expires: .seconds(5)))
            #expect(third.string == "one")
            #expect(third.metadata.delivered == 3)
            try await third.ackSync()
            #expect(try await consumer.next(expires: .milliseconds(300)) == nil)
            #expect(try await consumer.info().numAckPending == 0)
        }
    }

    @Test("a continuous pull delivers every message in order, refilling its requests, and ends on cancellation",
          arguments: JetStreamBrokers.enabled)
    func continuousPull(broker: Broker) async throws {
        try await withJetStream(broker) { client, js in
            _ = try await js.addStream(StreamConfig(name: "CP", subjects: ["cp"]))
            _ = try await js.addConsumer("CP", config: ConsumerConfig(durableName: "loop"))
            let consumer = try js.pullConsumer(stream: "CP", name: "loop")
            for index in 0..<150 { _ = try await js.publish("cp", "\(index)") }
            let received = Locked<[String]>([])
            let reached = Gate()
            let total = 250
            let task = Task {
                for try await message in try consumer.messages(batch: 20, expires: .seconds(2), heartbeat: .milliseconds(500)) {
                    try await message.ack()
                    let count = received.withLock { list -> Int in
                        list.append(message.string)
                        return list.count
                    }
                    if count == total { reached.open() }
                }
            }
            // Published while the consumer runs: its open requests take them.
            for index in 150..<total { _ = try await js.publish("cp", "\(index)") }
            try await within(20, "consuming \(total) messages") { await reached.enter() }
            #expect(received.withLock { $0 } == (0..<total).map(String.init))
            task.cancel()
            let outcome = await task.result
            if case .failure(let error) = outcome { #expect(error is CancellationError) }
            // The inbox is gone once iteration ended.
            #expect(await eventually(5) { client.state.withLock { $0.subscriptions.isEmpty } })
            try await within(5, "acks settle") {
                while try await consumer.info().numAckPending != 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
        }
    }

    @Test("a push consumer delivers to its subject, answering flow control; a deliver group shares the messages",
          arguments: JetStreamBrokers.enabled)
    func pushConsumers(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "PU", subjects: ["pu.>"]))
            var config = ConsumerConfig(durableName: "pusher")
            config.flowControl = true
            config.idleHeartbeat = .milliseconds(500)
            let subscription = try await js.pushSubscribe(stream: "PU", config: config)
            let payload = [UInt8](repeating: 0x61, count: 64 * 1024)
            for index in 0..<100 { _ = try await js.publish("pu.\(index)", payload: payload) }
            var seen: [UInt64] = []
            try await within(20, "push deliveries") {
                var sequences: [UInt64] = []
                for try await message in subscription {
                    try await message.ack()
                    sequences.append(message.metadata.streamSequence)
                    if sequences.count == 100 { break }
                }
                return sequences
            }.forEach { seen.append($0) }
            #expect(seen == Array(1...100))
            await subscription.unsubscribe()

            var grouped = ConsumerConfig(durableName: "shared")
            grouped.deliverGroup = "workers"
            grouped.deliverSubject = "shared.deliver"
            let one = try await js.pushSubscribe(stream: "PU", config: grouped)
            let two = try await js.pushSubscribe(stream: "PU", consumer: "shared")
            #expect(two.subscription.queue == "workers")
            let counts = try await within(20, "group deliveries") {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    let total = Locked(0)
                    for member in [one, two] {
                        group.addTask {
                            var mine = 0
                            for try await message in member {
                                try await message.ack()
                                mine += 1
                                if total.withLock({ $0 += 1; return $0 }) >= 100 { break }
                            }
                            return mine
                        }
                    }
                    let first = try await group.next() ?? 0
                    await one.unsubscribe()
                    await two.unsubscribe()
                    var all = [first]
                    while let next = try await group.next() { all.append(next) }
                    return all
                }
            }
            #expect(counts.reduce(0, +) == 100)
        }
    }

    @Test("an ordered consumer delivers in order and recreates itself from the next sequence when its consumer is lost",
          arguments: JetStreamBrokers.enabled)
    func orderedConsumer(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            _ = try await js.addStream(StreamConfig(name: "O", subjects: ["o.*"]))
            for index in 1...10 { _ = try await js.publish("o.\(index % 3)", "\(index)") }
            let ordered = try js.orderedConsumer(stream: "O", heartbeat: .milliseconds(200))
            let iterator = ordered.makeAsyncIterator()
            func take(_ count: Int) async throws -> [JetStreamMessage] {
                try await within(20, "ordered deliveries") {
                    var copy = iterator
                    var messages: [JetStreamMessage] = []
                    while messages.count < count, let message = try await copy.next() { messages.append(message) }
                    return messages
                }
            }
            let first = try await take(10)
            #expect(first.map(\.string) == (1...10).map(String.init))
            #expect(first.map(\.metadata.consumerSequence) == Array(1...10))
            // Remove the server side: missed heartbeats make it start over after sequence 10.
            for name in try await js.consumerNames("O") { try await js.deleteConsumer("O", name: name) }
            for index in 11...15 { _ = try await js.publish("o.\(index % 3)", "\(index)") }
            let second = try await take(5)
            #expect(second.map(\.string) == (11...15).map(String.init))
            #expect(second.map(\.metadata.streamSequence) == Array(11...15))
            #expect(second.first?.metadata.consumerSequence == 1)

            let filtered = try js.orderedConsumer(stream: "O", filterSubject: "o.1", deliverPolicy: .byStartSequence,
                                                  startSequence: 5)
            let filteredStart = filtered.makeAsyncIterator()
            let picked = try await within(10, "filtered ordered deliveries") {
                var filteredIterator = filteredStart
                var values: [String] = []
                while values.count < 3, let message = try await filteredIterator.next() { values.append(message.string) }
                return values
            }
            #expect(picked == ["7", "10", "13"])
        }
    }
}
