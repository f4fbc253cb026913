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
