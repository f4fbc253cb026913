// Shared test support: executables built beside the test bundle run as real processes on
// random ports, a raw-socket HTTP client, deadline-bounded waits.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// An executable built beside the test bundle (`auth-service`, `nats-server`).
public func builtExecutable(_ name: String) throws -> String {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        Bundle.main.bundleURL.deletingLastPathComponent(),
        Bundle.main.bundleURL,
        Bundle.main.bundleURL.deletingLastPathComponent().deletingLastPathComponent(),
    ]
    for directory in candidates {
        let path = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw TestFailure("\(name) not found next to the test bundle")
}

/// A fresh temporary directory (removed by the caller via `removeTemporary`).
public func temporaryDirectory(_ tag: String) throws -> String {
    let path = NSTemporaryDirectory() + "svc-test-\(tag)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

public func removeTemporary(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// Runs blocking `work` on its own thread so the cooperative pool stays free.
public func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Runs `operation`, failing with ``TestFailure`` if it takes longer than `seconds`.
@discardableResult
public func within<T: Sendable>(_ seconds: Double, _ what: String = "operation", _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask { try await Task.sleep(for: .seconds(seconds)); return nil }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TestFailure("\(what) did not finish within \(seconds) s")
        }
        return value
    }
}

/// Polls `condition` until it holds or `seconds` pass; returns whether it held.
public func eventually(_ seconds: Double = 15, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// The error `body` threw, or nil when it returned.
public func thrownError(_ body: () async throws -> Void) async -> (any Error)? {
    do {
        try await body()
        return nil
    } catch {
        return error
    }
}

/// A child process whose stdout lines are collected for the test to wait on.
public final class ChildProcess: Sendable {
    public let process: Process
    private final class Lines: Sendable { let value = Mutex<[String]>([]) }
    private let lines = Lines()

    public init(executable: String, arguments: [String] = [], environment: [String: String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        self.process = process
        let handle = pipe.fileHandleForReading
        let lines = self.lines
        let reader = Thread {
            var pending = [UInt8]()
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                pending.append(contentsOf: data)
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeFirst(newline + 1)
                    lines.value.withLock { $0.append(line) }
                }
            }
        }
        reader.start()
    }

    public var output: [String] { lines.value.withLock { $0 } }

    /// Waits for a line satisfying `match` and returns it.
    public func waitForLine(_ what: String, seconds: Double = 20, where match: @escaping @Sendable (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let line = output.first(where: match) { return line }
            if !process.isRunning, output.first(where: match) == nil {
                throw TestFailure("process exited (\(process.terminationStatus)) before \(what); output:\n" + output.suffix(30).joined(separator: "\n"))
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("no \(what) within \(seconds) s; output:\n" + output.suffix(30).joined(separator: "\n"))
    }

    /// SIGTERM, then waits (off the pool) for exit; SIGKILL after 10 s. Returns the exit status.
    @discardableResult
    public func stop() async -> Int32 {
        let process = self.process
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        return (try? await offPool { () -> Int32 in
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(5_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return process.terminationStatus
        }) ?? -1
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// A broker process on loopback: ours (built beside the tests) or another executable such as
/// nats-server 2.9.10, optionally with JetStream on a store directory. It keeps its port and
/// store, so a test can stop or SIGKILL it and start it again on the same (or an emptied) store.
public final class Broker: Sendable {
    /// The executable this broker runs.
    public let executable: String
    public let port: Int
    public let url: String
    /// A scratch folder of the broker's own (ports file, configuration file); removed by `stop`.
    public let directory: String
    /// The `-sd` folder when JetStream is on, else nil.
    public let storeDirectory: String?
    private let arguments: [String]
    private let current: Mutex<ChildProcess>

    /// The process of the latest start.
    public var child: ChildProcess { current.withLock { $0 } }

    /// nats-server 2.9.10 as Debian installs it.
    public static let referenceExecutable = "/usr/sbin/nats-server"
    /// Whether nats-server 2.9.10 is installed.
    public static var referenceAvailable: Bool { FileManager.default.isExecutableFile(atPath: referenceExecutable) }

    /// Our broker: `NATS_SERVER_BIN` when set and not empty, else the one built beside the tests.
    /// - Throws: ``TestFailure`` when neither exists.
    public static func oursExecutable() throws -> String {
        if let path = ProcessInfo.processInfo.environment["NATS_SERVER_BIN"], !path.isEmpty { return path }
        return try builtExecutable("nats-server")
    }

    /// Starts a broker and waits until it serves clients.
    /// - Parameters:
    ///   - port: the port; nil lets the broker choose one (`-p -1`, read from its ports file),
    ///     which later starts keep.
    ///   - jetStream: adds `-js -sd <storeDirectory>`.
    ///   - storeDirectory: the store; nil makes `<directory>/store`. Only used with `jetStream`.
    ///   - executable: the broker to run; nil runs the one built beside the tests.
    ///   - configuration: text of a configuration file passed with `-c` (command-line flags win).
    ///   - environment: the process environment; nil inherits this process's.
    /// - Throws: ``TestFailure`` when the executable is missing or the broker does not serve
    ///   within 20 s (it is stopped and its folders removed then); the error of writing the
    ///   configuration file.
    public static func start(port: Int? = nil, jetStream: Bool = false, storeDirectory: String? = nil,
                             executable: String? = nil, configuration: String? = nil,
                             environment: [String: String]? = nil) async throws -> Broker {
        let executable = try executable ?? builtExecutable("nats-server")
        let directory = try temporaryDirectory("broker")
        var arguments = ["-a", "127.0.0.1"]
        let store = jetStream ? storeDirectory ?? directory + "/store" : nil
        if let store { arguments += ["-js", "-sd", store] }
        do {
            if let configuration {
                let path = directory + "/broker.conf"
                try configuration.write(toFile: path, atomically: true, encoding: .utf8)
                arguments = ["-c", path] + arguments
            }
            let environment = environment ?? ProcessInfo.processInfo.environment
            let child: ChildProcess
            let url: String
            if let port {
                child = try await launch(executable, arguments + ["-p", String(port)], environment, port: port)
                url = "nats://127.0.0.1:\(port)"
            } else {
                (child, url) = try await launchOnAnyPort(executable, arguments + ["-p", "-1", "--ports_file_dir", directory],
                                                         environment, portsDirectory: directory)
            }
            guard let chosen = URLComponents(string: url)?.port else { throw TestFailure("no port in broker URL \(url)") }
            return Broker(executable: executable, port: chosen, url: url, directory: directory, storeDirectory: store,
                          arguments: arguments + ["-p", String(chosen)], environment: environment, child: child)
        } catch {
            removeTemporary(directory)
            if let store, storeDirectory == nil { removeTemporary(store) }
            throw error
        }
    }

    private let environment: [String: String]

    private init(executable: String, port: Int, url: String, directory: String, storeDirectory: String?,
                 arguments: [String], environment: [String: String], child: ChildProcess) {
        self.executable = executable; self.port = port; self.url = url; self.directory = directory
        self.storeDirectory = storeDirectory; self.arguments = arguments; self.environment = environment
        self.current = Mutex(child)
    }

    /// Runs the broker on a known port and waits until it accepts connections there.
    private static func launch(_ executable: String, _ arguments: [String], _ environment: [String: String],
                               port: Int) async throws -> ChildProcess {
        let child = try ChildProcess(executable: executable, arguments: arguments, environment: environment)
        let up = await eventually(20) {
            guard child.process.isRunning else { return true }
            return (try? await offPool { () -> Bool in
                let fd = try connectLoopback(port: port, timeoutSeconds: 1)
                close(fd)
                return true
            }) ?? false
        }
        guard up, child.process.isRunning else {
            await child.stop()
            throw TestFailure("broker \(executable) did not accept connections on \(port); output:\n"
                              + child.output.suffix(20).joined(separator: "\n"))
        }
        return child
    }

    /// Runs the broker with `-p -1` and reads its URL from the ports file it writes.
    private static func launchOnAnyPort(_ executable: String, _ arguments: [String], _ environment: [String: String],
                                        portsDirectory: String) async throws -> (ChildProcess, String) {
        let child = try ChildProcess(executable: executable, arguments: arguments, environment: environment)
        let portsFile = portsDirectory + "/nats-server_\(child.process.processIdentifier).ports"
        var url: String?
        _ = await eventually(20) {
            guard let data = FileManager.default.contents(atPath: portsFile),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let urls = object["nats"] as? [String], let first = urls.first else { return false }
            url = first
            return true
        }
        guard let url else {
            await child.stop()
            throw TestFailure("broker \(executable) wrote no ports file; output:\n" + child.output.joined(separator: "\n"))
        }
        return (child, url)
    }

    /// Starts the broker again on the same port, store and configuration (after `stop(keepStore: true)`,
    /// `terminate` or `kill9`); with `emptyStore`, the store is emptied first, so every stream,
    /// consumer and message is gone. A running broker is stopped first.
    /// - Throws: ``TestFailure`` when it does not accept connections within 20 s; the error of
    ///   emptying the store.
    public func restart(emptyStore: Bool = false) async throws {
        await terminate()
        if emptyStore, let storeDirectory {
            try FileManager.default.removeItem(atPath: storeDirectory)
            try FileManager.default.createDirectory(atPath: storeDirectory, withIntermediateDirectories: true)
        }
        let child = try await Broker.launch(executable, arguments, environment, port: port)
        current.withLock { $0 = child }
    }

    /// SIGTERM (SIGKILL after 10 s) and waits for the exit; the folders stay.
    public func terminate() async {
        await child.stop()
    }

    /// SIGKILL at once, and waits for the exit; the folders stay.
    public func kill9() async {
        let process = child.process
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = try? await offPool { process.waitUntilExit() }
    }

    /// Stops the broker and removes its scratch folder and, unless `keepStore`, its store.
    public func stop(keepStore: Bool = false) async {
        await terminate()
        removeTemporary(directory)
        if !keepStore, let storeDirectory { removeTemporary(storeDirectory) }
    }
}

public func jsonText(_ object: [String: String]) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
}

public struct HTTPResult: Sendable {
    public var status: Int
    public var headers: [String: String]   // lower-cased names
    public var body: String

    public init(status: Int, headers: [String: String], body: String) {
        self.status = status; self.headers = headers; self.body = body
    }

    public var json: [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]) ?? [:]
    }
    public func string(_ key: String) -> String? { json[key] as? String }
}

/// A TCP socket connected to `127.0.0.1:port`; the caller owns (and closes) the descriptor.
/// - Parameters:
///   - timeoutSeconds: receive timeout (`SO_RCVTIMEO`); nil blocks until data or EOF.
///   - receiveBufferBytes: `SO_RCVBUF`, set before connecting (a small one makes a slow reader).
/// - Throws: ``TestFailure`` when the socket cannot be made or the connection is refused.
public func connectLoopback(port: Int, timeoutSeconds: Double? = 15, receiveBufferBytes: Int? = nil) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed: errno \(errno)") }
    if let timeoutSeconds {
        var tv = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    if var size = receiveBufferBytes.map(Int32.init) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        let code = errno
        close(fd)
        throw TestFailure("connect to \(port) failed: errno \(code)")
    }
    return fd
}

/// One HTTP/1.1 request over a fresh loopback connection (`Connection: close`), read to EOF.
public func rawHTTP(port: Int, method: String, path: String, headers: [String: String] = [:], body: String? = nil) throws -> HTTPResult {
    let fd = try connectLoopback(port: port, timeoutSeconds: 15)
    defer { close(fd) }
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
    for (k, v) in headers { head += "\(k): \(v)\r\n" }
    let bytes = Array((head + "\r\n" + (body ?? "")).utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { throw TestFailure("send failed: errno \(errno)") }
        sent += n
    }
    var received = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        received.append(contentsOf: chunk[0..<n])
    }
    return try parseHTTPResponse(String(decoding: received, as: UTF8.self))
}

