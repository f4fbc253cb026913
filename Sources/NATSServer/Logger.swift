// Logger: nats-server's line format, `[pid] 2006/01/02 15:04:05.000000 [INF] message`.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Writes log lines in nats-server's format to standard error or a file.
///
/// Each line is formatted first and then handed to the kernel in one `write`, so lines from
/// different threads never interleave and no lock is held across the syscall.
public final class Logger: Sendable {
    /// Severity labels, as nats-server prints them.
    public enum Level: String, Sendable {
        case fatal = "FTL", error = "ERR", warning = "WRN", info = "INF", debug = "DBG", trace = "TRC"
    }

    private let fd: Int32
    private let ownsFD: Bool
    /// The log file (`-l`), or nil when logging to standard error or disabled. A reload may
    /// move it to another path.
    private let path: Mutex<String?>
    private let pidPrefix: String
    private let timestampFlag: Atomic<Bool>
    private let debugFlag: Atomic<Bool>
    private let traceFlag: Atomic<Bool>
    /// Whether `debug` lines are written (`-D`).
    public var debugEnabled: Bool { debugFlag.load(ordering: .relaxed) }
    /// Whether `trace` lines are written (`-V`).
    public var traceEnabled: Bool { traceFlag.load(ordering: .relaxed) }
    private let enabled: Bool

    /// A logger that discards everything (embedding in tests).
    public static let disabled = Logger(fd: -1, ownsFD: false, timestamps: false, debug: false, trace: false, enabled: false)

    private init(fd: Int32, ownsFD: Bool, path: String? = nil, timestamps: Bool, debug: Bool, trace: Bool, enabled: Bool) {
        self.fd = fd
        self.ownsFD = ownsFD
        self.path = Mutex(path)
        self.pidPrefix = "[\(getpid())] "
        self.timestampFlag = Atomic(timestamps)
        self.debugFlag = Atomic(debug && enabled)
        self.traceFlag = Atomic(trace && enabled)
        self.enabled = enabled
    }

    /// Applies reloaded logging options at once: `debug`, `trace`, `logtime`, and a changed
    /// `logfile` path when already logging to a file (the descriptor number stays, as in
    /// ``reopen()``). Switching between standard error and a file needs a restart.
    /// - Throws: ``ServerStartError/logFile(path:errno:)`` when the new file cannot be opened;
    ///   the flags are applied regardless and the old file stays in use.
    public func apply(_ options: Options) throws(ServerStartError) {
        guard enabled else { return }
        debugFlag.store(options.debug, ordering: .relaxed)
        traceFlag.store(options.trace, ordering: .relaxed)
        timestampFlag.store(options.logTime, ordering: .relaxed)
        guard ownsFD, let newPath = options.logFile, newPath != path.withLock({ $0 }) else { return }
        let newFD = open(newPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard newFD >= 0 else { throw ServerStartError.logFile(path: newPath, errno: errno) }
        defer { close(newFD) }
        if dup2(newFD, fd) < 0 { throw ServerStartError.logFile(path: newPath, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        path.withLock { $0 = newPath }
    }

    /// Creates the logger `options` describe: disabled, standard error, or appending to `logFile`.
    /// - Throws: ``ServerStartError/logFile(path:errno:)`` when the log file cannot be opened.
    public convenience init(options: Options) throws(ServerStartError) {
        if options.noLog {
            self.init(fd: -1, ownsFD: false, timestamps: false, debug: false, trace: false, enabled: false)
        } else if let path = options.logFile {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw ServerStartError.logFile(path: path, errno: errno) }
            self.init(fd: fd, ownsFD: true, path: path, timestamps: options.logTime, debug: options.debug,
                      trace: options.trace, enabled: true)
        } else {
            self.init(fd: 2, ownsFD: false, timestamps: options.logTime, debug: options.debug,
                      trace: options.trace, enabled: true)
        }
    }

    /// Reopens the log file at its path (SIGUSR1, after log rotation moved it away): later lines
    /// go to a new file there. The descriptor number stays the same (`dup2`), so concurrent
    /// writers never see a closed descriptor. Logs "File log re-opened", or that it was ignored
    /// when not logging to a file.
    /// - Throws: ``ServerStartError/logFile(path:errno:)`` when the file cannot be opened; the
    ///   old one stays in use.
    public func reopen() throws(ServerStartError) {
        guard let path = path.withLock({ $0 }), ownsFD else {
            notice("File log re-open ignored, not a file logger")
            return
        }
        let newFD = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard newFD >= 0 else { throw ServerStartError.logFile(path: path, errno: errno) }
        defer { close(newFD) }
        if dup2(newFD, fd) < 0 { throw ServerStartError.logFile(path: path, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        notice("File log re-opened")
    }

    deinit {
        if ownsFD { close(fd) }
    }

    /// Writes an informational line.
    public func notice(_ message: @autoclosure () -> String) { log(.info, message()) }
    /// Writes a warning line.
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    /// Writes an error line.
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    /// Writes a fatal-error line (the caller then exits).
    public func fatal(_ message: @autoclosure () -> String) { log(.fatal, message()) }
    /// Writes a debug line when `-D` is on.
    public func debug(_ message: @autoclosure () -> String) {
        if debugEnabled { log(.debug, message()) }
    }
    /// Writes a trace line when `-V` is on.
    public func trace(_ message: @autoclosure () -> String) {
        if traceEnabled { log(.trace, message()) }
    }

    /// Writes one line at `level`.
    public func log(_ level: Level, _ message: String) {
        guard enabled else { return }
        var line: [UInt8] = []
        line.reserveCapacity(64 + message.utf8.count)
        line.append(contentsOf: pidPrefix.utf8)
        if timestampFlag.load(ordering: .relaxed) { Logger.appendTimestamp(to: &line) }
        line.append(UInt8(ascii: "["))
        line.append(contentsOf: level.rawValue.utf8)
        line.append(contentsOf: "] ".utf8)
        line.append(contentsOf: message.utf8)
        line.append(UInt8(ascii: "\n"))
        line.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    /// Appends `2006/01/02 15:04:05.000000 ` in local time.
    static func appendTimestamp(to line: inout [UInt8]) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        func pad(_ value: Int, _ width: Int) {
            var digits: [UInt8] = []
            var rest = value
            for _ in 0..<width {
                digits.append(UInt8(truncatingIfNeeded: rest % 10) + 48)
                rest /= 10
            }
            line.append(contentsOf: digits.reversed())
        }
        pad(Int(parts.tm_year) + 1900, 4); line.append(UInt8(ascii: "/"))
        pad(Int(parts.tm_mon) + 1, 2); line.append(UInt8(ascii: "/"))
        pad(Int(parts.tm_mday), 2); line.append(UInt8(ascii: " "))
        pad(Int(parts.tm_hour), 2); line.append(UInt8(ascii: ":"))
        pad(Int(parts.tm_min), 2); line.append(UInt8(ascii: ":"))
        pad(Int(parts.tm_sec), 2); line.append(UInt8(ascii: "."))
        pad(Int(now.tv_nsec) / 1000, 6); line.append(UInt8(ascii: " "))
    }
}
