import Foundation
import NATSClient
import ServiceKit
import Synchronization

/// This instance's view of the `NOTIFICATIONS` stream (at-least-once mode): the stream is the
/// service's one store, shared by every instance; the view is a local, durable copy that serves
/// history, read marks and SSE replay.
///
/// An ordered consumer follows the stream from the view's last applied sequence. One task reads
/// the messages into a bounded inbox, another applies what has arrived as one batch (up to
/// ``maxBatch`` messages, one fsync, the batch's last sequence recorded in the same write): while
/// one batch is on disk the next accumulates, so the batches grow with the load. A crash loses at
/// most the batches not yet written, which the stream still has. New notifications go to this
/// instance's SSE streams once durable.
///
/// When the stream no longer has the message after the view's position (aged out, purged, or
/// the stream was recreated), the view starts over from the stream's first message.
public final class NotificationView: Sendable {
    /// The store the view writes (sequences are stream sequences).
    public let store: NotificationStore
    /// Messages applied at most per batch.
    public let maxBatch: Int
    private let hub: NotificationHub
    private let waiters: Mutex<Waiters>
    private let followingFlag = Atomic(false)
    /// Set by each applied batch: a failure after progress starts the backoff afresh.
    private let progressFlag = Atomic(false)

    private struct Waiters {
        var applied: UInt64
        var nextToken: UInt64 = 0
        var list: [UInt64: (sequence: UInt64, continuation: CheckedContinuation<Bool, Never>)] = [:]
    }

    /// A view writing `store` and pushing to `hub`.
    public init(store: NotificationStore, hub: NotificationHub, maxBatch: Int = 1024) {
        self.store = store
        self.hub = hub
        self.maxBatch = max(1, maxBatch)
        waiters = Mutex(Waiters(applied: store.appliedSequence))
    }

    /// True while the ordered consumer is in place (readiness).
    public var isFollowing: Bool { followingFlag.load(ordering: .acquiring) }

