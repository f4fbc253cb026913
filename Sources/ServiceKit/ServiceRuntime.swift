#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import HTTPServer
import NATSClient
import Synchronization

/// What a handler knows about the request it serves: its trace and a logger that stamps every
/// line with the trace id.
public struct RequestContext: Sendable {
    /// This request's span. Send `trace.traceparent` downstream (``ServiceRuntime`` does it for you).
    public let trace: TraceContext
    /// The service logger with `trace_id` set.
    public let logger: ServiceLogger
}

/// An error a NATS endpoint handler throws to answer with a service error (`Nats-Service-Error`
/// and `Nats-Service-Error-Code` headers).
public struct ServiceError: Error, Sendable, Equatable {
    /// Service error code (HTTP-like: 400, 404, 500...).
    public var code: Int
    /// Human-readable text (no CR or LF).
    public var description: String
    /// A service error.
    public init(code: Int, _ description: String) { self.code = code; self.description = description }
}

/// Why a runtime call failed.
public enum ServiceRuntimeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The NATS connection is not up (yet); the service keeps retrying in the background.
    case natsUnavailable
    /// `run()` was called twice.
    case alreadyRunning
    /// The service cannot run against this broker (no JetStream, an incompatible stream); the
    /// text says why and how to fix it.
    case startup(String)

    public var description: String {
        switch self {
        case .natsUnavailable: return "runtime: not connected to NATS"
        case .alreadyRunning: return "runtime: run() was already called"
        case .startup(let why): return "runtime: \(why)"
        }
    }
}

/// The shared runtime of a service: HTTP server with `/healthz`, `/readyz` and `/metrics`, a NATS
/// connection that keeps retrying until the broker is up, registration of NATS endpoints in the
/// service API (`$SRV.*`), trace propagation, and graceful shutdown on SIGTERM/SIGINT.
///
/// Register routes, endpoints, readiness checks and shutdown actions first, then call ``run()``:
/// it returns after a signal (or ``shutdown()``) once everything stopped in reverse start order
/// (HTTP intake, then NATS drain and the consumers' in-flight handlers, then the shutdown actions,
/// last registered first), each step bounded by what is left of ``shutdownDeadline``; the last
/// quarter of it is kept for the shutdown actions. Background work a service starts with
/// ``spawn(_:_:)``, and any step that overran its deadline, runs as a child task of ``run()``:
/// after the steps it is cancelled, and `run()` returns only once it has ended.
public final class ServiceRuntime: Sendable {
    /// Service name (in logs, metrics and `$SRV`).
    public let name: String
    /// Version reported in `$SRV.INFO`.
    public let version: String
    /// The loaded settings.
    public let configuration: Configuration
    /// The service logger (no trace id; handlers get a traced copy in ``RequestContext``).
    public let logger: ServiceLogger
    /// The registry `/metrics` renders; services may add their own families.
    public let metrics = MetricsRegistry()
    /// The bound on the whole shutdown.
    public let shutdownDeadline: Duration

    struct Route {
        var method: HTTPMethod
        var pattern: String
        var bodyLimit: Int?
        var handler: @Sendable (HTTPRequest, RequestContext) async throws -> HTTPResponse
    }
    struct Endpoint {
        var name: String
        var subject: String
        var handler: @Sendable (ServiceRequest, RequestContext) async throws -> Void
    }
    struct Consumer {
        var name: String
        var subject: String
        var queue: String?
        var concurrency: Int
        var handler: @Sendable (Message, RequestContext) async throws -> Void
    }
    struct State {
        var routes: [Route] = []
        var endpoints: [Endpoint] = []
        var consumers: [Consumer] = []
        var consumerTasks: [Task<Void, Never>] = []
        /// The live subscription of each consumer (by index in `consumers`); nil while it is
        /// (re)subscribing.
        var consumerSubscriptions: [Int: Subscription] = [:]
        /// Endpoints registered in `$SRV` (or there are none).
        var endpointsRegistered = false
        /// Set at shutdown: consumers end instead of resubscribing.
        var consumersStopping = false
        var readinessChecks: [(String, @Sendable () -> Bool)] = []
        var shutdownActions: [(String, @Sendable () async -> Void)] = []
        var running = false
        var stopRequested = false
        var stopWaiter: CheckedContinuation<Void, Never>?
        var client: NATSClient?
        var service: Service?
        var server: HTTPServer?
        var breakers: [String: CircuitBreaker] = [:]
        /// Children of `run()` started and not yet ended.
        var runningChildren = 0
        /// What the service declared in JetStream (at-least-once mode).
        var durable = DurableDeclarations()
        /// Set once the declarations are in place on the broker.
        var jetStream: JetStreamContext?
        /// Why the service cannot run (an incompatible stream, no JetStream): `run()` throws it.
        var fatal: DurableSetupError?
    }
    let state = Mutex(State())

