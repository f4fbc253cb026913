// EventLoop: an epoll reactor, one thread per loop.
//
// Public API (stable; the broker and the HTTP server build on it):
//
//   final class EventLoop: @unchecked Sendable
//     init(name: String, busyPoll: Duration = .zero, spinGate: SpinGate? = nil) throws(SystemError)
//     let name: String
//     func run()                                 // runs on the calling thread until stop()
//     func stop()                                // any thread
//     var isCurrent: Bool                        // any thread
//     func execute(_ task: @escaping @Sendable () -> Void)   // any thread, FIFO per producer
//     var wakeUpsSent: Int                       // eventfd writes (coalesced), for stats
//     var busyPollCounts: (hits, misses, preempted)   // busy-poll outcomes, for stats
//     func noteOutput()                          // loop thread: this batch wrote (busy poll may follow)
//     -- loop thread only (or before run() starts) --
//     func register(fd: Int32, interest: Interest, handler: IOHandler) throws(SystemError)
//     func setInterest(fd: Int32, _ interest: Interest) throws(SystemError)
//     func interest(fd: Int32) -> Interest?      // nil when fd is not registered
//     func deregister(fd: Int32)                 // call before closing fd
//     func schedule(after: Duration, _ body: @escaping () -> Void) -> TimerID
//     func cancel(_ id: TimerID) -> Bool
//     var pendingTimerCount: Int
//     func onBatchEnd(_ hook: @escaping () -> Void)
//   final class SpinGate: Sendable   init(limit:): how many loops of a group may busy-poll at once
//   struct Interest: OptionSet { .readable, .writable }
//   protocol IOHandler: AnyObject { readable(); writable(); hangup() }
//   final class EventLoopGroup: Sendable        init(loopCount:busyPoll:) throws(SystemError), start(), next(), loops,
//                                               shutdown(), static availableCPUCount() (sched_getaffinity),
//                                               static cpuCount(affinityMask:)
//   func spawnThread(name:_:) -> pthread_t      a named, joinable pthread (the loops' threads; the broker's
//                                               lame-duck thread)
//   struct Listener: Sendable { static bind(host:port:backlog:) throws; fd; port; accept() -> AcceptResult; close() }
//   enum Socket { connect(host:port:nonBlocking:) throws -> Int32; peerAddress(_:); localAddress(_:) -> PeerAddress? }
//     (bind and connect throw AddressResolutionError or SystemError)
//   enum IO { read(_:into:), writev(_:_:count:), write(_:_:) -> IOResult; close(_:); maxVectors;
//             raiseFileDescriptorLimit() -> (old: Int, new: Int) }
//     IOResult: .bytes(n) / .wouldBlock / .eof / .error(errno); EINTR retried; EBADF/EFAULT trap.
//   struct OutboundBuffer: Sendable (CoW; keep it in a Mutex for cross-loop producers)
//                           chunked (4 KiB growing to 64 KiB), pointer-stable; append(_:) / append(byte:) /
//                           pendingBytes / isEmpty / snapshotIOVecs(into:maxVectors:) / consume(_:) /
//                           removeAll() / flush(to:) -> FlushResult (.done / .partial(remaining:) / .error(errno))
//   struct ReadBuffer: ~Copyable   init(maximum:), read(from:) -> IOResult, bytes, capacity; 512 B start,
//                                  64 B ... 64 KiB (or maximum) adaptive
//   struct FileDescriptor: ~Copyable   owning fd: consuming close() / release(), deinit closes
//
// One iteration of run(): epoll_wait (no timeout; a timerfd carries the earliest deadline, an eventfd
// carries cross-thread wake-ups) -> I/O handlers for each ready fd -> expired timers -> queued tasks ->
// batch-end hooks (the broker flushes pending writes there: one writev per receiver per batch).
//
// Busy polling (`busyPoll` > 0): after a batch that handled a descriptor's I/O and wrote something
// (the handler or a batch hook called noteOutput(), so an answer may come back), the loop polls with
// epoll_wait(timeout 0) for up to `busyPoll` before it sleeps, so a reply that comes back within
// that window is picked up without a wake-up (in a VM an idle vCPU halts, and waking it costs an
// IPI and a VM entry, tens of microseconds). It never spins when idle: only right after I/O, and
// only while recent gaps between batches were short (a spin that finds nothing, or a sleep longer
// than the window, counts against it; a few in a row stop spinning until a short gap is seen).
// It backs off (1 ms doubling to 128 ms) when the thread was preempted since the last spin
// (getrusage ru_nivcsw) or one poll took over 20 µs: then another thread wants this CPU (a client
// on the same CPU, another loop, another process) and spinning would only delay it. A group lets
// at most half its loops (at least one) spin at once (SpinGate).
//
// Event dispatch: level-triggered. A ready event is intersected with the interest registered *now*.
// EPOLLERR/EPOLLHUP go to readable() when reads are of interest (the handler drains what is left and
// sees EOF or the error), else to writable() when writes are, else to hangup(). Each registration
// gets a 32-bit generation packed beside the fd in epoll's 64-bit token, so events still queued for an
// fd that was deregistered (and possibly reused) in the same batch are dropped.
import CSystem
import Glibc
import Synchronization

