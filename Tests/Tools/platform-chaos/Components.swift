// The platform's processes: each component keeps its command, environment, port and log file, so
// that it can be killed and started again exactly as before (same port, same data, same store).

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Sleeps `seconds` off the cooperative pool's accounting (the tool's own threads only).
func pause(_ seconds: Double) {
    guard seconds > 0 else { return }
    usleep(useconds_t(min(seconds, 3600) * 1_000_000))
}

struct ChaosFailure: Error, CustomStringConvertible { let description: String }

/// One process of the platform: the broker or one instance of a service.
final class Component: Sendable {
    /// `nats-server`, `auth-service`, `notification-service#2`, ...
    let name: String
    /// What kills are counted under: the executable's name (every instance of a service together).
    let kind: String
    let executable: String
    let arguments: [String]
    let environment: [String: String]
    /// The HTTP port whose `readyPath` says whether it is ready.
    let port: Int
    let readyPath: String
    let logPath: String
    private let process = Mutex<Process?>(nil)
    private let starts = Mutex(0)

    init(name: String, kind: String, executable: String, arguments: [String], environment: [String: String],
         port: Int, readyPath: String, logPath: String) {
        self.name = name; self.kind = kind; self.executable = executable; self.arguments = arguments
        self.environment = environment; self.port = port; self.readyPath = readyPath; self.logPath = logPath
    }

    /// Starts the process, its output appended to its log file (a line marks each start).
    /// - Throws: when the log cannot be opened or the executable cannot start.
    func start() throws {
        if !FileManager.default.fileExists(atPath: logPath) && !FileManager.default.createFile(atPath: logPath, contents: nil) {
            throw ChaosFailure(description: "cannot create \(logPath)")
        }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw ChaosFailure(description: "cannot open \(logPath)") }
        log.seekToEndOfFile()
        let run = starts.withLock { $0 += 1; return $0 }
        log.write(Data("---- platform-chaos: start \(run) of \(name)\n".utf8))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = environment
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try? log.close()
        process.withLock { $0 = p }
    }

    var isRunning: Bool { process.withLock { $0 }?.isRunning ?? false }

    var pid: Int32? { process.withLock { $0 }.map(\.processIdentifier) }

    /// SIGKILL, and waits until it is gone.
    func kill9() {
        guard let p = process.withLock({ $0 }), p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        while p.isRunning { usleep(2_000) }
    }

    /// SIGTERM; SIGKILL after `seconds`. Returns the exit status (nil if it was not running).
    @discardableResult
    func stop(seconds: Double = 15) -> Int32? {
        guard let p = process.withLock({ $0 }), p.isRunning else { return nil }
        kill(p.processIdentifier, SIGTERM)
        let deadline = monotonicSeconds() + seconds
        while p.isRunning && monotonicSeconds() < deadline { usleep(5_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            while p.isRunning { usleep(2_000) }
        }
        return p.terminationStatus
    }

    /// Whether it answers 200 on its readiness path now.
    func isReady() -> Bool { isRunning && answers200(port: port, path: readyPath) }

    /// Polls readiness until it answers 200 or `seconds` pass.
    func waitReady(seconds: Double) -> Bool {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            if isReady() { return true }
            if !isRunning { return false }
            usleep(50_000)
        }
        return isReady()
    }

    /// The last `count` lines of its log.
    func logTail(_ count: Int) -> [String] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return Array(text.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).map(String.init))
    }
}

/// A loopback port that can be bound now, below the ephemeral range so that no client connection
/// takes it between now and the bind of the component that gets it. The range is not TestSupport's
/// `freePort()` range (20000..<32000): a test running beside a chaos run could otherwise take a port
/// while its killed component is down, and the component could not bind it again.
/// - Throws: ``ChaosFailure`` when 500 candidates were all taken.
func freeLoopbackPort(avoiding taken: Set<Int>, using generator: inout some RandomNumberGenerator) throws -> Int {
    for _ in 0..<500 {
        let candidate = Int.random(in: 10_000..<20_000, using: &generator)
        if taken.contains(candidate) { continue }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { continue }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(candidate).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if bound == 0 { return candidate }
    }
    throw ChaosFailure(description: "no free loopback port in 10000..<20000")
}
