// Starts a broker binary (ours or nats-server 2.9.10) on a free loopback port and stops it.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a broker binary can be configured with. nats-server 2.9.10 has all of them; ours declares
/// its own through `NATS_SERVER_CAPABILITIES` (comma-separated raw values) until it grows them.
enum BrokerCapability: String, Sendable, CaseIterable {
    /// `-c <file>` with nats-server's config syntax (max_payload, max_connections, ping_interval...).
    case configFile = "config"
    /// `authorization { users = [...] }` with per-user publish/subscribe permissions in the config.
    case permissions = "permissions"
    /// `-js -sd <dir>`: JetStream on a file store, announced as `"jetstream":true` in INFO.
    case jetstream = "jetstream"
    /// `users [{nkey: U...}]`: nkey users, a nonce in INFO, CONNECT's `nkey` and `sig` checked.
    case nkeys = "nkeys"

    /// A config that `nats-server -t -c` accepts only when the capability is there; nil for a
    /// capability probed by starting the broker instead.
    var probeConfig: String? {
        switch self {
        case .configFile:
            "max_payload: 1KB\n"
        case .permissions:
            "authorization {\n  users = [\n    {user: a, password: b, permissions: {publish: {deny: [\"x.>\"]}}}\n  ]\n}\n"
        case .jetstream:
            nil
        case .nkeys:
            "authorization {\n  users = [\n    {nkey: \(NKeyScenarios.userKey)}\n  ]\n}\n"
        }
    }
}

/// Which broker a run talks to.
enum BrokerKind: String, Sendable {
    case ours
    case reference
}

/// How a scenario wants its broker started. Flags are nats-server's own.
struct BrokerConfig: Sendable, Hashable {
    enum Auth: Sendable, Hashable {
        case none
        case user(String, String)
        case token(String)
    }

    var auth: Auth = .none
    /// `-n <name>`; nil keeps the default (the server id).
    var serverName: String?
    /// Lines of a nats-server config file passed with `-c`; empty means no config file.
    var configLines: [String] = []
    /// Serve monitoring with `-m <free port>`.
    var monitoring = false
    /// Run JetStream: `-js -sd <a fresh directory>`.
    var jetstream = false

    static let plain = BrokerConfig()

    /// The config names nkey users: INFO carries a nonce.
    var hasNKeyUsers: Bool { configLines.contains { $0.contains("nkey:") } }

    var requiredCapabilities: Set<BrokerCapability> {
        var required: Set<BrokerCapability> = jetstream ? [.jetstream] : []
        if configLines.isEmpty { return required }
        required.insert(.configFile)
        if configLines.contains(where: { $0.contains("permissions") }) { required.insert(.permissions) }
        if hasNKeyUsers { required.insert(.nkeys) }
        return required
    }

    func arguments(port: Int, monitorPort: Int?, configPath: String?, storeDirectory: String? = nil) -> [String] {
        var args = ["-a", "127.0.0.1", "-p", String(port)]
        if let monitorPort { args += ["-m", String(monitorPort)] }
        if jetstream, let storeDirectory { args += ["-js", "-sd", storeDirectory] }
        switch auth {
        case .none: break
        case .user(let user, let pass): args += ["--user", user, "--pass", pass]
        case .token(let token): args += ["--auth", token]
        }
        if let serverName { args += ["-n", serverName] }
        if let configPath { args += ["-c", configPath] }
        return args
    }
}

enum HarnessError: Error, CustomStringConvertible {
    case binaryMissing(String)
    case startFailed(String)
    case socket(String)

    var description: String {
        switch self {
        case .binaryMissing(let s): "broker binary missing: \(s)"
        case .startFailed(let s): "broker did not start: \(s)"
        case .socket(let s): "socket error: \(s)"
        }
    }
}

/// Where the two brokers live, and whether the run must have both.
enum Peers {
    static let environment = ProcessInfo.processInfo.environment

    /// `REQUIRE_PEERS=1` (CI) turns a missing reference broker into a failure instead of a skip.
    static var required: Bool { environment["REQUIRE_PEERS"] == "1" }

    /// nats-server 2.9.10: `NATS_REFERENCE_BIN`, else Debian's /usr/sbin/nats-server.
    static var referencePath: String { environment["NATS_REFERENCE_BIN"] ?? "/usr/sbin/nats-server" }

