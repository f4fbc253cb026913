import Dispatch
import HTTPServer
import NATSClient
import ServiceKit
import Synchronization

/// The analytics service: counts the platform's events live and answers queries about them.
///
/// It reads data-processing's envelopes (`events.>`) and the raw `user.>` / `notification.>`
/// events, counting each event once by its `event_id` whichever copy arrives first, and keeps
/// counts per event type in sliding windows (1 m, 5 m, 1 h) and since start, distinct users
/// (HyperLogLog), top users and email domains (Space-Saving) and the login-to-notification
/// latency distribution (log-linear histogram). Answers `analytics.query` on NATS and
/// `GET /v1/stats`, `GET /v1/stats/{metric}` over HTTP; the HTTP answers that name users need a
/// bearer token and show other users' entries as counts only (see ``StatsAccess``). The
/// aggregates are saved to its store every `SNAPSHOT_INTERVAL_SECONDS` and on shutdown, and
/// restored at start.
///
/// With `EVENT_DELIVERY=at-least-once` (the default) the events come from the streams
/// USER_EVENTS, NOTIFICATIONS and EVENTS (see ``StreamReaders``): each snapshot records the last
/// sequence counted in each stream, and after a restart, a crash included, reading resumes right
/// after it, so every event is counted exactly once, those published while the service was down
/// included. With `at-most-once` they come from core NATS subscriptions and an event published
/// while the service is down is not seen.
///
/// Either way every instance reads every event (ordered consumers, or subscriptions without a
/// queue group), so each instance's answers are complete: splitting the events over instances
/// could send the raw copy and the envelope of one event to different instances, both counting
/// it. More instances are replicas (queries are spread over them by the service API's queue
/// group), not a way to share the ingest load.
public final class AnalyticsService: Sendable {
    /// Name in `$SRV`.
    public static let defaultServiceName = "analytics"
    /// Version in `$SRV.INFO`.
    public static let version = "1.0.0"
    /// The store key of the snapshot.
    static let snapshotKey = "snapshot"
    /// Snapshots written between two compactions of the store's log.
    static let compactEvery = 20
    /// The subjects consumed.
    public static let subjects = ["events.>", "user.>", "notification.>"]

    /// The aggregates.
    public let engine: AnalyticsEngine
    /// The snapshot store under `DATA_DIR`.
    public let store: KeyValueStore
    private let logger: ServiceLogger
    private let access: StatsAccess
    private let snapshotInterval: Int
    private let concurrency: Int
    private struct State {
        var loop: Task<Void, Never>?
        var snapshotsSinceCompaction = 0
        var stopping: Task<Void, Never>?
    }
    private let state = Mutex(State())
    private let io = DispatchQueue(label: "analytics-snapshots")

    /// Opens the store under `DATA_DIR` and restores the last snapshot (an unreadable snapshot
    /// is logged and the counts start empty).
    /// - Throws: `StoreError` (the store cannot be opened), ``HyperLogLogError``.
    public init(configuration: Configuration, logger: ServiceLogger,
                clock: @escaping @Sendable () -> Int64) throws {
        self.logger = logger
        let topN = configuration[AnalyticsSettings.topN]
        engine = try AnalyticsEngine(options: .init(hllPrecision: configuration[AnalyticsSettings.hllPrecision], topN: topN,
                                                    topCapacity: topN * 100, dedupCapacity: configuration[AnalyticsSettings.dedupCapacity]),
                                     clock: clock)
        access = StatsAccess(secret: configuration[StandardSettings.jwtSecret])
        if case .unavailable(let why) = access.verification {
            logger.warning("bearer tokens cannot be verified (\(why)): GET /v1/stats and /v1/stats/top answer 503; the aggregates without user ids stay public")
        }
        snapshotInterval = configuration[AnalyticsSettings.snapshotInterval]
        concurrency = configuration[AnalyticsSettings.consumerConcurrency]
        let directory = configuration[AnalyticsSettings.dataDirectory]
        store = try KeyValueStore(directory: directory, name: "analytics")
        if let saved = store.get(AnalyticsService.snapshotKey) {
            do {
                let report = try engine.restore(saved)
                logger.info("snapshot restored", ["events": .int(Int64(clamping: report.counted)),
                                                  "saved_at": .string(AnalyticsEngine.iso8601(report.savedAt)),
                                                  "bytes": .int(Int64(saved.count)),
                                                  "stream_positions": .object(report.positions.mapValues { .int(Int64(clamping: $0.sequence)) })])
                if report.uniqueUsersReset {
                    logger.warning("HLL_PRECISION changed since the snapshot: all-time unique users start again from zero")
                }
            } catch {
                logger.error("snapshot unreadable, counts start empty", ["error": .string("\(error)")])
            }
        } else {
            logger.info("no snapshot yet, counts start empty", ["data_dir": .string(directory)])
        }
    }