/// Which readiness a registered descriptor wants to hear about.
public struct Interest: OptionSet, Sendable, Hashable {
    /// Bit 0: readable, bit 1: writable.
    public let rawValue: UInt8
    /// Creates an interest set from its bits.
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// EPOLLIN: data (or EOF) to read, or a pending connection on a listener.
    public static let readable = Interest(rawValue: 1)
    /// EPOLLOUT: room in the send buffer.
    public static let writable = Interest(rawValue: 2)

    @inline(__always)
    var epollMask: UInt32 {
        var mask: UInt32 = 0
        if contains(.readable) { mask |= EPOLLIN.rawValue }
        if contains(.writable) { mask |= EPOLLOUT.rawValue }
        return mask
    }
}

/// Receives readiness callbacks for one registered descriptor, on its loop's thread.
public protocol IOHandler: AnyObject {
    /// The descriptor is readable (or at EOF / in error: the read reports it).
    func readable()
    /// The descriptor is writable (or in error: the write reports it).
    func writable()
    /// EPOLLERR/EPOLLHUP while neither readable nor writable is of interest.
    func hangup()
}

/// One epoll instance driven by one thread.
///
/// `@unchecked Sendable` is sound because every mutable stored property except the task queue and
/// the atomics is touched only by the loop thread (checked with `isCurrent` preconditions/asserts),
/// the task queue lives in a `Mutex`, and the stop/wake/thread flags are `Atomic`s.
public final class EventLoop: @unchecked Sendable {
    /// Name for logs and the thread name.
    public let name: String

    private let epfd: Int32
    private let wakeFD: Int32
    private let timerFD: Int32

    // Cross-thread state.
    private let tasks = Mutex<[@Sendable () -> Void]>([])
    /// True while an eventfd write is outstanding (set by producers, cleared by the loop).
    private let wakePending = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    /// eventfd writes made by execute()/stop(); see wakeUpsSent.
    private let wakeUps = Atomic<Int>(0)
    /// pthread_self() of the thread inside run(), or 0.
    private let runningThread = Atomic<UInt>(0)

    // Loop-thread state.
    private struct Registration {
        var handler: IOHandler
        var interest: Interest
        var generation: UInt32
    }
    // Run-time exclusivity checks are off for these: each costs a call into the runtime on every
    // access, several times per loop iteration, and only the loop thread touches them.
    /// Indexed by fd.
    @exclusivity(unchecked) private var registrations: [Registration?] = []
    private var nextGeneration: UInt32 = 1
    @exclusivity(unchecked) private var timers = TimerHeap()
    private var nextTimerID: UInt64 = 1
    /// The deadline the timerfd is armed for, or nil when it is not armed (or has fired).
    @exclusivity(unchecked) private var armedDeadline: UInt64?
    @exclusivity(unchecked) private var batchHooks: [() -> Void] = []
    /// Set when the loop thread itself queued a task: the next epoll_wait must not sleep.
    @exclusivity(unchecked) private var selfQueued = false
    @exclusivity(unchecked) private var draining: [@Sendable () -> Void] = []
    @exclusivity(unchecked) private var events: UnsafeMutablePointer<epoll_event>
    @exclusivity(unchecked) private var eventCapacity: Int

