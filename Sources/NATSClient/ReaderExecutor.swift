// A task executor that runs jobs on a client's reader thread, between socket reads.

#if canImport(Glibc)
import Glibc
#endif
import CSystem
import Dispatch
import Synchronization

/// Runs tasks on the client's reader thread between socket reads: a task that awaits this
/// client's requests or subscriptions from here is resumed without waking another thread.
///
/// Every resumption of an awaiting task normally costs a thread wake-up: the reader thread reads
/// the reply, then a thread of the cooperative pool is woken to run the task. A task that prefers
/// this executor is instead run by the reader thread itself, right after the read that resumed it
/// (as a goroutine of nats.go runs on the thread that read its reply):
/// ```swift
/// try await withTaskExecutorPreference(client.readerExecutor) {
///     for request in requests { _ = try await client.request(request, subject: "service") }
/// }
/// ```
/// While such a task runs, the client reads nothing, so the task must not block (no blocking
/// I/O, no long computation, no waiting on locks held elsewhere): suspending on `await` is fine.
/// It suits short loops of requests, publishes and message handling on one client. Until the first
/// job comes from another thread the reader blocks in `recv`; that job is announced with a PING, so
/// it starts after one round trip to the server, and from then on the reader polls. Jobs enqueued
/// while the client is not connected (during a reconnect, or after close) run on the global
/// concurrent pool instead, so a task on this executor never waits for a connection to run.
public final class ReaderExecutor: TaskExecutor {
    struct State {
        var jobs = FIFO<UnownedJob>()
        /// The reader is in its read loop and runs jobs.
        var running = false
        /// The reader waits in `poll` on the socket and the event fd instead of a blocking `recv`,
        /// so that jobs from other threads reach it; on from the first such job.
        var polling = false
        /// The reader is (about to be) blocked in `poll`: a job from another thread writes the event fd.
        var sleeping = false
    }

    let state = Mutex(State())
    /// `pthread_self()` of the reader thread (0 before it starts).
    let thread = Atomic<UInt>(0)
    /// Wakes the reader out of `poll`; -1 if it could not be created (jobs then run on the pool).
    let eventFD: Int32
    /// Makes the server send something so that a reader blocked in `recv` comes round to polling.
    let kick: Mutex<(@Sendable () -> Void)?> = Mutex(nil)

    init() {
        eventFD = csys_eventfd_create()
    }

    deinit {
        if eventFD >= 0 { Glibc.close(eventFD) }
    }

    /// Whether the caller runs on the reader thread.
    var onReaderThread: Bool { thread.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Queues a job for the reader thread, or runs it on the global pool while the reader runs no jobs.
    public func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        enum Action { case none, wake, kick, fallback }
        let onReader = onReaderThread
        let action = state.withLock { s -> Action in
            guard s.running, eventFD >= 0 else { return .fallback }
            s.jobs.append(unownedJob)
            if onReader { return .none }
            if !s.polling {
                s.polling = true
                return .kick
            }
            if s.sleeping {
                s.sleeping = false
                return .wake
            }
            return .none
        }
        switch action {
        case .none: break
        case .wake:
            var one: UInt64 = 1
            _ = Glibc.write(eventFD, &one, 8)
        case .kick: kick.withLock { $0 }?()
        case .fallback: runElsewhere(unownedJob)
        }
    }

    private func runElsewhere(_ job: UnownedJob) {
        DispatchQueue.global().async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    // MARK: - Reader thread side

    /// What the reader does next.
    enum Wait {
        /// Blocking `recv`: nobody else has enqueued jobs yet.
        case receive
        /// `poll` on the socket and the event fd.
        case poll
        /// Jobs are waiting: read only what is there already.
        case pending
    }

    /// The reader entered its read loop: jobs run there from now on. Reader thread only.
    func loopStarted() {
        state.withLock { $0.running = true }
    }

    /// The reader left its read loop: queued and later jobs run on the global pool. Reader thread only.
    func loopEnded() {
        let jobs = state.withLock { s -> [UnownedJob] in
            s.running = false
            s.sleeping = false
            return s.jobs.removeAll()
        }
        for job in jobs { runElsewhere(job) }
    }

    /// Runs the jobs queued so far (not those they queue). Reader thread only.
    func runJobs() {
        let jobs = state.withLock { s -> [UnownedJob]? in s.jobs.isEmpty ? nil : s.jobs.removeAll() }
        guard let jobs else { return }
        let executor = asUnownedTaskExecutor()
        for job in jobs { job.runSynchronously(on: executor) }
    }

    /// How to wait for the socket; marks the reader asleep when it will poll. Reader thread only.
    func nextWait() -> Wait {
        state.withLock { s -> Wait in
            if !s.jobs.isEmpty { return .pending }
            guard s.polling else { return .receive }
            s.sleeping = true
            return .poll
        }
    }

    /// Blocks until `fd` is readable (true) or the event fd was written (false). Reader thread only.
    func poll(_ fd: Int32) -> Bool {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: eventFD, events: Int16(POLLIN), revents: 0)]
        var ready: Int32
        repeat {
            ready = Glibc.poll(&fds, 2, -1)
        } while ready < 0 && errno == EINTR
        state.withLock { $0.sleeping = false }
        if ready < 0 { return true }
        if fds[1].revents != 0 {
            var value: UInt64 = 0
            _ = Glibc.read(eventFD, &value, 8)
        }
        // An error or hang-up counts as readable: `recv` then reports it.
        return fds[0].revents != 0
    }
}
