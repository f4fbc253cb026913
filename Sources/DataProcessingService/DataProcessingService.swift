import Formats
import Foundation
import HTTPServer
import NATSClient
import ServiceKit
import Synchronization

/// The data-processing service: dataset pipelines on every core (`data.transform`,
/// `data.jobs.submit`, `data.jobs.status`, `POST /v1/transform`) and the event stream (`user.>`, `notification.>` ->
/// `events.<subject>` envelopes). With EVENT_DELIVERY=at-least-once (the default) jobs, results and
/// events go through JetStream (DurableJobs.swift); at-most-once keeps them in memory and on core NATS.
///
/// Create it, ``install(on:)`` it on a ``ServiceRuntime``, run the runtime;
/// ``main(arguments:environment:)`` does all of that.
public final class DataProcessingService: Sendable {
    /// Version in `$SRV.INFO`.
    public static let version = "1.0.0"
    /// Queue group of the event consumers (instances share the events).
    public static let eventQueue = "data-processing"

    /// Limits and parallelism of every transform.
    public let limits: TransformLimits
    /// Most synchronous transforms at once.
    public let maxConcurrentTransforms: Int
    let jobs: JobQueue<PendingJob>
    /// At-least-once: how long a delivered job may go without progress before it is delivered again.
    let jobsAckWait: Duration
    let registry = JobRegistry()
    private let active = Mutex(0)
    /// At-least-once: jobs this instance is running now.
    let running = Mutex(0)
    private let logger: ServiceLogger

    /// Reads the settings (WORKERS 0 becomes the CPU count of the affinity mask).
    public init(configuration: Configuration, logger: ServiceLogger) {
        let configured = configuration[DataProcessingSettings.workers]
        limits = TransformLimits(maxInputBytes: configuration[DataProcessingSettings.maxInputBytes],
                                 maxRecords: configuration[DataProcessingSettings.maxRecords],
                                 maxPipelineSteps: configuration[DataProcessingSettings.maxPipelineSteps],
                                 timeBudgetMilliseconds: configuration[DataProcessingSettings.timeBudget],
                                 workers: configured > 0 ? configured : TransformLimits.availableCPUs(),
                                 chunkSize: configuration[DataProcessingSettings.chunkSize])
        maxConcurrentTransforms = configuration[DataProcessingSettings.maxConcurrentTransforms]
        jobs = JobQueue(maxRunning: configuration[DataProcessingSettings.jobsMaxRunning],
                        maxQueued: configuration[DataProcessingSettings.jobsMaxQueued])
        jobsAckWait = .seconds(configuration[DataProcessingSettings.jobsAckWait])
        self.logger = logger
        logger.info("data processing ready", ["workers": .int(Int64(limits.workers)),
                                              "max_input_bytes": .int(Int64(limits.maxInputBytes)),
                                              "max_records": .int(Int64(limits.maxRecords))])
    }

    /// Registers `POST /v1/transform`, the `data.transform`, `data.jobs.submit` and
    /// `data.jobs.status` endpoints and the event consumers on `runtime`.
    public func install(on runtime: ServiceRuntime) {
        let m = runtime.metrics
        m.declareCounter("data_transforms_total", help: "transforms by interface (nats, http, job) and status")
        m.declareCounter("data_jobs_total", help: "jobs by outcome (accepted, rejected, done, failed)")
        m.declareGauge("data_jobs_running", help: "jobs running now")
        m.declareGauge("data_jobs_queued", help: "jobs waiting now")
        m.declareCounter("data_events_normalised_total", help: "events republished on events.<subject>, by source (user, notification)")
        m.declareCounter("data_events_malformed_total", help: "events that could not be normalised, by reason")
        m.declareCounter("data_events_publish_failures_total", help: "normalised events that could not be published")

        runtime.endpoint("transform", subject: "data.transform") { [self] request, context in
            let bytes: [UInt8]
            do throws(TransformError) {
                bytes = try await transform(request.payload, via: "nats", runtime)
            } catch {
                context.logger.info("transform refused", ["status": .int(Int64(error.status)), "error": .string(error.message)])
                throw ServiceError(code: error.status, error.message)
            }
            do {
                try await request.respond(bytes)
            } catch {
                if case NATSError.maxPayloadExceeded(let size, let limit) = error {
                    throw ServiceError(code: 413, "the result is \(size) bytes, over the broker's max_payload of \(limit); use POST /v1/transform or a smaller result")
                }
                throw error
            }
        }

        if runtime.deliveryMode == .atLeastOnce {
            installDurable(on: runtime)
        } else {
            installInMemoryJobsAndEvents(on: runtime)
        }

        runtime.route(.post, "/v1/transform", bodyLimit: limits.maxInputBytes) { [self] request, context in
            do throws(TransformError) {
                return .json(bytes: try await transform(request.body, via: "http", runtime))
            } catch {
                context.logger.info("transform refused", ["status": .int(Int64(error.status)), "error": .string(error.message)])
                var response = HTTPResponse.error(HTTPStatus(error.status), error.message)
                if error.status == 429 { response.headers.replaceOrAdd(name: "Retry-After", value: "1") }
                return response
            }
        }
    }

