import Foundation
import NATSClient

/// A handler's verdict that a message can never succeed (malformed, refers to nothing): it goes
/// to the dead-letter stream at once instead of being retried up to `max_deliver` times.
public struct PoisonMessage: Error, Sendable, CustomStringConvertible {
    /// Why (in the dead letter's `Dead-Letter-Reason` header and in the log).
    public var reason: String
    /// A poison verdict with its reason.
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "poison message: \(reason)" }
}

/// The dead-letter stream every service shares: a message its consumer gave up on (a poison
/// verdict, or the last allowed delivery failed) is copied here with headers saying where it came
/// from and why, then terminated on its own stream. `nats stream view DEAD_LETTERS` shows them;
/// `dead_letters_total` counts them per consumer.
public enum DeadLetters {
    /// The stream's name.
    public static let streamName = "DEAD_LETTERS"
    /// Subjects: `deadletter.<service>.<consumer>`.
    public static let subjects = ["deadletter.>"]
    /// The declaration every service makes when it has durable consumers (identical, so the first
    /// creates it and the others find it).
    public static var spec: StreamSpec {
        var config = StreamConfig(name: streamName, subjects: subjects)
        config.description = "messages a service's consumer gave up on (see the Dead-Letter-* headers)"
        config.maxAge = .seconds(30 * 24 * 3600)
        config.maxMsgs = 1_000_000
        config.maxBytes = 1 << 30
        config.discard = .old
        config.duplicateWindow = .seconds(120)
        return StreamSpec(config, owner: "every service (ServiceKit)")
    }
    /// Header names on a dead letter.
    public static let streamHeader = "Dead-Letter-Stream"
    public static let sequenceHeader = "Dead-Letter-Sequence"
    public static let subjectHeader = "Dead-Letter-Subject"
    public static let consumerHeader = "Dead-Letter-Consumer"
    public static let deliveriesHeader = "Dead-Letter-Deliveries"
    public static let reasonHeader = "Dead-Letter-Reason"
}

/// What a service declared for JetStream, set up on every (re)connection in at-least-once mode.
struct DurableDeclarations: Sendable {
    var streams: [StreamSpec] = []
    /// Streams other services own that this one reads (checked, never created nor changed).
    var required: [StreamSpec] = []
    var buckets: [(config: KeyValueConfig, owner: String)] = []
    var consumers: [DurableConsumer] = []
    /// Consumers whose loop has the consumer in place and is pulling (by index).
    var active: Set<Int> = []
    var tasks: [Task<Void, Never>] = []
    var stopping = false
}

/// One declared durable consumer and its handler.
struct DurableConsumer: Sendable {
    var name: String
    /// What is declared on the server: as given, except `max_deliver` unlimited (see `deliveryLimit`).
    var spec: ConsumerSpec
    /// The given `max_deliver` (-1: none), enforced here: a server that stops at `max_deliver`
    /// strands a message whose last delivery was lost (a crash, an ack wait that passed) with
    /// nobody told; counted here, that message comes once more and is dead-lettered.
    var deliveryLimit: Int
    var batch: Int
    var concurrency: Int
    var handler: @Sendable (JetStreamMessage, RequestContext) async throws -> Void
}

extension ServiceRuntime {
    /// The event delivery mode (`EVENT_DELIVERY`).
    public var deliveryMode: DeliveryMode { configuration[StandardSettings.deliveryMode] }

    /// Declares a stream the service owns (at-least-once mode): created when missing and updated
    /// in place when compatible, on every connection, before endpoints and consumers start. An
    /// incompatible existing stream stops the service with a message saying how to fix it.
    public func declare(stream: StreamSpec) {
        state.withLock { $0.durable.streams.append(stream) }
    }

    /// Declares a stream another service owns that this one reads (at-least-once mode), such as
    /// the stream a durable consumer of ``consumeDurable(_:consumer:batch:concurrency:_:)`` is on:
    /// on every connection the setup checks that it exists and neither creates nor updates it,
    /// since only its owner's identity may. Until the owner has created it the setup retries with
    /// backoff, so the service stays not ready and its endpoints and consumers wait.
    public func require(stream: StreamSpec) {
        state.withLock { $0.durable.required.append(stream) }
    }

    /// Declares a KV bucket the service owns (created when missing).
    public func declare(bucket: KeyValueConfig, owner: String) {
        state.withLock { $0.durable.buckets.append((bucket, owner)) }
    }