    /// Work for `run()` to start as a child task, buffered until `run()` starts.
    private struct Child: Sendable {
        var name: String
        var work: @Sendable () async -> Void
    }
    /// The service's own background work (``spawn(_:_:)``): finished, cancelled and awaited once
    /// intake has stopped and before the NATS connection drains, so that work still in progress
    /// (a job publishing its result) can use the connection.
    private let workers = AsyncStream<Child>.makeStream()
    /// Ends when every worker has ended.
    private let workersEnded = AsyncStream<Void>.makeStream()
    /// Shutdown steps left running past their deadline (``within(_:_:)``): finished when the
    /// shutdown steps are done, then cancelled.
    private let overruns = AsyncStream<Child>.makeStream()

    /// - Parameters:
    ///   - name: the service name.
    ///   - version: semantic version for `$SRV.INFO`.
    ///   - configuration: loaded settings (reads ``StandardSettings``).
    ///   - logger: the service logger (a stdout logger at the configured level by default).
    ///   - shutdownDeadline: the bound on the whole shutdown.
    public init(name: String, version: String, configuration: Configuration, logger: ServiceLogger? = nil,
                shutdownDeadline: Duration = .seconds(20)) {
        self.name = name
        self.version = version
        self.configuration = configuration
        self.logger = logger ?? ServiceLogger(service: name, level: configuration[StandardSettings.logLevel])
        self.shutdownDeadline = shutdownDeadline
        metrics.declareCounter("http_requests_total", help: "HTTP requests by method, route and status")
        metrics.declareHistogram("http_request_duration_seconds", help: "HTTP request latency by method and route")
        metrics.declareCounter("nats_requests_total", help: "NATS endpoint requests by endpoint")
        metrics.declareCounter("nats_request_errors_total", help: "NATS endpoint requests answered with an error")
        metrics.declareHistogram("nats_request_duration_seconds", help: "NATS endpoint latency by endpoint")
        metrics.declareCounter("nats_messages_in_total", help: "NATS messages received by this service's connection")
        metrics.declareCounter("nats_messages_out_total", help: "NATS messages sent by this service's connection")
        metrics.declareGauge("nats_connected", help: "1 while connected to NATS")
        metrics.declareCounter("outbound_request_errors_total", help: "failed NATS requests to other services by subject")
        metrics.declareGauge("circuit_breaker_state", help: "state of the breaker guarding requests to a subject: 0 closed, 1 open, 2 half-open")
        metrics.declareCounter("nats_consumer_messages_total", help: "messages handled by consumer")
        metrics.declareCounter("nats_consumer_errors_total", help: "message handlers that threw, by consumer")
    }

    // MARK: Registration (before run)

    /// Adds an HTTP route; the handler gets a ``RequestContext`` continuing the request's
    /// `traceparent` (or a new trace). Every response carries the request's `traceparent`.
    public func route(_ method: HTTPMethod, _ pattern: String, bodyLimit: Int? = nil,
                      _ handler: @escaping @Sendable (HTTPRequest, RequestContext) async throws -> HTTPResponse) {
        state.withLock { $0.routes.append(Route(method: method, pattern: pattern, bodyLimit: bodyLimit, handler: handler)) }
    }

