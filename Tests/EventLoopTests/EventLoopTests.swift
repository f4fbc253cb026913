import CSystem
import Dispatch
import EventLoop
import Glibc
import Synchronization
import Testing

@Suite struct EventLoopTaskTests {
    @Test func executeFromManyThreadsRunsEveryTaskOnceInPerThreadOrder() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let producers = 8
        let perProducer = 20_000
        let seen = Mutex<[[Int]]>(Array(repeating: [], count: producers))
        let offLoop = Atomic<Int>(0)
        let threads = (0..<producers).map { p in
            TestThread {
                for i in 0..<perProducer {
                    loop.execute {
                        if !loop.isCurrent { offLoop.add(1, ordering: .relaxed) }
                        seen.withLock { $0[p].append(i) }
                    }
                }
            }
        }
        threads.forEach { $0.start() }
        let total = producers * perProducer
        #expect(eventually { seen.withLock { $0.reduce(0) { $0 + $1.count } } == total })
        threads.forEach { $0.join() }
        // A barrier task: everything queued before it has run, so no late duplicates can appear.
        #expect(onLoop(loop) { true } == true)
        let lists = seen.withLock { $0 }
        for p in 0..<producers {
            #expect(lists[p] == Array(0..<perProducer), "producer \(p) saw its tasks out of order or duplicated")
        }
        #expect(offLoop.load(ordering: .relaxed) == 0)
    }

    @Test func wakeUpsAreCoalescedWhileTheLoopIsBusy() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        loop.execute {
            entered.signal()
            release.wait()
        }
        #expect(entered.wait(timeout: .now() + 20) == .success)
        let before = loop.wakeUpsSent
        let ran = Atomic<Int>(0)
        for _ in 0..<1000 { loop.execute { ran.add(1, ordering: .relaxed) } }
        let during = loop.wakeUpsSent - before
        release.signal()
        #expect(eventually { ran.load(ordering: .relaxed) == 1000 })
        // The blocked loop cannot clear the pending flag, so 1000 tasks cost at most one eventfd write.
        #expect(during <= 1)
    }

    @Test func executeFromTheLoopThreadRunsWithoutAnExternalWakeUp() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let order = Recorder()
        let extraWakeUps = Atomic<Int>(-1)
        loop.execute {
            order.add("outer")
            let before = loop.wakeUpsSent
            loop.execute { order.add("inner-1") }
            loop.execute { order.add("inner-2") }
            extraWakeUps.store(loop.wakeUpsSent - before, ordering: .relaxed)
        }
        #expect(eventually { order.snapshot.count == 3 })
        #expect(order.snapshot == ["outer", "inner-1", "inner-2"])
        #expect(extraWakeUps.load(ordering: .relaxed) == 0)
    }

    @Test func isCurrentIsTrueOnlyOnTheLoopThread() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        #expect(!loop.isCurrent)
        #expect(onLoop(loop) { loop.isCurrent } == true)
    }

    @Test func stopReturnsFromRunAndTheLoopCanRunAgain() throws {
        let loop = try EventLoop(name: "restart")
        let runs = Atomic<Int>(0)
        for round in 0..<2 {
            let thread = TestThread {
                loop.run()
                runs.add(1, ordering: .relaxed)
            }
            thread.start()
            #expect(onLoop(loop) { loop.isCurrent } == true)
            loop.stop()
            thread.join()
            #expect(runs.load(ordering: .relaxed) == round + 1)
        }
    }

    @Test func batchEndHooksRunAfterTheTasksOfABatch() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let log = Recorder()
        let installed = onLoop(loop) { () -> Bool in
            loop.onBatchEnd { log.add("hook") }
            return true
        }
        #expect(installed == true)
        loop.execute { log.add("task") }
        #expect(eventually { log.snapshot.contains("task") && log.snapshot.last == "hook" })
        let events = log.snapshot
        let taskIndex = try #require(events.firstIndex(of: "task"))
        #expect(events[taskIndex...].contains("hook"))
    }
}

