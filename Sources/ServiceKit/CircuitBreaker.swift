import Synchronization

/// When a circuit opens and how long it stays open.
public struct CircuitBreakerPolicy: Sendable {
    /// Open after this many failures in a row (0 disables the rule).
    public var consecutiveFailures: Int
    /// Also open when, among the last `window` calls (at least `minimumCalls` of them), the
    /// failure ratio reaches this value (nil disables the rule).
    public var failureRatio: Double?
    /// Number of recent outcomes the ratio rule looks at (1...64).
    public var window: Int
    /// Fewest outcomes in the window before the ratio rule may open the circuit.
    public var minimumCalls: Int
    /// How long the circuit stays open before one probe call is let through.
    public var coolDown: Duration

    /// A policy; out-of-range values are clamped (window to 1...64, counts to at least 0 or 1).
    public init(consecutiveFailures: Int = 5, failureRatio: Double? = nil, window: Int = 20, minimumCalls: Int = 10,
                coolDown: Duration = .seconds(30)) {
        self.consecutiveFailures = max(0, consecutiveFailures)
        self.failureRatio = failureRatio
        self.window = min(64, max(1, window))
        self.minimumCalls = max(1, minimumCalls)
        self.coolDown = coolDown
    }
}

/// The closed / open / half-open state machine of a circuit breaker as a pure value: callers pass
/// the current time in and act on the returned decisions, so tests drive it with any instants.
///
/// Each permitted call gets a ``Ticket``; reporting an outcome with a ticket from before the
/// latest state change is ignored, so a slow call that started while closed cannot close (or
/// re-open) the circuit later.
public struct CircuitBreakerMachine: Sendable, Equatable {
    /// Monotonic time, as the callers pass it in.
    public typealias Instant = ContinuousClock.Instant

    /// Where the circuit is.
    public enum State: Sendable, Equatable {
        /// Calls go through; failures are counted.
        case closed
        /// Failing fast until `until`.
        case open(until: Instant)
        /// One probe is (or may be) in flight; everything else is refused.
        case halfOpen(probeInFlight: Bool)
    }

    /// Identifies the state generation a call was admitted in.
    public struct Ticket: Sendable, Equatable {
        let generation: UInt64
        let isProbe: Bool
    }

    /// The answer to "may this call go ahead?".
    public enum Decision: Sendable, Equatable {
        /// Make the call; report its outcome with the ticket.
        case allow(Ticket)
        /// Fail fast; the circuit may admit a probe after `retryAfter`.
        case reject(retryAfter: Duration)
    }

    /// When to open and for how long.
    public let policy: CircuitBreakerPolicy
    /// The current state.
    public private(set) var state: State = .closed
    private var generation: UInt64 = 0
    private var consecutive = 0
    /// Recent outcomes as bits (1 = failure), newest in bit 0; `recorded` of them are valid.
    private var outcomes: UInt64 = 0
    private var recorded = 0

    /// A closed circuit governed by `policy`.
    public init(policy: CircuitBreakerPolicy) { self.policy = policy }

    public static func == (a: CircuitBreakerMachine, b: CircuitBreakerMachine) -> Bool {
        a.state == b.state && a.generation == b.generation && a.consecutive == b.consecutive
            && a.outcomes == b.outcomes && a.recorded == b.recorded
    }

    /// Decides whether a call starting at `now` may go ahead.
    public mutating func decide(at now: Instant) -> Decision {
        switch state {
        case .closed:
            return .allow(Ticket(generation: generation, isProbe: false))
        case .open(let until):
            if now < until { return .reject(retryAfter: until - now) }
            transition(to: .halfOpen(probeInFlight: true))
            return .allow(Ticket(generation: generation, isProbe: true))
        case .halfOpen(let busy):
            if busy { return .reject(retryAfter: .zero) }
            state = .halfOpen(probeInFlight: true)
            return .allow(Ticket(generation: generation, isProbe: true))
        }
    }

    /// Records a successful call. A probe's success closes the circuit.
    public mutating func recordSuccess(_ ticket: Ticket, at now: Instant) {
        guard ticket.generation == generation else { return }
        if ticket.isProbe {
            transition(to: .closed)
            return
        }
        consecutive = 0
        push(failure: false)
    }

    /// Records a failed call. Opens the circuit when a rule trips; a probe's failure re-opens it.
    public mutating func recordFailure(_ ticket: Ticket, at now: Instant) {
        guard ticket.generation == generation else { return }
        if ticket.isProbe {
            transition(to: .open(until: now + policy.coolDown))
            return
        }
        consecutive += 1
        push(failure: true)
        let tripConsecutive = policy.consecutiveFailures > 0 && consecutive >= policy.consecutiveFailures
        var tripRatio = false
        if let ratio = policy.failureRatio, recorded >= policy.minimumCalls {
            let mask: UInt64 = recorded >= 64 ? .max : (1 << UInt64(recorded)) - 1
            tripRatio = Double((outcomes & mask).nonzeroBitCount) / Double(recorded) >= ratio
        }
        if tripConsecutive || tripRatio { transition(to: .open(until: now + policy.coolDown)) }
    }