    /// Waits until the view has applied stream sequence `sequence`, at most `timeout`; true when it has.
    public func waitApplied(_ sequence: UInt64, timeout: Duration) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let token = waiters.withLock { w -> UInt64? in
                guard w.applied < sequence else { return nil }
                let token = w.nextToken
                w.nextToken += 1
                w.list[token] = (sequence, continuation)
                return token
            }
            guard let token else { continuation.resume(returning: true); return }
            Task { [self] in
                try? await Task.sleep(for: timeout)
                if let waiter = waiters.withLock({ $0.list.removeValue(forKey: token) }) { waiter.continuation.resume(returning: false) }
            }
        }
    }

    /// Follows the stream until cancelled, starting again (with backoff) after any failure.
    func run(runtime: ServiceRuntime, logger: ServiceLogger) async {
        let metrics = runtime.metrics
        var wait = Duration.milliseconds(200)
        var failures = 0
        while !Task.isCancelled {
            do {
                let js = try await runtime.jetStream()
                try await follow(js, logger: logger, metrics: metrics)
            } catch is CancellationError {
                break
            } catch {
                followingFlag.store(false, ordering: .releasing)
                if progressFlag.exchange(false, ordering: .acquiringAndReleasing) {
                    wait = .milliseconds(200)
                    failures = 0
                }
                failures += 1
                if failures == 1 || failures % 20 == 0 {
                    logger.warning("notification view: following NOTIFICATIONS failed, retrying",
                                   ["error": .string("\(error)"), "attempt": .int(Int64(failures)),
                                    "applied": .int(Int64(store.appliedSequence))])
                }
                try? await Task.sleep(for: wait)
                wait = min(wait * 2, .seconds(5))
            }
        }
        followingFlag.store(false, ordering: .releasing)
    }

    /// One consumption: checks the position against the stream, then reads and applies until an
    /// error (or cancellation).
    private func follow(_ js: JetStreamContext, logger: ServiceLogger, metrics: MetricsRegistry) async throws {
        let streamName = PlatformStreams.notifications.config.name
        let info = try await js.streamInfo(streamName)
        var from = store.appliedSequence
        if from > 0 && (info.state.firstSequence > from + 1 || info.state.lastSequence < from) {
            logger.warning("notification view starts over: the stream no longer has what follows its position",
                           ["applied": .int(Int64(from)), "stream_first_seq": .int(Int64(info.state.firstSequence)),
                            "stream_last_seq": .int(Int64(info.state.lastSequence))])
            try await store.resetView()
            waiters.withLock { $0.applied = 0 }
            from = 0
        }
        let consumer = try js.orderedConsumer(stream: streamName, deliverPolicy: from == 0 ? .all : .byStartSequence,
                                              startSequence: from == 0 ? nil : from + 1, heartbeat: .seconds(1))
        followingFlag.store(true, ordering: .releasing)
        let inbox = Inbox(limit: maxBatch * 4)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { inbox.finish() }
                var messages = consumer.makeAsyncIterator()
                while let message = try await messages.next() { await inbox.put(message) }
            }
            group.addTask { [self] in
                while let batch = await inbox.take(max: maxBatch) {
                    try await apply(batch, logger: logger, metrics: metrics)
                    progressFlag.store(true, ordering: .releasing)
                }
            }
            // Either ending ends both: a read error, or a write error (the next consumption
            // starts again from the last applied sequence).
            defer { group.cancelAll() }
            try await group.next()
            try Task.checkCancellation()
            throw JetStreamError.invalidResponse("the ordered consumer ended")
        }
    }

    /// Applies one batch, then pushes what it created and wakes the waiters it satisfies.
    private func apply(_ batch: [JetStreamMessage], logger: ServiceLogger, metrics: MetricsRegistry) async throws {
        guard let last = batch.last?.metadata.streamSequence else { return }
        var changes: [ViewChange] = []
        changes.reserveCapacity(batch.count)
        for message in batch {
            if let change = Self.change(message.subject, message.payload, sequence: message.metadata.streamSequence) {
                changes.append(change)
            } else {
                metrics.increment("notifications_view_skipped_total")
                logger.warning("notification view: message ignored (unknown subject or malformed)",
                               ["subject": .string(message.subject), "stream_seq": .int(Int64(message.metadata.streamSequence))])
            }
        }
        let applied = try await store.apply(changes, through: last)
        metrics.increment("notifications_view_batches_total")
        metrics.increment("notifications_view_applied_total", by: Double(batch.count))
        if applied.evicted > 0 { metrics.increment("notifications_evicted_total", by: Double(applied.evicted)) }
        metrics.set("notifications_stored", to: Double(store.count))
        metrics.set("notifications_view_sequence", to: Double(last))
        for n in applied.created { hub.deliver(n) }
        let ready = waiters.withLock { w -> [CheckedContinuation<Bool, Never>] in
            w.applied = max(w.applied, last)
            let done = w.list.filter { $0.value.sequence <= w.applied }
            for token in done.keys { w.list[token] = nil }
            return done.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    /// The view's change for a `NOTIFICATIONS` message, nil for an unknown subject or a payload
    /// without the fields it needs.
    static func change(_ subject: String, _ payload: [UInt8], sequence: UInt64) -> ViewChange? {
        guard case .object(let o)? = JSONValue.parse(payload) else { return nil }
        switch subject {
        case NotificationService.sentSubject:
            guard let id = o["notification_id"]?.stringValue, let user = o["user_id"]?.stringValue,
                  let source = o["source_event_id"]?.stringValue, let kind = o["kind"]?.stringValue,
                  let message = o["message"]?.stringValue, case .bool(let personalized)? = o["personalized"],
                  let login = o["login_time"]?.stringValue, let time = o["time"]?.stringValue else { return nil }
            return .sent(UserNotification(id: id, userID: user, sourceEventID: source, kind: kind, message: message,
                                          personalized: personalized, fallbackReason: o["fallback_reason"]?.stringValue,
                                          loginTime: login, createdAt: time, readAt: nil, sequence: sequence))
        case NotificationService.readSubject:
            guard let id = o["notification_id"]?.stringValue, let user = o["user_id"]?.stringValue,
                  let at = o["read_at"]?.stringValue else { return nil }
            return .read(id: id, user: user, at: at)
        default:
            return nil
        }
    }
}

/// A bounded hand-over from the reading task to the applying task: `put` waits while `limit`
/// messages are queued (so the ordered consumer's flow control paces the server), `take` waits
/// for at least one and returns all that are queued, up to `max`.
final class Inbox: Sendable {
    private struct State {
        var items: [JetStreamMessage] = []
        var taker: CheckedContinuation<Void, Never>?
        var putter: CheckedContinuation<Void, Never>?
        var finished = false
    }
    private let state = Mutex(State())
    private let limit: Int

    init(limit: Int) { self.limit = max(1, limit) }

    /// Queues `message`, after waiting for room.
    func put(_ message: JetStreamMessage) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let go = state.withLock { s -> Bool in
                    if s.items.count < limit || s.finished { return true }
                    s.putter = continuation
                    return false
                }
                if go { continuation.resume() }
            }
        } onCancel: { finish() }
        let taker = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard !s.finished else { return nil }
            s.items.append(message)
            defer { s.taker = nil }
            return s.taker
        }
        taker?.resume()
    }

    /// Up to `max` queued messages (at least one), or nil once finished and empty.
    func take(max: Int) async -> [JetStreamMessage]? {
        while true {
            enum Step { case items([JetStreamMessage], CheckedContinuation<Void, Never>?), end, wait }
            let step = state.withLock { s -> Step in
                if !s.items.isEmpty {
                    let count = min(max, s.items.count)
                    let taken = Array(s.items.prefix(count))
                    s.items.removeFirst(count)
                    defer { s.putter = nil }
                    return .items(taken, s.putter)
                }
                return s.finished ? .end : .wait
            }
            switch step {
            case .items(let items, let putter):
                putter?.resume()
                return items
            case .end:
                return nil
            case .wait:
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let go = state.withLock { s -> Bool in
                            if !s.items.isEmpty || s.finished { return true }
                            s.taker = continuation
                            return false
                        }
                        if go { continuation.resume() }
                    }
                } onCancel: { finish() }
            }
        }
    }

    /// Ends the hand-over: waiting calls return (`take` with what is left, then nil).
    func finish() {
        let (taker, putter) = state.withLock { s -> (CheckedContinuation<Void, Never>?, CheckedContinuation<Void, Never>?) in
            s.finished = true
            defer { s.taker = nil; s.putter = nil }
            return (s.taker, s.putter)
        }
        taker?.resume()
        putter?.resume()
    }
}