/// Parses a whole response (head and body) as printed by a server or by `curl -i`.
public func parseHTTPResponse(_ text: String) throws -> HTTPResult {
    guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no response head in: \(text)") }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = lines.first?.split(separator: " ") ?? []
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw TestFailure("bad status line: \(lines.first ?? "")") }
    var fields: [String: String] = [:]
    for line in lines.dropFirst() {
        if let colon = line.firstIndex(of: ":") {
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    return HTTPResult(status: status, headers: fields, body: String(text[split.upperBound...]))
}

/// Ports handed out by this test process (never handed out twice).
private let usedPorts = Mutex<Set<Int>>([])

/// A loopback port that is free now, chosen below the kernel's ephemeral range (32768...) so
/// that no client connection's local port can take it before the server binds it, and never
/// handed out twice in one test process.
/// - Throws: ``TestFailure`` when 200 random candidates were all taken.
public func freePort() throws -> Int {
    for _ in 0..<200 {
        let candidate = Int.random(in: 20_000..<32_000)
        let fresh = usedPorts.withLock { $0.insert(candidate).inserted }
        if fresh && canBind(candidate) { return candidate }
    }
    throw TestFailure("no free port found in 20000..<32000")
}

private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return bound == 0
}

/// A service executable (auth-service, notification-service, ...) started with `environment`
/// (inherited environment minus the standard service variables), HTTP on a free port: waits for
/// ServiceRuntime's "service started" line and reads the bound port from it.
public final class ServiceProcess: Sendable {
    public let child: ChildProcess
    public let port: Int

