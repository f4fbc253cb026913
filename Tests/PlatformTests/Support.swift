// Support for the platform tests: the repository's files, external commands (curl, docker-compose,
// scripts/platform) run as real processes, and the platform (our broker and the four services)
// started as real processes with shared settings.

import Foundation
import NATSClient
import Synchronization
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// REQUIRE_PEERS=1 turns a missing peer (curl, docker-compose) into a failure instead of a skip.
let peersRequired = ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1"

/// The repository root (this file is Tests/PlatformTests/Support.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The first executable named `name` on PATH (or the usual system folders).
func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let folders = path.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin", "/bin"]
    return folders.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// What a finished command printed.
struct CommandResult: Sendable {
    var status: Int32
    var output: String
    var error: String
}

/// Runs `executable` to completion off the cooperative pool (SIGKILL after `timeout` seconds).
/// - Throws: ``TestFailure`` when it cannot start or runs past the timeout.
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                directory: String? = nil, timeout: Double = 60) async throws -> CommandResult {
    try await offPool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let errorText = Mutex(Data())
        let errorReader = Thread { errorText.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
        errorReader.start()
        let timer = DispatchWorkItem { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        let output = out.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(2_000) }   // (waitUntilExit spins a run loop off the main thread)
        timer.cancel()
        while errorReader.isExecuting { usleep(1_000) }
        if process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL {
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) ran longer than \(timeout) s")
        }
        return CommandResult(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                             error: String(decoding: errorText.withLock { $0 }, as: UTF8.self))
    }
}

/// Starts a ``ChildProcess`` from a thread whose signal mask is empty. Foundation's `Process` hands
/// the calling thread's signal mask to the child, and the threads of the test runtime block
/// SIGINT and SIGTERM: a shell started with them blocked never sees them, so a script's traps (and
/// Ctrl-C) could not be tested.
func startWithSignals(_ executable: String, arguments: [String] = [], environment: [String: String]) async throws -> ChildProcess {
    try await offPool {
        var empty = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, nil)
        return try ChildProcess(executable: executable, arguments: arguments, environment: environment)
    }
}

/// Waits (off the pool, polling) until `process` exits; its status, nil after `seconds`.
func waitForExit(_ process: Process, seconds: Double) async throws -> Int32? {
    try await offPool { () -> Int32? in
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        return process.isRunning ? nil : process.terminationStatus
    }
}

// MARK: curl

/// The real curl binary.
enum Curl {
    static var path: String? { findExecutable("curl") }

    /// `curl -s -i --max-time 15 <arguments>`, parsed.
    /// - Throws: ``TestFailure`` when curl is missing or fails (connection refused, timeout).
    static func run(_ arguments: [String]) async throws -> HTTPResult {
        guard let curl = path else { throw TestFailure("curl is not installed") }
        let result = try await runCommand(curl, ["-s", "-i", "--max-time", "15"] + arguments, timeout: 30)
        guard result.status == 0 else { throw TestFailure("curl \(arguments.joined(separator: " ")) exited with \(result.status): \(result.error)") }
        return try parseHTTPResponse(result.output)
    }

    /// A JSON POST.
    static func post(_ url: String, json: String, headers: [String: String] = [:]) async throws -> HTTPResult {
        try await run(["-H", "Content-Type: application/json"] + headers.flatMap { ["-H", "\($0.key): \($0.value)"] }
                      + ["-d", json, url])
    }

    /// A GET.
    static func get(_ url: String, headers: [String: String] = [:]) async throws -> HTTPResult {
        try await run(headers.flatMap { ["-H", "\($0.key): \($0.value)"] } + [url])
    }
}

/// A Server-Sent Events stream read by `curl -N` in a child process: its lines (response head
/// included, `-i`) are collected as they arrive.
final class SSEStream: Sendable {
    let child: ChildProcess

