import Synchronization
import Testing
@testable import ServiceKit

/// A monotonic clock moved by hand.
final class ManualClock: Sendable {
    private let current = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { current.withLock { $0 } }
    func advance(_ d: Duration) { current.withLock { $0 = $0 + d } }
}

struct Boom: Error, Equatable {}
struct NotFound: Error {}

@Suite struct CircuitBreakerMachineTests {
    let t0 = ContinuousClock.now

    func ticket(_ d: CircuitBreakerMachine.Decision) throws -> CircuitBreakerMachine.Ticket {
        guard case .allow(let t) = d else { throw Boom() }
        return t
    }

    @Test func opensAfterNConsecutiveFailuresAndFailsFastUntilTheCoolDownEnds() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 3, coolDown: .seconds(10)))
        for _ in 0..<2 { m.recordFailure(try ticket(m.decide(at: t0)), at: t0) }
        m.recordSuccess(try ticket(m.decide(at: t0)), at: t0)   // resets the run
        for _ in 0..<2 { m.recordFailure(try ticket(m.decide(at: t0)), at: t0) }
        #expect(m.state == .closed)
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        #expect(m.state == .open(until: t0 + .seconds(10)))
        #expect(m.decide(at: t0 + .seconds(4)) == .reject(retryAfter: .seconds(6)))
    }

    @Test func letsExactlyOneProbeThroughAfterTheCoolDownAndClosesOnItsSuccess() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 1, coolDown: .seconds(5)))
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        let later = t0 + .seconds(5)
        let probe = try ticket(m.decide(at: later))
        #expect(m.state == .halfOpen(probeInFlight: true))
        #expect(m.decide(at: later) == .reject(retryAfter: .zero), "only one probe at a time")
        m.recordSuccess(probe, at: later)
        #expect(m.state == .closed)
        #expect(try ticket(m.decide(at: later)).isProbe == false)
    }

    @Test func failedProbeReopensForAnotherCoolDown() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 1, coolDown: .seconds(5)))
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        let probeTime = t0 + .seconds(6)
        m.recordFailure(try ticket(m.decide(at: probeTime)), at: probeTime)
        #expect(m.state == .open(until: probeTime + .seconds(5)))
        #expect(m.decide(at: probeTime + .seconds(1)) == .reject(retryAfter: .seconds(4)))
    }

    @Test func abandonedProbeFreesTheSlot() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 1, coolDown: .seconds(1)))
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        let probe = try ticket(m.decide(at: t0 + .seconds(1)))
        m.recordAbandoned(probe)
        #expect(m.state == .halfOpen(probeInFlight: false))
        #expect(try ticket(m.decide(at: t0 + .seconds(1))).isProbe)
    }

    @Test func outcomesFromBeforeAStateChangeAreIgnored() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 2, coolDown: .seconds(5)))
        let slow = try ticket(m.decide(at: t0))          // starts while closed
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        #expect(m.state == .open(until: t0 + .seconds(5)))
        m.recordSuccess(slow, at: t0 + .seconds(1))       // finishes late: must not close the circuit
        #expect(m.state == .open(until: t0 + .seconds(5)))
        let probe = try ticket(m.decide(at: t0 + .seconds(5)))
        m.recordSuccess(slow, at: t0 + .seconds(5))
        #expect(m.state == .halfOpen(probeInFlight: true))
        m.recordSuccess(probe, at: t0 + .seconds(5))
        #expect(m.state == .closed)
    }

    @Test func failureRatioOpensOnlyAfterTheMinimumNumberOfCalls() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 0, failureRatio: 0.5, window: 10,
                                                                   minimumCalls: 6, coolDown: .seconds(1)))
        // Alternating outcomes: never 2 failures in a row, ratio 50% once 6 calls are in.
        for i in 0..<5 {
            let t = try ticket(m.decide(at: t0))
            if i % 2 == 0 { m.recordFailure(t, at: t0) } else { m.recordSuccess(t, at: t0) }
        }
        #expect(m.state == .closed, "3 of 5 failed but fewer than 6 calls")
        m.recordSuccess(try ticket(m.decide(at: t0)), at: t0)
        #expect(m.state == .closed, "3 of 6 failed, but the trip is checked on a failure")
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        #expect(m.state == .open(until: t0 + .seconds(1)), "4 of 7 failed")
    }

    @Test func ratioWindowForgetsOldFailures() throws {
        var m = CircuitBreakerMachine(policy: CircuitBreakerPolicy(consecutiveFailures: 0, failureRatio: 0.5, window: 4,
                                                                   minimumCalls: 4, coolDown: .seconds(1)))
        for _ in 0..<1 { m.recordFailure(try ticket(m.decide(at: t0)), at: t0) }
        for _ in 0..<4 { m.recordSuccess(try ticket(m.decide(at: t0)), at: t0) }
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        #expect(m.state == .closed, "window holds S S S F: 25%")
        m.recordFailure(try ticket(m.decide(at: t0)), at: t0)
        #expect(m.state == .open(until: t0 + .seconds(1)), "window holds S S F F: 50%")
    }
}

@Suite struct CircuitBreakerCallTests {
    @Test func failsFastWithoutCallingWhileOpenThenProbesAfterCoolDown() async throws {
        let clock = ManualClock()
        let breaker = CircuitBreaker(name: "users", policy: CircuitBreakerPolicy(consecutiveFailures: 2, coolDown: .seconds(30)),
                                     now: { clock.now })
        let calls = Mutex(0)
        for _ in 0..<2 {
            await #expect(throws: Boom()) { try await breaker.call(timeout: .seconds(5)) { calls.withLock { $0 += 1 }; throw Boom() } }
        }
        await #expect(throws: CircuitBreakerError.open(name: "users", retryAfter: .seconds(30))) {
            try await breaker.call(timeout: .seconds(5)) { calls.withLock { $0 += 1 }; return 1 }
        }
        #expect(calls.withLock { $0 } == 2, "the open circuit did not call the operation")
        clock.advance(.seconds(30))
        let value = try await breaker.call(timeout: .seconds(5)) { calls.withLock { $0 += 1 }; return 42 }
        #expect(value == 42)
        #expect(breaker.state == .closed)
    }

    @Test func timeoutCancelsTheOperationAndCountsAsFailure() async throws {
        let breaker = CircuitBreaker(name: "slow", policy: CircuitBreakerPolicy(consecutiveFailures: 1, coolDown: .seconds(60)))
        await #expect(throws: CircuitBreakerError.timedOut(name: "slow", after: .milliseconds(20))) {
            try await breaker.call(timeout: .milliseconds(20)) {
                try await Task.sleep(for: .seconds(600))
                return 0
            }
        }
        guard case .open = breaker.state else { Issue.record("expected open, got \(breaker.state)"); return }
    }

    @Test func errorsThatShowTheCalleeIsUpDoNotTripIt() async throws {
        let breaker = CircuitBreaker(name: "users", policy: CircuitBreakerPolicy(consecutiveFailures: 1),
                                     isFailure: { !($0 is NotFound) })
        for _ in 0..<5 {
            await #expect(throws: NotFound.self) { try await breaker.call(timeout: .seconds(5)) { throw NotFound() } }
        }
        #expect(breaker.state == .closed)
    }

    @Test func optionalResultsPassThrough() async throws {
        let breaker = CircuitBreaker(name: "x")
        let value: Int? = try await breaker.call(timeout: .seconds(5)) { nil }
        #expect(value == nil)
        #expect(breaker.state == .closed)
    }
}