    static var referenceAvailable: Bool { FileManager.default.isExecutableFile(atPath: referencePath) }

    /// Our broker: `NATS_SERVER_BIN`, else the `nats-server` product built next to this test bundle.
    static var oursPath: String? {
        if let path = environment["NATS_SERVER_BIN"], !path.isEmpty { return path }
        var directories: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        directories.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        directories.append(Bundle.main.bundleURL)
        directories.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for directory in directories {
            // Inside an .xctest bundle directory the product sits one level up.
            for candidate in [directory, directory.deletingLastPathComponent()] {
                let path = candidate.appendingPathComponent("nats-server").path
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
        }
        return nil
    }

    /// Capabilities our broker has: those named in `NATS_SERVER_CAPABILITIES` (comma-separated, e.g.
    /// `config,permissions`), plus each one whose probe config `nats-server -t -c <file>` accepts
    /// (exit status 0), as 2.9.10 does, and `jetstream` when `-js -sd <dir>` starts it with
    /// `"jetstream":true` in its INFO.
    static let oursCapabilities: Set<BrokerCapability> = {
        let raw = environment["NATS_SERVER_CAPABILITIES"] ?? ""
        var capabilities = Set(raw.split(separator: ",").compactMap {
            BrokerCapability(rawValue: $0.trimmingCharacters(in: .whitespaces))
        })
        for capability in BrokerCapability.allCases where !capabilities.contains(capability) {
            let has = capability.probeConfig.map(acceptsConfig) ?? announcesJetStream(.ours)
            if has { capabilities.insert(capability) }
        }
        return capabilities
    }()

    /// Runs our binary with `-t -c` on `text`; exit status 0 means it accepts that config.
    private static func acceptsConfig(_ text: String) -> Bool {
        guard let binary = oursPath else { return false }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("compat-probe-\(UUID().uuidString).conf")
        defer { try? FileManager.default.removeItem(at: file) }
        guard (try? text.write(to: file, atomically: true, encoding: .utf8)) != nil else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-t", "-c", file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            return false
        }
        return process.terminationStatus == 0
    }

    /// Starts `kind` with `-js -sd <tmp>` and reads its INFO line: true when it says
    /// `"jetstream":true` (a broker that refuses `-js` exits and the probe says false).
    static func announcesJetStream(_ kind: BrokerKind) -> Bool {
        guard let broker = try? BrokerProcess.start(kind, config: BrokerConfig(jetstream: true), readyTimeout: 10)
        else { return false }
        defer { broker.stop() }
        guard let client = try? RawClient(port: broker.port) else { return false }
        client.read(timeout: 5) { $0.contains(UInt8(ascii: "\n")) }
        let info = String(decoding: client.received, as: UTF8.self)
        return info.hasPrefix("INFO ") && info.contains(#""jetstream":true"#)
    }

    static func path(for kind: BrokerKind) throws -> String {
        switch kind {
        case .reference:
            guard referenceAvailable else { throw HarnessError.binaryMissing(referencePath) }
            return referencePath
        case .ours:
            guard let path = oursPath, FileManager.default.isExecutableFile(atPath: path) else {
                throw HarnessError.binaryMissing("our nats-server (set NATS_SERVER_BIN)")
            }
            return path
        }
    }

    /// Upper bound of one wait on the wire (seconds); only reached when a broker misbehaves.
    static var readTimeout: Double {
        environment["COMPAT_READ_TIMEOUT"].flatMap(Double.init) ?? 5
    }
}

/// A broker process listening on 127.0.0.1:`port`. Stopped by `stop()` (SIGTERM, then SIGKILL).
final class BrokerProcess: @unchecked Sendable {
    let port: Int
    /// The `-m` port, when the config asked for monitoring.
    let monitorPort: Int?
    let kind: BrokerKind
    private let process: Process
    private let workDirectory: URL

    private init(port: Int, monitorPort: Int?, kind: BrokerKind, process: Process, workDirectory: URL) {
        self.port = port
        self.monitorPort = monitorPort
        self.kind = kind
        self.process = process
        self.workDirectory = workDirectory
    }