    /// Longest busy-poll after a batch with I/O, in nanoseconds; 0 disables it.
    private let busyPollNanos: UInt64
    /// Set by ``noteOutput()`` during a batch: only a batch that sent something (a reply may come
    /// back soon) is followed by a spin; a one-way inbound stream never spins.
    @exclusivity(unchecked) private var wroteOutput = false
    /// Busy-poll confidence: reset to `spinCredit` when I/O followed a batch within the window,
    /// lowered by one when it did not; the loop spins only while it is above zero.
    @exclusivity(unchecked) private var spinScore = 0
    private static let spinCredit = 4
    /// Busy-poll counters (loop thread writes, any thread reads; relaxed, for stats and tests).
    private let spinHitCount = Atomic<Int>(0)
    private let spinMissCount = Atomic<Int>(0)
    private let spinPauseCount = Atomic<Int>(0)
    /// Bounds how many loops of a group spin at once.
    private let spinGate: SpinGate
    /// No busy polling before this monotonic time: the last spin was preempted.
    @exclusivity(unchecked) private var spinPausedUntil: UInt64 = 0
    /// How long busy polling stays off after the last preempted spin: 1 ms, doubled by each
    /// further preempted spin up to 128 ms, back to 0 after an undisturbed one.
    @exclusivity(unchecked) private var spinPause: UInt64 = 0
    /// The thread's involuntary context switches at the last check (getrusage `ru_nivcsw`).
    @exclusivity(unchecked) private var lastInvoluntarySwitches = 0
    /// One poll of a spin taking longer than this means the thread was descheduled meanwhile.
    private static let preemptedNanos: UInt64 = 20_000
    private static let minSpinPauseNanos: UInt64 = 1_000_000
    private static let maxSpinPauseNanos: UInt64 = 128_000_000

    /// Generation 0 marks the loop's own eventfd and timerfd.
    private static let internalGeneration: UInt32 = 0

