// Test support for the auth service; the generic process, HTTP and wait helpers are in TestSupport.

import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// REQUIRE_PEERS=1 turns a missing peer (curl) into a failure instead of a skip.
let peersRequired = ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1"

/// The auth-service executable with a private data folder, HTTP on a free port.
final class AuthProcess: Sendable {
    let child: ChildProcess
    let port: Int
    let dataDirectory: String

    /// Test defaults: cheap hashing, NATS on a port nobody listens on, a fixed JWT secret.
    static let testSecret = "test-secret-0123456789-abcdefghij"

    static func start(dataDirectory: String? = nil, natsURL: String = "nats://127.0.0.1:1",
                      secret: String? = AuthProcess.testSecret, extra: [String: String] = [:]) async throws -> AuthProcess {
        let data = try dataDirectory ?? temporaryDirectory("data")
        var environment = ProcessInfo.processInfo.environment
        for key in ["JWT_SECRET", "HTTP_PORT", "DATA_DIR", "NATS_URL", "LOG_LEVEL", "SERVICE_NAME", "EVENT_DELIVERY"] { environment[key] = nil }
        environment["HTTP_PORT"] = "0"
        environment["DATA_DIR"] = data
        environment["NATS_URL"] = natsURL
        environment["PASSWORD_ITERATIONS"] = "1000"
        if let secret { environment["JWT_SECRET"] = secret }
        for (k, v) in extra { environment[k] = v }
        let child = try ChildProcess(executable: try builtExecutable("auth-service"), environment: environment)
        let line = try await child.waitForLine("the service-started log line") { $0.contains(#""message":"service started""#) }
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let fields = object["fields"] as? [String: Any], let port = fields["http_port"] as? Int else {
            throw TestFailure("no http_port in \(line)")
        }
        return AuthProcess(child: child, port: port, dataDirectory: data)
    }

    private init(child: ChildProcess, port: Int, dataDirectory: String) {
        self.child = child; self.port = port; self.dataDirectory = dataDirectory
    }

    /// Stops the process; removes the data folder unless `keepData`.
    @discardableResult
    func stop(keepData: Bool = false) async -> Int32 {
        let status = await child.stop()
        if !keepData { removeTemporary(dataDirectory) }
        return status
    }

    func request(_ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:]) async throws -> HTTPResult {
        let port = self.port
        return try await offPool { try rawHTTP(port: port, method: method, path: path, headers: headers, body: json) }
    }

    func register(_ email: String, _ password: String = "correct horse 9", name: String = "Test User") async throws -> HTTPResult {
        try await request("POST", "/v1/users", json: jsonText(["email": email, "password": password, "name": name]))
    }

    func login(_ email: String, _ password: String = "correct horse 9", headers: [String: String] = [:]) async throws -> HTTPResult {
        try await request("POST", "/v1/login", json: jsonText(["email": email, "password": password]), headers: headers)
    }
}

/// A unique email for a test.
func uniqueEmail(_ tag: String) -> String { "\(tag)-\(UUID().uuidString.prefix(8).lowercased())@example.com" }

/// Runs `body` with a started auth-service and always stops it (and removes its data) afterwards.
func withAuthService(natsURL: String = "nats://127.0.0.1:1", extra: [String: String] = [:],
                     _ body: (AuthProcess) async throws -> Void) async throws {
    let service = try await AuthProcess.start(natsURL: natsURL, extra: extra)
    do {
        try await body(service)
    } catch {
        await service.stop()
        throw error
    }
    await service.stop()
}


extension Broker {
    /// A broker on `port` (a free one when nil), so a test can start it late, stop it and start it
    /// again on the same store: ours (`NATS_SERVER_BIN`, else the built `nats-server`) or the
    /// reference nats-server 2.9.10; with JetStream unless `jetStream: false`.
    static func forAuth(port: Int? = nil, reference: Bool = false, jetStream: Bool = true) async throws -> Broker {
        try await Broker.start(port: port ?? freePort(), jetStream: jetStream,
                               executable: reference ? referenceExecutable : oursExecutable())
    }
}

extension AuthProcess {
    /// SIGKILL, no shutdown at all (the data folder stays).
    func kill9() async {
        let process = child.process
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = try? await offPool { process.waitUntilExit() }
    }

    /// The value of one metric sample from `/metrics` (0 when absent).
    func metric(_ sample: String) async throws -> Double {
        let body = try await request("GET", "/metrics").body
        for line in body.split(separator: "\n") where line.hasPrefix(sample + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }
}