@Suite struct EventLoopTimerTests {
    @Test func timersFireInDeadlineOrder() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let fired = Recorder()
        let delaysMs = [90, 10, 50, 30, 70, 10, 0]
        _ = onLoop(loop) {
            for (index, ms) in delaysMs.enumerated() {
                loop.schedule(after: .milliseconds(ms)) { fired.add("\(ms)#\(index)") }
            }
            return true
        }
        #expect(eventually { fired.snapshot.count == delaysMs.count })
        // Sorted by deadline; equal deadlines keep scheduling order.
        #expect(fired.snapshot == ["0#6", "10#1", "10#5", "30#3", "50#2", "70#4", "90#0"])
    }

    @Test func cancelledTimerNeverFires() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let fired = Recorder()
        let cancelled = onLoop(loop) { () -> Bool in
            let doomed = loop.schedule(after: .milliseconds(20)) { fired.add("cancelled") }
            loop.schedule(after: .milliseconds(60)) { fired.add("kept") }
            let first = loop.cancel(doomed)
            let second = loop.cancel(doomed)
            return first && !second
        }
        #expect(cancelled == true)
        #expect(eventually { fired.snapshot.contains("kept") })
        #expect(fired.snapshot == ["kept"])
        #expect(onLoop(loop) { loop.pendingTimerCount } == 0)
    }

    @Test func anEarlierTimerRearmsTheTimerfd() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let fired = Recorder()
        let late = onLoop(loop) { () -> TimerID in
            let late = loop.schedule(after: .seconds(3600)) { fired.add("late") }
            loop.schedule(after: .milliseconds(20)) { fired.add("early") }
            return late
        }
        let lateID = try #require(late)
        // Had the timerfd stayed armed for the hour, this would time out.
        #expect(eventually(timeout: .seconds(20)) { fired.snapshot == ["early"] })
        #expect(onLoop(loop) { loop.cancel(lateID) } == true)
        #expect(fired.snapshot == ["early"])
    }

    @Test func cancellingTheEarliestTimerStillFiresTheNextOne() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let fired = Recorder()
        _ = onLoop(loop) {
            let first = loop.schedule(after: .milliseconds(5)) { fired.add("first") }
            loop.schedule(after: .milliseconds(40)) { fired.add("second") }
            return loop.cancel(first)
        }
        #expect(eventually { fired.snapshot == ["second"] })
    }

    @Test func aTimerScheduledFromATimerCallbackFires() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let fired = Recorder()
        _ = onLoop(loop) {
            loop.schedule(after: .milliseconds(1)) {
                fired.add("outer")
                loop.schedule(after: .zero) { fired.add("inner") }
            }
            return true
        }
        #expect(eventually { fired.snapshot == ["outer", "inner"] })
    }
}

@Suite struct EventLoopGroupTests {
    @Test func countsCPUsInARawAffinityMask() {
        #expect(EventLoopGroup.cpuCount(affinityMask: [UInt8]()) == 0)
        #expect(EventLoopGroup.cpuCount(affinityMask: [0b0000_0001]) == 1)
        #expect(EventLoopGroup.cpuCount(affinityMask: [0b1011_0000, 0, 0x80, 0xFF]) == 12)
    }

    @Test func defaultLoopCountFollowsTheThreadAffinityMask() {
        // sched_setaffinity(0) changes only the calling thread, so do it on a private thread.
        let counts = Mutex<(before: Int, pinned: Int, group: Int)>((0, 0, 0))
        let thread = TestThread {
            let before = EventLoopGroup.availableCPUCount()
            var mask = [UInt8](repeating: 0, count: 128)
            mask[0] = 1 // CPU 0 only, like `taskset -c 0`
            let rc = mask.withUnsafeBytes { csys_sched_setaffinity_raw($0.baseAddress, UInt($0.count)) }
            precondition(rc == 0, "sched_setaffinity failed")
            let pinned = EventLoopGroup.availableCPUCount()
            let groupCount = (try? EventLoopGroup())?.loops.count ?? -1
            counts.withLock { $0 = (before, pinned, groupCount) }
        }
        thread.start()
        thread.join()
        let result = counts.withLock { $0 }
        #expect(result.before >= 1)
        #expect(result.pinned == 1)
        #expect(result.group == 1)
    }

    @Test func nextHandsOutLoopsRoundRobinAndEachRunsOnItsOwnThread() throws {
        let group = try EventLoopGroup(loopCount: 3)
        group.start()
        defer { group.shutdown() }
        #expect(group.loops.count == 3)
        let picked = (0..<6).map { _ in group.next() }
        for i in 0..<3 {
            #expect(picked[i] === picked[i + 3])
        }
        #expect(Set(picked.prefix(3).map { ObjectIdentifier($0) }).count == 3)
        for loop in group.loops {
            #expect(onLoop(loop) { loop.isCurrent && !group.loops.filter { $0 !== loop }.contains { $0.isCurrent } }
                == true)
        }
    }

    @Test func shutdownStopsAndJoinsEveryLoop() throws {
        let group = try EventLoopGroup(loopCount: 2)
        group.start()
        for loop in group.loops {
            #expect(onLoop(loop) { loop.isCurrent } == true)
        }
        group.shutdown()
        // After the join no loop thread is inside run(): a queued task stays queued.
        let ran = Atomic<Bool>(false)
        group.loops[0].execute { ran.store(true, ordering: .relaxed) }
        let didRun = ran.load(ordering: .relaxed)
        #expect(!didRun)
    }

    @Test func raisingTheDescriptorLimitNeverLowersIt() {
        let (old, new) = EventLoop.raiseFileDescriptorLimit()
        #expect(new >= old || new == -1)
        let (again, same) = EventLoop.raiseFileDescriptorLimit()
        #expect(again == new)
        #expect(same == new)
    }
}

