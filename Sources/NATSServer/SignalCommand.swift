// `nats-server --signal <command>[=<pid|pidfile>]`: send a signal to a running broker, as
// nats-server 2.9.10 does (`server/signal.go`).

import Foundation
import Glibc

/// A `--signal` request from the command line.
public struct SignalCommand: Equatable, Sendable {
    /// The command as given: `stop`, `quit`, `term`, `reload`, `reopen` or `ldm`.
    public let command: String
    /// The signal the command stands for (`stop` SIGKILL, `quit` SIGINT, `term` SIGTERM,
    /// `reload` SIGHUP, `reopen` SIGUSR1, `ldm` SIGUSR2).
    public let signal: Int32
    /// The text after `=`: a pid or a pid file; nil to look for the one running nats-server.
    public let target: String?

    /// Parses `command[=pid|pidfile]`.
    /// - Throws: ``CommandLineError`` for an unknown command (`unknown signal "foo"`).
    public init(parsing text: String) throws(CommandLineError) {
        var command = text
        var target: String?
        if let equals = text.firstIndex(of: "=") {
            command = String(text[..<equals])
            target = String(text[text.index(after: equals)...])
        }
        guard let signal = Self.signals[command] else { throw CommandLineError("unknown signal \"\(command)\"") }
        self.command = command
        self.signal = signal
        self.target = target
    }

    static let signals: [String: Int32] = [
        "stop": SIGKILL, "quit": SIGINT, "term": SIGTERM, "reload": SIGHUP, "reopen": SIGUSR1, "ldm": SIGUSR2,
    ]

    /// Resolves the target process and sends the signal.
    /// - Parameter executableName: the process name to look for when no pid was given.
    /// - Returns: the pid signalled.
    /// - Throws: ``CommandLineError`` when the pid (or pid file) is not valid, no or several
    ///   matching processes run, or `kill(2)` fails.
    @discardableResult
    public func send(executableName: String = "nats-server") throws(CommandLineError) -> pid_t {
        let pid = try resolvePID(executableName: executableName)
        if kill(pid, signal) != 0 {
            let code = errno
            throw CommandLineError(code == ESRCH ? "no such process" : String(cString: strerror(code)))
        }
        return pid
    }

    private func resolvePID(executableName: String) throws(CommandLineError) -> pid_t {
        guard let target, !target.isEmpty else {
            let running = Self.processes(named: executableName).filter { $0 != getpid() }
            if running.isEmpty { throw CommandLineError("no \(executableName) processes running") }
            if running.count > 1 {
                throw CommandLineError("multiple \(executableName) processes running:\n"
                    + running.map(String.init).joined(separator: "\n"))
            }
            return running[0]
        }
        // A number is a pid; anything else is a pid file (nats-server tries the file first).
        var text = target
        if let contents = try? String(contentsOfFile: target, encoding: .utf8) {
            text = contents.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let pid = pid_t(text), pid > 0 else { throw CommandLineError("invalid pid: \(text)") }
        return pid
    }

    /// Pids whose `/proc/<pid>/comm` is `name` (truncated to 15 bytes as the kernel does).
    static func processes(named name: String) -> [pid_t] {
        let comm = String(name.utf8.prefix(15)) ?? name
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var pids: [pid_t] = []
        for entry in entries {
            guard let pid = pid_t(entry) else { continue }
            guard let text = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8) else { continue }
            if text.trimmingCharacters(in: .newlines) == comm { pids.append(pid) }
        }
        return pids.sorted()
    }
}
