import Formats
import Foundation
import NATSClient
import ServiceKit

/// EVENT_DELIVERY=at-least-once (the default): jobs wait in the work-queue stream `DATA_JOBS`,
/// every instance takes them from the durable consumer `data-processing-jobs`, results live in
/// the KV bucket `data_job_results`; the event normaliser reads `USER_EVENTS` and
/// `NOTIFICATIONS` through durable consumers and publishes into `EVENTS`.
///
/// A job is acknowledged only after its result is in the bucket, so a job whose instance dies
/// is delivered again (after `JOBS_ACK_WAIT_S`) and run again; transforms are deterministic, so
/// the second run stores the same result.
extension DataProcessingService {
    /// The work-queue stream of submitted jobs.
    public static let jobsStreamName = "DATA_JOBS"
    /// Jobs are stored on `data.jobs.queue.<job id>`.
    public static let jobQueuePrefix = "data.jobs.queue."
    /// The durable consumer every instance takes jobs from.
    public static let jobsConsumerName = "data-processing-jobs"
    /// The KV bucket of results (key = job id).
    public static let resultsBucket = "data_job_results"
    /// How long a result stays in the bucket.
    public static let resultTTL = Duration.seconds(24 * 3600)
    /// The durable consumers of the event normaliser.
    public static let userEventsConsumer = "data-processing-events"
    public static let notificationsConsumer = "data-processing-notifications"

    /// `DATA_JOBS`: work-queue retention (a job leaves when a worker acknowledges it), at most
    /// `maxJobs` jobs (running and waiting, every instance together) and `maxBytes`; a submit
    /// beyond that is refused by the stream (discard new) and answered 429.
    public static func jobsStream(maxJobs: Int, maxBytes: Int) -> StreamSpec {
        var c = StreamConfig(name: jobsStreamName, subjects: [jobQueuePrefix + "*"])
        c.description = "data-processing-service: submitted jobs until a worker has stored their result"
        c.retention = .workqueue
        c.maxMsgs = maxJobs
        c.maxBytes = maxBytes
        c.discard = .new
        c.duplicateWindow = .seconds(120)
        return StreamSpec(c, owner: "data-processing")
    }

    /// `data_job_results`: one value per job (the done message), kept for ``resultTTL``. The
    /// broker's max_payload bounds a value: a larger result is stored as a failure saying so.
    public static var resultsBucketConfig: KeyValueConfig {
        var c = KeyValueConfig(bucket: resultsBucket, history: 1, ttl: resultTTL)
        c.description = "data-processing-service: job results (the data.jobs.<id>.done message), key = job id"
        return c
    }

    /// The durable consumer of `DATA_JOBS`: a running job reports progress every third of
    /// `ackWait`, so only a job whose instance stopped answering is delivered again.
    public static func jobsConsumer(ackWait: Duration) -> ConsumerSpec {
        ConsumerSpec(stream: jobsStreamName, name: jobsConsumerName) { c in
            c.ackWait = ackWait
            c.maxDeliver = 5
        }
    }

    /// A normaliser's durable consumer on `stream`.
    static func eventsConsumer(stream: String, name: String) -> ConsumerSpec {
        ConsumerSpec(stream: stream, name: name) { c in
            c.ackWait = .seconds(30)
            c.maxDeliver = 5
        }
    }

