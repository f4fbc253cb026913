import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// One request over a fresh loopback connection (TestSupport's `rawHTTP`), off the cooperative pool.
/// A non-empty `body` is sent with Content-Length.
func http(port: Int, method: String = "GET", path: String, headers: [String: String] = [:], body: String = "") async throws -> HTTPResult {
    try await offPool { try rawHTTP(port: port, method: method, path: path, headers: headers, body: body.isEmpty ? nil : body) }
}

/// The reference broker (/usr/sbin/nats-server) on a given port.
final class ReferenceBroker: @unchecked Sendable {
    // @unchecked: `process` is used only by the test that owns the broker, sequentially.
    static let executable = ProcessInfo.processInfo.environment["NATS_REFERENCE_SERVER_BIN"] ?? "/usr/sbin/nats-server"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: executable) }
    let port: Int
    private let process = Process()

    init(port: Int) throws {
        self.port = port
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["-a", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
    deinit { stop() }
}
