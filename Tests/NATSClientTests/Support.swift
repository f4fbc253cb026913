// Test support: real broker processes on random ports, timeouts, deadline-bounded polls.

import Foundation
import Synchronization
import TestSupport
import Testing
@testable import NATSClient
#if canImport(Glibc)
import Glibc
#endif

/// The brokers every client test runs against.
enum Broker: String, CaseIterable, CustomStringConvertible, Sendable {
    /// Debian's nats-server 2.9.10.
    case reference
    /// This package's `nats-server` product.
    case ours

    var description: String { rawValue }

    /// The brokers selected by `NATS_TEST_BROKERS` (comma list), both by default.
    static var enabled: [Broker] {
        guard let list = ProcessInfo.processInfo.environment["NATS_TEST_BROKERS"], !list.isEmpty else { return allCases }
        return list.split(separator: ",").compactMap { Broker(rawValue: String($0)) }
    }

    var executable: String {
        switch self {
        case .reference:
            return ProcessInfo.processInfo.environment["NATS_REFERENCE_SERVER_BIN"] ?? "/usr/sbin/nats-server"
        case .ours:
            if let path = ProcessInfo.processInfo.environment["NATS_SERVER_BIN"] { return path }
            var candidates: [URL] = [
                URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                Bundle.main.bundleURL.deletingLastPathComponent(),
                Bundle.main.bundleURL,
            ]
            // The xctest bundle may be a directory on some platforms: look beside it as well.
            candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().deletingLastPathComponent())
            for directory in candidates {
                let path = directory.appendingPathComponent("nats-server").path
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
            return "nats-server-not-found-next-to-the-test-bundle"
        }
    }
}

/// A broker process on a loopback port; stopped by `stop()` (tests call it in `defer`-like fashion).
final class BrokerProcess: @unchecked Sendable {
    // @unchecked: `process` is only touched by the test that owns the broker, sequentially.
    let broker: Broker
    let port: Int
    let arguments: [String]
    private var process: Process?
    let logURL: URL

    var url: String { "nats://127.0.0.1:\(port)" }

    /// Starts `broker` on `port` (a free one if nil) and waits until it accepts connections.
    init(_ broker: Broker, port: Int? = nil, arguments: [String] = []) async throws {
        self.broker = broker
        self.port = try port ?? TestSupport.freePort()
        self.arguments = arguments
        self.logURL = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("natsclient-test-\(broker)-\(self.port)-\(UUID().uuidString.prefix(8)).log")
        try await start()
    }

    /// (Re)starts the process on the same port.
    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: broker.executable)
        process.arguments = ["-a", "127.0.0.1", "-p", String(port)] + arguments
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        do {
            try process.run()
        } catch {
            throw TestFailure("cannot start \(broker) broker at \(broker.executable): \(error)")
        }
        self.process = process
        try await waitUntilAccepting()
    }

    /// Kills the process (SIGKILL) and waits (off the cooperative pool) for it to exit.
    func kill() async {
        guard let process else { return }
        self.process = nil
        Glibc.kill(process.processIdentifier, SIGKILL)
        await onThread { process.waitUntilExit() }
    }

    /// Stops the process: SIGTERM now, SIGKILL after 5 s; a helper thread reaps it, so this never
    /// blocks. The log is removed unless NATS_TEST_KEEP_LOGS is set.
    func stop() {
        guard let process else { return }
        self.process = nil
        process.terminate()
        if ProcessInfo.processInfo.environment["NATS_TEST_KEEP_LOGS"] == nil {
            try? FileManager.default.removeItem(at: logURL)
        }
        let reaper = Thread {
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        reaper.start()
    }

    /// Sends `signal` to the process.
    func signal(_ signal: Int32) {
        if let process { Glibc.kill(process.processIdentifier, signal) }
    }

    var pid: Int32? { process?.processIdentifier }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["NATS_TEST_KEEP_LOGS"] == nil {
            try? FileManager.default.removeItem(at: logURL)
        }
    }

    private func waitUntilAccepting() async throws {
        let deadline = Date().addingTimeInterval(20)
        let port = self.port
        while Date() < deadline {
            if let process, !process.isRunning {
                let log = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
                throw TestFailure("\(broker) broker exited at start: \(log.suffix(2000))")
            }
            let accepted = await onThread { () -> Bool in
                guard let fd = try? TCPSocket.connect(host: "127.0.0.1", port: port, timeoutNanos: 200_000_000) else { return false }
                TCPSocket.close(fd)
                return true
            }
            if accepted { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("\(broker) broker did not accept connections on port \(port) within 10 s")
    }

}

/// Runs a blocking `body` on its own thread so it never occupies the cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

/// Takes exactly `count` messages from `subscription` (bounded by `seconds`).
func take(_ count: Int, from subscription: Subscription, seconds: Double = 10) async throws -> [Message] {
    try await within(seconds, "receiving \(count) messages on \(subscription.subject)") {
        var messages: [Message] = []
        var iterator = subscription.makeAsyncIterator()
        while messages.count < count, let message = try await iterator.next() { messages.append(message) }
        return messages
    }
}

/// Collects events from `client.events` into an array the test can poll.
final class EventLog: Sendable {
    final class Box: Sendable {
        let storage = Mutex<[NATSClient.Event]>([])
    }
    private let box: Box
    private let task: Task<Void, Never>

    init(_ client: NATSClient) {
        let stream = client.events
        let box = Box()
        self.box = box
        task = Task {
            for await event in stream { box.storage.withLock { $0.append(event) } }
        }
    }

    var all: [NATSClient.Event] { box.storage.withLock { $0 } }

    func contains(where predicate: (NATSClient.Event) -> Bool) -> Bool { all.contains(where: predicate) }

    deinit { task.cancel() }
}

/// Options for a test client: short reconnect waits so tests stay fast.
func testOptions(_ broker: BrokerProcess) -> NATSClient.Options {
    var options = NATSClient.Options(url: broker.url)
    options.reconnectWait = .milliseconds(20)
    options.reconnectMaxWait = .milliseconds(200)
    options.maxReconnectAttempts = 200
    options.connectTimeout = .seconds(2)
    return options
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Broker features some client tests need that our broker does not implement yet (they belong to the
/// broker-in-operation issue). Keep this list as short as the broker allows.
enum BrokerFeature: String, Sendable {
    case clustering = "clustering (--cluster, --routes, connect_urls)"
    case perUserAuthorization = "authorization users with permissions in nats.conf"
    case lameDuckMode = "lame duck mode (SIGUSR2, INFO with ldm)"
}

extension Broker {
    /// The features this broker lacks.
    var missingFeatures: Set<BrokerFeature> {
        self == .ours ? [.clustering] : []
    }

    /// Runs a test body that needs `feature`. On a broker that lacks it, the body still runs and its
    /// failures are recorded as a known issue naming the gap; once the broker has the feature the same
    /// test passes unchanged. On a broker that has it, failures are ordinary failures.
    func run(needing feature: BrokerFeature, _ body: () async throws -> Void) async throws {
        if missingFeatures.contains(feature) {
            await withKnownIssue("our broker does not implement \(feature.rawValue) yet", isIntermittent: true) {
                try await body()
            }
        } else {
            try await body()
        }
    }
}
