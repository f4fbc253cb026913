import Foundation
import NATSClient
import Synchronization
import Testing
import TestSupport
@testable import ServiceKit

/// `ServiceRuntime.consume`: queue-group sharing, trace continuation, bounded concurrency, handler
/// errors counted and survived, messages already received handled during shutdown.
@Suite(.serialized) struct ConsumeTests {
    /// A runtime connected to `natsPort` whose consumer records what it handled.
    func makeRuntime(natsPort: Int, name: String, concurrency: Int, gate: Gate? = nil, seen: Recorder,
                     sink: MemoryLogSink = MemoryLogSink()) throws -> ServiceRuntime {
        let config = try Configuration.load(
            [AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode), AnySetting(StandardSettings.logLevel)],
            arguments: [], environment: ["NATS_URL": "nats://127.0.0.1:\(natsPort)", "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once", "LOG_LEVEL": "debug"],
            workingDirectory: "/nonexistent")
        let rt = ServiceRuntime(name: name, version: "1.0.0", configuration: config,
                                logger: ServiceLogger(service: name, level: .debug, sink: sink), shutdownDeadline: .seconds(10))
        rt.consume("work", subject: "work.>", queue: "workers", concurrency: concurrency) { message, context in
            let body = String(decoding: message.payload, as: UTF8.self)
            if body == "fail" { throw ServiceError(code: 500, "asked to fail") }
            if let gate { await gate.enter() }
            seen.append("\(name) \(body) \(context.trace.traceID)")
        }
        return rt
    }

    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func queueGroupSharesTheWorkAndEveryHandlerContinuesTheIncomingTrace() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let seen = Recorder()
        let a = try makeRuntime(natsPort: natsPort, name: "a", concurrency: 1, seen: seen)
        let b = try makeRuntime(natsPort: natsPort, name: "b", concurrency: 4, seen: seen)
        let runA = Task { try await a.run(handleSignals: false) }
        let runB = Task { try await b.run(handleSignals: false) }
        #expect(await eventually(20) { a.readiness.ready && b.readiness.ready })

        let client = try await NATSClient.connect(.init(servers: ["nats://127.0.0.1:\(natsPort)"]))
        // Both subscriptions are registered at the broker once a request through each runtime's own
        // connection has made a round trip after the subscribe; poll until both have taken work.
        let trace = TraceContext.newTrace()
        var headers = Headers()
        try headers.set(name: TraceContext.headerName, value: trace.traceparent)
        var sent = 0
        #expect(await eventually(20) {
            for _ in 0..<20 {
                try? await client.publish(Array("m\(sent)".utf8), subject: "work.item", headers: headers)
                sent += 1
            }
            try? await client.flush()
            let all = seen.all
            return all.contains { $0.hasPrefix("a ") } && all.contains { $0.hasPrefix("b ") }
        })
        #expect(await eventually(20) { seen.all.count == sent })
        let all = seen.all
        // Each message handled exactly once across the group.
        #expect(Set(all.map { $0.split(separator: " ")[1] }).count == sent)
        // Every handler ran in the incoming trace.
        #expect(all.allSatisfy { $0.hasSuffix(" \(trace.traceID)") })

        await client.close()
        a.shutdown(); b.shutdown()
        try await runA.value
        try await runB.value
    }

    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func concurrencyIsBoundedErrorsAreCountedAndReceivedMessagesAreHandledOnShutdown() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let seen = Recorder()
        let gate = Gate()
        let sink = MemoryLogSink()
        let rt = try makeRuntime(natsPort: natsPort, name: "c", concurrency: 3, gate: gate, seen: seen, sink: sink)
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready })

        let client = try await NATSClient.connect(.init(servers: ["nats://127.0.0.1:\(natsPort)"]))
        try await client.publish(Array("fail".utf8), subject: "work.x")
        #expect(await eventually(20) { rt.metrics.render().contains(#"nats_consumer_errors_total{consumer="work"} 1"#) })
        #expect(sink.lines.contains { $0.contains("message handler failed") && $0.contains("asked to fail") })

        for i in 0..<10 { try await client.publish(Array("g\(i)".utf8), subject: "work.x") }
        try await client.flush()
        // Three handlers enter the gate and wait there; no fourth starts while they are held.
        #expect(await eventually(20) { gate.waiting == 3 })
        #expect(gate.maximumWaiting == 3)
        #expect(seen.all.isEmpty)

        // Shutdown drains: the seven messages still queued are handled, not dropped.
        rt.shutdown()
        gate.open()
        try await running.value
        #expect(seen.all.count == 10)
        #expect(gate.maximumWaiting == 3)
        await client.close()
    }

    /// At shutdown the consumers drain while the connection is still up: a handler that was
    /// mid-message can still make a request and publish its result.
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func handlersInFlightAtShutdownCanStillRequestAndPublish() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let url = "nats://127.0.0.1:\(natsPort)"
        let peer = try await connectWhenUp(url)
        let echo = try await peer.subscribe("echo")
        let responder = Task { for try await m in echo { try await m.respond(Array("echo:".utf8) + m.payload) } }
        let done = try await peer.subscribe("done")
        try await peer.flush()

        let config = try Configuration.load([AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode)],
                                            arguments: [], environment: ["NATS_URL": url, "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once"],
                                            workingDirectory: "/nonexistent")
        let sink = MemoryLogSink()
        let rt = ServiceRuntime(name: "late", version: "1.0.0", configuration: config,
                                logger: ServiceLogger(service: "late", sink: sink), shutdownDeadline: .seconds(10))
        let gate = Gate()
        rt.consume("work", subject: "work.>", concurrency: 3) { message, context in
            await gate.enter()
            let reply = try await rt.request(message.payload, subject: "echo", context: context)
            try await rt.publish(reply.payload, subject: "done", context: context)
        }
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready })
        for i in 0..<3 { try await peer.publish(Array("w\(i)".utf8), subject: "work.x") }
        #expect(await eventually(20) { gate.waiting == 3 })

        rt.shutdown()
        #expect(await eventually(20) { sink.lines.contains { $0.contains("draining consumers") } })
        gate.open()
        let results = try await within(20, "the three results") {
            var got: [String] = []
            for try await m in done {
                got.append(String(decoding: m.payload, as: UTF8.self))
                if got.count == 3 { break }
            }
            return got.sorted()
        }
        #expect(results == ["echo:w0", "echo:w1", "echo:w2"])
        try await running.value
        #expect(!sink.lines.contains { $0.contains("message handler failed") })
        responder.cancel()
        await peer.close()
    }

    /// A spawned worker (a data-processing job runner, say) is stopped before the connection
    /// drains: the work it has in progress when it sees the cancellation can still publish.
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func spawnedWorkIsStoppedWhileTheConnectionIsStillUp() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let url = "nats://127.0.0.1:\(natsPort)"
        let peer = try await connectWhenUp(url)
        let done = try await peer.subscribe("worker.done")
        try await peer.flush()

        let config = try Configuration.load([AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode)],
                                            arguments: [], environment: ["NATS_URL": url, "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once"],
                                            workingDirectory: "/nonexistent")
        let sink = MemoryLogSink()
        let rt = ServiceRuntime(name: "worker", version: "1.0.0", configuration: config,
                                logger: ServiceLogger(service: "worker", sink: sink), shutdownDeadline: .seconds(10))
        let events = Recorder()
        rt.consume("intake", subject: "intake.>") { _, _ in }
        #expect(rt.spawn("finishes its job at shutdown") {
            events.append("started")
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            do {
                try await rt.publish(Array("result".utf8), subject: "worker.done", context: nil)
                events.append("published")
            } catch {
                events.append("publish failed: \(error)")
            }
        })
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready && events.all == ["started"] })
        rt.shutdown()
        let result = try await within(20, "the worker's result") {
            for try await m in done { return String(decoding: m.payload, as: UTF8.self) }
            return ""
        }
        #expect(result == "result")
        try await running.value
        #expect(events.all == ["started", "published"])
        #expect(!sink.lines.contains { $0.contains("background work did not stop before the deadline") })
        await peer.close()
    }

    /// Readiness waits for the consumers' subscriptions, not just the connection.
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func readinessReportsTheSubscriptions() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let seen = Recorder()
        let rt = try makeRuntime(natsPort: natsPort, name: "r", concurrency: 1, seen: seen)
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready })
        #expect(rt.readiness.checks == ["nats": true, "subscriptions": true])
        rt.shutdown()
        try await running.value
        #expect(rt.readiness.checks["subscriptions"] == false)
    }
}

/// A client connected to `url`, retried until the broker that was just started accepts.
private func connectWhenUp(_ url: String) async throws -> NATSClient {
    var connected: NATSClient?
    #expect(await eventually(20) {
        connected = try? await NATSClient.connect(.init(servers: [url]))
        return connected != nil
    })
    return try #require(connected)
}
