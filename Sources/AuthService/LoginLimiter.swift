import Synchronization

/// Counts failed logins per key (an account or a client address) in a sliding window and blocks
/// a key that reached its limit until its oldest counted failure leaves the window.
///
/// Memory is bounded: each key keeps at most `maxFailures` timestamps, and at most `maxKeys`
/// keys are tracked (when full, keys with no failure left in the window go first, then the key
/// whose last failure is oldest).
///
/// A login attempt is counted *before* the password is checked (``acquire(_:)``), so parallel
/// guesses cannot overshoot the limit; a successful login takes its count back (``forgive(_:)``
/// or ``reset(_:)``).
public final class LoginLimiter: Sendable {
    /// The limits.
    public struct Policy: Sendable, Equatable {
        /// Failures allowed within the window; the next attempt is refused.
        public var maxFailures: Int
        /// Window length in seconds.
        public var window: Double
        /// Keys tracked at most.
        public var maxKeys: Int
        /// A policy.
        public init(maxFailures: Int, window: Double, maxKeys: Int) {
            self.maxFailures = max(1, maxFailures); self.window = max(0.001, window); self.maxKeys = max(1, maxKeys)
        }
    }

    private struct State {
        var failures: [String: [Double]] = [:]   // ascending timestamps, at most maxFailures
    }
    /// The limits in force.
    public let policy: Policy
    private let state = Mutex(State())
    private let now: @Sendable () -> Double

    /// - Parameters:
    ///   - policy: the limits.
    ///   - now: monotonic seconds (injectable for tests).
    public init(policy: Policy, now: @escaping @Sendable () -> Double = LoginLimiter.monotonicSeconds) {
        self.policy = policy
        self.now = now
    }

    /// Monotonic seconds since an arbitrary origin.
    public static let monotonicSeconds: @Sendable () -> Double = {
        let d = ContinuousClock.now - origin
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
    private static let origin = ContinuousClock.now

    /// Counts one attempt for `key` unless it is blocked. Returns nil when the attempt may go on,
    /// else the whole seconds (at least 1) until the key is allowed again.
    public func acquire(_ key: String) -> Int? {
        let t = now()
        return state.withLock { s -> Int? in
            var list = s.failures[key] ?? []
            let cutoff = t - policy.window
            if let firstLive = list.firstIndex(where: { $0 > cutoff }) { list.removeFirst(firstLive) } else { list.removeAll() }
            if list.count >= policy.maxFailures {
                s.failures[key] = list
                let wait = list[list.count - policy.maxFailures] + policy.window - t
                return max(1, Int(wait.rounded(.up)))
            }
            if s.failures[key] == nil && s.failures.count >= policy.maxKeys { evict(&s, now: t) }
            list.append(t)
            s.failures[key] = list
            return nil
        }
    }

    /// Seconds until `key` may try again, or nil when it is not blocked (counts nothing).
    public func retryAfter(_ key: String) -> Int? {
        let t = now()
        return state.withLock { s -> Int? in
            guard let list = s.failures[key] else { return nil }
            let live = list.filter { $0 > t - policy.window }
            guard live.count >= policy.maxFailures else { return nil }
            return max(1, Int((live[live.count - policy.maxFailures] + policy.window - t).rounded(.up)))
        }
    }

    /// Takes back the newest counted attempt of `key` (a login that turned out right).
    public func forgive(_ key: String) {
        state.withLock { s in
            guard var list = s.failures[key], !list.isEmpty else { return }
            list.removeLast()
            s.failures[key] = list.isEmpty ? nil : list
        }
    }

    /// Forgets every failure of `key`.
    public func reset(_ key: String) {
        _ = state.withLock { $0.failures.removeValue(forKey: key) }
    }

    /// Keys tracked now.
    public var trackedKeys: Int { state.withLock { $0.failures.count } }

    /// Makes room for one key. Under the lock.
    private func evict(_ s: inout State, now t: Double) {
        let cutoff = t - policy.window
        s.failures = s.failures.filter { ($0.value.last ?? -.infinity) > cutoff }
        // Still full: drop the keys whose newest failure is oldest (an eighth at a time, so the
        // scan is amortised over many inserts).
        if s.failures.count >= policy.maxKeys {
            let drop = max(1, s.failures.count - policy.maxKeys + 1, policy.maxKeys / 8)
            let victims = s.failures.sorted { ($0.value.last ?? 0) < ($1.value.last ?? 0) }.prefix(drop).map(\.key)
            for key in victims { s.failures[key] = nil }
        }
    }
}