    /// Adds a NATS service endpoint (registered in `$SRV` once connected). A thrown
    /// ``ServiceError`` answers with that service error; any other error with code 500.
    public func endpoint(_ name: String, subject: String,
                         _ handler: @escaping @Sendable (ServiceRequest, RequestContext) async throws -> Void) {
        state.withLock { $0.endpoints.append(Endpoint(name: name, subject: subject, handler: handler)) }
    }

    /// Adds a subscription (made once connected; the client restores it after a reconnect). Each
    /// message runs `handler` with a ``RequestContext`` continuing the message's `traceparent`.
    /// At most `concurrency` handlers run at once (1 keeps the subscription's order); a thrown
    /// error is logged and counted in `nats_consumer_errors_total`, never fatal. On shutdown the
    /// subscription is drained with the connection, so messages already received are handled.
    /// - Parameters:
    ///   - name: label in logs and metrics.
    ///   - subject: the subject (wildcards allowed).
    ///   - queue: queue group: instances sharing it share the messages, each handled once.
    ///   - concurrency: most handlers in flight for this subscription (at least 1).
    public func consume(_ name: String, subject: String, queue: String? = nil, concurrency: Int = 1,
                        _ handler: @escaping @Sendable (Message, RequestContext) async throws -> Void) {
        state.withLock {
            $0.consumers.append(Consumer(name: name, subject: subject, queue: queue, concurrency: max(1, concurrency), handler: handler))
        }
    }

    /// The state of the circuit breaker ``request(_:subject:context:timeout:)`` uses for `subject`
    /// (nil before the first request to it).
    public func breakerState(for subject: String) -> CircuitBreakerMachine.State? {
        state.withLock { $0.breakers[subject] }?.state
    }

    /// Adds a check `/readyz` reports (besides NATS), e.g. "storage is open".
    public func addReadinessCheck(_ name: String, _ check: @escaping @Sendable () -> Bool) {
        state.withLock { $0.readinessChecks.append((name, check)) }
    }

    /// Adds a shutdown action (e.g. flush and close storage); actions run after NATS is drained,
    /// last added first.
    public func onShutdown(_ name: String, _ action: @escaping @Sendable () async -> Void) {
        state.withLock { $0.shutdownActions.append((name, action)) }
    }

    /// Runs `work` as a child task of ``run()``, so it does not outlive the service: at shutdown,
    /// once HTTP, the endpoints and the consumers have stopped and before the NATS connection
    /// drains, it is cancelled and awaited (within the intake part of the deadline; work that is
    /// still running then is cancelled again when `run()` ends, and `run()` returns only after it
    /// has ended). Work added before `run()` starts when `run()` does.
    /// - Parameters:
    ///   - name: label in the shutdown log.
    ///   - work: the task's body; it should end soon after it is cancelled.
    /// - Returns: false, and `work` never runs, once `run()` has stopped its background work.
    @discardableResult
    public func spawn(_ name: String, _ work: @escaping @Sendable () async -> Void) -> Bool {
        if case .enqueued = workers.continuation.yield(Child(name: name, work: work)) { return true }
        return false
    }

    // MARK: State

    /// The bound HTTP port while running.
    public var httpPort: Int? { state.withLock { $0.server?.port } }

    /// The NATS client once connected.
    public var natsClient: NATSClient? { state.withLock { $0.client } }

    /// Readiness: NATS connected, the service's endpoints registered and every consumer
    /// subscribed (`subscriptions`, present when there are endpoints or consumers), and every
    /// readiness check true.
    public var readiness: (ready: Bool, checks: [String: Bool]) {
        let (client, checks, subscribed) = state.withLock { s in
            (s.client, s.readinessChecks,
             (s.endpoints.isEmpty && s.consumers.isEmpty) ? nil
                : s.endpointsRegistered && s.consumerSubscriptions.count == s.consumers.count)
        }
        var results = ["nats": client?.isConnected ?? false]
        if let subscribed { results["subscriptions"] = subscribed }
        if let durable = durableReadiness { results["durable_consumers"] = durable }
        if deliveryMode == .atLeastOnce { results["jetstream"] = jetStreamIfReady != nil }
        for (name, check) in checks { results[name] = check() }
        return (results.values.allSatisfy { $0 }, results)
    }