    /// Declares a durable pull consumer and consumes it: each message runs `handler` (at most
    /// `concurrency` at once, messages pulled `batch` at a time) and is acknowledged when the
    /// handler returns. When it throws, the message is redelivered later (`-NAK` with a delay
    /// growing with its deliveries), except that a ``PoisonMessage``, or a failure on the
    /// consumer's last allowed delivery (`max_deliver`), copies it to ``DeadLetters`` and
    /// terminates it. The consumer's `max_deliver` is counted by the service, not the server (the
    /// server's is left unlimited): a message whose last allowed delivery ended without an answer
    /// (the process was killed, the ack wait passed) comes once more and goes to the dead letters
    /// without running the handler, instead of being stranded. Handlers must be idempotent: a message can come again after a crash, an
    /// expired ack wait or a lost ack.
    ///
    /// At shutdown the loop stops pulling, lets the handlers of the batch in hand finish and
    /// acknowledges them before the connection drains.
    public func consumeDurable(_ name: String, consumer: ConsumerSpec, batch: Int = 64, concurrency: Int = 1,
                               _ handler: @escaping @Sendable (JetStreamMessage, RequestContext) async throws -> Void) {
        let limit = consumer.config.maxDeliver.map { $0 > 0 ? $0 : -1 } ?? -1
        var declared = consumer
        if limit > 0 { declared.config.maxDeliver = -1 }
        state.withLock {
            $0.durable.consumers.append(DurableConsumer(name: name, spec: declared, deliveryLimit: limit, batch: max(1, batch),
                                                        concurrency: max(1, concurrency), handler: handler))
        }
    }

    /// The JetStream context once the declarations are in place (waits for the connection and
    /// the setup).
    /// - Throws: `CancellationError` when the waiting task is cancelled.
    public func jetStream() async throws -> JetStreamContext {
        while true {
            if let js = state.withLock({ $0.jetStream }) { return js }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The JetStream context when set up, else nil (never waits).
    public var jetStreamIfReady: JetStreamContext? { state.withLock { $0.jetStream } }

    /// Publishes to a stream and waits for its acknowledgement, with the context's `traceparent`
    /// and `Nats-Msg-Id` = `msgID` (the stream drops a second copy within its duplicate window).
    /// - Throws: ``ServiceRuntimeError/natsUnavailable`` before JetStream is set up;
    ///   `JetStreamError` (no stream, timeout, refused).
    @discardableResult
    public func publishDurable(_ payload: [UInt8], subject: String, msgID: String?, context: RequestContext?,
                               timeout: Duration = .seconds(5)) async throws -> PubAck {
        guard let js = jetStreamIfReady else { throw ServiceRuntimeError.natsUnavailable }
        var headers = Headers()
        try headers.set(name: TraceContext.headerName, value: (context?.trace ?? TraceContext.newTrace()).traceparent)
        return try await js.publish(subject, payload: payload, headers: headers, options: PublishOptions(msgID: msgID), timeout: timeout)
    }

    // MARK: Setup

    /// Creates what was declared. Returns true when done (or nothing to do), false when the
    /// service must stop (fatal error recorded), and retries other failures with backoff.
    func setUpJetStream(_ client: NATSClient) async -> Bool {
        guard deliveryMode == .atLeastOnce else { return true }
        var wait = Duration.milliseconds(200)
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                let js = try await applyDeclarations(client)
                state.withLock { $0.jetStream = js }
                return true
            } catch let error as DurableSetupError where error.isFatal {
                logger.critical("cannot start: \(error.description)", ["error": .string(error.description)])
                state.withLock { $0.fatal = error }
                shutdown()
                return false
            } catch {
                if attempt == 1 || attempt % 10 == 0 {
                    logger.warning("JetStream setup failed, retrying", ["error": .string("\(error)"), "attempt": .int(Int64(attempt))])
                }
            }
            try? await Task.sleep(for: wait)
            wait = min(wait * 2, .seconds(5))
        }
        return false
    }

    /// Applies the declarations again after every reconnection (at-least-once mode): a broker
    /// that comes back with an empty store (a new volume, a wiped folder) has lost the streams,
    /// and a service that only publishes would otherwise never notice. On an intact broker this
    /// costs one info request per declaration. Runs as a child of `run()` until shutdown.
    func redeclareOnReconnect(_ client: NATSClient) {
        guard deliveryMode == .atLeastOnce else { return }
        let events = client.events
        spawn("JetStream declarations after a reconnection") { [self] in
            for await event in events {
                guard case .reconnected = event else { continue }
                _ = await setUpJetStream(client)
            }
        }
    }