    /// Opens the stream and waits for the response head (status 200) and the opening comment.
    /// - Throws: ``TestFailure`` when curl is missing, or the head is not a 200 within 15 s.
    static func open(_ url: String, token: String) async throws -> SSEStream {
        guard let curl = Curl.path else { throw TestFailure("curl is not installed") }
        let child = try await startWithSignals(curl, arguments: ["-s", "-N", "-i", "-H", "Accept: text/event-stream",
                                                                 "-H", "Authorization: Bearer \(token)", url],
                                               environment: ProcessInfo.processInfo.environment)
        let stream = SSEStream(child: child)
        let status = try await child.waitForLine("the SSE response head", seconds: 15) { $0.hasPrefix("HTTP/1.1 ") }
        guard status.hasPrefix("HTTP/1.1 200") else {
            await child.stop()
            throw TestFailure("SSE stream answered \(status)")
        }
        // The service opens the stream (subscribes it to the user's notifications) before its
        // first comment line.
        _ = try await child.waitForLine("the SSE stream's opening comment", seconds: 15) { $0.hasPrefix(":") }
        return stream
    }

    private init(child: ChildProcess) { self.child = child }

    /// Waits for a `data:` line whose JSON object satisfies `match`.
    func waitForEvent(_ what: String, seconds: Double = 20, where match: @escaping @Sendable ([String: Any]) -> Bool) async throws -> [String: Any] {
        let line = try await child.waitForLine(what, seconds: seconds) { line in
            guard line.hasPrefix("data:"), let object = jsonObject(String(line.dropFirst(5))) else { return false }
            return match(object)
        }
        return jsonObject(String(line.dropFirst(5))) ?? [:]
    }

    func close() async { await child.stop() }
}

/// The JSON object in `text`, nil if it is not one.
func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.trimmingCharacters(in: .whitespaces).utf8))) as? [String: Any]
}

// MARK: The platform as processes

/// Contract facts the tests rely on (see the platform contract): HTTP routes and events.
enum Contract {
    static let services = ["auth-service", "notification-service", "data-processing-service", "analytics-service"]
    static let defaultPorts = ["nats": [4222, 8222], "auth-service": [8081], "notification-service": [8082],
                               "data-processing-service": [8083], "analytics-service": [8084]]
    static let registerPath = "/v1/users"
    static let loginPath = "/v1/login"
    static let notificationsPath = "/v1/notifications"
    static let notificationStreamPath = "/v1/notifications/stream"
    /// The all-time counts: public (an aggregate); `/v1/stats` itself names users and needs a token.
    static let statsPath = "/v1/stats/counts?window=all"
}

/// A random W3C trace id (32 lower-case hex digits) and a traceparent carrying it.
func newTraceparent() -> (traceID: String, header: String) {
    var generator = SystemRandomNumberGenerator()
    let hex = { (count: Int) in (0..<count).map { _ in String(UInt8.random(in: 0...15, using: &generator), radix: 16) }.joined() }
    let trace = hex(32)
    return (trace, "00-\(trace)-\(hex(16))-01")
}

/// A unique email for a test.
func uniqueEmail(_ tag: String) -> String { "\(tag)-\(UUID().uuidString.prefix(8).lowercased())@example.com" }

/// Which broker a platform runs: ours (built beside the tests) or nats-server 2.9.10.
enum BrokerKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case ours
    case reference

    /// Debian's nats-server 2.9.10.
    static let referencePath = "/usr/sbin/nats-server"

    /// The executable; nil when the reference broker is not installed.
    var executable: String? {
        switch self {
        case .ours: return try? builtExecutable("nats-server")
        case .reference: return FileManager.default.isExecutableFile(atPath: Self.referencePath) ? Self.referencePath : nil
        }
    }

    var description: String { self == .ours ? "our broker" : "nats-server 2.9.10" }
}

/// The platform's NATS identities: the users of nats-server/permissions.conf (the permission
/// matrix) and the environment variable each one's password comes from.
enum Identities {
    static let admin = "admin"
    static let all = [admin] + Contract.services
    static let passwordVariables = [
        "admin": "NATS_ADMIN_PASSWORD", "auth-service": "AUTH_SERVICE_PASSWORD",
        "notification-service": "NOTIFICATION_SERVICE_PASSWORD",
        "data-processing-service": "DATA_PROCESSING_SERVICE_PASSWORD", "analytics-service": "ANALYTICS_SERVICE_PASSWORD",
    ]
    static var permissionsFile: String { repositoryRoot + "/nats-server/permissions.conf" }

