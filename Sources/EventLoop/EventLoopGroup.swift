// A fixed set of event loops, one thread each, handed out round-robin.
import CSystem
import Glibc
import Synchronization

/// A fixed set of ``EventLoop``s, each run by its own thread after ``start()``.
public final class EventLoopGroup: Sendable {
    /// The loops, in creation order.
    public let loops: [EventLoop]
    private let threads = Mutex<[pthread_t]>([])
    private let counter = Atomic<UInt>(0)

    /// Creates the loops without starting them.
    /// - Parameters:
    ///   - loopCount: number of loops; nil means the number of CPUs this process may run on
    ///     (its sched_getaffinity mask, so `taskset -c 0` gives one loop). Values below 1 count as 1.
    ///   - busyPoll: each loop's busy-poll window after a batch with I/O (see ``EventLoop``);
    ///     `.zero` (the default) never spins.
    /// - Throws: ``SystemError`` when a loop cannot be created (e.g. EMFILE).
    public init(loopCount: Int? = nil, busyPoll: Duration = .zero) throws(SystemError) {
        let count = Swift.max(1, loopCount ?? EventLoopGroup.availableCPUCount())
        var loops: [EventLoop] = []
        loops.reserveCapacity(count)
        // At most half of the loops (at least one) spin at once, so busy polling leaves CPUs to
        // the clients and to the other loops' wake-ups.
        let gate = SpinGate(limit: count / 2)
        for i in 0..<count {
            loops.append(try EventLoop(name: "loop-\(i)", busyPoll: busyPoll, spinGate: gate))
        }
        self.loops = loops
    }

    /// Starts one thread per loop (named after the loop). Calling it again has no effect.
    public func start() {
        threads.withLock { threads in
            guard threads.isEmpty else { return }
            for loop in loops {
                threads.append(spawnThread(name: loop.name) { loop.run() })
            }
        }
    }

    /// The next loop, round-robin. Any thread.
    public func next() -> EventLoop {
        let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[Int(n % UInt(loops.count))]
    }

    /// Stops every loop and waits for its thread to finish. Must not be called from one of the
    /// group's loops (it would wait for itself).
    public func shutdown() {
        precondition(!loops.contains { $0.isCurrent }, "EventLoopGroup.shutdown called on one of its own loops")
        let joining = threads.withLock { threads in
            let all = threads
            threads.removeAll()
            return all
        }
        for loop in loops { loop.stop() }
        for thread in joining { pthread_join(thread, nil) }
    }

    /// Number of CPUs in the calling thread's affinity mask (what `taskset` restricts); falls back
    /// to the online CPU count when the mask cannot be read.
    public static func availableCPUCount() -> Int {
        var mask = [UInt8](repeating: 0, count: 1024)
        let written = mask.withUnsafeMutableBytes { csys_sched_getaffinity_raw($0.baseAddress, UInt($0.count)) }
        if written > 0 {
            let count = cpuCount(affinityMask: mask[0..<Int(written)])
            if count > 0 { return count }
        }
        return Swift.max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Counts the CPUs set in a raw affinity bit mask (as written by sched_getaffinity).
    public static func cpuCount<Mask: Collection>(affinityMask: Mask) -> Int where Mask.Element == UInt8 {
        affinityMask.reduce(0) { $0 + $1.nonzeroBitCount }
    }
}

/// Holds a thread body across pthread_create.
private final class ThreadBody {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}

/// Starts a joinable pthread named `name` (at most 15 bytes are kept) running `body`; detach it
/// with `pthread_detach` when nobody joins it. Traps if the thread cannot be created (EAGAIN: the
/// process is out of threads, which a fixed-size group cannot recover from).
public func spawnThread(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(name: name, body: body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        // Linux limits thread names to 15 bytes.
        _ = csys_set_thread_name(box.name)
        box.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}