    /// Starts `kind` with `config` on a free port and returns once it accepts connections.
    /// Throws `HarnessError` when the binary is missing or never becomes ready.
    static func start(_ kind: BrokerKind, config: BrokerConfig, readyTimeout: Double = 20) throws -> BrokerProcess {
        let binary = try Peers.path(for: kind)
        let work = FileManager.default.temporaryDirectory
            .appendingPathComponent("compat-\(kind.rawValue)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        var configPath: String?
        if !config.configLines.isEmpty {
            let file = work.appendingPathComponent("broker.conf")
            try (config.configLines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
            configPath = file.path
        }
        var lastFailure = ""
        // A port picked by binding port 0 can be taken by someone else before the broker binds it: retry.
        for _ in 0..<5 {
            let port = try freePort()
            let monitorPort = config.monitoring ? try freePort() : nil
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = config.arguments(port: port, monitorPort: monitorPort, configPath: configPath,
                                                 storeDirectory: work.appendingPathComponent("store-\(port)").path)
            process.currentDirectoryURL = work
            let log = work.appendingPathComponent("broker-\(port).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? handle.close()
            let broker = BrokerProcess(port: port, monitorPort: monitorPort, kind: kind, process: process,
                                       workDirectory: work)
            let deadline = Date().addingTimeInterval(readyTimeout)
            if broker.waitUntilAccepting(port: port, deadline: deadline),
               monitorPort.map({ broker.waitUntilAccepting(port: $0, deadline: deadline) }) ?? true {
                return broker
            }
            broker.stop(removeFiles: false)
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            lastFailure = "\(binary) \(process.arguments ?? []) exited or never accepted; log: \(text.suffix(800))"
        }
        try? FileManager.default.removeItem(at: work)
        throw HarnessError.startFailed(lastFailure)
    }

    /// Polls with a TCP connect until it succeeds on a socket this process listens on, the process
    /// exits or the deadline passes. (Another program may have taken the port in the meantime: then
    /// the connect succeeds but the listener is not ours, and the start is retried on another port.)
    private func waitUntilAccepting(port: Int, deadline: Date) -> Bool {
        while Date() < deadline {
            if !process.isRunning { return false }
            if let fd = try? RawClient.connectSocket(port: port) {
                close(fd)
                // /proc/net/tcp is no snapshot: with many sockets changing (a full parallel test run)
                // one read can miss a row. Only several misses mean "not ours".
                for _ in 0..<10 {
                    if BrokerProcess.process(process.processIdentifier, listensOn: port) { return true }
                    if !process.isRunning { return false }
                    usleep(20_000)
                }
                return false
            }
            usleep(20_000)
        }
        return false
    }

    /// Whether process `pid` owns the IPv4 socket listening on 127.0.0.1:`port` (or 0.0.0.0:`port`),
    /// from /proc/net/tcp and /proc/<pid>/fd. Where /proc is unreadable, assumes it does.
    static func process(_ pid: Int32, listensOn port: Int) -> Bool {
        guard let table = readProcFile("/proc/net/tcp") else { return true }
        let digits = String(port, radix: 16, uppercase: true)
        let hexPort = String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        var inodes: Set<String> = []
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 9, fields[3] == "0A" else { continue }  // 0A: LISTEN
            let local = fields[1].split(separator: ":")
            guard local.count == 2, local[1] == hexPort,
                  local[0] == "0100007F" || local[0] == "00000000" else { continue }
            inodes.insert(String(fields[9]))
        }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return true }
        for entry in entries {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(entry)"),
               target.hasPrefix("socket:["),
               inodes.contains(String(target.dropFirst("socket:[".count).dropLast())) {
                return true
            }
        }
        return false
    }

    var isRunning: Bool { process.isRunning }

    var pid: Int32 { process.processIdentifier }

    /// Terminates the broker (SIGTERM, SIGKILL after 5 s) and reaps it.
    func stop(removeFiles: Bool = true) {
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        if removeFiles { try? FileManager.default.removeItem(at: workDirectory) }
    }

    /// The whole text of a /proc file. (Foundation's file readers trust the reported size and stop
    /// after the first page of /proc/net/tcp; this reads until end of file.)
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A loopback port that was free a moment ago (bound to port 0, then released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError.socket("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw HarnessError.socket("bind: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw HarnessError.socket("getsockname: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Runs blocking work (sockets, process waits) on its own thread so the cooperative pool stays free.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

/// Bounds how many scenarios run at once (each starts two broker processes on a 2-core machine).
actor ConcurrencyGate {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { available = limit }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }

    static let scenarios = ConcurrencyGate(limit: 3)
}
