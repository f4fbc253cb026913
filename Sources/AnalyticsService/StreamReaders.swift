import Foundation
import NATSClient
import ServiceKit
import Synchronization

/// How analytics reads the platform's streams in at-least-once mode (`EVENT_DELIVERY`).
///
/// Each stream (USER_EVENTS, NOTIFICATIONS, EVENTS) is read by an ordered consumer: an ephemeral
/// push consumer without acknowledgements that delivers the stream in sequence order and recreates
/// itself from the next sequence after a gap, a lost heartbeat or a reconnection. Every instance
/// reads every stream, so each instance counts every event. Reading starts after the position
/// saved in the last snapshot; each message is counted together with its sequence
/// (``AnalyticsEngine/apply(stream:sequence:subject:payload:)``), so the snapshot says exactly
/// what it holds. The streams belong to other services: a missing one is waited for (logged, and
/// `/readyz` reports `streams` false until every stream is being read).
final class StreamReaders: Sendable {
    /// The streams read, in the order their readers start.
    static var streams: [String] {
        [PlatformStreams.userEvents, PlatformStreams.notifications, PlatformStreams.events].map(\.config.name)
    }
    /// Who creates each stream (in the log line of a missing one).
    static var owners: [String: String] {
        Dictionary(uniqueKeysWithValues: [PlatformStreams.userEvents, PlatformStreams.notifications, PlatformStreams.events]
            .map { ($0.config.name, $0.owner) })
    }
    /// Whether a message of `stream` is data-processing's copy of an event that another stream
    /// read here holds (`events.user.*`, `events.notification.*` in EVENTS). Copies are passed
    /// over, not counted: the original is counted exactly once by its own stream's position,
    /// while the event-id memory that would catch the copy is bounded and can be outrun when
    /// EVENTS lags far behind (data-processing down for minutes, a second instance catching up).
    static func isCopy(stream: String, subject: String) -> Bool {
        stream == PlatformStreams.events.config.name
            && (subject.hasPrefix("events.user.") || subject.hasPrefix("events.notification."))
    }

    /// How often the lag gauges are refreshed from the streams' last sequences.
    static let lagInterval = Duration.seconds(2)

    private struct Progress {
        /// The consumer is in place (the stream exists and the last attempt did not fail).
        var reading = false
        /// The stream's newest sequence as last known (from its info, or a message's pending count).
        var newest: UInt64 = 0
    }

    private let engine: AnalyticsEngine
    private let logger: ServiceLogger
    private let progress: Mutex<[String: Progress]>

    init(engine: AnalyticsEngine, logger: ServiceLogger) {
        self.engine = engine
        self.logger = logger
        progress = Mutex(Dictionary(uniqueKeysWithValues: StreamReaders.streams.map { ($0, Progress()) }))
    }

    /// True when every stream is being read.
    var allReading: Bool { progress.withLock { $0.values.allSatisfy(\.reading) } }

    /// Declares the metrics, the `streams` readiness check, one reader per stream and the lag
    /// refresher, as children of the runtime (cancelled at shutdown before the final snapshot).
    func install(on runtime: ServiceRuntime) {
        let metrics = runtime.metrics
        metrics.declareCounter("analytics_stream_messages_total", help: "messages read from each stream")
        metrics.declareCounter("analytics_stream_events_total", help: "events counted from each stream (not duplicates, not invalid)")
        metrics.declareCounter("analytics_stream_missed_total",
                               help: "stream messages that were gone (aged out) before they could be counted")
        metrics.declareGauge("analytics_stream_position", help: "last stream sequence counted (saved with the snapshot)")
        metrics.declareGauge("analytics_stream_lag", help: "stream's last sequence minus the last sequence counted")
        runtime.addReadinessCheck("streams") { [self] in allReading }
        for stream in StreamReaders.streams {
            runtime.spawn("reading stream \(stream)") { [self] in await read(stream, runtime: runtime) }
        }
        runtime.spawn("stream lag") { [self] in await refreshLag(runtime: runtime) }
    }

    private func setReading(_ stream: String, _ reading: Bool) {
        progress.withLock { $0[stream]?.reading = reading }
    }

    // MARK: Reading

