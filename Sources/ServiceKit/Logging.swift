#if canImport(Glibc)
import Glibc
#endif
import Formats
import Synchronization

/// Log severity, lowest first (the swift-log levels).
public enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    /// From the most verbose (`trace`) to the most severe (`critical`).
    case trace, debug, info, notice, warning, error, critical

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    /// The lower-case name used in log lines and in `LOG_LEVEL`.
    public var description: String {
        switch self {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .notice: return "notice"
        case .warning: return "warning"
        case .error: return "error"
        case .critical: return "critical"
        }
    }

    /// Parses a level name (case-insensitive; `warn` is accepted for `warning`). Nil if unknown.
    public init?(name: String) {
        let lower = name.lowercased()
        if lower == "warn" { self = .warning; return }
        guard let level = LogLevel.allCases.first(where: { $0.description == lower }) else { return nil }
        self = level
    }
}

/// Where finished log lines go. Implementations must be thread-safe and write each line whole.
public protocol LogSink: Sendable {
    /// Writes one complete line (JSON object plus "\n").
    func write(line: [UInt8])
}

/// Writes lines to a file descriptor (stdout by default), one write(2) per line, serialised by a
/// mutex so concurrent lines never interleave.
public final class FileDescriptorLogSink: LogSink {
    /// The process's standard output.
    public static let standardOutput = FileDescriptorLogSink(fd: 1)
    /// The process's standard error.
    public static let standardError = FileDescriptorLogSink(fd: 2)

    private let fd: Int32
    private let lock = Mutex(())

    /// A sink on `fd` (not closed by the sink).
    public init(fd: Int32) { self.fd = fd }

    /// Writes `line` with write(2), retrying partial writes and EINTR; other errors drop the line
    /// (a logger has nowhere to report its own failure).
    public func write(line: [UInt8]) {
        lock.withLock { _ in
            line.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                    if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
                }
            }
        }
    }
}

/// Keeps lines in memory (tests, diagnostics).
public final class MemoryLogSink: LogSink {
    private let storage = Mutex<[String]>([])
    /// An empty sink.
    public init() {}
    /// Keeps `line` (without its newline).
    public func write(line: [UInt8]) {
        var text = String(decoding: line, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        storage.withLock { $0.append(text) }
    }
    /// Every line written so far, without the trailing newline.
    public var lines: [String] { storage.withLock { $0 } }
}

/// A structured logger: one JSON object per line with `time` (RFC 3339, UTC, microseconds),
/// `level`, `service`, `message`, `trace_id` (when set) and `fields` (when any).
///
/// A value type passed to whoever logs (never a global). Messages and fields are autoclosures,
/// evaluated only when the level is enabled.
///
/// ```swift
/// let log = ServiceLogger(service: "auth", level: .info)
/// log.info("user registered", ["user_id": .string(id)])
/// let traced = log.with(traceID: "4bf92f3577b34da6a3ce929d0e0e4736")
/// ```
public struct ServiceLogger: Sendable {
    /// The service name on every line.
    public var service: String
    /// Lines below this level are skipped (their message is never built).
    public var level: LogLevel
    /// The W3C trace id this logger's lines belong to, if any.
    public var traceID: String?
    /// Fields added to every line (a line's own fields win on a clash).
    public var fields: [String: JSONValue]
    private let sink: any LogSink
    private let now: @Sendable () -> (seconds: Int64, nanoseconds: Int)

    /// - Parameters:
    ///   - service: the `service` value of every line.
    ///   - level: the minimum level written.
    ///   - sink: where lines go (stdout by default).
    ///   - now: wall-clock time as Unix seconds and nanoseconds (injectable for tests).
    public init(service: String, level: LogLevel = .info, sink: any LogSink = FileDescriptorLogSink.standardOutput,
                now: @escaping @Sendable () -> (seconds: Int64, nanoseconds: Int) = ServiceLogger.systemTime) {
        self.service = service
        self.level = level
        self.traceID = nil
        self.fields = [:]
        self.sink = sink
        self.now = now
    }

    /// CLOCK_REALTIME.
    public static let systemTime: @Sendable () -> (seconds: Int64, nanoseconds: Int) = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (Int64(ts.tv_sec), Int(ts.tv_nsec))
    }

    /// A copy whose lines carry `traceID`.
    public func with(traceID: String?) -> ServiceLogger {
        var copy = self
        copy.traceID = traceID
        return copy
    }

    /// A copy whose lines carry `value` under `key`.
    public func with(field key: String, _ value: JSONValue) -> ServiceLogger {
        var copy = self
        copy.fields[key] = value
        return copy
    }

    /// True when lines at `level` are written.
    public func isEnabled(_ level: LogLevel) -> Bool { level >= self.level }

    /// Writes one line at `level` if enabled.
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String,
                    _ fields: @autoclosure () -> [String: JSONValue] = [:]) {
        guard isEnabled(level) else { return }
        var merged = self.fields
        for (k, v) in fields() { merged[k] = v }
        let t = now()
        var out = [UInt8]()
        out.reserveCapacity(160)
        out.append(contentsOf: #"{"time":""#.utf8)
        RFC3339.append(UnixTime(seconds: t.seconds, nanoseconds: Int32(clamping: t.nanoseconds)), fractionDigits: 6, to: &out)
        out.append(contentsOf: #"","level":""#.utf8)
        out.append(contentsOf: level.description.utf8)
        out.append(contentsOf: #"","service":"#.utf8)
        JSONWriter.appendQuoted(service, to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriter.appendQuoted(message(), to: &out)
        if let traceID {
            out.append(contentsOf: #","trace_id":"#.utf8)
            JSONWriter.appendQuoted(traceID, to: &out)
        }
        if !merged.isEmpty {
            out.append(contentsOf: #","fields":"#.utf8)
            JSONValue.object(merged).write(to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        sink.write(line: out)
    }

    /// Logs at `trace` (see ``log(_:_:_:)``).
    public func trace(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.trace, message(), fields()) }
    /// Logs at `debug`.
    public func debug(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.debug, message(), fields()) }
    /// Logs at `info`.
    public func info(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.info, message(), fields()) }
    /// Logs at `notice`.
    public func notice(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.notice, message(), fields()) }
    /// Logs at `warning`.
    public func warning(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.warning, message(), fields()) }
    /// Logs at `error`.
    public func error(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.error, message(), fields()) }
    /// Logs at `critical`.
    public func critical(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [String: JSONValue] = [:]) { log(.critical, message(), fields()) }
}
