import Foundation
import TestSupport
import HTTPServer
import NATSClient
import Synchronization
import Testing
@testable import ServiceKit

/// An append-only list shared with handlers.
final class Recorder: Sendable {
    private let items = Mutex<[String]>([])
    func append(_ s: String) { items.withLock { $0.append(s) } }
    var all: [String] { items.withLock { $0 } }
}

@Suite(.serialized) struct ServiceRuntimeTests {
    func runtime(natsPort: Int, sink: MemoryLogSink, actions: Recorder? = nil) throws -> ServiceRuntime {
        let config = try Configuration.load(
            [AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode), AnySetting(StandardSettings.logLevel)],
            arguments: [], environment: ["NATS_URL": "nats://127.0.0.1:\(natsPort)", "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once", "LOG_LEVEL": "debug"],
            workingDirectory: "/nonexistent")
        let rt = ServiceRuntime(name: "demo", version: "1.2.3", configuration: config,
                                logger: ServiceLogger(service: "demo", level: .debug, sink: sink), shutdownDeadline: .seconds(10))
        rt.route(.post, "/v1/things") { request, ctx in
            ctx.logger.info("creating thing")
            try await rt.publish(request.body, subject: "thing.created", context: ctx)
            return .json(bytes: Array(#"{"ok":true}"#.utf8), status: .created)
        }
        rt.route(.get, "/v1/fail") { _, _ in throw HTTPError(.conflict, "nope") }
        rt.endpoint("echo", subject: "demo.echo") { request, ctx in
            try await request.respond(Array("\(ctx.trace.traceID) \(String(decoding: request.payload, as: UTF8.self))".utf8))
        }
        rt.endpoint("missing", subject: "demo.missing") { _, _ in throw ServiceError(code: 404, "no such thing") }
        rt.addReadinessCheck("storage") { true }
        if let actions {
            rt.onShutdown("first") { actions.append("first") }
            rt.onShutdown("second") { actions.append("second") }
        }
        return rt
    }

    /// Needs /usr/sbin/nats-server (skipped without it unless REQUIRE_PEERS=1, which makes it fail).
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func healthMetricsAndNotReadyWhileTheBrokerIsDownThenReadyWhenItComesUp() async throws {
        let natsPort = try freePort()
        let sink = MemoryLogSink()
        let actions = Recorder()
        let rt = try runtime(natsPort: natsPort, sink: sink, actions: actions)
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually { rt.httpPort != nil && rt.httpPort != 0 })
        let port = try #require(rt.httpPort)

        #expect(try await http(port: port, path: "/healthz").status == 200)
        let notReady = try await http(port: port, path: "/readyz")
        #expect(notReady.status == 503)
        #expect(JSONValue.parse(Array(notReady.body.utf8)) == .object(["status": .string("not ready"),
                                                                         "checks": .object(["nats": .bool(false), "subscriptions": .bool(false), "storage": .bool(true)])]))
        // HTTP handlers that need NATS fail cleanly meanwhile.
        #expect(try await http(port: port, method: "POST", path: "/v1/things", body: "{}").status == 500)

        // The broker comes up late: the runtime connects on its own.
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        #expect(await eventually(20) { (try? await http(port: port, path: "/readyz").status) == 200 })

        // Answers the router makes itself are counted too, under one fixed route label.
        #expect(try await http(port: port, path: "/no/such/path").status == 404)
        #expect(try await http(port: port, method: "DELETE", path: "/healthz").status == 405)

        let metrics = try await http(port: port, path: "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains(#"http_requests_total{method="GET",route="(unrouted)",status="404"} 1"#))
        #expect(metrics.body.contains(#"http_requests_total{method="DELETE",route="(unrouted)",status="405"} 1"#))
        #expect(!metrics.body.contains("/no/such/path"))
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(metrics.body.contains(#"http_requests_total{method="GET",route="/healthz",status="200"} 1"#))
        #expect(metrics.body.contains(#"http_requests_total{method="GET",route="/readyz",status="503"} "#))
        #expect(metrics.body.contains(#"http_requests_total{method="GET",route="/readyz",status="200"} 1"#))
        #expect(metrics.body.contains(#"http_request_duration_seconds_count{method="GET",route="/healthz"} 1"#))
        #expect(metrics.body.contains("nats_connected 1"))
        #expect(try await http(port: port, path: "/v1/fail").status == 409)

        rt.shutdown()
        try await running.value
        #expect(actions.all == ["second", "first"], "shutdown actions run last-registered first")
        await #expect(throws: (any Error).self) { try await http(port: port, path: "/healthz") }
        #expect(sink.lines.contains { $0.contains("NATS not reachable, retrying") })
        #expect(sink.lines.contains { $0.contains(#""message":"stopped""#) })
    }

    /// Needs /usr/sbin/nats-server (skipped without it unless REQUIRE_PEERS=1, which makes it fail).
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func tracePropagatesFromHTTPToPublishedEventsAndThroughEndpoints() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let sink = MemoryLogSink()
        let rt = try runtime(natsPort: natsPort, sink: sink)
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready && rt.httpPort != nil })
        let port = try #require(rt.httpPort)

        var observerOptions = NATSClient.Options(url: "nats://127.0.0.1:\(natsPort)")
        observerOptions.retryOnFailedConnect = true
        let observer = try await NATSClient.connect(observerOptions)
        let events = try await observer.subscribe("thing.created")
        try await observer.flush()

        // HTTP request with a traceparent: the published event continues the same trace.
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let created = try await http(port: port, method: "POST", path: "/v1/things", headers: ["traceparent": incoming], body: #"{"n":1}"#)
        #expect(created.status == 201)
        let responseTrace = try #require(TraceContext(traceparent: created.headers["traceparent"] ?? ""))
        #expect(responseTrace.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        var iterator = events.makeAsyncIterator()
        let event = try #require(await iterator.next())
        #expect(event.payload == Array(#"{"n":1}"#.utf8))
        let eventTrace = try #require(TraceContext(traceparent: event.headers?["traceparent"] ?? ""))
        #expect(eventTrace.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(eventTrace.spanID != "00f067aa0ba902b7", "the service's own span is the parent downstream")
        #expect(sink.lines.contains { $0.contains("creating thing") && $0.contains(#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#) })

        // NATS endpoint: the handler sees the caller's trace.
        var headers = Headers()
        try headers.set(name: "traceparent", value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        let reply = try await observer.request(Array("hi".utf8), subject: "demo.echo", headers: headers, timeout: .seconds(5))
        #expect(reply.string == "0af7651916cd43dd8448eb211c80319c hi")
        let missing = try await observer.request(Array("x".utf8), subject: "demo.missing", timeout: .seconds(5))
        #expect(missing.serviceError?.code == 404)
        #expect(missing.serviceError?.description == "no such thing")

        // $SRV discovery lists the endpoints.
        let infos = try await Service.info(observer, name: "demo", timeout: .seconds(2))
        #expect(infos.first?.version == "1.2.3")
        #expect(Set(infos.first?.endpoints.map(\.subject) ?? []) == ["demo.echo", "demo.missing"])

        // Outbound requests go through the runtime too (trace header, circuit breaker).
        let ctx = RequestContext(trace: TraceContext.newTrace(), logger: rt.logger)
        let viaRuntime = try await rt.request(Array("yo".utf8), subject: "demo.echo", context: ctx)
        #expect(viaRuntime.string == "\(ctx.trace.traceID) yo")

        let metrics = try await http(port: port, path: "/metrics").body
        #expect(metrics.contains(#"nats_requests_total{endpoint="echo"} 2"#))
        #expect(metrics.contains(#"nats_request_errors_total{endpoint="missing"} 1"#))

        rt.shutdown()
        try await running.value
        await observer.close()
    }

    @Test func runTwiceIsRefusedAndShutdownBeforeRunReturnsAtOnce() async throws {
        let sink = MemoryLogSink()
        let rt = try runtime(natsPort: try freePort(), sink: sink)
        rt.shutdown()
        try await rt.run(handleSignals: false)   // stop was already requested: starts, then stops
        await #expect(throws: ServiceRuntimeError.alreadyRunning) { try await rt.run(handleSignals: false) }
    }

    @Test func sigtermStopsTheRuntimeGracefully() async throws {
        let sink = MemoryLogSink()
        let actions = Recorder()
        let rt = try runtime(natsPort: try freePort(), sink: sink, actions: actions)
        let running = Task { try await rt.run(handleSignals: true) }
        #expect(await eventually { rt.httpPort != nil })
        #expect(await eventually { sink.lines.contains { $0.contains(#""message":"service started""#) } })
        kill(getpid(), SIGTERM)
        try await running.value
        #expect(actions.all == ["second", "first"])
        #expect(sink.lines.contains { $0.contains("signal received, shutting down") })
    }

    @Test func aHungShutdownActionIsAbandonedAtTheDeadline() async throws {
        let config = try Configuration.load([AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode)],
                                            arguments: [], environment: ["NATS_URL": "nats://127.0.0.1:\(try freePort())", "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once"],
                                            workingDirectory: "/nonexistent")
        let sink = MemoryLogSink()
        let rt = ServiceRuntime(name: "hung", version: "0.0.1", configuration: config,
                                logger: ServiceLogger(service: "hung", sink: sink), shutdownDeadline: .milliseconds(300))
        let ran = Recorder()
        rt.onShutdown("quick") { ran.append("quick") }
        rt.onShutdown("hangs") { try? await Task.sleep(for: .seconds(3600)) }
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually { rt.httpPort != nil })
        rt.shutdown()
        try await running.value
        #expect(ran.all == ["quick"], "later actions still run after one overran")
        #expect(sink.lines.contains { $0.contains("shutdown action did not finish before the deadline") && $0.contains("hangs") })
    }

    /// Work a service spawns, and a shutdown step left running past its deadline, are children of
    /// run(): after the shutdown steps they are cancelled, and run() returns only once they ended.
    @Test func shutdownCancelsAndAwaitsSpawnedWorkAndOverrunSteps() async throws {
        let config = try Configuration.load([AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode)],
                                            arguments: [], environment: ["NATS_URL": "nats://127.0.0.1:\(try freePort())", "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once"],
                                            workingDirectory: "/nonexistent")
        let sink = MemoryLogSink()
        let rt = ServiceRuntime(name: "children", version: "0.0.1", configuration: config,
                                logger: ServiceLogger(service: "children", sink: sink), shutdownDeadline: .milliseconds(300))
        let events = Recorder()
        let release = Gate()
        /// Waits until the task is cancelled, records it, then holds until the test opens the gate.
        @Sendable func holdUntilCancelled(_ name: String) async {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            events.append("\(name) cancelled")
            await release.enter()
            events.append("\(name) ended")
        }
        #expect(rt.spawn("worker") {
            events.append("worker started")
            await holdUntilCancelled("worker")
        })
        rt.onShutdown("slow step") { await holdUntilCancelled("step") }
        let running = Task {
            try await rt.run(handleSignals: false)
            events.append("run returned")
        }
        #expect(await eventually { events.all.contains("worker started") && rt.httpPort != nil })
        rt.shutdown()
        #expect(await eventually { Set(events.all).isSuperset(of: ["worker cancelled", "step cancelled"]) })
        #expect(!events.all.contains("run returned"), "run() returned while its children were still running")
        release.open()
        try await running.value
        #expect(events.all.last == "run returned")
        #expect(Set(events.all).isSuperset(of: ["worker ended", "step ended"]))
        #expect(sink.lines.contains { $0.contains("shutdown action did not finish before the deadline") && $0.contains("slow step") })
        #expect(sink.lines.contains { $0.contains("cancelling background tasks") })
        #expect(!rt.spawn("too late") {}, "work spawned after run() ended is refused")
    }

    /// A drain that cannot finish (the broker is gone) must not use the time kept for the
    /// service's own shutdown actions, such as flushing its store.
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func shutdownActionsRunEvenWhenTheDrainCannotFinish() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        let config = try Configuration.load([AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode)],
                                            arguments: [], environment: ["NATS_URL": "nats://127.0.0.1:\(natsPort)", "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once"],
                                            workingDirectory: "/nonexistent")
        let rt = ServiceRuntime(name: "flush", version: "0.0.1", configuration: config,
                                logger: ServiceLogger(service: "flush", sink: MemoryLogSink()), shutdownDeadline: .seconds(2))
        let ran = Recorder()
        rt.consume("work", subject: "work.>") { _, _ in }
        rt.onShutdown("flush store") {
            try? await Task.sleep(for: .milliseconds(100))
            ran.append("flushed")
        }
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready })
        broker.stop()
        #expect(await eventually(20) { rt.natsClient?.isConnected == false })
        rt.shutdown()
        try await running.value
        #expect(ran.all == ["flushed"])
    }

    /// The breaker guarding requests to a subject is visible in /metrics (and breakerState).
    @Test(.enabled(if: ReferenceBroker.available || Peers.required))
    func theBreakerStateOfEachRequestedSubjectIsExported() async throws {
        let natsPort = try freePort()
        let broker = try ReferenceBroker(port: natsPort)
        defer { broker.stop() }
        let config = try Configuration.load([AnySetting(StandardSettings.natsURL), AnySetting(StandardSettings.httpPort), AnySetting(StandardSettings.deliveryMode)],
                                            arguments: [], environment: ["NATS_URL": "nats://127.0.0.1:\(natsPort)", "HTTP_PORT": "0", "EVENT_DELIVERY": "at-most-once"],
                                            workingDirectory: "/nonexistent")
        let rt = ServiceRuntime(name: "caller", version: "0.0.1", configuration: config,
                                logger: ServiceLogger(service: "caller", sink: MemoryLogSink()), shutdownDeadline: .seconds(5))
        let running = Task { try await rt.run(handleSignals: false) }
        #expect(await eventually(20) { rt.readiness.ready })
        let port = try #require(rt.httpPort)
        #expect(rt.breakerState(for: "nobody.home") == nil)
        // Nobody answers: each request fails at once with no responders; five in a row open the circuit.
        for _ in 0..<5 { _ = try? await rt.request([], subject: "nobody.home", context: nil, timeout: .seconds(1)) }
        guard case .open = rt.breakerState(for: "nobody.home") else {
            Issue.record("breaker not open: \(String(describing: rt.breakerState(for: "nobody.home")))")
            rt.shutdown(); try await running.value
            return
        }
        let metrics = try await http(port: port, path: "/metrics")
        #expect(metrics.body.contains(#"circuit_breaker_state{subject="nobody.home"} 1"#))
        rt.shutdown()
        try await running.value
    }
}