    /// EVENT_DELIVERY=at-most-once: jobs in this instance's memory (lost with it), results in a
    /// bounded registry, events consumed from core NATS by a queue group.
    private func installInMemoryJobsAndEvents(on runtime: ServiceRuntime) {
        let m = runtime.metrics
        runtime.endpoint("jobs-submit", subject: "data.jobs.submit") { [self] request, context in
            let body = request.payload
            guard body.count <= limits.maxInputBytes else {
                throw ServiceError(code: 413, "the request is \(body.count) bytes; the limit is \(limits.maxInputBytes) (MAX_INPUT_BYTES)")
            }
            let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            let job = PendingJob(id: id, body: body, context: context)
            registry.set(id, .queued)
            switch jobs.submit(job) {
            case .rejected:
                registry.remove(id)
                m.increment("data_jobs_total", labels: [("result", "rejected")])
                let (running, queued) = jobs.counts
                throw ServiceError(code: 429, "job queue full (\(running) running, \(queued) queued; JOBS_MAX_RUNNING + JOBS_MAX_QUEUED); retry later")
            case .start(let job):
                startJob(job, runtime)
            case .queued:
                break
            }
            m.increment("data_jobs_total", labels: [("result", "accepted")])
            updateJobGauges(m)
            context.logger.info("job accepted", ["job_id": .string(id)])
            let reply = JSONValue.object(["job_id": .string(id), "done_subject": .string("data.jobs.\(id).done")])
            try await request.respond(reply.serialized)
        }

        runtime.endpoint("jobs-status", subject: "data.jobs.status") { [self] request, _ in
            guard case .object(let query)? = JSONValue.parse(request.payload), let id = query["job_id"]?.stringValue else {
                throw ServiceError(code: 400, #"request must be {"job_id": "..."}"#)
            }
            switch registry.state(id) {
            case nil:
                throw ServiceError(code: 404, "no such job (unknown, refused, or forgotten: the service remembers the most recent jobs)")
            case .queued?:
                try await request.respond(JSONValue.object(["job_id": .string(id), "status": .string("queued")]).serialized)
            case .running?:
                try await request.respond(JSONValue.object(["job_id": .string(id), "status": .string("running")]).serialized)
            case .finished(let message)?:
                try await request.respond(message)
            }
        }

        for (name, subject) in [("events-user", "user.>"), ("events-notification", "notification.>")] {
            runtime.consume(name, subject: subject, queue: Self.eventQueue, concurrency: 4) { [self] message, context in
                await normalise(message, context, runtime)
            }
        }
    }

    // MARK: Transforms

    /// One synchronous transform, bounded by ``maxConcurrentTransforms``, run off the pool.
    private func transform(_ body: [UInt8], via: String, _ runtime: ServiceRuntime) async throws(TransformError) -> [UInt8] {
        let admitted = active.withLock { n -> Bool in
            guard n < maxConcurrentTransforms else { return false }
            n += 1
            return true
        }
        guard admitted else {
            runtime.metrics.increment("data_transforms_total", labels: [("via", via), ("status", "429")])
            throw TransformError(429, "busy: \(maxConcurrentTransforms) transforms are running (MAX_CONCURRENT_TRANSFORMS); retry shortly")
        }
        defer { active.withLock { $0 -= 1 } }
        let result = await run(body)
        switch result {
        case .success(let bytes):
            runtime.metrics.increment("data_transforms_total", labels: [("via", via), ("status", "200")])
            return bytes
        case .failure(let error):
            runtime.metrics.increment("data_transforms_total", labels: [("via", via), ("status", String(error.status))])
            throw error
        }
    }

    func run(_ body: [UInt8]) async -> Result<[UInt8], TransformError> {
        let limits = self.limits
        return await Transform.runDetached {
            do throws(TransformError) {
                return .success(try Transform.execute(body, limits: limits))
            } catch {
                return .failure(error)
            }
        }
    }

    // MARK: Jobs

    /// Runs `job`, then the queued jobs, one after another, as a child of the runtime's run: at
    /// shutdown the job in progress finishes (a transform is bounded by its time budget) and the
    /// queued ones are not started.
    private func startJob(_ job: PendingJob, _ runtime: ServiceRuntime) {
        let started = runtime.spawn("data job \(job.id)") { [self] in
            var next: PendingJob? = job
            while let current = next {
                await runJob(current, runtime)
                next = jobs.finished()
                updateJobGauges(runtime.metrics)
                if Task.isCancelled, let skipped = next {
                    job.context.logger.warning("queued job not started: the service is stopping", ["job_id": .string(skipped.id)])
                    next = nil
                }
            }
        }
        if !started {
            job.context.logger.error("job not started: the service has stopped", ["job_id": .string(job.id)])
        }
    }

    private func runJob(_ job: PendingJob, _ runtime: ServiceRuntime) async {
        let subject = "data.jobs.\(job.id).done"
        registry.set(job.id, .running)
        let result = await run(job.body)
        let message = Self.doneMessage(job.id, result)
        var outcome = result.isSuccess ? "done" : "failed"
        // Recorded before it is published: whoever sees the done message and asks data.jobs.status
        // gets the same message, not "running".
        registry.set(job.id, .finished(message))
        do {
            try await runtime.publish(message, subject: subject, context: job.context)
        } catch {
            // Typically a result over max_payload: say so on the done subject instead.
            outcome = "failed"
            let failure = JSONValue.object([
                "job_id": .string(job.id), "status": .string("failed"),
                "error": .object(["status": .int(413), "message": .string("the result could not be published: \(error)")]),
            ])
            registry.set(job.id, .finished(failure.serialized))
            do {
                try await runtime.publish(failure.serialized, subject: subject, context: job.context)
            } catch {
                job.context.logger.error("job result not published", ["job_id": .string(job.id), "error": .string("\(error)")])
            }
        }
        runtime.metrics.increment("data_jobs_total", labels: [("result", outcome)])
        job.context.logger.info("job finished", ["job_id": .string(job.id), "status": .string(outcome)])
    }

    /// The message on `data.jobs.<id>.done` (and the answer of `data.jobs.status`):
    /// `{"job_id", "status": "done", "result"}` or `{"job_id", "status": "failed", "error": {"status", "message"}}`.
    static func doneMessage(_ id: String, _ result: Result<[UInt8], TransformError>) -> [UInt8] {
        var w = JSONWriter()
        w.raw("{\"job_id\":")
        w.string(id)
        switch result {
        case .success(let bytes):
            w.raw(",\"status\":\"done\",\"result\":")
            w.bytes.append(contentsOf: bytes)
        case .failure(let error):
            w.raw(",\"status\":\"failed\",\"error\":")
            w.value(.object([JSONMember("status", .int(Int64(error.status))), JSONMember("message", .string(error.message))]))
        }
        w.raw("}")
        return w.bytes
    }

    private func updateJobGauges(_ metrics: MetricsRegistry) {
        let (running, queued) = jobs.counts
        metrics.set("data_jobs_running", to: Double(running))
        metrics.set("data_jobs_queued", to: Double(queued))
    }

    // MARK: Events

    private func normalise(_ message: Message, _ context: RequestContext, _ runtime: ServiceRuntime) async {
        let now = ServiceLogger.systemTime()
        let receivedAt = now.seconds * 1000 + Int64(now.nanoseconds / 1_000_000)
        let source = String(message.subject.prefix { $0 != "." })
        switch EventNormalizer.envelope(subject: message.subject, payload: message.payload, receivedAt: receivedAt) {
        case .failure(let reason):
            runtime.metrics.increment("data_events_malformed_total", labels: [("reason", reason.rawValue)])
            context.logger.warning("malformed event skipped", ["subject": .string(message.subject), "reason": .string(reason.rawValue),
                                                               "bytes": .int(Int64(message.payload.count))])
        case .success(let envelope):
            let target = "events." + message.subject
            var eventID: JSONValue = .null
            if case .object(let o) = envelope { eventID = o["event_id"] ?? .null }
            do {
                try await runtime.publish(envelope.serialized, subject: target, context: context)
                runtime.metrics.increment("data_events_normalised_total", labels: [("source", source)])
                context.logger.debug("event normalised", ["event_id": eventID, "subject": .string(message.subject),
                                                          "published": .string(target)])
            } catch {
                runtime.metrics.increment("data_events_publish_failures_total")
                context.logger.warning("normalised event not published", ["event_id": eventID, "subject": .string(target),
                                                                          "error": .string("\(error)")])
            }
        }
    }
}

/// A submitted job: its id, the request, and the submit's context (the done message continues its trace).
struct PendingJob: Sendable {
    let id: String
    let body: [UInt8]
    let context: RequestContext
}

extension Result {
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
}