    // MARK: Messaging with trace propagation

    /// Publishes `payload` with the context's `traceparent` header (a new trace without one).
    /// - Throws: ``ServiceRuntimeError/natsUnavailable`` before the first connection; `NATSError`.
    public func publish(_ payload: [UInt8], subject: String, context: RequestContext?) async throws {
        guard let client = natsClient else { throw ServiceRuntimeError.natsUnavailable }
        try await client.publish(payload, subject: subject, headers: try traceHeaders(context))
    }

    /// Sends a request to another service through a per-subject circuit breaker, with the
    /// context's `traceparent`.
    /// - Throws: ``ServiceRuntimeError/natsUnavailable``; ``CircuitBreakerError`` (open circuit,
    ///   timeout); `NATSError` (no responders, closed ...).
    public func request(_ payload: [UInt8], subject: String, context: RequestContext?,
                        timeout: Duration = .seconds(2)) async throws -> Message {
        guard let client = natsClient else { throw ServiceRuntimeError.natsUnavailable }
        let headers = try traceHeaders(context)
        let breaker = state.withLock { s in
            if let b = s.breakers[subject] { return b }
            let b = CircuitBreaker(name: subject, policy: CircuitBreakerPolicy(consecutiveFailures: 5, coolDown: .seconds(10)))
            s.breakers[subject] = b
            return b
        }
        do {
            return try await breaker.call(timeout: timeout + .milliseconds(250)) {
                try await client.request(payload, subject: subject, headers: headers, timeout: timeout)
            }
        } catch {
            metrics.increment("outbound_request_errors_total", labels: [("subject", subject)])
            throw error
        }
    }

    private func traceHeaders(_ context: RequestContext?) throws -> Headers {
        var headers = Headers()
        try headers.set(name: TraceContext.headerName, value: (context?.trace ?? TraceContext.newTrace()).traceparent)
        return headers
    }

    // MARK: Running

