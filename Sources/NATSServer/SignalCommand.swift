// `nats-server --signal <command>[=<pid|pidfile>]`: send a signal to a running broker, as
// nats-server 2.9.10 does (`server/signal.go`).

import Glibc
import NATSConfig

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
        if let contents = Self.readFile(target) {
            var trimmed = Substring(contents)
            while trimmed.first?.isWhitespace == true { trimmed.removeFirst() }
            while trimmed.last?.isWhitespace == true { trimmed.removeLast() }
            text = String(trimmed)
        }
        guard let pid = pid_t(text), pid > 0 else { throw CommandLineError("invalid pid: \(text)") }
        return pid
    }

    /// Pids whose `/proc/<pid>/comm` is `name` (truncated to 15 bytes as the kernel does).
    static func processes(named name: String) -> [pid_t] {
        let comm = String(name.utf8.prefix(15)) ?? name
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [pid_t] = []
        while let entry = readdir(directory) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(entryName) else { continue }
            guard let text = readFile("/proc/\(entryName)/comm") else { continue }
            if text.hasSuffix("\n") ? text.dropLast() == comm : text == comm { pids.append(pid) }
        }
        return pids.sorted()
    }

    /// The contents of a small file (a pid file, a `/proc` entry), or nil when it cannot be read.
    static func readFile(_ path: String) -> String? {
        guard let bytes = try? HostFiles.read(path, limit: 1 << 20) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
