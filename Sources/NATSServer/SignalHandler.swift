// SignalHandler: what a running broker does on a signal, as nats-server 2.9.10 does
// (`server/signal.go`): SIGINT and SIGTERM stop it, SIGHUP reloads the configuration, SIGUSR1
// reopens the log file, SIGUSR2 enters lame duck mode. The signals are blocked in every thread and
// taken one at a time by sigwait, so no code runs in signal context.

import EventLoop
import Glibc
import Synchronization

/// What the broker does for a signal it traps.
public enum SignalAction: Equatable, Sendable {
    /// SIGINT, SIGTERM: shut down and exit.
    case stop
    /// SIGHUP: read the configuration again and apply it.
    case reload
    /// SIGUSR1: reopen the log file (after log rotation).
    case reopenLog
    /// SIGUSR2: enter lame duck mode, then exit.
    case lameDuck

    /// The action for `signal`, or nil for a signal the broker does not trap.
    public init?(signal: Int32) {
        switch signal {
        case SIGINT, SIGTERM: self = .stop
        case SIGHUP: self = .reload
        case SIGUSR1: self = .reopenLog
        case SIGUSR2: self = .lameDuck
        default: return nil
        }
    }
}

/// Handles the trapped signals of a running broker. Create it after the server started; call
/// ``blockTrappedSignals()`` before any thread starts, then ``run()`` on the main thread.
public final class SignalHandler: Sendable {
    /// The signals the broker traps.
    public static let trappedSignals: [Int32] = [SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP]

    private let server: Server
    private let logger: Logger
    private let arguments: [String]
    private let processFiles: ProcessFiles?
    private let afterLameDuck: @Sendable () -> Void
    private let lameDuckStarted = Atomic<Bool>(false)

    /// - Parameters:
    ///   - arguments: the command line without the program name; SIGHUP parses it again, so flags
    ///     still win over the configuration file.
    ///   - processFiles: the pid and ports files, removed when the broker stops.
    ///   - afterLameDuck: runs on the lame duck thread once lame duck mode has shut the server
    ///     down and the process files are removed; exits the process by default.
    public init(server: Server, logger: Logger, arguments: [String], processFiles: ProcessFiles?,
                afterLameDuck: @escaping @Sendable () -> Void = { Glibc.exit(0) }) {
        self.server = server
        self.logger = logger
        self.arguments = arguments
        self.processFiles = processFiles
        self.afterLameDuck = afterLameDuck
    }

    /// Blocks the trapped signals in the calling thread, and so in every thread it starts
    /// afterwards: call it before any thread starts, so that only ``run()`` receives them.
    public static func blockTrappedSignals() {
        var set = trappedSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    private static func trappedSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in trappedSignals { sigaddset(&set, signal) }
        return set
    }

    /// Waits for trapped signals and handles each, until one stops the broker. The calling thread
    /// must have them blocked (``blockTrappedSignals()``).
    public func run() {
        var set = Self.trappedSet()
        while true {
            var received: Int32 = 0
            guard sigwait(&set, &received) == 0 else { continue }
            if handle(received) == .stop { return }
        }
    }

    /// Handles one signal.
    /// - Returns: its action (nil for a signal not trapped, which is ignored); after `.stop` the
    ///   server is shut down and the process files removed.
    @discardableResult
    public func handle(_ signal: Int32) -> SignalAction? {
        guard let action = SignalAction(signal: signal) else { return nil }
        switch action {
        case .reopenLog:
            logger.debug("Trapped \"user defined signal 1\" signal")
            do {
                try logger.reopen()
            } catch {
                logger.error("Error re-opening log file: \(error.description)")
            }
        case .reload:
            logger.debug("Trapped \"hangup\" signal")
            reload()
        case .lameDuck:
            logger.debug("Trapped \"user defined signal 2\" signal")
            let (started, _) = lameDuckStarted.compareExchange(expected: false, desired: true, ordering: .relaxed)
            if started { startLameDuckMode() }
        case .stop:
            logger.debug("Trapped \"\(signal == SIGINT ? "interrupt" : "terminated")\" signal")
            server.shutdown()
            processFiles?.remove()
        }
        return action
    }

    /// Reads the configuration again (the same command line) and applies it. A file that does not
    /// load, or a change that needs a restart, is logged and the running configuration kept.
    private func reload() {
        let fresh: Options
        do {
            guard case .run(let parsed) = try ServerCommandLine.parse(arguments) else { return }
            fresh = parsed
        } catch {
            logger.error("Failed to reload server configuration: \(error.message)")
            return
        }
        do {
            try server.reload(fresh)
        } catch {
            logger.error("Failed to reload server configuration: \(error.description)")
        }
    }

    /// Lame duck mode takes minutes; it runs on its own thread so SIGINT/SIGTERM still stop the
    /// server meanwhile.
    private func startLameDuckMode() {
        let thread = spawnThread(name: "lame-duck") { [server, processFiles, afterLameDuck] in
            server.enterLameDuckMode()
            processFiles?.remove()
            afterLameDuck()
        }
        pthread_detach(thread)
    }
}