    /// Starts HTTP and the NATS connection, waits for SIGTERM/SIGINT (when `handleSignals`) or
    /// ``shutdown()``, then shuts down in reverse start order within ``shutdownDeadline``.
    /// - Throws: ``ServiceRuntimeError/alreadyRunning``; the HTTP server's start errors (port in
    ///   use, bad host). NATS being down is not an error: the runtime keeps retrying and reports
    ///   not ready.
    public func run(handleSignals: Bool = true) async throws {
        try state.withLock { s in
            guard !s.running else { throw ServiceRuntimeError.alreadyRunning }
            s.running = true
        }
        // The steps run as one child, the service's workers in a group of their own that serve()
        // stops before NATS drains; the body starts overrun steps as further children until the
        // steps are done, then cancels what is left. Leaving the group awaits all of it.
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                defer {
                    self.workers.continuation.finish()
                    self.overruns.continuation.finish()
                }
                try await self.serve(handleSignals: handleSignals)
            }
            group.addTask {
                await withDiscardingTaskGroup { workerGroup in
                    for await child in self.workers.stream {
                        workerGroup.addTask { await self.runChild(child) }
                    }
                    workerGroup.cancelAll()
                }
                self.workersEnded.continuation.finish()
            }
            for await child in overruns.stream {
                group.addTask { await self.runChild(child) }
            }
            let left = state.withLock { $0.runningChildren }
            if left > 0 {
                logger.info("cancelling background tasks", ["tasks": .int(Int64(left))])
            }
            group.cancelAll()
        }
        logger.info("stopped")
        if let fatal = state.withLock({ $0.fatal }) { throw ServiceRuntimeError.startup(fatal.description) }
    }

    private func runChild(_ child: Child) async {
        state.withLock { $0.runningChildren += 1 }
        defer { state.withLock { $0.runningChildren -= 1 } }
        await child.work()
        if Task.isCancelled { logger.debug("background task ended after cancellation", ["task": .string(child.name)]) }
    }

    /// Starts HTTP and NATS, waits for the stop request, then runs the shutdown steps.
    private func serve(handleSignals: Bool) async throws {
        var signalSources: [any DispatchSourceSignal] = []
        if handleSignals {
            for number in [SIGTERM, SIGINT] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { [self] in
                    logger.notice("signal received, shutting down", ["signal": .int(Int64(number))])
                    shutdown()
                }
                source.resume()
                signalSources.append(source)
            }
        }
        defer {
            for source in signalSources { source.cancel() }
            if handleSignals { signal(SIGTERM, SIG_DFL); signal(SIGINT, SIG_DFL) }
        }

        // 1. NATS (in the background: the service starts even when the broker is not up yet).
        let connector = Task { await self.connectLoop() }
        // 2. HTTP.
        let server = HTTPServer(host: "0.0.0.0", port: configuration[StandardSettings.httpPort], router: makeRouter())
        do {
            try server.start()
        } catch {
            connector.cancel()
            await connector.value
            await stopNATS(deadline: ContinuousClock.now + shutdownDeadline)
            throw error
        }
        state.withLock { $0.server = server }
        logger.info("service started", ["http_port": .int(Int64(server.port)), "version": .string(version),
                                        "config": .object(configuration.summary)])

        // Wait for the stop request.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.stopRequested { return true }
                s.stopWaiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }

        // Reverse order: HTTP intake, NATS, then the service's own actions. The last quarter of
        // the deadline is kept for those actions (flushing a store must not lose its turn to a
        // drain that waits on an unreachable broker).
        let deadline = ContinuousClock.now + shutdownDeadline
        let intakeDeadline = deadline - shutdownDeadline / 4
        logger.info("shutting down")
        if !(await within(intakeDeadline, { await server.shutdown() })) {
            logger.error("HTTP server did not stop before the deadline")
        }
        connector.cancel()
        if !(await within(intakeDeadline, { await connector.value })) {
            logger.error("NATS connection attempt did not stop before the deadline")
        }
        await stopNATS(deadline: intakeDeadline)
        let actions = state.withLock { $0.shutdownActions }
        for (name, action) in actions.reversed() {
            if !(await within(deadline, action)) {
                logger.error("shutdown action did not finish before the deadline", ["action": .string(name)])
            }
        }
    }

    /// Asks a running ``run()`` to shut down (what SIGTERM does). Safe from any thread, any time.
    public func shutdown() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.stopRequested = true
            defer { s.stopWaiter = nil }
            return s.stopWaiter
        }
        waiter?.resume()
    }

    /// Endpoints stop first, then each consumer's subscription is drained and its in-flight
    /// handlers finish while the connection is still up (they may still request and publish),
    /// then the connection drains. Every step is bounded by `deadline`.
    private func stopNATS(deadline: ContinuousClock.Instant) async {
        let (service, client, live, consumerTasks) = state.withLock { s in
            s.consumersStopping = true
            return (s.service, s.client, s.consumerSubscriptions, s.consumerTasks)
        }
        let subscriptions = live.sorted { $0.key < $1.key }.map(\.value)
        // Consumers still (re)subscribing have nothing in flight: stop their retry loops.
        for (index, task) in consumerTasks.enumerated() where live[index] == nil { task.cancel() }
        if let service, !(await within(deadline, { await service.stop() })) {
            logger.error("service endpoints did not stop before the deadline")
        }
        if !subscriptions.isEmpty {
            logger.info("draining consumers", ["subscriptions": .int(Int64(subscriptions.count))])
        }
        for subscription in subscriptions {
            let left = deadline - ContinuousClock.now
            do {
                try await subscription.drain(timeout: max(left, .milliseconds(1)))
            } catch {
                logger.warning("subscription drain did not complete", ["subject": .string(subscription.subject), "error": .string("\(error)")])
                await subscription.unsubscribe()
            }
        }
        if !(await within(deadline, { for task in consumerTasks { await task.value } })) {
            logger.error("message handlers did not finish before the deadline")
            for task in consumerTasks { task.cancel() }
        }
        await stopDurableConsumers(deadline: deadline)
        // Nothing new comes in now: stop the service's workers while the connection is still up.
        workers.continuation.finish()
        if !(await within(deadline, { for await _ in self.workersEnded.stream {} })) {
            logger.error("background work did not stop before the deadline")
        }
        if let client {
            let left = deadline - ContinuousClock.now
            do {
                try await client.drain(timeout: max(left, .milliseconds(1)))
            } catch {
                logger.warning("NATS drain did not complete", ["error": .string("\(error)")])
                await client.close()
            }
        }
    }

    /// Runs `work` as a child of `run()`, returning false if `deadline` passed first: the work is
    /// then left running, and cancelled and awaited when `run()` ends.
    func within(_ deadline: ContinuousClock.Instant, _ work: @escaping @Sendable () async -> Void) async -> Bool {
        let finished = AsyncStream<Void>.makeStream()
        let overrun = Child(name: "shutdown step past its deadline") {
            await work()
            finished.continuation.finish()
        }
        guard case .enqueued = overruns.continuation.yield(overrun) else {
            // After run(): nothing to be a child of.
            await work()
            return true
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                // The stream ends when the work does, or early when this waiter is cancelled.
                for await _ in finished.stream {}
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Connects with retry (capped exponential backoff) until connected or cancelled, then
    /// registers the service endpoints.
    private func connectLoop() async {
        var options = NATSClient.Options(servers: configuration[StandardSettings.natsURL]
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        options.name = name
        options.maxReconnectAttempts = nil
        // ServiceMain has already refused credentials that do not load; a runtime made without it
        // connects as NATS_URL says when they do not.
        if let credentials = try? NATSCredentials.from(configuration) {
            options.user = credentials.user
            options.password = credentials.password
            options.inboxPrefix = credentials.inboxPrefix
        }
        var wait = Duration.milliseconds(100)
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                let client = try await NATSClient.connect(options)
                if Task.isCancelled { await client.close(); return }
                state.withLock { $0.client = client }
                logger.info("connected to NATS", ["server": .string(client.connectedServer ?? ""), "attempts": .int(Int64(attempt))])
                guard await setUpJetStream(client) else { return }
                redeclareOnReconnect(client)
                await registerEndpoints(client)
                await startConsumers(client)
                startDurableConsumers()
                return
            } catch {
                if attempt == 1 || attempt % 20 == 0 {
                    logger.warning("NATS not reachable, retrying", ["error": .string("\(error)"), "attempt": .int(Int64(attempt))])
                }
            }
            try? await Task.sleep(for: wait)
            wait = min(wait * 2, .seconds(5))
        }
    }

    private func registerEndpoints(_ client: NATSClient) async {
        let endpoints = state.withLock { $0.endpoints }
        do {
            let service = try await Service.start(client, Service.Config(name: name, version: version))
            state.withLock { $0.service = service }
            for endpoint in endpoints {
                let handler = instrumented(endpoint)
                try await service.addEndpoint(endpoint.name, subject: endpoint.subject, handler: handler)
            }
            state.withLock { $0.endpointsRegistered = true }
            logger.info("service API registered", ["endpoints": .array(endpoints.map { .string($0.subject) })])
        } catch {
            logger.error("service API registration failed", ["error": .string("\(error)")])
        }
    }

    /// One supervising task per consumer: subscribes (retrying with capped backoff), runs the
    /// handlers, and subscribes again if the subscription ends with an error (e.g. the server
    /// refused it after a reconnect). It ends when the subscription ends cleanly (drain) or at
    /// shutdown.
    private func startConsumers(_ client: NATSClient) async {
        let consumers = state.withLock { $0.consumers }
        for (index, consumer) in consumers.enumerated() {
            let task = Task { await self.supervise(consumer, index: index, client: client) }
            state.withLock { $0.consumerTasks.append(task) }
        }
    }

    private func supervise(_ consumer: Consumer, index: Int, client: NATSClient) async {
        var wait = Duration.milliseconds(100)
        var failures = 0
        while !Task.isCancelled && !state.withLock({ $0.consumersStopping }) {
            let subscription: Subscription
            do {
                subscription = try await client.subscribe(consumer.subject, queue: consumer.queue)
            } catch {
                failures += 1
                if failures == 1 || failures % 20 == 0 {
                    logger.error("subscription failed, retrying", ["consumer": .string(consumer.name), "subject": .string(consumer.subject),
                                                                   "error": .string("\(error)"), "attempt": .int(Int64(failures))])
                }
                try? await Task.sleep(for: wait)
                wait = min(wait * 2, .seconds(5))
                continue
            }
            // A PING/PONG round trip: once it returns the broker has the subscription, so
            // readiness never reports a consumer the broker would not yet deliver to.
            do {
                try await client.flush()
            } catch {
                await subscription.unsubscribe()
                try? await Task.sleep(for: wait)
                wait = min(wait * 2, .seconds(5))
                continue
            }
            let stopping = state.withLock { s -> Bool in
                if !s.consumersStopping { s.consumerSubscriptions[index] = subscription }
                return s.consumersStopping
            }
            if stopping { await subscription.unsubscribe(); return }
            logger.info("consuming", ["consumer": .string(consumer.name), "subject": .string(consumer.subject),
                                      "queue": consumer.queue.map(JSONValue.string) ?? .null])
            failures = 0
            wait = .milliseconds(100)
            let cleanEnd = await run(consumer, subscription)
            state.withLock { _ = $0.consumerSubscriptions.removeValue(forKey: index) }
            if cleanEnd { return }
            try? await Task.sleep(for: wait)
        }
    }

    /// Handles the subscription's messages with at most `concurrency` handlers in flight.
    /// Returns true when iteration ended cleanly (drain, unsubscribe, close), false on an error.
    private func run(_ consumer: Consumer, _ subscription: Subscription) async -> Bool {
        let metrics = self.metrics, logger = self.logger, name = consumer.name, handler = consumer.handler
        let handled = metrics.sample("nats_consumer_messages_total", labels: [("consumer", name)])
        let failed = metrics.sample("nats_consumer_errors_total", labels: [("consumer", name)])
        let handle: @Sendable (Message) async -> Void = { message in
            let trace = TraceContext.continuing(message.headers?[TraceContext.headerName]).child()
            let context = RequestContext(trace: trace, logger: logger.with(traceID: trace.traceID))
            metrics.increment(handled)
            do {
                try await handler(message, context)
            } catch {
                metrics.increment(failed)
                context.logger.error("message handler failed", ["consumer": .string(name), "subject": .string(message.subject),
                                                                 "error": .string("\(error)")])
            }
        }
        return await withTaskGroup(of: Void.self) { group -> Bool in
            var inFlight = 0
            var clean = true
            do {
                for try await message in subscription {
                    if inFlight >= consumer.concurrency {
                        await group.next()
                        inFlight -= 1
                    }
                    group.addTask { await handle(message) }
                    inFlight += 1
                }
            } catch {
                clean = false
                logger.warning("subscription ended", ["consumer": .string(name), "error": .string("\(error)")])
            }
            await group.waitForAll()
            return clean
        }
    }

    private func instrumented(_ endpoint: Endpoint) -> Service.Handler {
        let metrics = self.metrics, logger = self.logger, name = endpoint.name, handler = endpoint.handler
        return { request in
            let started = ContinuousClock.now
            let trace = TraceContext.continuing(request.headers?[TraceContext.headerName]).child()
            let context = RequestContext(trace: trace, logger: logger.with(traceID: trace.traceID))
            metrics.increment("nats_requests_total", labels: [("endpoint", name)])
            do {
                try await handler(request, context)
            } catch let error as ServiceError {
                metrics.increment("nats_request_errors_total", labels: [("endpoint", name)])
                try? await request.respondError(code: error.code, description: error.description)
            } catch {
                metrics.increment("nats_request_errors_total", labels: [("endpoint", name)])
                context.logger.error("endpoint failed", ["endpoint": .string(name), "error": .string("\(error)")])
                try? await request.respondError(code: 500, description: "internal error")
            }
            metrics.observe("nats_request_duration_seconds", labels: [("endpoint", name)], ServiceRuntime.seconds(ContinuousClock.now - started))
        }
    }

    // MARK: HTTP

    private func makeRouter() -> HTTPRouter {
        var router = HTTPRouter()
        let routes = state.withLock { $0.routes }
        let builtIn: [Route] = [
            Route(method: .get, pattern: "/healthz", bodyLimit: nil) { _, _ in .json(bytes: Array(#"{"status":"ok"}"#.utf8)) },
            Route(method: .get, pattern: "/readyz", bodyLimit: nil) { [self] _, _ in
                let (ready, checks) = readiness
                let body = JSONValue.object(["status": .string(ready ? "ready" : "not ready"),
                                             "checks": .object(checks.mapValues(JSONValue.bool))])
                return .json(bytes: body.serialized, status: ready ? .ok : .serviceUnavailable)
            },
            Route(method: .get, pattern: "/metrics", bodyLimit: nil) { [self] _, _ in
                refreshConnectionMetrics()
                return HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"],
                                    body: Array(metrics.render().utf8))
            },
        ]
        for route in builtIn + routes {
            router.add(route.method, route.pattern, bodyLimit: route.bodyLimit, instrumented(route))
        }
        // 404 and 405 are counted under one fixed route label: labelling by the raw path would let
        // any client grow the metric without bound.
        let registry = self.metrics
        router.onUnrouted = { request, response in
            registry.increment("http_requests_total", labels: [
                ("method", request.method.rawValue), ("route", "(unrouted)"), ("status", String(response.status.code)),
            ])
        }
        return router
    }

    private func refreshConnectionMetrics() {
        for (subject, breaker) in state.withLock({ $0.breakers }) {
            let value: Double
            switch breaker.state {
            case .closed: value = 0
            case .open: value = 1
            case .halfOpen: value = 2
            }
            metrics.set("circuit_breaker_state", labels: [("subject", subject)], to: value)
        }
        let client = natsClient
        metrics.set("nats_connected", to: client?.isConnected == true ? 1 : 0)
        if let stats = client?.statistics {
            metrics.set("nats_messages_in_total", to: Double(stats.inMessages))
            metrics.set("nats_messages_out_total", to: Double(stats.outMessages))
        }
    }

    private func instrumented(_ route: Route) -> HTTPHandler {
        let metrics = self.metrics, logger = self.logger
        let method = route.method.rawValue, pattern = route.pattern, handler = route.handler
        return { request in
            let started = ContinuousClock.now
            let trace = TraceContext.continuing(request.headers[TraceContext.headerName]).child()
            let context = RequestContext(trace: trace, logger: logger.with(traceID: trace.traceID))
            var response: HTTPResponse
            do {
                response = try await handler(request, context)
            } catch let error as HTTPError {
                response = error.response
            } catch {
                context.logger.error("request failed", ["route": .string(pattern), "error": .string("\(error)")])
                response = .error(.internalServerError, "internal error")
            }
            response.headers.replaceOrAdd(name: TraceContext.headerName, value: trace.traceparent)
            let status = String(response.status.code)
            metrics.increment("http_requests_total", labels: [("method", method), ("route", pattern), ("status", status)])
            metrics.observe("http_request_duration_seconds", labels: [("method", method), ("route", pattern)],
                            ServiceRuntime.seconds(ContinuousClock.now - started))
            context.logger.debug("http request", ["method": .string(method), "path": .string(request.path), "status": .int(Int64(response.status.code))])
            return response
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
