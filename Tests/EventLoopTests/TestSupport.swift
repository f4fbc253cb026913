import CSystem
import Dispatch
import EventLoop
import Glibc
import Synchronization

/// Polls `condition` until it holds or `timeout` passes. Returns whether it held.
func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// Runs `body` on `loop` and waits (bounded) for its result.
func onLoop<T: Sendable>(_ loop: EventLoop, timeout: Duration = .seconds(20),
                         _ body: @escaping @Sendable () -> T) -> T? {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    loop.execute {
        let value = body()
        result.withLock { $0 = value }
        done.signal()
    }
    let (seconds, attoseconds) = timeout.components
    let nanos = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    guard done.wait(timeout: .now() + .nanoseconds(nanos)) == .success else { return nil }
    return result.withLock { $0 }
}

/// A started one-loop group, shut down by `body`'s caller through `defer`.
func startedLoop() throws -> (EventLoopGroup, EventLoop) {
    let group = try EventLoopGroup(loopCount: 1)
    group.start()
    return (group, group.loops[0])
}

/// A connected AF_UNIX stream pair, both ends non-blocking.
func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
    precondition(rc == 0, "socketpair failed")
    _ = csys_set_nonblocking(fds[0])
    _ = csys_set_nonblocking(fds[1])
    return (fds[0], fds[1])
}


/// The byte at position `i` of the test stream.
@inline(__always)
func patternByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 31 &+ i >> 8) }

/// `count` bytes of the test stream starting at position `offset`, built without per-byte closures
/// (debug builds are slow at those).
func patternBytes(count: Int, offset: Int = 0) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = patternByte(offset &+ i) }
        initialized = count
    }
}

/// Index of the first differing byte, or nil when `a` and `b` are equal (memcmp fast path).
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    let equal = a.count == b.count && a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
    }
    if equal { return nil }
    return zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? Swift.min(a.count, b.count)
}

/// Thread-safe counters and logs for handlers that run on a loop thread.
final class Recorder: Sendable {
    let events = Mutex<[String]>([])
    func add(_ event: String) { events.withLock { $0.append(event) } }
    var snapshot: [String] { events.withLock { $0 } }
}

/// A joinable pthread for tests (Foundation's Thread cannot be joined).
final class TestThread: Sendable {
    private let body: @Sendable () -> Void
    private let handle = Mutex<pthread_t?>(nil)

    init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<TestThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed")
        handle.withLock { $0 = thread }
    }

    func join() {
        if let thread = handle.withLock({ $0 }) { pthread_join(thread, nil) }
    }
}
