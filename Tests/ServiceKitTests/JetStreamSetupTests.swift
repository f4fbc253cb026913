import Foundation
import NATSClient
import Testing
import TestSupport
@testable import ServiceKit

/// `JetStreamSetup`: streams and consumers as code, against our broker and nats-server 2.9.10
/// with `-js`: created when missing, left alone when up to date, changed in place when JetStream
/// can, refused with the fix when it cannot; a broker without JetStream is named as such.
@Suite(.serialized) struct JetStreamSetupTests {
    @Test(arguments: DurableBroker.enabled)
    func ensureCreatesWhatIsMissingAndLeavesWhatIsUpToDate(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { _, _, js in
            let created = try await JetStreamSetup.ensure(ordersStream(), js)
            #expect(created.config.subjects == ["orders.>"])
            #expect(created.config.maxAge == .seconds(3600))
            #expect(try await js.streamInfo("ORDERS").config.retention == .limits)
            _ = try await js.publish("orders.created", "o-1")

            // A second start finds it as declared: nothing to change, the message is still there.
            let again = try await JetStreamSetup.ensure(ordersStream(), js)
            #expect(again.state.messages == 1)
            #expect(!JetStreamSetup.differs(again.config, ordersStream().config))

            let consumer = try await JetStreamSetup.ensure(workerConsumer(), js)
            #expect(consumer.config.durableName == "worker")
            #expect(consumer.config.filterSubject == "orders.created")
            #expect(consumer.config.ackPolicy == .explicit)
            #expect(consumer.config.maxDeliver == 5)
            #expect(consumer.config.ackWait == .seconds(30))
            #expect(consumer.numPending == 1)
            let consumerAgain = try await JetStreamSetup.ensure(workerConsumer(), js)
            #expect(!JetStreamSetup.consumerDiffers(consumerAgain.config, workerConsumer().config))
            #expect(consumerAgain.numPending == 1)
        }
    }

    /// The platform's shared declarations must read back as declared from both brokers; a field
    /// the broker renders differently would turn every service start into a stream update.
    @Test(arguments: DurableBroker.enabled)
    func thePlatformDeclarationsReadBackAsDeclared(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { _, _, js in
            for spec in [PlatformStreams.userEvents, PlatformStreams.notifications, PlatformStreams.events, DeadLetters.spec] {
                try await JetStreamSetup.ensure(spec, js)
                let info = try await js.streamInfo(spec.config.name)
                #expect(!JetStreamSetup.differs(info.config, spec.config), "\(spec.config.name) reads back differently on \(kind)")
                #expect(JetStreamSetup.incompatibility(existing: info.config, wanted: spec.config) == nil)
            }
            let consumer = ConsumerSpec(stream: "USER_EVENTS", name: "notification") {
                $0.filterSubject = "user.logged_in"
                $0.maxDeliver = 5
                $0.ackWait = .seconds(30)
            }
            try await JetStreamSetup.ensure(consumer, js)
            let info = try await js.consumerInfo("USER_EVENTS", name: "notification")
            #expect(!JetStreamSetup.consumerDiffers(info.config, consumer.config))
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func compatibleChangesAreAppliedInPlace(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { _, _, js in
            try await JetStreamSetup.ensure(ordersStream(), js)
            try await JetStreamSetup.ensure(workerConsumer(), js)
            _ = try await js.publish("orders.created", "o-1")

            // A later version captures more subjects and keeps messages longer.
            let wider = ordersStream(subjects: ["orders.>", "refunds.>"], maxAge: .seconds(7200))
            let updated = try await JetStreamSetup.ensure(wider, js)
            #expect(Set(updated.config.subjects) == ["orders.>", "refunds.>"])
            let stored = try await js.streamInfo("ORDERS")
            #expect(Set(stored.config.subjects) == ["orders.>", "refunds.>"])
            #expect(stored.config.maxAge == .seconds(7200))
            #expect(stored.state.messages == 1)
            let refund = try await js.publish("refunds.issued", "r-1")
            #expect(refund.stream == "ORDERS")

            // ... and gives its handler more time and more attempts.
            try await JetStreamSetup.ensure(workerConsumer(maxDeliver: 7, ackWait: .seconds(10)), js)
            let consumer = try await js.consumerInfo("ORDERS", name: "worker")
            #expect(consumer.config.ackWait == .seconds(10))
            #expect(consumer.config.maxDeliver == 7)
            #expect(consumer.config.filterSubject == "orders.created")
            #expect(consumer.numPending == 1)
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func incompatibleChangesAreRefusedWithTheFix(_ kind: DurableBroker) async throws {
        try await withBroker(kind) { _, _, js in
            try await JetStreamSetup.ensure(ordersStream(), js)
            try await JetStreamSetup.ensure(workerConsumer(), js)
            _ = try await js.publish("orders.created", "o-1")

            var workQueue = ordersStream()
            workQueue.config.retention = .workqueue
            let retention = await thrownError { try await JetStreamSetup.ensure(workQueue, js) } as? DurableSetupError
            guard case .incompatible(let what, let field, let existing, let wanted, let fix) = retention else {
                Issue.record("a retention change was not refused: \(String(describing: retention))")
                return
            }
            #expect(what.contains("ORDERS") && what.contains("orders-service"))
            #expect(field == "retention" && existing == "limits" && wanted == "workqueue")
            #expect(fix.contains("nats stream rm ORDERS"))
            #expect(retention?.isFatal == true)
            #expect(retention?.description.contains("nats stream rm ORDERS") == true)

            var memory = ordersStream()
            memory.config.storage = .memory
            let storage = await thrownError { try await JetStreamSetup.ensure(memory, js) } as? DurableSetupError
            guard case .incompatible(_, let field, let existing, let wanted, _) = storage else {
                Issue.record("a storage change was not refused: \(String(describing: storage))")
                return
            }
            #expect(field == "storage" && existing == "file" && wanted == "memory")

            var otherFilter = workerConsumer()
            otherFilter.config.filterSubject = "orders.paid"
            let filter = await thrownError { try await JetStreamSetup.ensure(otherFilter, js) } as? DurableSetupError
            guard case .incompatible(let consumerWhat, let filterField, let old, let new, let consumerFix) = filter else {
                Issue.record("a filter subject change was not refused: \(String(describing: filter))")
                return
            }
            #expect(consumerWhat.contains("worker") && consumerWhat.contains("ORDERS"))
            #expect(filterField == "filter_subject" && old == "orders.created" && new == "orders.paid")
            #expect(consumerFix.contains("nats consumer rm ORDERS worker"))

            // Nothing was changed by the refusals.
            let stream = try await js.streamInfo("ORDERS")
            #expect(stream.config.retention == .limits && stream.config.storage == .file && stream.state.messages == 1)
            #expect(try await js.consumerInfo("ORDERS", name: "worker").config.filterSubject == "orders.created")
        }
    }

    @Test(arguments: DurableBroker.enabled)
    func aBrokerWithoutJetStreamIsNamedWithTheSettingThatAvoidsIt(_ kind: DurableBroker) async throws {
        try await withBroker(kind, jetStream: false) { _, _, js in
            let error = await thrownError { try await JetStreamSetup.checkAvailable(js) } as? DurableSetupError
            guard case .jetStreamUnavailable = error else {
                Issue.record("expected jetStreamUnavailable, got \(String(describing: error))")
                return
            }
            #expect(error?.isFatal == true)
            #expect(error?.description.contains("EVENT_DELIVERY=at-most-once") == true)
        }
    }
}
