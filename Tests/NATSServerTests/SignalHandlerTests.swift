// SignalHandler in-process: which action each signal takes, the signal mask, SIGHUP reloading
// from the same command line, SIGUSR2 starting lame duck mode once, and the sigwait loop ending
// on SIGTERM. The binary's end-to-end handling is in SignalTests.

import EventLoop
import Foundation
import Glibc
import Synchronization
import Testing
@testable import NATSServer

@Suite("Signal handler")
struct SignalHandlerTests {
    /// A server started from `arguments` as main does, with its handler.
    private final class Running {
        let server: Server
        let handler: SignalHandler
        /// How many times lame duck mode finished (the handler's `afterLameDuck`).
        let finished = Counter()

        init(_ arguments: [String]) throws {
            guard case .run(let options) = try ServerCommandLine.parse(arguments) else {
                throw HarnessError("not a run command line")
            }
            let logger = try Logger(options: options)
            server = Server(options: options, logger: logger)
            try server.start()
            handler = SignalHandler(server: server, logger: logger, arguments: arguments, processFiles: nil,
                                    afterLameDuck: { [finished] in finished.increment() })
        }

        deinit { server.shutdown() }
    }

    /// A scratch directory removed on deinit.
    private final class Directory {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("signals-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    @Test func eachTrappedSignalHasItsAction() {
        #expect(SignalAction(signal: SIGINT) == .stop)
        #expect(SignalAction(signal: SIGTERM) == .stop)
        #expect(SignalAction(signal: SIGHUP) == .reload)
        #expect(SignalAction(signal: SIGUSR1) == .reopenLog)
        #expect(SignalAction(signal: SIGUSR2) == .lameDuck)
        #expect(SignalAction(signal: SIGPIPE) == nil)
        #expect(SignalHandler.trappedSignals.allSatisfy { SignalAction(signal: $0) != nil })
    }

    @Test func blockingTheTrappedSignalsMasksExactlyThemInTheCallingThread() throws {
        let masked = Mutex<[Int32: Bool]?>(nil)
        let thread = spawnThread(name: "mask-test") {
            // Start from nothing blocked (a thread inherits its creator's mask).
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            SignalHandler.blockTrappedSignals()
            var current = sigset_t()
            pthread_sigmask(SIG_BLOCK, nil, &current)
            var seen: [Int32: Bool] = [:]
            for signal in SignalHandler.trappedSignals + [SIGPIPE, SIGQUIT] {
                seen[signal] = sigismember(&current, signal) == 1
            }
            masked.withLock { $0 = seen }
        }
        pthread_join(thread, nil)
        let seen = try #require(masked.withLock { $0 })
        for signal in SignalHandler.trappedSignals { #expect(seen[signal] == true, "signal \(signal)") }
        #expect(seen[SIGQUIT] == false)
        #expect(seen[SIGPIPE] == false)
    }

    @Test func sighupReloadsFromTheSameCommandLine() throws {
        let directory = try Directory()
        let config = directory.path + "/r.conf"
        try "max_payload: 4096\n".write(toFile: config, atomically: false, encoding: .utf8)
        let running = try Running(["-a", "127.0.0.1", "-p", "-1", "-c", config, "-l", directory.path + "/r.log"])
        #expect(try RawClient(port: running.server.port).readInfo().json["max_payload"] as? Int == 4096)

        try "max_payload: 2048\n".write(toFile: config, atomically: false, encoding: .utf8)
        #expect(running.handler.handle(SIGHUP) == .reload)
        #expect(try RawClient(port: running.server.port).readInfo().json["max_payload"] as? Int == 2048)

        // A file that no longer loads keeps the running configuration.
        try "max_payload: {\n".write(toFile: config, atomically: false, encoding: .utf8)
        #expect(running.handler.handle(SIGHUP) == .reload)
        #expect(try RawClient(port: running.server.port).readInfo().json["max_payload"] as? Int == 2048)
    }

    @Test func sigusr2StartsLameDuckModeOnce() throws {
        let directory = try Directory()
        let config = directory.path + "/l.conf"
        // The configuration file's minimum lame_duck_duration is 30 s; no client means no wait.
        try "lame_duck_grace_period: \"10ms\"\n".write(toFile: config, atomically: false, encoding: .utf8)
        let running = try Running(["-a", "127.0.0.1", "-p", "-1", "-c", config, "-l", directory.path + "/l.log"])
        let port = running.server.port
        #expect(running.handler.handle(SIGUSR2) == .lameDuck)
        // A second SIGUSR2 starts nothing: its thread would finish at once, before the first.
        #expect(running.handler.handle(SIGUSR2) == .lameDuck)
        #expect(eventually(timeout: 10) { running.finished.value >= 1 })
        #expect(running.finished.value == 1)
        // Lame duck mode ends in a shutdown.
        #expect(throws: (any Error).self) { _ = try RawClient(port: port) }
    }

    @Test func theLoopHandlesSignalsUntilSigtermAndThenTheServerIsDown() throws {
        let directory = try Directory()
        let running = try Running(["-a", "127.0.0.1", "-p", "-1", "-l", directory.path + "/s.log"])
        let port = running.server.port
        let blocked = Counter()
        let returned = Counter()
        let handler = running.handler
        let thread = spawnThread(name: "sigwait-test") {
            SignalHandler.blockTrappedSignals()
            blocked.increment()
            handler.run()
            returned.increment()
        }
        // Only once the thread has them blocked: SIGTERM's default action ends the process.
        try #require(eventually { blocked.value == 1 })
        #expect(pthread_kill(thread, SIGUSR1) == 0)
        #expect(pthread_kill(thread, SIGHUP) == 0)
        _ = try RawClient(port: port).readInfo()
        #expect(returned.value == 0)
        #expect(pthread_kill(thread, SIGTERM) == 0)
        pthread_join(thread, nil)
        #expect(returned.value == 1)
        #expect(throws: (any Error).self) { _ = try RawClient(port: port) }
    }
}

/// A counter shared between a test and the threads it starts.
private final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.wrappingAdd(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