    /// A broker configuration to write in `directory` that includes the matrix. The include is
    /// relative (2.9.10 joins an include's path to the including file's folder, so an absolute
    /// one does not work): up to `/` and down again.
    static func brokerConfiguration(in directory: String) -> String {
        let depth = URL(fileURLWithPath: directory).standardizedFileURL.pathComponents.count - 1
        return "include \"" + String(repeating: "../", count: depth) + permissionsFile.dropFirst() + "\"\n"
    }

    /// The lines of a broker's or service's log that report a permission violation (2.9.10 logs
    /// `Publish Violation` / `Subscription Violation`; a client is told `Permissions Violation`).
    static func violations(_ lines: [String]) -> [String] {
        lines.filter { $0.contains("Permissions Violation") || $0.contains("Publish Violation") || $0.contains("Subscription Violation") }
    }
}

/// A broker with JetStream (`-js -sd <store>`) on a fixed port: a restart on the same store finds
/// its streams, consumers and unacknowledged messages again.
final class JetStreamBroker: Sendable {
    let child: ChildProcess

    /// Starts `executable` and waits until its monitoring port's /healthz answers 200 (JetStream
    /// included: 2.9.10 answers 503 while its store recovers).
    /// - Parameters:
    ///   - configuration: a configuration file (`-c`; the flags win over it).
    ///   - environment: added to this process's environment (the passwords the matrix reads).
    /// - Throws: ``TestFailure`` when it exits or is not healthy within 30 s.
    static func start(executable: String, port: Int, monitorPort: Int, store: String, configuration: String? = nil,
                      environment: [String: String] = [:]) async throws -> JetStreamBroker {
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        let child = try ChildProcess(executable: executable,
                                     arguments: (configuration.map { ["-c", $0] } ?? [])
                                        + ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-js", "-sd", store],
                                     environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
        let healthy = await eventually(30) {
            guard child.process.isRunning else { return true }
            return (try? await offPool { try rawHTTP(port: monitorPort, method: "GET", path: "/healthz") })?.status == 200
        }
        guard healthy, child.process.isRunning else {
            if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
            throw TestFailure("\(executable) -js not healthy within 30 s; output:\n" + child.output.suffix(20).joined(separator: "\n"))
        }
        return JetStreamBroker(child: child)
    }

    private init(child: ChildProcess) { self.child = child }

    /// SIGTERM, waited for.
    func stop() async { await child.stop() }

    /// SIGKILL, waited for.
    func kill9() async {
        let process = child.process
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = try? await offPool { while process.isRunning { usleep(2_000) } }
    }
}

/// The broker (JetStream on, its store under the platform's root) and the services, each a real
/// process, sharing one JWT secret; each service keeps its data in its own folder under the same
/// root, so a restart of anything finds its data again. The broker runs with the permission
/// matrix (nats-server/permissions.conf) and a fresh password per identity; each service connects
/// as its own user (NATS_USER, NATS_PASSWORD_FILE), the tests' clients as `admin`. Stopping the
/// platform records an issue for every permission violation in the broker's or a service's log,
/// unless the test provoked them (``allowPermissionViolations()``).
final class Platform: Sendable {
    /// The token key every service gets.
    let secret = "platform-test-secret-\(UUID().uuidString)"
    /// Each identity's NATS password (new for every platform).
    let passwords = Dictionary(uniqueKeysWithValues: Identities.all.map { ($0, "p" + UUID().uuidString.replacingOccurrences(of: "-", with: "")) })
    /// Temporary root of the services' data folders and the broker's store.
    let root: String
    /// The broker's ports (fixed for the platform's lifetime, so a restarted broker takes them again).
    let brokerPort: Int
    let monitorPort: Int
    let brokerKind: BrokerKind
    /// EVENT_DELIVERY for every service.
    let delivery: String
    private struct State {
        var broker: JetStreamBroker?
        var services: [String: ServiceProcess] = [:]
        /// Every process each service ran as, oldest first (for its logs).
        var runs: [String: [ServiceProcess]] = [:]
        var brokerRuns: [JetStreamBroker] = []
        var violationsAllowed = false
    }
    private let state = Mutex(State())

