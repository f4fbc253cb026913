import Foundation
import NATSClient
import Testing
import TestSupport
@testable import ServiceKit

/// `ServiceRuntime`'s durable delivery against our broker and nats-server 2.9.10 with `-js`:
/// declared streams and consumers set up on connection, messages acknowledged after their
/// handler, failures redelivered, given-up messages in DEAD_LETTERS, the batch in hand finished
/// at shutdown, a broker without JetStream refused at start, a broker that lost its store set up
/// again.
@Suite(.serialized) struct DurableRuntimeTests {
    struct Refused: Error, CustomStringConvertible {
        var description: String { "refused by the test handler" }
    }

    /// Runs `rt` until `body` returns (or throws), then shuts it down and waits for `run()`.
    func running(_ rt: ServiceRuntime, _ body: () async throws -> Void) async throws {
        let run = Task { try await rt.run(handleSignals: false) }
        do {
            try await body()
        } catch {
            rt.shutdown()
            _ = try? await run.value
            throw error
        }
        rt.shutdown()
        try await run.value
    }

    @Test(arguments: DurableBroker.enabled)
    func messagesAreHandledThenAcknowledged(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            let rt = try durableRuntime(broker)
            let seen = Shared<[String]>([])
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer(), batch: 8, concurrency: 3) { message, _ in
                seen.withLock { $0.append(message.string) }
            }
            try await running(rt) {
                #expect(await eventually(20) { rt.readiness.ready })
                #expect(rt.readiness.checks["jetstream"] == true)
                #expect(rt.readiness.checks["durable_consumers"] == true)
                // Every service with durable consumers declares the dead-letter stream.
                #expect(try await js.streamInfo(DeadLetters.streamName).config.subjects == DeadLetters.subjects)

                for i in 0..<20 { _ = try await js.publish("orders.created", "o-\(i)", options: PublishOptions(msgID: "o-\(i)")) }
                // Not the consumer's subject: never delivered to it.
                _ = try await js.publish("orders.paid", "p-0")
                #expect(await eventually(20) { seen.value.count == 20 })
                #expect(Set(seen.value) == Set((0..<20).map { "o-\($0)" }))
                #expect(await eventually(20) {
                    guard let info = await consumerState(js, "ORDERS", "worker") else { return false }
                    // The stream-sequence floor may or may not have moved past orders.paid yet (on both
                    // brokers); the consumer-sequence floor counts exactly the 20 delivered.
                    return info.numAckPending == 0 && info.numPending == 0 && info.ackFloor.consumerSequence == 20
                })
                #expect(rt.metrics.value("nats_consumer_messages_total", labels: [("consumer", "orders")]) == 20)
            }
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func declaredBucketsExistAndDurablePublishesCarryTheTraceAndDeduplicate(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            let rt = try durableRuntime(broker)
            rt.declare(stream: ordersStream())
            rt.declare(bucket: KeyValueConfig(bucket: "orders_by_id", history: 1), owner: "orders-service")
            // Before the setup is done, a durable publish is refused rather than lost in a buffer.
            let early = await thrownError { try await rt.publishDurable([], subject: "orders.created", msgID: nil, context: nil) }
            #expect(early as? ServiceRuntimeError == .natsUnavailable)
            try await running(rt) {
                #expect(await eventually(20) { rt.readiness.ready })
                let kv = try await js.keyValue("orders_by_id")
                _ = try await kv.put("o-1", "created")

                let trace = TraceContext.newTrace()
                let context = RequestContext(trace: trace, logger: rt.logger)
                let first = try await rt.publishDurable(Array("o-1".utf8), subject: "orders.created", msgID: "event-1", context: context)
                let again = try await rt.publishDurable(Array("o-1".utf8), subject: "orders.created", msgID: "event-1", context: context)
                #expect(!first.duplicate && again.duplicate && again.sequence == first.sequence)
                let stored = try await js.getMessage("ORDERS", sequence: first.sequence)
                #expect(stored.headers?[TraceContext.headerName] == trace.traceparent)
                #expect(stored.headers?["Nats-Msg-Id"] == "event-1")
                #expect(try await js.streamInfo("ORDERS").state.messages == 1)
            }
            // A second start finds the bucket and its contents as they were.
            let second = try durableRuntime(broker)
            second.declare(bucket: KeyValueConfig(bucket: "orders_by_id", history: 1), owner: "orders-service")
            try await running(second) {
                #expect(await eventually(20) { second.readiness.ready })
                let entry = try await js.keyValue("orders_by_id").get("o-1")
                #expect(entry.string == "created")
            }
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func aThrowingHandlerGetsTheMessageAgainUntilItSucceeds(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            let rt = try durableRuntime(broker)
            let deliveries = Shared<[UInt64]>([])
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer(maxDeliver: 5)) { message, _ in
                deliveries.withLock { $0.append(message.metadata.delivered) }
                if message.metadata.delivered < 3 { throw Refused() }
            }
            try await running(rt) {
                #expect(await eventually(20) { rt.readiness.ready })
                _ = try await js.publish("orders.created", "o-1")
                #expect(await eventually(20) { deliveries.value.count == 3 })
                #expect(await eventually(20) {
                    guard let info = await consumerState(js, "ORDERS", "worker") else { return false }
                    return info.numAckPending == 0 && info.ackFloor.streamSequence == 1
                })
                #expect(deliveries.value == [1, 2, 3])
                #expect(rt.metrics.value("nats_consumer_redeliveries_total", labels: [("consumer", "orders")]) == 2)
                #expect(rt.metrics.value("nats_consumer_errors_total", labels: [("consumer", "orders")]) == 2)
                #expect(rt.metrics.value("dead_letters_total", labels: [("consumer", "orders")]) == nil)
                #expect(try await js.streamInfo(DeadLetters.streamName).state.messages == 0)
            }
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func poisonAndExhaustedMessagesLandInDeadLettersWithTheirOrigin(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            let rt = try durableRuntime(broker)
            let handled = Shared<[String]>([])
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer(maxDeliver: 2)) { message, _ in
                switch message.string {
                case "poison": throw PoisonMessage("cannot parse\r\nthe order")
                case "flaky": throw Refused()
                default: handled.withLock { $0.append(message.string) }
                }
            }
            try await running(rt) {
                #expect(await eventually(20) { rt.readiness.ready })
                var headers = Headers()
                try headers.set(name: "Order-Source", value: "web")
                let poison = try await js.publish("orders.created", payload: Array("poison".utf8), headers: headers)
                let flaky = try await js.publish("orders.created", "flaky")
                _ = try await js.publish("orders.created", "fine")

                #expect(await eventually(30) { (try? await js.streamInfo(DeadLetters.streamName).state.messages) == 2 })
                let letters = try await storedMessages(js, DeadLetters.streamName)
                let bySource = Dictionary(letters.map { ($0.headers?[DeadLetters.sequenceHeader] ?? "", $0) }, uniquingKeysWith: { a, _ in a })

                let poisoned = try #require(bySource[String(poison.sequence)])
                #expect(poisoned.subject == "deadletter.orders-service.worker")
                #expect(poisoned.payload == Array("poison".utf8))
                #expect(poisoned.headers?[DeadLetters.streamHeader] == "ORDERS")
                #expect(poisoned.headers?[DeadLetters.subjectHeader] == "orders.created")
                #expect(poisoned.headers?[DeadLetters.consumerHeader] == "worker")
                #expect(poisoned.headers?[DeadLetters.deliveriesHeader] == "1")
                #expect(poisoned.headers?[DeadLetters.reasonHeader] == "cannot parse  the order")
                #expect(poisoned.headers?["Order-Source"] == "web")

                let exhausted = try #require(bySource[String(flaky.sequence)])
                #expect(exhausted.subject == "deadletter.orders-service.worker")
                #expect(exhausted.payload == Array("flaky".utf8))
                #expect(exhausted.headers?[DeadLetters.deliveriesHeader] == "2")
                #expect(exhausted.headers?[DeadLetters.reasonHeader]?.contains("failed on delivery 2 of 2") == true)

                #expect(rt.metrics.value("dead_letters_total", labels: [("consumer", "orders")]) == 2)
                #expect(rt.metrics.render().contains("dead_letters_total{consumer=\"orders\"} 2"))
                #expect(handled.value == ["fine"])
                // Both are settled on their own stream: terminated, not pending, not redelivered.
                #expect(await eventually(20) {
                    guard let info = await consumerState(js, "ORDERS", "worker") else { return false }
                    return info.numAckPending == 0 && info.numPending == 0 && info.ackFloor.streamSequence == 3
                })
            }
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func shutdownFinishesAndAcknowledgesTheBatchInHandAndPullsNoMore(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            // The messages are there before the service starts, so its first pull takes a full batch.
            try await JetStreamSetup.ensure(ordersStream(), js)
            for i in 0..<8 { _ = try await js.publish("orders.created", "o-\(i)") }

            let rt = try durableRuntime(broker)
            let gate = Gate()
            let seen = Shared<[String]>([])
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer(), batch: 5, concurrency: 5) { message, _ in
                await gate.enter()
                seen.withLock { $0.append(message.string) }
            }
            let run = Task { try await rt.run(handleSignals: false) }
            #expect(await eventually(20) { gate.waiting == 5 })
            rt.shutdown()
            #expect(await eventually(20) { rt.state.withLock { $0.durable.stopping } })
            gate.open()
            try await within(30, "run() after shutdown") { try await run.value }

            #expect(Set(seen.value) == Set((0..<5).map { "o-\($0)" }))
            let info = try await js.consumerInfo("ORDERS", name: "worker")
            #expect(info.numAckPending == 0)
            #expect(info.ackFloor.streamSequence == 5)
            #expect(info.numPending == 3)
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func atLeastOnceAgainstABrokerWithoutJetStreamStopsNamingAtMostOnce(_ kind: DurableBroker) async throws {
        try await withBroker(kind, jetStream: false) { broker, _, _ in
            let sink = MemoryLogSink()
            let rt = try durableRuntime(broker, sink: sink)
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer()) { _, _ in }
            let error = await thrownError {
                try await within(30, "run() against a broker without JetStream") { try await rt.run(handleSignals: false) }
            }
            guard case .startup(let why) = error as? ServiceRuntimeError else {
                Issue.record("expected ServiceRuntimeError.startup, got \(String(describing: error))")
                return
            }
            #expect(why.contains("EVENT_DELIVERY=at-most-once"))
            #expect(sink.lines.contains { $0.contains(#""level":"critical""#) && $0.contains("EVENT_DELIVERY=at-most-once") })

            // The explicit at-most-once mode runs on the same broker, without a JetStream check.
            let plain = try durableRuntime(broker, mode: .atMostOnce)
            plain.consume("orders", subject: "orders.>") { _, _ in }
            try await running(plain) {
                #expect(await eventually(20) { plain.readiness.ready })
                #expect(plain.readiness.checks["jetstream"] == nil)
                #expect(plain.jetStreamIfReady == nil)
            }
        }
    }

    /// A stream another service owns is only required: a reader started before the owner neither
    /// creates it nor becomes ready, and becomes ready, consuming, once the owner has created it.
    @Test(arguments: DurableBroker.enabled)
    func aReaderStartedBeforeTheOwnerWaitsForTheStreamAndNeverCreatesIt(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            let sink = MemoryLogSink()
            let rt = try durableRuntime(broker, name: "reader-service", sink: sink)
            let seen = Shared<[String]>([])
            rt.require(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer()) { message, _ in
                seen.withLock { $0.append(message.string) }
            }
            try await running(rt) {
                // The first failed setup is logged: from then on the reader is waiting.
                let waiting = await eventually(20) { sink.lines.contains { $0.contains("waiting for its owner (orders-service)") } }
                #expect(waiting, "no waiting line: \(sink.lines.suffix(5))")
                #expect(!rt.readiness.ready)
                let missing = await thrownError { _ = try await js.streamInfo("ORDERS") }
                #expect((missing as? JetStreamError)?.errCode == 10059, "the reader created ORDERS: \(String(describing: missing))")
                #expect(await consumerState(js, "ORDERS", "worker") == nil)

                // The owner creates it: the reader's retry finds it, creates its consumer, consumes.
                try await JetStreamSetup.ensure(ordersStream(), js)
                #expect(await eventually(20) { rt.readiness.ready })
                _ = try await js.publish("orders.created", "o-1", options: PublishOptions(msgID: "o-1"))
                #expect(await eventually(20) { seen.value == ["o-1"] })
            }
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func anIncompatibleExistingStreamStopsTheServiceWithTheFix(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            var older = ordersStream()
            older.config.retention = .workqueue
            try await JetStreamSetup.ensure(older, js)
            let rt = try durableRuntime(broker)
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer()) { _, _ in }
            let error = await thrownError {
                try await within(30, "run() against an incompatible stream") { try await rt.run(handleSignals: false) }
            }
            guard case .startup(let why) = error as? ServiceRuntimeError else {
                Issue.record("expected ServiceRuntimeError.startup, got \(String(describing: error))")
                return
            }
            #expect(why.contains("retention") && why.contains("nats stream rm ORDERS"))
            // Nothing was changed or added on the broker.
            #expect(try await js.streamInfo("ORDERS").config.retention == .workqueue)
            #expect(await consumerState(js, "ORDERS", "worker") == nil)
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func aBrokerRestartedWithAnEmptyStoreGetsTheDeclarationsAgain(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { broker, _, js in
            let rt = try durableRuntime(broker)
            let seen = Shared<[String]>([])
            rt.declare(stream: ordersStream())
            rt.consumeDurable("orders", consumer: workerConsumer()) { message, _ in
                seen.withLock { $0.append(message.string) }
            }
            // A service that only publishes: it declares its stream and no consumer.
            let publisher = try durableRuntime(broker, name: "audit-service")
            var audit = StreamConfig(name: "AUDIT", subjects: ["audit.>"])
            audit.maxAge = .seconds(3600)
            publisher.declare(stream: StreamSpec(audit, owner: "audit-service"))
            try await running(publisher) {
                try await running(rt) {
                    #expect(await eventually(20) { rt.readiness.ready && publisher.readiness.ready })
                    _ = try await js.publish("orders.created", "before")
                    #expect(await eventually(20) { seen.value == ["before"] })

                    try await broker.restart(emptyStore: true)
                    #expect(await eventually(60) { await consumerState(js, "ORDERS", "worker") != nil })
                    #expect(await eventually(30) { (try? await js.streamInfo("AUDIT")) != nil })
                    #expect(try await js.streamInfo(DeadLetters.streamName).state.messages == 0)
                    _ = try await js.publish("orders.created", "after")
                    #expect(await eventually(30) { seen.value == ["before", "after"] })
                    #expect(await eventually(20) { rt.readiness.ready && publisher.readiness.ready })
                    let published = try await publisher.publishDurable(Array("entry".utf8), subject: "audit.entry", msgID: "a-1", context: nil)
                    #expect(published.stream == "AUDIT")
                }
            }
        }
    }
}
