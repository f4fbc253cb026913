// The nats-server executable and signals: `--signal` with a pid file, SIGUSR2 lame duck,
// SIGUSR1 log reopen, SIGHUP reload, and `-t` on the shipped nats-server/nats.conf.

import Foundation
import Glibc
import Testing

/// The `nats-server` product built next to this test bundle.
private let binaryPath: String? = {
    var directories: [URL] = []
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        directories.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
    }
    directories.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    directories.append(Bundle.main.bundleURL)
    for directory in directories {
        for candidate in [directory, directory.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("nats-server").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
    }
    return nil
}()

/// The repository root (this file is Tests/NATSServerTests/SignalTests.swift).
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A temporary directory removed on deinit.
private final class Scratch {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ldm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: path(name), atomically: false, encoding: .utf8)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Runs the binary to completion; returns its exit status and combined output.
private func run(_ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try #require(binaryPath))
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Our broker as a child process logging to a file.
private final class BrokerProcess {
    let process = Process()
    let logPath: String
    private(set) var port = 0

    init(arguments: [String], logPath: String) throws {
        self.logPath = logPath
        process.executableURL = URL(fileURLWithPath: try #require(binaryPath))
        process.arguments = ["-a", "127.0.0.1", "-p", "-1", "-l", logPath] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let marker = "Listening for client connections on 127.0.0.1:"
        let ready = eventually(timeout: 20) { self.log.contains("Server is ready") }
        guard ready, let range = log.range(of: marker) else { throw HarnessError("broker did not start:\n\(log)") }
        port = Int(log[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func exited(timeout: Double) -> Bool {
        eventually(timeout: timeout) { !self.process.isRunning }
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

@Suite("nats-server executable: signals and the shipped config")
struct SignalTests {
    @Test("our broker says nats-server/nats.conf is valid")
    func shippedConfigIsValid() throws {
        let config = repositoryRoot.appendingPathComponent("nats-server/nats.conf").path
        // The permission matrix it includes takes every identity's password from the environment.
        var environment = ProcessInfo.processInfo.environment
        for name in ["NATS_ADMIN_PASSWORD", "AUTH_SERVICE_PASSWORD", "NOTIFICATION_SERVICE_PASSWORD",
                     "DATA_PROCESSING_SERVICE_PASSWORD", "ANALYTICS_SERVICE_PASSWORD"] {
            environment[name] = "test-\(name.lowercased())"
        }
        let result = try run(["-t", "-c", config], environment: environment)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("configuration file \(config) is valid"))

        // Without them the broker refuses to start rather than run with an empty password.
        environment["ANALYTICS_SERVICE_PASSWORD"] = nil
        let missing = try run(["-t", "-c", config], environment: environment)
        #expect(missing.status != 0)
        #expect(missing.output.contains("ANALYTICS_SERVICE_PASSWORD"), "\(missing.output)")
    }

    @Test("--signal ldm=<pidfile>: protocol-1 client gets the ldm INFO, is closed, the server exits 0")
    func lameDuckThroughPidFile() throws {
        let scratch = try Scratch()
        try scratch.write("b.conf", "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"200ms\"\n")
        let broker = try BrokerProcess(arguments: ["-c", scratch.path("b.conf"), "-P", scratch.path("b.pid")],
                                       logPath: scratch.path("b.log"))
        let client = try RawClient(port: broker.port)
        _ = try client.readInfo()
        try client.send("CONNECT {\"verbose\":false,\"protocol\":1}\r\n")
        try client.sync()

        let result = try run(["--signal", "ldm=\(scratch.path("b.pid"))"])
        #expect(result.status == 0, "\(result.output)")
        let info = try #require(try client.readLine(timeout: 10))
        #expect(info.hasPrefix("INFO {") && info.hasSuffix(",\"ldm\":true} "))
        #expect(try client.linesUntilClosed(timeout: 10) == [])
        #expect(broker.exited(timeout: 10))
        #expect(broker.process.terminationStatus == 0)
        #expect(broker.log.contains("[INF] Entering lame duck mode, stop accepting new clients"))
        #expect(broker.log.contains("[INF] Closing existing clients"))
    }

    @Test("nats-py sees lame duck mode: its lame_duck_mode_cb runs after SIGUSR2")
    func natsPyLameDuckCallback() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return }
        let scratch = try Scratch()
        try scratch.write("p.conf", "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n")
        let broker = try BrokerProcess(arguments: ["-c", scratch.path("p.conf")], logPath: scratch.path("p.log"))
        let script = """
            import asyncio, os, signal, sys
            import nats
            async def main():
                seen = asyncio.Event()
                async def on_ldm():
                    seen.set()
                nc = await nats.connect("nats://127.0.0.1:\(broker.port)", lame_duck_mode_cb=on_ldm,
                                        allow_reconnect=False)
                await nc.flush()
                os.kill(\(broker.process.processIdentifier), signal.SIGUSR2)
                try:
                    await asyncio.wait_for(seen.wait(), 10)
                except asyncio.TimeoutError:
                    print("no lame duck callback"); sys.exit(2)
                print("lame duck reported")
                await nc.close()
            asyncio.run(main())
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if output.contains("No module named 'nats'") { return }
        #expect(process.terminationStatus == 0, "\(output)")
        #expect(output.contains("lame duck reported"))
        #expect(broker.exited(timeout: 10))
    }

    @Test("--signal with a pid file that does not hold a pid fails with a clear error")
    func signalWithBadPidFile() throws {
        let scratch = try Scratch()
        try scratch.write("bad.pid", "not-a-pid\n")
        let result = try run(["--signal", "ldm=\(scratch.path("bad.pid"))"])
        #expect(result.status == 1)
        #expect(result.output.contains("invalid pid: not-a-pid"))
        let unknown = try run(["--signal", "bogus=1"])
        #expect(unknown.status == 1)
        #expect(unknown.output.contains("unknown signal \"bogus\""))
    }

    @Test("SIGUSR1 (--signal reopen) writes to a new log file after the old one was moved away")
    func reopenCreatesNewLogFile() throws {
        let scratch = try Scratch()
        let broker = try BrokerProcess(arguments: [], logPath: scratch.path("n.log"))
        try FileManager.default.moveItem(atPath: scratch.path("n.log"), toPath: scratch.path("n.log.1"))
        let pid = broker.process.processIdentifier
        let result = try run(["--signal", "reopen=\(pid)"])
        #expect(result.status == 0, "\(result.output)")
        #expect(eventually(timeout: 10) { broker.log.contains("File log re-opened") })
        let old = try String(contentsOfFile: scratch.path("n.log.1"), encoding: .utf8)
        #expect(old.contains("Server is ready") && !old.contains("File log re-opened"))
        #expect(broker.process.isRunning)
    }

    @Test("SIGHUP with a config that no longer parses logs the error with file:line and keeps running")
    func reloadWithBrokenFileKeepsRunning() throws {
        let scratch = try Scratch()
        try scratch.write("r.conf", "max_payload: 1MB\n")
        let broker = try BrokerProcess(arguments: ["-c", scratch.path("r.conf")], logPath: scratch.path("r.log"))
        try scratch.write("r.conf", "max_payload: 1MB\nmax_pending: {\n")
        #expect(kill(broker.process.processIdentifier, SIGHUP) == 0)
        #expect(eventually(timeout: 10) { broker.log.contains("Failed to reload server configuration: \(scratch.path("r.conf")):") })
        let client = try RawClient(port: broker.port)
        let info = try client.readInfo()
        #expect(info.json["max_payload"] as? Int == 1_048_576)
        #expect(broker.process.isRunning)
    }
}
