import Synchronization

/// The bounded job queue of `data.jobs.submit`: at most `maxRunning` jobs run at once and at
/// most `maxQueued` wait; a submit beyond that is refused (the endpoint answers 429).
///
/// A state machine under one lock: ``submit(_:)`` and ``finished()`` return what the caller must
/// do (start a job, or nothing) and the caller does it after the lock is released.
final class JobQueue<Job: Sendable>: Sendable {
    /// What to do after a submit.
    enum SubmitAction: Sendable {
        /// Run this job now.
        case start(Job)
        /// It waits in the queue.
        case queued
        /// Full: refuse it.
        case rejected
    }

    private struct State {
        var running = 0
        var queue: [Job] = []
        var head = 0   // queue[head...] are waiting (a head index instead of removeFirst)
        var waiting: Int { queue.count - head }
    }

    let maxRunning: Int
    let maxQueued: Int
    private let state = Mutex(State())

    init(maxRunning: Int, maxQueued: Int) {
        self.maxRunning = max(1, maxRunning)
        self.maxQueued = max(0, maxQueued)
    }

    /// Admits `job`: start it, queue it, or refuse it.
    func submit(_ job: Job) -> SubmitAction {
        state.withLock { s in
            if s.running < maxRunning {
                s.running += 1
                return .start(job)
            }
            guard s.waiting < maxQueued else { return .rejected }
            s.queue.append(job)
            return .queued
        }
    }

    /// A running job ended: returns the next job to start (it counts as running), if any.
    func finished() -> Job? {
        state.withLock { s in
            guard s.head < s.queue.count else {
                s.running -= 1
                s.queue.removeAll(keepingCapacity: true)
                s.head = 0
                return nil
            }
            let next = s.queue[s.head]
            s.head += 1
            if s.head >= 64 && s.head * 2 >= s.queue.count {
                s.queue.removeFirst(s.head)
                s.head = 0
            }
            return next
        }
    }

    /// Jobs running and waiting now.
    var counts: (running: Int, queued: Int) { state.withLock { ($0.running, $0.waiting) } }
}

/// Recent jobs' states for `data.jobs.status`: queued, running, then the done message itself.
/// Bounded: at most `maxJobs` jobs and `maxBytes` of stored messages, oldest forgotten first.
final class JobRegistry: Sendable {
    enum State: Sendable, Equatable {
        case queued
        case running
        /// The message published on `data.jobs.<id>.done`.
        case finished([UInt8])
    }

    private struct Storage {
        var states: [String: State] = [:]
        var order: [String] = []
        var head = 0
        var bytes = 0
    }

    let maxJobs: Int
    let maxBytes: Int
    private let storage = Mutex(Storage())

    init(maxJobs: Int = 1024, maxBytes: Int = 32 << 20) {
        self.maxJobs = max(1, maxJobs)
        self.maxBytes = maxBytes
    }

    /// Records `state` for `id` (a new id is remembered; the oldest are forgotten past the bounds).
    func set(_ id: String, _ state: State) {
        storage.withLock { s in
            if let old = s.states[id] {
                if case .finished(let bytes) = old { s.bytes -= bytes.count }
            } else {
                s.order.append(id)
            }
            s.states[id] = state
            if case .finished(let bytes) = state { s.bytes += bytes.count }
            while (s.states.count > maxJobs || s.bytes > maxBytes) && s.head < s.order.count {
                let oldest = s.order[s.head]
                s.head += 1
                if case .finished(let bytes)? = s.states.removeValue(forKey: oldest) { s.bytes -= bytes.count }
            }
            if s.head >= 1024 && s.head * 2 >= s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    /// Forgets `id` (a refused submit).
    func remove(_ id: String) {
        storage.withLock { s in
            if case .finished(let bytes)? = s.states.removeValue(forKey: id) { s.bytes -= bytes.count }
        }
    }

    /// The state of `id`, if remembered.
    func state(_ id: String) -> State? { storage.withLock { $0.states[id] } }
}