/// Records its callbacks; on its first readable() it runs `onFirstRead` (loop thread only).
final class ProbeHandler: IOHandler, @unchecked Sendable {
    let name: String
    let log: Recorder
    var onFirstRead: (() -> Void)?

    init(name: String, log: Recorder) {
        self.name = name
        self.log = log
    }

    func readable() {
        log.add("\(name).readable")
        let action = onFirstRead
        onFirstRead = nil
        action?()
    }

    func writable() { log.add("\(name).writable") }
    func hangup() { log.add("\(name).hangup") }
}

@Suite struct EventLoopRegistrationTests {
    @Test func staleEventsForAReusedDescriptorAreDropped() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let log = Recorder()
        let outcome = onLoop(loop) { () -> [Int32] in
            // Two readable descriptors, so both events arrive in one epoll_wait batch.
            let (a, aPeer) = socketPair()
            let (b, bPeer) = socketPair()
            _ = [UInt8]([1]).withUnsafeBytes { IO.write(aPeer, $0) }
            _ = [UInt8]([1]).withUnsafeBytes { IO.write(bPeer, $0) }
            let ha = ProbeHandler(name: "A", log: log)
            let hb = ProbeHandler(name: "B", log: log)
            // Whichever runs first replaces the other's fd number with a fresh, idle socket and
            // registers a new handler there. The other's queued event is then stale.
            func replace(victim: Int32, own: Int32) -> () -> Void {
                return {
                    loop.deregister(fd: own)
                    loop.deregister(fd: victim)
                    let (fresh, freshPeer) = socketPair()
                    // dup2 closes `victim` and reuses its number atomically.
                    precondition(dup2(fresh, victim) == victim)
                    IO.close(fresh)
                    try? loop.register(fd: victim, interest: .readable, handler: ProbeHandler(name: "C", log: log))
                    log.add("replaced")
                    _ = freshPeer // kept open so C sees no EOF
                    loop.execute {
                        loop.deregister(fd: victim)
                        IO.close(victim)
                        IO.close(freshPeer)
                        IO.close(own)
                        log.add("cleanup")
                    }
                }
            }
            ha.onFirstRead = replace(victim: b, own: a)
            hb.onFirstRead = replace(victim: a, own: b)
            try? loop.register(fd: a, interest: .readable, handler: ha)
            try? loop.register(fd: b, interest: .readable, handler: hb)
            return [aPeer, bPeer]
        }
        let peers = try #require(outcome)
        #expect(eventually { log.snapshot.contains("cleanup") })
        let events = log.snapshot
        // Exactly one of A/B ran; the other's event (same fd number, now C's) reached nobody.
        #expect(events == ["A.readable", "replaced", "cleanup"] || events == ["B.readable", "replaced", "cleanup"])
        peers.forEach(IO.close)
    }

    @Test func errorsAndHangupsReachReadableWhenReadsAreOfInterest() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let log = Recorder()
        let (a, b) = socketPair()
        _ = onLoop(loop) { () -> Bool in
            let probe = ProbeHandler(name: "R", log: log)
            probe.onFirstRead = {
                loop.deregister(fd: a)
                IO.close(a)
            }
            return (try? loop.register(fd: a, interest: .readable, handler: probe)) != nil
        }
        IO.close(b)
        #expect(eventually { log.snapshot == ["R.readable"] })
    }

    @Test func hangupIsReportedWhenNothingIsOfInterest() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let log = Recorder()
        let (a, b) = socketPair()
        let registered = onLoop(loop) { () -> Bool in
            let probe = ProbeHandler(name: "H", log: log)
            return (try? loop.register(fd: a, interest: [], handler: probe)) != nil
        }
        #expect(registered == true)
        IO.close(b)
        #expect(eventually { log.snapshot.first == "H.hangup" })
        _ = onLoop(loop) { () -> Bool in
            loop.deregister(fd: a)
            IO.close(a)
            return true
        }
    }

    @Test func writableIsReportedOnlyWhileOfInterest() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let log = Recorder()
        let (a, b) = socketPair()
        defer { IO.close(b) }
        _ = onLoop(loop) { () -> Bool in
            (try? loop.register(fd: a, interest: .writable, handler: ProbeHandler(name: "W", log: log))) != nil
        }
        #expect(eventually { log.snapshot.contains("W.writable") })
        let count = onLoop(loop) { () -> Int in
            try? loop.setInterest(fd: a, [])
            return log.snapshot.count
        }
        // A barrier round trip: no writable callback after interest was dropped.
        #expect(onLoop(loop) { loop.interest(fd: a) } == Interest())
        #expect(onLoop(loop) { log.snapshot.count } == count)
        _ = onLoop(loop) { () -> Bool in
            loop.deregister(fd: a)
            IO.close(a)
            return true
        }
    }
}