    /// Declares the streams, bucket and consumers and registers the job endpoints and the
    /// normaliser (the runtime sets them up on every connection, before endpoints and consumers).
    func installDurable(on runtime: ServiceRuntime) {
        let m = runtime.metrics
        let maxJobs = jobs.maxRunning + jobs.maxQueued
        let maxBytes = Int(min(Int64(maxJobs) * Int64(limits.maxInputBytes + 4096), 1 << 30))
        runtime.declare(stream: Self.jobsStream(maxJobs: maxJobs, maxBytes: maxBytes))
        runtime.declare(bucket: Self.resultsBucketConfig, owner: "data-processing")
        // The two source streams belong to auth-service and notification-service: this identity
        // may not create or change them, so a start before their owners waits (not ready) until
        // they exist. EVENTS is its own.
        runtime.require(stream: PlatformStreams.userEvents)
        runtime.require(stream: PlatformStreams.notifications)
        runtime.declare(stream: PlatformStreams.events)

        runtime.endpoint("jobs-submit", subject: "data.jobs.submit") { [self] request, context in
            let body = request.payload
            guard body.count <= limits.maxInputBytes else {
                throw ServiceError(code: 413, "the request is \(body.count) bytes; the limit is \(limits.maxInputBytes) (MAX_INPUT_BYTES)")
            }
            let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            do {
                try await runtime.publishDurable(body, subject: Self.jobQueuePrefix + id, msgID: id, context: context)
            } catch {
                throw submitRefusal(error, maxJobs: maxJobs, m)
            }
            m.increment("data_jobs_total", labels: [("result", "accepted")])
            context.logger.info("job accepted", ["job_id": .string(id)])
            let reply = JSONValue.object(["job_id": .string(id), "done_subject": .string("data.jobs.\(id).done")])
            try await request.respond(reply.serialized)
        }

        runtime.endpoint("jobs-status", subject: "data.jobs.status") { request, _ in
            guard case .object(let query)? = JSONValue.parse(request.payload), let id = query["job_id"]?.stringValue else {
                throw ServiceError(code: 400, #"request must be {"job_id": "..."}"#)
            }
            try await request.respond(try await Self.durableStatus(id, runtime))
        }

        // One pull loop per job slot, each taking one job at a time: a fetch of several waits to
        // fill its batch, and a batch is finished before the next fetch, so one long job would
        // hold back the slots beside it.
        for slot in 1...jobs.maxRunning {
            runtime.consumeDurable("jobs-\(slot)", consumer: Self.jobsConsumer(ackWait: jobsAckWait),
                                   batch: 1, concurrency: 1) { [self] message, context in
                try await runDurableJob(message, context, runtime)
            }
        }

        for (name, stream, consumer) in [("events-user", PlatformStreams.userEvents.config.name, Self.userEventsConsumer),
                                         ("events-notification", PlatformStreams.notifications.config.name, Self.notificationsConsumer)] {
            // 16 at once: each waits for its PubAck from EVENTS, and that round trip, not the
            // normalising, bounds the rate (4 at once: 6.6k-7.6k events/s, 16: 14.8k-15.8k).
            runtime.consumeDurable(name, consumer: Self.eventsConsumer(stream: stream, name: consumer),
                                   batch: 64, concurrency: 16) { [self] message, context in
                try await normaliseDurable(message, context, runtime)
            }
        }
    }

    /// The answer to a submit the stream did not take.
    private func submitRefusal(_ error: any Error, maxJobs: Int, _ m: MetricsRegistry) -> ServiceError {
        m.increment("data_jobs_total", labels: [("result", "rejected")])
        if let error = error as? JetStreamError {
            switch error.errCode {
            case 10077?:
                // Discard new on a full stream: "maximum messages exceeded" / "maximum bytes exceeded".
                return ServiceError(code: 429, "job queue full (\(Self.jobsStreamName) holds \(maxJobs) jobs at most: JOBS_MAX_RUNNING + JOBS_MAX_QUEUED); retry later")
            case 10054?:
                return ServiceError(code: 413, "the job is larger than the broker accepts in \(Self.jobsStreamName): \(error)")
            case nil:
                // The job with its trace and message-id headers is over the broker's max_payload.
                if case .client(.maxPayloadExceeded(let size, let limit)) = error {
                    return ServiceError(code: 413, "the job with its headers is \(size) bytes, over the broker's max_payload of \(limit)")
                }
                return ServiceError(code: 503, "the job could not be stored (\(error)); retry later")
            default:
                return ServiceError(code: 503, "the job could not be stored (\(error)); retry later")
            }
        }
        return ServiceError(code: 503, "the job could not be stored: JetStream is not ready (\(error)); retry later")
    }

    /// `data.jobs.status`: the stored result, else `queued`/`running` while the job is in
    /// `DATA_JOBS` (running once the consumer has delivered it), else 404.
    /// - Throws: ``ServiceError`` 404 (no such job), 503 (JetStream not ready or not answering).
    static func durableStatus(_ id: String, _ runtime: ServiceRuntime) async throws -> [UInt8] {
        // Ids are ours (32 hex digits); anything that is not a plain token cannot name a job and
        // must not reach a subject (wildcards) or a KV key.
        guard (1...64).contains(id.utf8.count), id.utf8.allSatisfy({ isToken($0) }) else {
            throw ServiceError(code: 404, "no such job")
        }
        guard let js = runtime.jetStreamIfReady else {
            throw ServiceError(code: 503, "JetStream is not ready; retry shortly")
        }
        guard let answer = try await lookUp(id, js) else {
            throw ServiceError(code: 404, "no such job (unknown, or its result is older than \(resultTTL.components.seconds / 3600) h)")
        }
        return answer
    }

    /// The stored result or the queued/running state of `id`; nil when neither exists.
    /// - Throws: ``ServiceError`` 503 when JetStream does not answer.
    private static func lookUp(_ id: String, _ js: JetStreamContext) async throws -> [UInt8]? {
        do {
            if let value = try await storedResult(id, js) { return value }
            guard let sequence = try await queuedSequence(id, js) else { return nil }
            let consumer = try await js.consumerInfo(jobsStreamName, name: jobsConsumerName)
            let state = sequence <= consumer.delivered.streamSequence ? "running" : "queued"
            return JSONValue.object(["job_id": .string(id), "status": .string(state)]).serialized
        } catch {
            throw ServiceError(code: 503, "job state not readable: \(error)")
        }
    }

    /// The stored result of `id`, nil when there is none. Read as `KeyValue.get` reads a bucket
    /// without Direct Get, minus the bucket lookup it needs first (one request per job saved).
    /// - Throws: `JetStreamError` other than "no message".
    static func storedResult(_ id: String, _ js: JetStreamContext) async throws -> [UInt8]? {
        do {
            let stored = try await js.getLastMessage("KV_" + resultsBucket, subject: resultSubject(id))
            // A delete or purge marker (an operator's) means no value.
            return stored.headers?["KV-Operation"] == nil ? stored.payload : nil
        } catch JetStreamError.api(_, 10037, _) {
            return nil
        }
    }

    /// The subject of `id`'s value in the results bucket (the KV layout: `$KV.<bucket>.<key>`).
    static func resultSubject(_ id: String) -> String { "$KV.\(resultsBucket).\(id)" }

    /// The stream sequence of job `id` in `DATA_JOBS`, nil when it is not there.
    /// - Throws: `JetStreamError` other than "no message".
    private static func queuedSequence(_ id: String, _ js: JetStreamContext) async throws -> UInt64? {
        do {
            return try await js.getLastMessage(jobsStreamName, subject: jobQueuePrefix + id).sequence
        } catch JetStreamError.api(_, 10037, _) {
            return nil
        }
    }

    private static func isToken(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D || byte == 0x5F
    }

    /// Runs one delivered job and stores its result; throwing leaves the job for redelivery.
    /// - Throws: `JetStreamError` when the result could not be stored (the job runs again later).
    func runDurableJob(_ message: JetStreamMessage, _ context: RequestContext, _ runtime: ServiceRuntime) async throws {
        let id = String(message.subject.dropFirst(Self.jobQueuePrefix.count))
        let subject = "data.jobs.\(id).done"
        let js = try await runtime.jetStream()
        runtime.metrics.set("data_jobs_queued", to: Double(message.metadata.pending))

        // A redelivery of a job whose result was stored before its acknowledgement was lost: the
        // done message may not have gone out, so send it again instead of running the job. (A
        // first delivery has no result: job ids are new and the stream drops a second submit.)
        if message.metadata.delivered > 1, let stored = try await Self.storedResult(id, js) {
            context.logger.info("job result already stored; done message sent again", ["job_id": .string(id)])
            await publishDone(stored, subject: subject, id: id, context, runtime)
            return
        }

        context.logger.debug("job started", ["job_id": .string(id), "delivery": .int(Int64(message.metadata.delivered))])
        running.withLock { $0 += 1 }
        runtime.metrics.set("data_jobs_running", to: Double(running.withLock { $0 }))
        let result = await withProgressReports(message) { await self.run(message.payload) }
        running.withLock { $0 -= 1 }
        runtime.metrics.set("data_jobs_running", to: Double(running.withLock { $0 }))

        var outcome = result.isSuccess ? "done" : "failed"
        var record = Self.doneMessage(id, result)
        // The value and the done message (with its trace header) must fit in the broker's max_payload.
        let limit = (runtime.natsClient?.serverInfo?.maxPayload ?? 1 << 20) - 1024
        if record.count > limit {
            outcome = "failed"
            record = Self.tooLarge(id, size: record.count, limit: limit)
        }
        do {
            _ = try await js.publish(Self.resultSubject(id), payload: record)
        } catch {
            guard case .client(let clientError) = error, case .maxPayloadExceeded(let size, let max) = clientError else { throw error }
            outcome = "failed"
            record = Self.tooLarge(id, size: size, limit: max)
            _ = try await js.publish(Self.resultSubject(id), payload: record)
        }
        await publishDone(record, subject: subject, id: id, context, runtime)
        runtime.metrics.increment("data_jobs_total", labels: [("result", outcome)])
        context.logger.info("job finished", ["job_id": .string(id), "status": .string(outcome),
                                             "deliveries": .int(Int64(message.metadata.delivered))])
    }

    /// The failure stored instead of a result over the broker's max_payload.
    static func tooLarge(_ id: String, size: Int, limit: Int) -> [UInt8] {
        JSONValue.object([
            "job_id": .string(id), "status": .string("failed"),
            "error": .object(["status": .int(413), "message": .string(
                "the result is \(size) bytes, over the \(limit) bytes a stored result may have (the broker's max_payload); use POST /v1/transform or a smaller result")]),
        ]).serialized
    }

    private func publishDone(_ record: [UInt8], subject: String, id: String, _ context: RequestContext, _ runtime: ServiceRuntime) async {
        do {
            try await runtime.publish(record, subject: subject, context: context)
        } catch {
            // The result is stored: data.jobs.status answers it.
            context.logger.error("job done message not published", ["job_id": .string(id), "error": .string("\(error)")])
        }
    }

    /// Runs `work` while telling the broker every third of the ack wait that the job is still
    /// running (+WPI), so a long job is not delivered to another worker meanwhile.
    private func withProgressReports<T: Sendable>(_ message: JetStreamMessage, _ work: @escaping @Sendable () async -> T) async -> T {
        let interval = jobsAckWait / 3
        let reporter = Task {
            while true {
                do { try await Task.sleep(for: interval) } catch { return }
                try? await message.inProgress()
            }
        }
        defer { reporter.cancel() }
        return await work()
    }

    // MARK: Events

    /// Normalises one source event into `EVENTS`. `received_at` is the time the source stream
    /// stored the event and the message id is the source event's, so a redelivery publishes the
    /// same envelope and the stream keeps one copy.
    /// - Throws: ``PoisonMessage`` for an event that cannot be normalised (it goes to the
    ///   dead-letter stream); the publish's errors (the event is delivered again later).
    func normaliseDurable(_ message: JetStreamMessage, _ context: RequestContext, _ runtime: ServiceRuntime) async throws {
        let receivedAt = message.metadata.timestampNanos / 1_000_000
        let source = String(message.subject.prefix { $0 != "." })
        let envelope: JSONValue
        switch EventNormalizer.envelope(subject: message.subject, payload: message.payload, receivedAt: receivedAt) {
        case .failure(let reason):
            runtime.metrics.increment("data_events_malformed_total", labels: [("reason", reason.rawValue)])
            context.logger.warning("malformed event", ["subject": .string(message.subject), "reason": .string(reason.rawValue),
                                                       "bytes": .int(Int64(message.payload.count))])
            throw PoisonMessage("cannot normalise: \(reason.rawValue)")
        case .success(let value):
            envelope = value
        }
        guard case .object(let fields) = envelope, let eventID = fields["event_id"]?.stringValue,
              eventID.utf8.count <= 200, eventID.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            runtime.metrics.increment("data_events_malformed_total", labels: [("reason", "unusable_event_id")])
            throw PoisonMessage("event_id is not printable ASCII of at most 200 bytes (it becomes the Nats-Msg-Id)")
        }
        let target = "events." + message.subject
        do {
            let ack = try await runtime.publishDurable(envelope.serialized, subject: target,
                                                       msgID: "\(message.subject):\(eventID)", context: context)
            runtime.metrics.increment("data_events_normalised_total", labels: [("source", source)])
            context.logger.debug("event normalised", ["event_id": .string(eventID), "subject": .string(message.subject),
                                                      "published": .string(target), "duplicate": .bool(ack.duplicate)])
        } catch {
            runtime.metrics.increment("data_events_publish_failures_total")
            throw error
        }
    }
}