    /// Checks JetStream and ensures every declared stream, bucket and consumer.
    func applyDeclarations(_ client: NATSClient) async throws -> JetStreamContext {
        let js = try client.jetStream()
        try await JetStreamSetup.checkAvailable(js)
        let declared = state.withLock { $0.durable }
        var streams = declared.streams
        if !declared.consumers.isEmpty { streams.insert(DeadLetters.spec, at: 0) }
        for spec in streams { try await JetStreamSetup.ensure(spec, js) }
        for spec in declared.required { try await JetStreamSetup.require(spec, js) }
        for (config, owner) in declared.buckets { try await JetStreamSetup.ensure(config, owner: owner, js) }
        for consumer in declared.consumers { try await JetStreamSetup.ensure(consumer.spec, js) }
        logger.info("JetStream ready", ["streams": .array(streams.map { .string($0.config.name) }),
                                        "read_streams": .array(declared.required.map { .string($0.config.name) }),
                                        "buckets": .array(declared.buckets.map { .string($0.config.bucket) }),
                                        "consumers": .array(declared.consumers.map { .string("\($0.spec.stream)/\($0.spec.name)") })])
        return js
    }

    /// Readiness of the durable consumers: nil when there are none.
    var durableReadiness: Bool? {
        state.withLock { s in
            s.durable.consumers.isEmpty ? nil : s.durable.active.count == s.durable.consumers.count && s.jetStream != nil
        }
    }

    // MARK: Consuming

    func startDurableConsumers() {
        let consumers = state.withLock { $0.durable.consumers }
        for (index, consumer) in consumers.enumerated() {
            let task = Task { await self.superviseDurable(consumer, index: index) }
            state.withLock { $0.durable.tasks.append(task) }
        }
    }