/// Echoes every byte it reads back to its socket (loop thread only).
final class EchoHandler: IOHandler, @unchecked Sendable {
    let fd: Int32
    /// Told about each echo, so a busy poll may follow it.
    let loop: EventLoop?
    init(fd: Int32, loop: EventLoop? = nil) {
        self.fd = fd
        self.loop = loop
    }
    func readable() {
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let result = buffer.withUnsafeMutableBytes { IO.read(fd, into: $0) }
            guard case .bytes(let n) = result else { return }
            _ = buffer.withUnsafeBytes { IO.write(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            loop?.noteOutput()
        }
    }
    func writable() {}
    func hangup() {}
}

@Suite struct EventLoopBusyPollTests {
    /// Ping-pong of one byte with a blocking peer thread: every round trip must complete with
    /// busy polling on (the spin finds the reply, or gives up and sleeps), in order.
    @Test func roundTripsCompleteWithBusyPollingOn() throws {
        let group = try EventLoopGroup(loopCount: 1, busyPoll: .milliseconds(2))
        group.start()
        defer { group.shutdown() }
        let loop = group.loops[0]
        let (local, peer) = socketPair()
        defer { IO.close(peer) }
        let registered = onLoop(loop) { () -> Bool in
            (try? loop.register(fd: local, interest: .readable, handler: EchoHandler(fd: local, loop: loop))) != nil
        }
        #expect(registered == true)
        // The peer end blocks (bounded by SO_RCVTIMEO) so the test thread does not spin itself.
        var flags = fcntl(peer, F_GETFL)
        flags &= ~O_NONBLOCK
        _ = fcntl(peer, F_SETFL, flags)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var echoed: [UInt8] = []
        for i in 0..<500 {
            var byte = UInt8(truncatingIfNeeded: i)
            #expect(Glibc.write(peer, &byte, 1) == 1)
            var back: UInt8 = 0
            guard Glibc.read(peer, &back, 1) == 1 else { break }
            echoed.append(back)
        }
        #expect(echoed == (0..<500).map { UInt8(truncatingIfNeeded: $0) })
        let counts = loop.busyPollCounts
        #expect(counts.hits >= 0 && counts.misses >= 0 && counts.preempted >= 0)
        _ = onLoop(loop) { loop.deregister(fd: local); IO.close(local); return true }
    }

    /// An idle loop never spins: with no I/O, the spin counters stay where they are.
    @Test func anIdleLoopDoesNotSpin() throws {
        let group = try EventLoopGroup(loopCount: 1, busyPoll: .milliseconds(2))
        group.start()
        defer { group.shutdown() }
        let loop = group.loops[0]
        // Tasks and timers are not I/O: none of them starts a spin.
        for _ in 0..<20 { _ = onLoop(loop) { true } }
        let fired = Atomic<Bool>(false)
        _ = onLoop(loop) { loop.schedule(after: .milliseconds(5)) { fired.store(true, ordering: .relaxed) }; return true }
        #expect(eventually { fired.load(ordering: .relaxed) })
        let counts = loop.busyPollCounts
        #expect(counts.hits == 0 && counts.misses == 0)
    }

    @Test func busyPollingIsOffByDefault() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let (local, peer) = socketPair()
        defer { IO.close(peer) }
        _ = onLoop(loop) { (try? loop.register(fd: local, interest: .readable, handler: EchoHandler(fd: local))) != nil }
        for _ in 0..<50 {
            _ = [UInt8]([7]).withUnsafeBytes { IO.write(peer, $0) }
            var back: UInt8 = 0
            #expect(eventually { Glibc.read(peer, &back, 1) == 1 })
        }
        let counts = loop.busyPollCounts
        #expect(counts.hits == 0 && counts.misses == 0 && counts.preempted == 0)
        _ = onLoop(loop) { loop.deregister(fd: local); IO.close(local); return true }
    }
}
