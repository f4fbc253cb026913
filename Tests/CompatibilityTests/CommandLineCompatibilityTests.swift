// Command-line behaviour that scripts and test harnesses rely on, against nats-server 2.9.10.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What one broker did with `-p -1 -m -1 --ports_file_dir <dir>`.
struct PortsFileOutcome: Equatable, CustomStringConvertible {
    /// `<executable name>_<pid>.ports`, with the pid replaced by `<pid>`.
    var fileName: String
    /// The file's JSON with the port numbers replaced by `<port>`.
    var shape: String
    /// Whether a client connected to the announced port got an INFO line.
    var announcedPortServesNATS: Bool
    /// Whether the announced monitoring URL answered /healthz with 200.
    var announcedMonitorAnswers: Bool
    /// Whether the file was gone once the broker exited after SIGTERM.
    var removedOnExit: Bool

    var description: String {
        "file \(fileName), json \(shape), nats port serves: \(announcedPortServesNATS), "
            + "monitor answers: \(announcedMonitorAnswers), removed on exit: \(removedOnExit)"
    }

    static func run(_ kind: BrokerKind) throws -> PortsFileOutcome {
        let binary = try Peers.path(for: kind)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compat-ports-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "--ports_file_dir", dir.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let pid = process.processIdentifier
        let expectedName = "\(URL(fileURLWithPath: binary).lastPathComponent)_\(pid).ports"
        let deadline = Date().addingTimeInterval(20)
        var names: [String] = []
        var contents: [UInt8] = []
        while Date() < deadline {
            names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            if let name = names.first,
               let data = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path),
               JSONShape.of(Array(data)) != nil {
                contents = Array(data)
                break
            }
            if !process.isRunning { break }
            usleep(20_000)
        }
        let fileName = (names.first ?? "<none>").replacingOccurrences(of: "_\(pid).", with: "_<pid>.")
        let json = (try? JSONSerialization.jsonObject(with: Data(contents))) as? [String: [String]] ?? [:]
        func port(of url: String?) -> Int? { url?.split(separator: ":").last.flatMap { Int($0) } }
        var served = false
        if let natsPort = port(of: json["nats"]?.first), let client = try? RawClient(port: natsPort) {
            served = client.read(timeout: Peers.readTimeout) { $0.starts(with: Array("INFO ".utf8)) && $0.contains(0x0A) }
        }
        var monitorAnswers = false
        if let monitorPort = port(of: json["monitoring"]?.first) {
            monitorAnswers = (try? HTTPReply.get(port: monitorPort, path: "/healthz").status) == 200
        }
        var shape = String(decoding: contents, as: UTF8.self)
        for url in (json["nats"] ?? []) + (json["monitoring"] ?? []) {
            if let p = port(of: url) { shape = shape.replacingOccurrences(of: ":\(p)\"", with: ":<port>\"") }
        }
        kill(pid, SIGTERM)
        let exitDeadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < exitDeadline { usleep(10_000) }
        let removed = !process.isRunning
            && !FileManager.default.fileExists(atPath: dir.appendingPathComponent(expectedName).path)
        return PortsFileOutcome(fileName: fileName, shape: shape, announcedPortServesNATS: served,
                                announcedMonitorAnswers: monitorAnswers, removedOnExit: removed)
    }
}

@Suite("Command line: our broker against nats-server 2.9.10")
struct CommandLineCompatibilityTests {
    @Test("-p -1 -m -1 --ports_file_dir announces the random ports in the same file and JSON, removed on exit",
          .enabled(if: Peers.referenceAvailable || Peers.required, "nats-server 2.9.10 is not installed"))
    func portsFile() async throws {
        try #require(Peers.referenceAvailable, "nats-server 2.9.10 missing at \(Peers.referencePath)")
        async let reference = runBlocking { try PortsFileOutcome.run(.reference) }
        async let ours = runBlocking { try PortsFileOutcome.run(.ours) }
        let (theirs, mine) = try await (reference, ours)
        #expect(theirs.announcedPortServesNATS && theirs.removedOnExit, "nats-server 2.9.10: \(theirs)")
        // The executable is called nats-server in both cases, so even the file name must match.
        if mine != theirs {
            let text = "ports file:\n  nats-server 2.9.10: \(theirs)\n  ours: \(mine)"
            ScenarioRunner.report(text)
            recordDifference(text, name: "ports file")
        }
    }
}