    /// The variables every service reads (cleared from the inherited environment before `environment` applies).
    public static let standardVariables = ["JWT_SECRET", "HTTP_PORT", "DATA_DIR", "NATS_URL", "LOG_LEVEL", "SERVICE_NAME"]

    /// - Throws: ``TestFailure`` when the executable is missing, exits early or logs no port in 20 s.
    public static func start(_ executable: String, environment: [String: String]) async throws -> ServiceProcess {
        var merged = ProcessInfo.processInfo.environment
        for key in standardVariables { merged[key] = nil }
        merged["HTTP_PORT"] = "0"
        for (k, v) in environment { merged[k] = v }
        let child = try ChildProcess(executable: try builtExecutable(executable), environment: merged)
        let line = try await child.waitForLine("the service-started log line of \(executable)") { $0.contains(#""message":"service started""#) }
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let fields = object["fields"] as? [String: Any], let port = fields["http_port"] as? Int else {
            throw TestFailure("no http_port in \(line)")
        }
        return ServiceProcess(child: child, port: port)
    }

    private init(child: ChildProcess, port: Int) { self.child = child; self.port = port }

    /// One HTTP request to the service (off the cooperative pool).
    public func request(_ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:]) async throws -> HTTPResult {
        let port = self.port
        return try await offPool { try rawHTTP(port: port, method: method, path: path, headers: headers, body: json) }
    }

    /// SIGTERM (SIGKILL after 10 s); the exit status.
    @discardableResult
    public func stop() async -> Int32 { await child.stop() }

    /// SIGKILL at once, and waits for the exit.
    public func kill9() async {
        let process = child.process
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = try? await offPool { process.waitUntilExit() }
    }
}