    /// The broker's URL with the `admin` credentials (the tests' clients).
    var natsURL: String { url(as: Identities.admin) }
    /// The broker's URL without credentials (the services get theirs in NATS_USER / NATS_PASSWORD_FILE).
    var brokerURL: String { "nats://127.0.0.1:\(brokerPort)" }
    /// The broker's URL with `identity`'s credentials.
    func url(as identity: String) -> String { "nats://\(identity):\(passwords[identity] ?? "")@127.0.0.1:\(brokerPort)" }
    /// The file holding `identity`'s password (mode 600), as scripts/platform keeps them.
    func credentialsFile(_ identity: String) -> String { root + "/credentials/" + identity }
    /// The broker's `-sd` (its streams in `jetstream/` under it; kept across its restarts).
    var storeDirectory: String { root + "/nats-server" }

    private init(root: String, brokerPort: Int, monitorPort: Int, brokerKind: BrokerKind, delivery: String) {
        self.root = root; self.brokerPort = brokerPort; self.monitorPort = monitorPort
        self.brokerKind = brokerKind; self.delivery = delivery
    }

    /// Starts the broker and `services` (in that order) and waits until each service is ready.
    /// - Throws: ``TestFailure`` when the broker is not installed (reference), a process does not
    ///   start or a service is not ready in 30 s.
    static func start(_ services: [String] = Contract.services, broker: BrokerKind = .ours,
                      delivery: String = "at-least-once") async throws -> Platform {
        let platform = Platform(root: try temporaryDirectory("platform"), brokerPort: try freePort(), monitorPort: try freePort(),
                                brokerKind: broker, delivery: delivery)
        do {
            try platform.writeCredentials()
            try await platform.startBroker()
            for name in services { try await platform.start(name) }
            for name in services { try await platform.waitReady(name) }
        } catch {
            await platform.stop()
            throw error
        }
        return platform
    }

    func dataDirectory(_ name: String) -> String { root + "/" + name }

    /// The running process of `name`.
    func service(_ name: String) throws -> ServiceProcess {
        guard let service = state.withLock({ $0.services[name] }) else { throw TestFailure("\(name) is not running") }
        return service
    }

    /// Every line `name` logged, over all its runs in this platform (`nats-server`: the broker's).
    func logs(_ name: String) -> [String] {
        if name == "nats-server" { return state.withLock { $0.brokerRuns }.flatMap(\.child.output) }
        return state.withLock { $0.runs[name] ?? [] }.flatMap(\.child.output)
    }

    /// Writes each identity's password file (folder 700, files 600) and the broker's configuration
    /// (mode 600), which includes the matrix.
    /// - Throws: the errors of writing them.
    private func writeCredentials() throws {
        let folder = root + "/credentials"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for (identity, password) in passwords {
            try (password + "\n").write(toFile: credentialsFile(identity), atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: credentialsFile(identity))
        }
        try Identities.brokerConfiguration(in: root).write(toFile: brokerConfigurationFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: brokerConfigurationFile)
    }

    var brokerConfigurationFile: String { root + "/nats-server.conf" }

    /// The broker's environment: every identity's password in the variable the matrix reads.
    var brokerEnvironment: [String: String] {
        Dictionary(uniqueKeysWithValues: passwords.compactMap { identity, password in
            Identities.passwordVariables[identity].map { ($0, password) }
        })
    }

    /// Lets this platform's logs hold permission violations (a test that provokes them).
    func allowPermissionViolations() { state.withLock { $0.violationsAllowed = true } }

    /// Every permission violation in the broker's and the services' logs so far.
    var permissionViolations: [String] {
        let services = state.withLock { $0.runs.keys.sorted() }
        return (["nats-server"] + services).flatMap { name in Identities.violations(logs(name)).map { "\(name): \($0)" } }
    }

    /// Starts the broker on the platform's ports and store (a restart finds the streams again).
    /// - Throws: ``TestFailure`` when the broker is not installed or not healthy in 30 s.
    func startBroker() async throws {
        guard let executable = brokerKind.executable else { throw TestFailure("\(brokerKind) is not installed") }
        let broker = try await JetStreamBroker.start(executable: executable, port: brokerPort, monitorPort: monitorPort,
                                                     store: storeDirectory, configuration: brokerConfigurationFile,
                                                     environment: brokerEnvironment)
        state.withLock { $0.broker = broker; $0.brokerRuns.append(broker) }
    }