    /// Creates the epoll instance, its wake-up eventfd and its timerfd. Does not start a thread.
    /// - Parameters:
    ///   - name: used in logs and as the thread name.
    ///   - busyPoll: longest time to poll without sleeping after a batch that handled I/O
    ///     (`.zero`, the default, never spins; negative counts as zero; at most one second).
    ///   - spinGate: shared by the loops of a group to bound how many spin at once; nil: this
    ///     loop's own (no bound beyond itself).
    /// - Throws: ``SystemError`` when epoll_create1, eventfd, timerfd_create or epoll_ctl fails
    ///   (e.g. EMFILE).
    public init(name: String, busyPoll: Duration = .zero, spinGate: SpinGate? = nil) throws(SystemError) {
        self.name = name
        self.spinGate = spinGate ?? SpinGate(limit: 1)
        let (seconds, attoseconds) = busyPoll.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) {
            busyPollNanos = 0
        } else {
            // At most one second: a longer spin is a configuration mistake, not a latency setting.
            busyPollNanos = seconds >= 1 ? 1_000_000_000 : UInt64(attoseconds / 1_000_000_000)
        }
        let ep = csys_epoll_create()
        if ep < 0 { throw SystemError("epoll_create1", errno) }
        let wake = csys_eventfd_create()
        if wake < 0 {
            let err = errno
            Glibc.close(ep)
            throw SystemError("eventfd", err)
        }
        let timer = csys_timerfd_create()
        if timer < 0 {
            let err = errno
            Glibc.close(ep)
            Glibc.close(wake)
            throw SystemError("timerfd_create", err)
        }
        for fd in [wake, timer] {
            var ev = csys_epoll_event(EPOLLIN.rawValue, Self.token(fd: fd, generation: Self.internalGeneration))
            if epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0 {
                let err = errno
                Glibc.close(ep)
                Glibc.close(wake)
                Glibc.close(timer)
                throw SystemError("epoll_ctl", err)
            }
        }
        epfd = ep
        wakeFD = wake
        timerFD = timer
        eventCapacity = 64
        events = .allocate(capacity: 64)
    }

    deinit {
        Glibc.close(epfd)
        Glibc.close(wakeFD)
        Glibc.close(timerFD)
        events.deallocate()
    }

    @inline(__always)
    private static func token(fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: Threads

    /// True when called on the thread currently inside ``run()``.
    public var isCurrent: Bool {
        let owner = runningThread.load(ordering: .relaxed)
        return owner != 0 && owner == UInt(pthread_self())
    }

    /// Loop-thread-only calls are also allowed before the loop first runs (single-threaded setup).
    @inline(__always)
    private var mayMutate: Bool {
        let owner = runningThread.load(ordering: .relaxed)
        return owner == 0 || owner == UInt(pthread_self())
    }

    /// Runs the loop on the calling thread until ``stop()``. Tasks queued before the stop took
    /// effect still run before it returns.
    public func run() {
        let me = UInt(pthread_self())
        let (exchanged, _) = runningThread.compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing)
        precondition(exchanged, "EventLoop.run() called while the loop is already running")
        defer { runningThread.store(0, ordering: .releasing) }
        // True when the last batch handled a descriptor's I/O (not only timers or wake-ups).
        var hadIO = false
        while !stopRequested.load(ordering: .acquiring) {
            let n: Int32
            if selfQueued {
                selfQueued = false
                n = epoll_wait(epfd, events, Int32(eventCapacity), 0)
            } else if hadIO && wroteOutput && busyPollNanos > 0 {
                n = pollThenWait()
            } else {
                n = epoll_wait(epfd, events, Int32(eventCapacity), -1)
            }
            if n < 0 {
                let err = errno
                if err == EINTR { continue }
                fatalError("epoll_wait failed: errno \(err)")
            }
            wroteOutput = false
            hadIO = n > 0 ? dispatch(Int(n)) : false
            runExpiredTimers()
            runTasks()
            runBatchHooks()
        }
        runTasks()
        runBatchHooks()
        stopRequested.store(false, ordering: .releasing)
    }

    /// After a batch with I/O: spins on epoll_wait(timeout 0) for up to `busyPollNanos` while recent
    /// gaps were short, the loop was not preempted lately and the group's spin gate has room, then
    /// sleeps. Returns what epoll_wait returned (events, 0, or -1 with errno).
    private func pollThenWait() -> Int32 {
        let capacity = Int32(eventCapacity)
        let start = csys_monotonic_ns()
        if spinScore > 0 && start >= spinPausedUntil && !preemptedSinceLastSpin(now: start) && spinGate.enter() {
            defer { spinGate.leave() }
            let deadline = start &+ busyPollNanos
            var previous = start
            var polls = 0
            while true {
                let n = epoll_wait(epfd, events, capacity, 0)
                if n != 0 {
                    if n > 0 {
                        spinScore = Self.spinCredit
                        spinHitCount.add(1, ordering: .relaxed)
                        // A spin that waited undisturbed: contention, if any, has passed.
                        if polls > 0 { spinPause = 0 }
                    }
                    return n
                }
                polls += 1
                let now = csys_monotonic_ns()
                if now &- previous > Self.preemptedNanos {
                    // Descheduled meanwhile (another thread or the hypervisor wanted this CPU).
                    pauseSpinning(now: now)
                    break
                }
                if now >= deadline || stopRequested.load(ordering: .relaxed) {
                    spinPause = 0
                    break
                }
                previous = now
            }
            spinScore -= 1
            spinMissCount.add(1, ordering: .relaxed)
            return epoll_wait(epfd, events, capacity, -1)
        }
        // Not spinning: time the sleep, and spin again once a gap fits the window.
        let n = epoll_wait(epfd, events, capacity, -1)
        if n > 0 && csys_monotonic_ns() &- start <= busyPollNanos { spinScore = Self.spinCredit }
        return n
    }

    /// Tells the loop that this batch wrote to a peer, so a busy poll after it may catch the
    /// answer. Loop thread only; a plain store.
    @inline(__always)
    public func noteOutput() { wroteOutput = true }

    /// Something else wanted this CPU (a client on the same CPU, another process, the hypervisor):
    /// spinning would only delay it. Leaves busy polling off for a while, longer each time it
    /// happens again.
    private func pauseSpinning(now: UInt64) {
        spinPause = Swift.min(Swift.max(spinPause &* 2, Self.minSpinPauseNanos), Self.maxSpinPauseNanos)
        spinPausedUntil = now &+ spinPause
        spinPauseCount.add(1, ordering: .relaxed)
    }

    /// True (and spinning paused) when this thread was preempted since the last check: a thread
    /// that is runnable on this CPU (e.g. a client pinned to it) preempts a spinning loop without
    /// a long gap, so the gap check alone misses it.
    private func preemptedSinceLastSpin(now: UInt64) -> Bool {
        var usage = rusage()
        // RUSAGE_THREAD (1) needs _GNU_SOURCE, which the Glibc module does not define.
        guard getrusage(__rusage_who_t(1), &usage) == 0 else { return false }
        let involuntary = usage.ru_nivcsw
        defer { lastInvoluntarySwitches = involuntary }
        if involuntary == lastInvoluntarySwitches { return false }
        pauseSpinning(now: now)
        return true
    }

    /// Busy polls that found I/O within the window, busy polls that gave up and slept, and of
    /// those the ones cut short because the thread was preempted. Any thread; for stats and tests.
    public var busyPollCounts: (hits: Int, misses: Int, preempted: Int) {
        (spinHitCount.load(ordering: .relaxed), spinMissCount.load(ordering: .relaxed),
         spinPauseCount.load(ordering: .relaxed))
    }

    /// Asks the loop to return from ``run()`` after its current iteration. Any thread.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        wake()
    }

    // MARK: Tasks

    /// Queues `task` to run on the loop thread. Any thread. Tasks from one thread run in the order
    /// they were queued; the loop is woken through its eventfd only when no wake-up is already pending.
    /// Tasks queued while the loop is not running wait for the next ``run()``; they are never dropped.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        tasks.withLock { $0.append(task) }
        if isCurrent {
            selfQueued = true
        } else if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            wake()
        }
    }

    /// How many times the loop was woken through its eventfd (coalesced: many ``execute(_:)`` calls
    /// while a wake-up is pending cost one). Any thread; for stats and tests.
    public var wakeUpsSent: Int { wakeUps.load(ordering: .relaxed) }

    private func wake() {
        wakeUps.add(1, ordering: .relaxed)
        var one: UInt64 = 1
        while Glibc.write(wakeFD, &one, 8) < 0 {
            let err = errno
            if err == EINTR { continue }
            // EAGAIN: the counter is saturated, so the loop is certainly going to wake.
            if err == EAGAIN { return }
            trapOnProgrammingError(err, "eventfd write")
            return
        }
    }

    private func runTasks() {
        tasks.withLock { swap(&$0, &draining) }
        if draining.isEmpty { return }
        for task in draining { task() }
        draining.removeAll(keepingCapacity: true)
    }

    // MARK: Registration

    /// Starts watching `fd`. Loop thread only (or before the loop first runs). Registering an fd that
    /// already has a registration replaces it (the old handler gets no further events).
    /// - Parameters:
    ///   - fd: an open descriptor; the caller keeps ownership and must ``deregister(fd:)`` before closing.
    ///   - interest: readiness to report.
    ///   - handler: receives callbacks on this loop; the loop holds it strongly until deregistered.
    /// - Throws: ``SystemError`` from epoll_ctl (ENOMEM, ENOSPC: fs.epoll.max_user_watches, EPERM:
    ///   the fd does not support epoll).
    public func register(fd: Int32, interest: Interest, handler: IOHandler) throws(SystemError) {
        precondition(mayMutate, "EventLoop.register: loop thread only")
        precondition(fd >= 0, "EventLoop.register: negative fd")
        let generation = nextGeneration
        nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1
        var ev = csys_epoll_event(interest.epollMask, Self.token(fd: fd, generation: generation))
        let index = Int(fd)
        let replacing = index < registrations.count && registrations[index] != nil
        var rc = epoll_ctl(epfd, replacing ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev)
        if rc != 0 && errno == EEXIST {
            rc = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
        } else if rc != 0 && errno == ENOENT && replacing {
            // The old fd was closed without deregistering; this is a new descriptor.
            rc = epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
        }
        if rc != 0 { throw SystemError("epoll_ctl", errno) }
        if index >= registrations.count {
            registrations.append(contentsOf: repeatElement(nil, count: Swift.max(index + 1, registrations.count * 2)
                - registrations.count))
        }
        registrations[index] = Registration(handler: handler, interest: interest, generation: generation)
    }

    /// Changes the readiness reported for a registered `fd`. Loop thread only. No syscall when the
    /// interest is unchanged.
    /// - Throws: ``SystemError`` from epoll_ctl (ENOMEM).
    public func setInterest(fd: Int32, _ interest: Interest) throws(SystemError) {
        assert(mayMutate, "EventLoop.setInterest: loop thread only")
        let index = Int(fd)
        guard index < registrations.count, var registration = registrations[index] else {
            preconditionFailure("EventLoop.setInterest: fd \(fd) is not registered")
        }
        if registration.interest == interest { return }
        var ev = csys_epoll_event(interest.epollMask, Self.token(fd: fd, generation: registration.generation))
        if epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0 { throw SystemError("epoll_ctl", errno) }
        registration.interest = interest
        registrations[index] = registration
    }

    /// The interest registered for `fd`, or nil when it is not registered. Loop thread only.
    public func interest(fd: Int32) -> Interest? {
        let index = Int(fd)
        guard index >= 0, index < registrations.count else { return nil }
        return registrations[index]?.interest
    }

    /// Stops watching `fd` and releases its handler. Loop thread only. Call it before closing `fd`;
    /// events already collected for it in the current batch are dropped. Unregistered fds are ignored.
    public func deregister(fd: Int32) {
        assert(mayMutate, "EventLoop.deregister: loop thread only")
        let index = Int(fd)
        guard index >= 0, index < registrations.count, registrations[index] != nil else { return }
        registrations[index] = nil
        var ev = csys_epoll_event(0, 0)
        if epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev) != 0 {
            // ENOENT/EBADF: the fd was already closed, which removed it from the epoll set.
            let err = errno
            precondition(err == ENOENT || err == EBADF, "epoll_ctl(DEL) failed: errno \(err)")
        }
    }

    /// Runs the handlers of `count` ready events.
    /// - Returns: true when at least one was a registered descriptor's (not the eventfd or timerfd).
    private func dispatch(_ count: Int) -> Bool {
        let errHup = EPOLLERR.rawValue | EPOLLHUP.rawValue
        var handledIO = false
        for i in 0..<count {
            let token = csys_epoll_event_token(events + i)
            let mask = csys_epoll_event_mask(events + i)
            let fd = Int32(truncatingIfNeeded: token & 0xFFFF_FFFF)
            let generation = UInt32(truncatingIfNeeded: token >> 32)
            if generation == Self.internalGeneration {
                handleInternal(fd)
                continue
            }
            let index = Int(fd)
            guard index < registrations.count, let registration = registrations[index],
                  registration.generation == generation else { continue }
            handledIO = true
            let handler = registration.handler
            let interest = registration.interest
            if mask & errHup != 0 {
                if interest.contains(.readable) {
                    handler.readable()
                } else if interest.contains(.writable) {
                    handler.writable()
                } else {
                    handler.hangup()
                }
                continue
            }
            if mask & EPOLLIN.rawValue != 0 && interest.contains(.readable) {
                handler.readable()
            }
            if mask & EPOLLOUT.rawValue != 0 {
                // The read handler may have deregistered, replaced or changed the registration.
                guard let now = registrations[index], now.generation == generation,
                      now.interest.contains(.writable) else { continue }
                handler.writable()
            }
        }
        if count == eventCapacity && eventCapacity < 4096 {
            events.deallocate()
            eventCapacity *= 2
            events = .allocate(capacity: eventCapacity)
        }
        return handledIO
    }

    private func handleInternal(_ fd: Int32) {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
        if fd == wakeFD {
            wakePending.store(false, ordering: .sequentiallyConsistent)
        } else {
            armedDeadline = nil
        }
    }

    // MARK: Timers

    /// Runs `body` on the loop thread once `delay` has passed. Loop thread only (or before the loop
    /// first runs). Timers with equal deadlines fire in scheduling order.
    /// - Returns: an id for ``cancel(_:)``.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) -> TimerID {
        precondition(mayMutate, "EventLoop.schedule: loop thread only")
        let (seconds, attoseconds) = delay.components
        var nanos: UInt64 = 0
        if seconds > 0 || (seconds == 0 && attoseconds > 0) {
            let s = UInt64(clamping: seconds)
            let (whole, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
            nanos = overflow ? UInt64.max / 2 : whole &+ UInt64(attoseconds / 1_000_000_000)
        }
        let now = csys_monotonic_ns()
        let deadline = nanos > UInt64.max / 2 ? UInt64.max / 2 : now + nanos
        let id = nextTimerID
        nextTimerID += 1
        timers.insert(.init(deadline: deadline, id: id, body: body))
        armTimerIfNeeded()
        return TimerID(raw: id)
    }

    /// Cancels a timer. Loop thread only.
    /// - Returns: true if it had not fired yet (it never will), false if it already fired or was cancelled.
    @discardableResult
    public func cancel(_ id: TimerID) -> Bool {
        assert(mayMutate, "EventLoop.cancel: loop thread only")
        // The timerfd is left armed: an early wake-up finds nothing due and re-arms, which is cheaper
        // than a timerfd_settime per cancel.
        return timers.remove(id: id.raw)
    }

    /// Number of pending timers. Loop thread only.
    public var pendingTimerCount: Int { timers.count }

    /// Arms the timerfd when the earliest deadline is earlier than what it is armed for.
    private func armTimerIfNeeded() {
        guard let earliest = timers.min?.deadline else { return }
        if let armed = armedDeadline, armed <= earliest { return }
        if csys_timerfd_arm_abs(timerFD, earliest) != 0 {
            fatalError("timerfd_settime failed: errno \(errno)")
        }
        armedDeadline = earliest
    }

    private func runExpiredTimers() {
        guard let first = timers.min else { return }
        let now = csys_monotonic_ns()
        if first.deadline <= now {
            // Only timers that exist now: one scheduled by a callback for "now" waits a turn.
            let limit = nextTimerID
            while let top = timers.min, top.deadline <= now, top.id < limit {
                _ = timers.popMin()
                top.body()
            }
        }
        armTimerIfNeeded()
    }

    // MARK: Batch hooks

    /// Adds a hook that runs on the loop thread after every batch of ready events, timers and tasks,
    /// before the loop sleeps again. Loop thread only (or before the loop first runs).
    public func onBatchEnd(_ hook: @escaping () -> Void) {
        precondition(mayMutate, "EventLoop.onBatchEnd: loop thread only")
        batchHooks.append(hook)
    }

    private func runBatchHooks() {
        for hook in batchHooks { hook() }
    }
}

/// Bounds how many event loops busy-poll at the same time (a spinning loop holds a CPU that its
/// clients may need). Any thread.
public final class SpinGate: Sendable {
    private let limit: Int
    private let spinning = Atomic<Int>(0)

    /// - Parameter limit: loops allowed to spin at once (at least 1).
    public init(limit: Int) { self.limit = Swift.max(1, limit) }

    /// Takes a place; false when `limit` loops are already spinning.
    @inline(__always)
    func enter() -> Bool {
        if spinning.load(ordering: .relaxed) >= limit { return false }
        if spinning.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue <= limit { return true }
        spinning.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    @inline(__always)
    func leave() { spinning.wrappingSubtract(1, ordering: .relaxed) }
}