    /// Stops every durable loop after its batch in hand and waits for them (bounded by `deadline`).
    func stopDurableConsumers(deadline: ContinuousClock.Instant) async {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            s.durable.stopping = true
            return s.durable.tasks
        }
        if tasks.isEmpty { return }
        if !(await within(deadline, { for task in tasks { await task.value } })) {
            logger.error("durable consumers did not finish their batch before the deadline")
            for task in tasks { task.cancel() }
        }
    }

    private var durableStopping: Bool { state.withLock { $0.durable.stopping } }

    private func superviseDurable(_ consumer: DurableConsumer, index: Int) async {
        let metrics = self.metrics
        metrics.declareCounter("dead_letters_total", help: "messages copied to the DEAD_LETTERS stream, by consumer")
        metrics.declareCounter("nats_consumer_redeliveries_total", help: "messages handed back for redelivery (-NAK), by consumer")
        var wait = Duration.milliseconds(200)
        var failures = 0
        while !Task.isCancelled && !durableStopping {
            let js: JetStreamContext
            do { js = try await jetStream() } catch { return }
            let pull: PullConsumer
            do {
                pull = try js.pullConsumer(stream: consumer.spec.stream, name: consumer.spec.name)
            } catch {
                logger.error("durable consumer refused", ["consumer": .string(consumer.name), "error": .string("\(error)")])
                return
            }
            state.withLock { _ = $0.durable.active.insert(index) }
            do {
                while !Task.isCancelled && !durableStopping {
                    // A batch is asked for with no_wait and an expiry: the server answers as soon
                    // as it has delivered what it has (a lone message does not wait for a full
                    // batch), or when the expiry passes with nothing.
                    let asked = ContinuousClock.now
                    let batch = try await pull.fetch(batch: consumer.batch, expires: .seconds(2))
                    if batch.isEmpty {
                        // An immediate empty answer (408 Requests Pending while max_ack_pending
                        // is reached) must not turn this loop into a busy one.
                        if ContinuousClock.now - asked < .milliseconds(100) { try? await Task.sleep(for: .milliseconds(100)) }
                        continue
                    }
                    await handle(batch, consumer)
                    failures = 0
                    wait = .milliseconds(200)
                }
                return
            } catch {
                failures += 1
                state.withLock { _ = $0.durable.active.remove(index) }
                if failures == 1 || failures % 20 == 0 {
                    logger.warning("durable consumer pull failed, retrying", ["consumer": .string(consumer.name),
                                                                              "error": .string("\(error)"), "attempt": .int(Int64(failures))])
                }
                // The broker may have lost the consumer or its stream (it came back with an empty
                // store): a pull then fails with a status (503 no responders, 409 consumer deleted),
                // never with an API error, so ask the API whether the consumer is still there.
                if await consumerIsMissing(js, consumer.spec) {
                    if let client = natsClient, let js = try? await applyDeclarations(client) {
                        state.withLock { $0.jetStream = js }
                    }
                }
                try? await Task.sleep(for: wait)
                wait = min(wait * 2, .seconds(5))
            }
        }
    }

    /// True when the broker answers that the consumer or its stream does not exist.
    private func consumerIsMissing(_ js: JetStreamContext, _ spec: ConsumerSpec) async -> Bool {
        do {
            _ = try await js.consumerInfo(spec.stream, name: spec.name)
            return false
        } catch {
            return error.errCode == 10014 || error.errCode == 10059
        }
    }

    /// Runs the handlers of one batch, at most `concurrency` at once, and settles each message.
    private func handle(_ batch: [JetStreamMessage], _ consumer: DurableConsumer) async {
        let metrics = self.metrics, logger = self.logger, name = consumer.name
        let handled = metrics.sample("nats_consumer_messages_total", labels: [("consumer", name)])
        let failed = metrics.sample("nats_consumer_errors_total", labels: [("consumer", name)])
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for message in batch {
                if inFlight >= consumer.concurrency {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                group.addTask {
                    let trace = TraceContext.continuing(message.headers?[TraceContext.headerName]).child()
                    let context = RequestContext(trace: trace, logger: logger.with(traceID: trace.traceID))
                    metrics.increment(handled)
                    do {
                        let delivered = Int(message.metadata.delivered)
                        if consumer.deliveryLimit > 0 && delivered > consumer.deliveryLimit {
                            throw PoisonMessage("delivery \(delivered): the last allowed delivery (\(consumer.deliveryLimit)) "
                                                + "ended without an answer (the process stopped or the ack wait passed)")
                        }
                        try await consumer.handler(message, context)
                        try? await message.ack()
                    } catch {
                        metrics.increment(failed)
                        await self.settleFailure(message, error: error, consumer: consumer, context: context)
                    }
                }
            }
        }
    }

    private func settleFailure(_ message: JetStreamMessage, error: any Error, consumer: DurableConsumer, context: RequestContext) async {
        let meta = message.metadata
        let maxDeliver = consumer.deliveryLimit
        let poison = error as? PoisonMessage
        let last = maxDeliver > 0 && Int(meta.delivered) >= maxDeliver
        var fields: [String: JSONValue] = [
            "consumer": .string(consumer.name), "subject": .string(message.subject), "stream_seq": .int(Int64(meta.streamSequence)),
            "deliveries": .int(Int64(meta.delivered)), "error": .string("\(error)"),
        ]
        guard poison != nil || last else {
            let delay = Duration.milliseconds(min(30_000, 250 << min(Int(meta.delivered), 7)))
            context.logger.warning("message handler failed; redelivery later", fields)
            metrics.increment("nats_consumer_redeliveries_total", labels: [("consumer", consumer.name)])
            try? await message.nak(delay: delay)
            return
        }
        let reason = poison?.reason ?? "failed on delivery \(meta.delivered) of \(maxDeliver): \(error)"
        do {
            try await deadLetter(message, consumer: consumer, reason: reason)
            try? await message.term()
            metrics.increment("dead_letters_total", labels: [("consumer", consumer.name)])
            fields["reason"] = .string(reason)
            context.logger.error("message moved to the dead-letter stream", fields)
        } catch {
            // Not copied: leave it to the server's redelivery (it stays unacknowledged).
            fields["dead_letter_error"] = .string("\(error)")
            context.logger.error("dead letter could not be stored; the message stays pending", fields)
            try? await message.nak(delay: .seconds(5))
        }
    }

    private func deadLetter(_ message: JetStreamMessage, consumer: DurableConsumer, reason: String) async throws {
        let js = try await jetStream()
        let meta = message.metadata
        var headers = Headers()
        if let original = message.headers {
            for field in original.fields where !field.name.lowercased().hasPrefix("nats-") {
                try headers.append(name: field.name, value: field.value)
            }
        }
        // A header value is one line without control characters ("\r\n" is one Character, so
        // this works on scalars).
        var oneLine = String.UnicodeScalarView()
        for scalar in reason.unicodeScalars.prefix(512) {
            oneLine.append(scalar.value < 0x20 || scalar.value == 0x7F ? " " : scalar)
        }
        try headers.set(name: DeadLetters.streamHeader, value: meta.stream)
        try headers.set(name: DeadLetters.sequenceHeader, value: String(meta.streamSequence))
        try headers.set(name: DeadLetters.subjectHeader, value: message.subject)
        try headers.set(name: DeadLetters.consumerHeader, value: consumer.spec.name)
        try headers.set(name: DeadLetters.deliveriesHeader, value: String(meta.delivered))
        try headers.set(name: DeadLetters.reasonHeader, value: String(oneLine))
        let subject = "deadletter.\(name).\(consumer.spec.name)"
        _ = try await js.publish(subject, payload: message.payload, headers: headers,
                                 options: PublishOptions(msgID: "\(meta.stream)-\(meta.streamSequence)-\(consumer.spec.name)"))
    }
}