    /// Stops the broker (SIGTERM, waited for).
    func stopBroker() async {
        guard let broker = state.withLock({ s -> JetStreamBroker? in defer { s.broker = nil }; return s.broker }) else { return }
        await broker.stop()
    }

    /// Kills the broker (SIGKILL, waited for): whatever it had not written is gone.
    func killBroker() async {
        guard let broker = state.withLock({ s -> JetStreamBroker? in defer { s.broker = nil }; return s.broker }) else { return }
        await broker.kill9()
    }

    /// Starts `name` with the platform's settings (and its data folder from any earlier run).
    func start(_ name: String) async throws {
        let data = dataDirectory(name)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let process = try await ServiceProcess.start(name, environment: [
            "NATS_URL": brokerURL, "NATS_USER": name, "NATS_PASSWORD_FILE": credentialsFile(name), "JWT_SECRET": secret, "DATA_DIR": data, "LOG_LEVEL": "debug",
            "PASSWORD_ITERATIONS": "1000", "EVENT_DELIVERY": delivery,
        ])
        state.withLock { s in
            s.services[name] = process
            s.runs[name, default: []].append(process)
        }
    }

    /// Stops `name` with SIGTERM; returns its exit status.
    @discardableResult
    func stop(_ name: String) async -> Int32 {
        guard let process = retire(name) else { return -1 }
        return await process.stop()
    }

    /// Kills `name` with SIGKILL and waits for it.
    func kill9(_ name: String) async {
        guard let process = retire(name) else { return }
        await process.kill9()
    }

    private func retire(_ name: String) -> ServiceProcess? {
        state.withLock { $0.services.removeValue(forKey: name) }
    }

    /// Polls `/readyz` of `name` until 200.
    /// - Throws: ``TestFailure`` after `seconds`.
    func waitReady(_ name: String, seconds: Double = 30) async throws {
        let service = try service(name)
        let ready = await eventually(seconds) { (try? await service.request("GET", "/readyz"))?.status == 200 }
        if !ready {
            let last = (try? await service.request("GET", "/readyz"))?.body ?? "(no answer)"
            throw TestFailure("\(name) not ready within \(seconds) s: \(last)\n" + service.child.output.suffix(20).joined(separator: "\n"))
        }
    }

    func url(_ name: String, _ path: String) throws -> String { "http://127.0.0.1:\(try service(name).port)\(path)" }

    /// Stops the services (SIGTERM, all at once), then the broker, and removes the data; returns
    /// each service's exit status.
    @discardableResult
    func stop() async -> [String: Int32] {
        let services = state.withLock { s -> [String: ServiceProcess] in defer { s.services = [:] }; return s.services }
        let statuses = await withTaskGroup(of: (String, Int32).self) { group in
            for (name, service) in services { group.addTask { (name, await service.stop()) } }
            var statuses: [String: Int32] = [:]
            for await (name, status) in group { statuses[name] = status }
            return statuses
        }
        await stopBroker()
        if !state.withLock({ $0.violationsAllowed }) { recordUnexpected(violations: permissionViolations) }
        removeTemporary(root)
        return statuses
    }

    /// Runs `body` with a started platform and always stops it afterwards.
    static func with(_ services: [String] = Contract.services, broker: BrokerKind = .ours, delivery: String = "at-least-once",
                     _ body: (Platform) async throws -> Void) async throws {
        let platform = try await start(services, broker: broker, delivery: delivery)
        do {
            try await body(platform)
        } catch {
            await platform.stop()
            throw error
        }
        await platform.stop()
    }