    /// Reads `stream` until cancelled, starting again after a failure (missing stream, broker
    /// away) from the position counted so far.
    private func read(_ stream: String, runtime: ServiceRuntime) async {
        let metrics = runtime.metrics
        let labels = [("stream", stream)]
        let read = metrics.sample("analytics_stream_messages_total", labels: labels)
        let counted = metrics.sample("analytics_stream_events_total", labels: labels)
        let missed = metrics.sample("analytics_stream_missed_total", labels: labels)
        var wait = Duration.milliseconds(200)
        var failures = 0
        while !Task.isCancelled {
            do {
                let js = try await runtime.jetStream()
                var last = try await startingPoint(stream, js)
                let consumer = try js.orderedConsumer(stream: stream, deliverPolicy: last == 0 ? .all : .byStartSequence,
                                                      startSequence: last == 0 ? nil : last + 1, heartbeat: .seconds(2))
                setReading(stream, true)
                if failures > 0 { logger.info("reading stream", ["stream": .string(stream), "after_sequence": .int(Int64(clamping: last))]) }
                failures = 0
                wait = .milliseconds(200)
                var sinceGauges = 0
                for try await message in consumer {
                    let meta = message.metadata
                    let sequence = meta.streamSequence
                    if sequence > last + 1 {
                        // Limits retention only removes from the front: the ones between were
                        // removed (max age, max messages) before this reader got to them.
                        let gone = sequence - last - 1
                        metrics.increment(missed, by: Double(gone))
                        logger.warning("stream messages aged out before they were counted; continuing from the stream's first",
                                       ["stream": .string(stream), "missed": .int(Int64(clamping: gone)),
                                        "from_sequence": .int(Int64(clamping: last + 1)), "resumed_at": .int(Int64(clamping: sequence))])
                    }
                    metrics.increment(read)
                    let outcome: AnalyticsEngine.Outcome?
                    if Self.isCopy(stream: stream, subject: message.subject) {
                        engine.pass(stream: stream, sequence: sequence)
                        outcome = nil
                    } else {
                        outcome = engine.apply(stream: stream, sequence: sequence, subject: message.subject, payload: message.payload)
                    }
                    last = max(last, sequence)
                    progress.withLock { p in
                        if let newest = p[stream]?.newest, newest < sequence + meta.pending { p[stream]?.newest = sequence + meta.pending }
                    }
                    sinceGauges += 1
                    if meta.pending == 0 || sinceGauges >= 256 {
                        // Caught up (or every 256 messages while catching up): the gauges from
                        // this reader's own view, between two refreshes from the stream's info.
                        sinceGauges = 0
                        metrics.set("analytics_stream_position", labels: labels, to: Double(last))
                        metrics.set("analytics_stream_lag", labels: labels, to: Double(meta.pending))
                    }
                    guard let outcome else { continue }
                    if case .counted = outcome { metrics.increment(counted) }
                    if logger.isEnabled(.debug) {
                        let trace = message.headers?[TraceContext.headerName].flatMap(TraceContext.init(traceparent:))
                        AnalyticsService.logOutcome(outcome, subject: message.subject, bytes: message.payload.count,
                                                    logger: logger.with(traceID: trace?.traceID), stream: (stream, sequence))
                    }
                }
                // The client was closed: the service is stopping.
                setReading(stream, false)
                return
            } catch {
                setReading(stream, false)
                if Task.isCancelled || error is CancellationError { return }
                failures += 1
                if case JetStreamError.api(_, let code, _) = error, code == 10059 {
                    if failures == 1 || failures % 30 == 0 {
                        logger.warning("stream not found; waiting for its owner to create it",
                                       ["stream": .string(stream), "owner": .string(StreamReaders.owners[stream] ?? "?"),
                                        "attempt": .int(Int64(failures))])
                    }
                } else if failures == 1 || failures % 20 == 0 {
                    logger.warning("reading stream failed, retrying", ["stream": .string(stream), "error": .string("\(error)"),
                                                                      "attempt": .int(Int64(failures))])
                }
            }
            try? await Task.sleep(for: wait)
            wait = min(wait * 2, .seconds(5))
        }
        setReading(stream, false)
    }

    /// The last sequence counted in `stream`, checked against the stream as it is now, and
    /// recorded as the position when it had to change.
    /// - Throws: `JetStreamError` (10059: no such stream yet).
    private func startingPoint(_ stream: String, _ js: JetStreamContext) async throws -> UInt64 {
        let info = try await js.streamInfo(stream)
        let created = info.created.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } ?? 0
        let last = info.state.lastSequence
        progress.withLock { $0[stream]?.newest = last }
        let saved = engine.position(stream)
        var position = saved ?? AnalyticsEngine.StreamPosition(sequence: 0, streamCreated: created)
        if position.streamCreated != created && position.streamCreated != 0 && created != 0 {
            // Deleted and created again: its sequences started over, nothing in it was counted.
            logger.warning("stream was created again since the snapshot; counting it from its first message",
                           ["stream": .string(stream), "counted_up_to": .int(Int64(clamping: position.sequence))])
            position = AnalyticsEngine.StreamPosition(sequence: 0, streamCreated: created)
        } else if last < position.sequence {
            // Same stream, fewer messages than were counted: the broker lost its newest ones (a
            // store without sync on a crash). New messages take those sequences again; they are new.
            logger.error("stream ends before the position counted (the broker lost messages); continuing after its last",
                         ["stream": .string(stream), "counted_up_to": .int(Int64(clamping: position.sequence)),
                          "stream_last": .int(Int64(clamping: last))])
            position.sequence = last
        }
        position.streamCreated = created
        if position != saved { engine.setPosition(position, for: stream) }
        return position.sequence
    }

    // MARK: Lag

    private func refreshLag(runtime: ServiceRuntime) async {
        let metrics = runtime.metrics
        while !Task.isCancelled {
            if let js = runtime.jetStreamIfReady {
                for stream in StreamReaders.streams {
                    guard let info = try? await js.streamInfo(stream) else { continue }
                    progress.withLock { $0[stream]?.newest = info.state.lastSequence }
                }
                publishGauges(metrics)
            }
            do { try await Task.sleep(for: StreamReaders.lagInterval) } catch { return }
        }
    }

    /// Sets `analytics_stream_position` and `analytics_stream_lag` for every stream whose
    /// newest sequence is known (the stream exists).
    private func publishGauges(_ metrics: MetricsRegistry) {
        let newest = progress.withLock { $0.filter { $0.value.reading }.mapValues(\.newest) }
        for stream in StreamReaders.streams where newest[stream] != nil {
            let applied = engine.position(stream)?.sequence ?? 0
            let top = newest[stream] ?? 0
            metrics.set("analytics_stream_position", labels: [("stream", stream)], to: Double(applied))
            metrics.set("analytics_stream_lag", labels: [("stream", stream)], to: Double(top > applied ? top - applied : 0))
        }
    }
}
