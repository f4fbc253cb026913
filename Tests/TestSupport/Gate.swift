import Synchronization

/// Holds handlers until opened, and records how many waited at once.
public final class Gate: Sendable {
    private struct State { var open = false; var waiting = 0; var maximum = 0; var waiters: [CheckedContinuation<Void, Never>] = [] }
    private let state = Mutex(State())

    public init() {}

    public func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resume = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiting += 1
                s.maximum = max(s.maximum, s.waiting)
                s.waiters.append(continuation)
                return false
            }
            if resume { continuation.resume() }
        }
    }

    public func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            s.waiting = 0
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public var waiting: Int { state.withLock { $0.waiting } }
    public var maximumWaiting: Int { state.withLock { $0.maximum } }
}