    /// Records that an admitted call ended without an outcome (for example it was cancelled by
    /// its caller): a probe slot is freed so another probe may go.
    public mutating func recordAbandoned(_ ticket: Ticket) {
        guard ticket.generation == generation, ticket.isProbe, case .halfOpen = state else { return }
        state = .halfOpen(probeInFlight: false)
    }

    private mutating func push(failure: Bool) {
        outcomes = (outcomes << 1) | (failure ? 1 : 0)
        recorded = min(policy.window, recorded + 1)
    }

    private mutating func transition(to newState: State) {
        state = newState
        generation &+= 1
        consecutive = 0
        outcomes = 0
        recorded = 0
    }
}

/// Why ``CircuitBreaker/call(timeout:_:)`` failed without the operation's own error.
public enum CircuitBreakerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The circuit is open: the callee is considered down. Try again after `retryAfter`.
    case open(name: String, retryAfter: Duration)
    /// The operation did not finish within the timeout (it was cancelled).
    case timedOut(name: String, after: Duration)

    public var description: String {
        switch self {
        case .open(let name, let after): return "circuit \(name) is open (retry after \(after))"
        case .timedOut(let name, let after): return "call through circuit \(name) timed out after \(after)"
        }
    }
}

/// A thread-safe circuit breaker around async calls to another service, with a timeout per call.
public final class CircuitBreaker: Sendable {
    /// Name used in errors (usually the callee).
    public let name: String
    private let machine: Mutex<CircuitBreakerMachine>
    private let now: @Sendable () -> ContinuousClock.Instant
    private let isFailure: @Sendable (any Error) -> Bool

    /// - Parameters:
    ///   - name: the callee, for errors and logs.
    ///   - policy: when to open and for how long.
    ///   - isFailure: which thrown errors count against the callee (all by default; a "not found"
    ///     answer, for example, shows the callee is up). Timeouts always count.
    ///   - now: the clock (injectable for tests).
    public init(name: String, policy: CircuitBreakerPolicy = CircuitBreakerPolicy(),
                isFailure: @escaping @Sendable (any Error) -> Bool = { _ in true },
                now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.name = name
        self.machine = Mutex(CircuitBreakerMachine(policy: policy))
        self.now = now
        self.isFailure = isFailure
    }

    /// The current state.
    public var state: CircuitBreakerMachine.State { machine.withLock { $0.state } }

    /// Runs `operation` if the circuit admits it, cancelling it after `timeout`.
    ///
    /// The operation must honour task cancellation for the timeout to return promptly.
    /// - Throws: ``CircuitBreakerError/open(name:retryAfter:)`` without calling `operation` while
    ///   the circuit is open; ``CircuitBreakerError/timedOut(name:after:)``; otherwise whatever
    ///   `operation` throws (including `CancellationError` when the caller is cancelled).
    public func call<T: Sendable>(timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let decision = machine.withLock { $0.decide(at: now()) }
        guard case .allow(let ticket) = decision else {
            if case .reject(let after) = decision { throw CircuitBreakerError.open(name: name, retryAfter: after) }
            throw CircuitBreakerError.open(name: name, retryAfter: .zero)
        }
        let name = self.name
        do {
            let value = try await withThrowingTaskGroup(of: Race<T>.self) { group in
                group.addTask { .finished(try await operation()) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return .timedOut
                }
                defer { group.cancelAll() }
                guard case .finished(let value)? = try await group.next() else {
                    throw CircuitBreakerError.timedOut(name: name, after: timeout)
                }
                return value
            }
            machine.withLock { $0.recordSuccess(ticket, at: now()) }
            return value
        } catch let error as CircuitBreakerError {
            machine.withLock { $0.recordFailure(ticket, at: now()) }
            throw error
        } catch is CancellationError where Task.isCancelled {
            machine.withLock { $0.recordAbandoned(ticket) }
            throw CancellationError()
        } catch {
            if isFailure(error) {
                machine.withLock { $0.recordFailure(ticket, at: now()) }
            } else {
                machine.withLock { $0.recordSuccess(ticket, at: now()) }
            }
            throw error
        }
    }
}

/// The first of an operation and its timeout to finish.
private enum Race<T: Sendable>: Sendable {
    case finished(T)
    case timedOut
}