    /// Registers the consumers, the `analytics.query` endpoint, the HTTP routes, the storage
    /// readiness check, the snapshot loop and the final snapshot on shutdown.
    public func install(on runtime: ServiceRuntime) {
        let m = runtime.metrics
        m.declareCounter("analytics_events_counted_total", help: "events counted (each event once)")
        m.declareCounter("analytics_events_duplicate_total", help: "messages dropped as an event already counted")
        m.declareCounter("analytics_events_invalid_total", help: "messages that were not readable events")
        m.declareCounter("analytics_snapshots_total", help: "snapshots written")
        m.declareCounter("analytics_snapshot_errors_total", help: "snapshots that could not be written")
        m.declareGauge("analytics_snapshot_bytes", help: "size of the last snapshot")

        if runtime.deliveryMode == .atLeastOnce {
            StreamReaders(engine: engine, logger: logger).install(on: runtime)
        } else {
            for subject in AnalyticsService.subjects {
                let name = subject == "events.>" ? "envelopes" : String(subject.prefix { $0 != "." }) + "-events"
                runtime.consume(name, subject: subject, concurrency: concurrency) { [engine] message, context in
                    let outcome = engine.ingest(subject: message.subject, payload: message.payload)
                    guard context.logger.isEnabled(.debug) else { return }
                    AnalyticsService.logOutcome(outcome, subject: message.subject, bytes: message.payload.count, logger: context.logger)
                }
            }
        }
        runtime.endpoint("query", subject: "analytics.query") { [engine] request, _ in
            let answer: JSONValue
            do throws(QueryError) {
                answer = try engine.answer(request: request.payload)
            } catch {
                throw ServiceError(code: error.status, error.message)
            }
            try await request.respond(answer.serialized)
        }
        runtime.route(.get, "/v1/stats") { [engine, access] request, _ in
            try AnalyticsService.http(engine, access, request, metric: "all")
        }
        runtime.route(.get, "/v1/stats/{metric}") { [engine, access] request, _ in
            try AnalyticsService.http(engine, access, request, metric: request.pathParameters["metric"] ?? "")
        }
        runtime.addReadinessCheck("storage") { [self] in state.withLock { $0.stopping == nil } }
        let loop = Task { [self] in await snapshotLoop(metrics: m) }
        state.withLock { $0.loop = loop }
        runtime.onShutdown("analytics snapshot") { [self] in await stop(metrics: m) }
    }

    /// The debug line for one message's outcome (`stream`: where a stream message came from).
    static func logOutcome(_ outcome: AnalyticsEngine.Outcome, subject: String, bytes: Int, logger: ServiceLogger,
                           stream: (name: String, sequence: UInt64)? = nil) {
        var fields: [String: JSONValue] = ["subject": .string(subject)]
        if let stream {
            fields["stream"] = .string(stream.name)
            fields["stream_seq"] = .int(Int64(clamping: stream.sequence))
        }
        switch outcome {
        case .counted(let event, let type):
            fields["type"] = .string(type)
            fields["event_id"] = event.eventIDText.map(JSONValue.string) ?? .null
            fields["user_id"] = event.userIDText.map(JSONValue.string) ?? .null
            logger.debug("event counted", fields)
        case .duplicate(let event):
            fields["event_id"] = event.eventIDText.map(JSONValue.string) ?? .null
            logger.debug("duplicate event dropped", fields)
        case .invalid:
            fields["bytes"] = .int(Int64(bytes))
            logger.debug("unreadable event dropped", fields)
        }
    }