    /// Runs `body` with a client connected to the platform's broker, and closes the client
    /// however `body` ends.
    func withClient(_ body: (NATSClient) async throws -> Void) async throws {
        let client = try await NATSClient.connect(natsURL)
        do {
            try await body(client)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    // MARK: Users and events

    /// Registers a user and logs in with curl; returns (user id, access token).
    func registerAndLogin(name: String, email: String = uniqueEmail("platform"), password: String = "correct horse 9",
                          traceparent: String? = nil) async throws -> (id: String, token: String) {
        let headers = traceparent.map { ["traceparent": $0] } ?? [:]
        let registered = try await Curl.post(try url("auth-service", Contract.registerPath),
                                             json: jsonText(["email": email, "password": password, "name": name]), headers: headers)
        guard registered.status == 201, let id = registered.string("id") else {
            throw TestFailure("register answered \(registered.status): \(registered.body)")
        }
        let token = try await login(email: email, password: password, traceparent: traceparent)
        return (id, token)
    }

    /// Logs in with curl; returns the access token.
    func login(email: String, password: String = "correct horse 9", traceparent: String? = nil) async throws -> String {
        let headers = traceparent.map { ["traceparent": $0] } ?? [:]
        let login = try await Curl.post(try url("auth-service", Contract.loginPath),
                                        json: jsonText(["email": email, "password": password]), headers: headers)
        guard login.status == 200, let token = login.string("access_token") else {
            throw TestFailure("login answered \(login.status): \(login.body)")
        }
        return token
    }

    /// The user's notifications from `GET /v1/notifications` (every page).
    /// - Throws: ``TestFailure`` for a non-200 answer or a body without a notification list.
    func notifications(token: String) async throws -> [[String: Any]] {
        var all: [[String: Any]] = []
        var cursor: String?
        for _ in 0..<100 {
            let path = Contract.notificationsPath + "?limit=100" + (cursor.map { "&before=\($0)" } ?? "")
            let result = try await Curl.get(try url("notification-service", path), headers: ["Authorization": "Bearer \(token)"])
            guard result.status == 200 else { throw TestFailure("GET \(path) answered \(result.status): \(result.body)") }
            guard let page = notificationList(result.body) else { throw TestFailure("GET \(path): no notification list in \(result.body)") }
            all += page.items
            guard let next = page.next, !page.items.isEmpty else { break }
            cursor = next
        }
        return all
    }

    /// Publishes a `user.logged_in` event as auth-service would (contract payload, traceparent header).
    func publishLogin(_ client: NATSClient, userID: String, email: String, name: String,
                      eventID: String = UUID().uuidString.lowercased(), traceparent: String = newTraceparent().header) async throws {
        let event: [String: String] = ["event_id": eventID, "user_id": userID, "email": email, "name": name,
                                       "time": isoNow(), "client_address": "127.0.0.1"]
        var headers = Headers()
        try headers.set(name: "traceparent", value: traceparent)
        try await client.publish(Array(jsonText(event).utf8), subject: "user.logged_in", headers: headers)
    }
}

/// The items and the next page's cursor of a history body `{"notifications": [...], "next_before": ...}`.
func notificationList(_ body: String) -> (items: [[String: Any]], next: String?)? {
    guard let object = jsonObject(body), let items = object["notifications"] as? [[String: Any]] else { return nil }
    return (items, object["next_before"] as? String)
}

/// Now as ISO 8601 UTC with milliseconds.
func isoNow() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date())
}

/// Collects the messages of a subscription in the background so tests can wait for one by content.
final class MessageLog: Sendable {
    private final class Box: Sendable { let messages = Mutex<[Message]>([]) }
    private let box = Box()
    private let reader: Task<Void, Never>

    init(_ subscription: Subscription) {
        let box = self.box
        reader = Task {
            do { for try await message in subscription { box.messages.withLock { $0.append(message) } } } catch {}
        }
    }

    deinit { reader.cancel() }

    var all: [Message] { box.messages.withLock { $0 } }

    /// The JSON payloads received so far.
    var objects: [[String: Any]] { all.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.payload))) as? [String: Any] } }

    /// Waits for a message whose JSON payload satisfies `match`.
    /// - Throws: ``TestFailure`` after `seconds`.
    func wait(_ what: String, seconds: Double = 20, where match: @escaping ([String: Any]) -> Bool) async throws -> (Message, [String: Any]) {
        var found: (Message, [String: Any])?
        _ = await eventually(seconds) {
            for message in all {
                if let object = (try? JSONSerialization.jsonObject(with: Data(message.payload))) as? [String: Any], match(object) {
                    found = (message, object)
                    return true
                }
            }
            return false
        }
        guard let found else { throw TestFailure("no \(what) within \(seconds) s (\(all.count) messages seen)") }
        return found
    }
}