    /// The HTTP answer for `metric`: the caller is authenticated first when the answer names
    /// users (see ``StatsAccess``).
    /// - Throws: `HTTPError` 401 or 503 as ``StatsAccess/viewer(_:)``, 404 for an unknown
    ///   metric, 400 for a bad window.
    private static func http(_ engine: AnalyticsEngine, _ access: StatsAccess, _ request: HTTPRequest,
                             metric: String) throws(HTTPError) -> HTTPResponse {
        let viewer = StatsAccess.needsToken(metric) ? try access.viewer(request) : nil
        let answer: JSONValue
        do {
            answer = try engine.answer(metric: metric, window: request.query["window"])
        } catch {
            throw HTTPError(error.status == 404 ? .notFound : .badRequest, error.message)
        }
        guard let viewer else { return .json(bytes: answer.serialized) }
        return .json(bytes: StatsAccess.shown(answer, metric: metric, viewer: viewer, engine: engine).serialized)
    }

    // MARK: Snapshots

    /// Writes a snapshot now (off the cooperative pool: the store fsyncs), compacting the
    /// store's log every ``compactEvery`` snapshots. Returns the snapshot's size.
    /// - Throws: `StoreError`.
    @discardableResult
    public func saveSnapshot() async throws -> Int {
        let engine = self.engine, store = self.store
        let compact = state.withLock { s -> Bool in
            s.snapshotsSinceCompaction += 1
            if s.snapshotsSinceCompaction >= AnalyticsService.compactEvery { s.snapshotsSinceCompaction = 0; return true }
            return false
        }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
            io.async {
                continuation.resume(with: Result {
                    let bytes = engine.snapshot()
                    try store.put(AnalyticsService.snapshotKey, bytes)
                    if compact { try store.compact() }
                    return bytes.count
                })
            }
        }
    }

    private func snapshot(metrics: MetricsRegistry) async {
        do {
            let size = try await saveSnapshot()
            metrics.increment("analytics_snapshots_total")
            metrics.set("analytics_snapshot_bytes", to: Double(size))
        } catch {
            metrics.increment("analytics_snapshot_errors_total")
            logger.error("snapshot failed", ["error": .string("\(error)")])
        }
    }

    private func refresh(_ metrics: MetricsRegistry) {
        let s = engine.statistics
        metrics.set("analytics_events_counted_total", to: Double(s.counted))
        metrics.set("analytics_events_duplicate_total", to: Double(s.duplicates))
        metrics.set("analytics_events_invalid_total", to: Double(s.invalid))
    }

    private func snapshotLoop(metrics: MetricsRegistry) async {
        var seconds = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            refresh(metrics)
            seconds += 1
            if seconds >= snapshotInterval {
                seconds = 0
                await snapshot(metrics: metrics)
            }
        }
    }

    /// Stops the snapshot loop, writes the final snapshot and closes the store. Every call
    /// waits for the same single stop, so `main` can make sure the final snapshot is on disk even
    /// when the runtime's shutdown deadline ran out before its shutdown actions finished.
    public func stop() async { await stop(metrics: nil) }

    private func stop(metrics: MetricsRegistry?) async {
        let stopping = state.withLock { s -> Task<Void, Never> in
            if let running = s.stopping { return running }
            let loop = s.loop
            let task = Task { [self] in
                loop?.cancel()
                await loop?.value
                if let metrics {
                    refresh(metrics)
                    await snapshot(metrics: metrics)
                } else {
                    do { try await saveSnapshot() } catch { logger.error("snapshot failed", ["error": .string("\(error)")]) }
                }
                store.close()
                logger.info("analytics snapshot saved", ["events": .int(Int64(clamping: engine.statistics.counted))])
            }
            s.stopping = task
            return task
        }
        await stopping.value
    }
}
