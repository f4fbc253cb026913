// Configuration reload (SIGHUP / Server.reload): new limits for new connections, credentials and
// permissions re-checked on open connections, listen changes refused.

import Foundation
import Glibc
import NATSServer
import Testing

@Suite("Configuration reload")
struct ReloadTests {
    private static func users(bobPassword: String, alicePermissions: Permissions? = nil) -> [User] {
        [User(name: "alice", password: "a1", permissions: alicePermissions),
         User(name: "bob", password: bobPassword)]
    }

    @Test("a reloaded max_payload is in the INFO of a new connection; the running client keeps working")
    func maxPayloadReachesNewConnections() throws {
        let broker = try TestBroker()
        let old = try broker.connected()
        var fresh = broker.server.options
        fresh.maxPayload = 2048
        try broker.server.reload(fresh)
        let client = try RawClient(port: broker.port)
        let info = try client.readInfo()
        #expect(info.json["max_payload"] as? Int == 2048)
        try client.send("CONNECT {\"verbose\":false}\r\nPUB big 3000\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Maximum Payload Violation'"])
        #expect(try old.sync().isEmpty)
    }

    @Test("a changed password closes that user's client with Authorization Violation; others stay")
    func changedPasswordClosesOnlyThatClient() throws {
        let broker = try TestBroker { $0.users = ReloadTests.users(bobPassword: "b1") }
        let alice = try broker.connected(#"{"verbose":false,"user":"alice","pass":"a1"}"#)
        let bob = try broker.connected(#"{"verbose":false,"user":"bob","pass":"b1"}"#)
        var fresh = broker.server.options
        fresh.users = ReloadTests.users(bobPassword: "b2")
        try broker.server.reload(fresh)
        #expect(try bob.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
        #expect(try alice.sync().isEmpty)
        let bobAgain = try broker.connected(#"{"verbose":false,"user":"bob","pass":"b2"}"#)
        #expect(try bobAgain.sync().isEmpty)
    }

    @Test("a reloaded token closes clients holding the old token")
    func changedTokenClosesClients() throws {
        let broker = try TestBroker { $0.authToken = "t1" }
        let client = try broker.connected(#"{"verbose":false,"auth_token":"t1"}"#)
        var fresh = broker.server.options
        fresh.authToken = "t2"
        try broker.server.reload(fresh)
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }

    @Test("reloaded permissions apply to an open connection: a PUB allowed before is a Permissions Violation, a denied SUB is removed")
    func changedPermissionsApplyToOpenConnection() throws {
        let broker = try TestBroker { $0.users = ReloadTests.users(bobPassword: "b1") }
        let alice = try broker.connected(#"{"verbose":false,"user":"alice","pass":"a1"}"#)
        let bob = try broker.connected(#"{"verbose":false,"user":"bob","pass":"b1"}"#)
        try alice.send("SUB updates.> 1\r\nSUB billing.> 2\r\nPUB orders.new 2\r\nhi\r\n")
        #expect(try alice.sync().isEmpty)
        var fresh = broker.server.options
        fresh.users = ReloadTests.users(
            bobPassword: "b1",
            alicePermissions: Permissions(publish: SubjectPermission(allow: ["billing.>"]),
                                          subscribe: SubjectPermission(allow: ["billing.>"])))
        try broker.server.reload(fresh)
        // The change runs on alice's loop: PING barriers until its -ERR arrives.
        var lines: [String] = []
        #expect(try eventually {
            lines = try alice.sync()
            return !lines.isEmpty
        })
        #expect(lines == [#"-ERR 'Permissions Violation for Subscription to "updates.>" (sid "1")'"#])
        try alice.send("PUB orders.new 2\r\nhi\r\n")
        #expect(try alice.sync() == [#"-ERR 'Permissions Violation for Publish to "orders.new"'"#])
        // The removed subscription gets nothing; the allowed one still delivers.
        try bob.send("PUB updates.x 2\r\nno\r\nPUB billing.x 2\r\nok\r\n")
        #expect(try bob.sync().isEmpty)
        #expect(try alice.readLine() == "MSG billing.x 2 2")
        #expect(try alice.readLine() == "ok")
    }

    @Test("a reload changing the port is refused and the server keeps serving with the old config")
    func listenChangeIsRefused() throws {
        let broker = try TestBroker { $0.maxPayload = 4096 }
        var fresh = broker.server.options
        fresh.port = broker.port == 65_000 ? 65_001 : 65_000
        fresh.maxPayload = 2048
        #expect(throws: ServerStartError.self) { try broker.server.reload(fresh) }
        let client = try RawClient(port: broker.port)
        #expect(try client.readInfo().json["max_payload"] as? Int == 4096)
        try client.send("CONNECT {\"verbose\":false}\r\n")
        #expect(try client.sync().isEmpty)
    }
}

@Suite("nats-server executable: SIGHUP applies the changed config")
struct ReloadSignalTests {
    /// The `nats-server` product built next to this test bundle.
    private static var binary: String? {
        var directories: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        directories.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        for directory in directories {
            for candidate in [directory, directory.deletingLastPathComponent()] {
                let path = candidate.appendingPathComponent("nats-server").path
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
        }
        return nil
    }

    @Test("SIGHUP: a changed max_payload reaches new clients' INFO; a port change is refused and the server keeps serving")
    func sighupAppliesMaxPayloadAndRefusesPortChange() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("r.conf").path
        let logPath = directory.appendingPathComponent("r.log").path
        try "listen: 127.0.0.1:-1\nmax_payload: 4096\n".write(toFile: config, atomically: false, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Self.binary))
        process.arguments = ["-c", config, "-l", logPath]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        #expect(eventually(timeout: 20) { log().contains("Server is ready") })
        let marker = "Listening for client connections on 127.0.0.1:"
        let text = log()
        let range = try #require(text.range(of: marker))
        let port = try #require(Int(text[range.upperBound...].prefix { $0.isNumber }))

        try "listen: 127.0.0.1:-1\nmax_payload: 2048\n".write(toFile: config, atomically: false, encoding: .utf8)
        #expect(kill(process.processIdentifier, SIGHUP) == 0)
        #expect(eventually(timeout: 10) { log().contains("Reloaded server configuration") })
        let client = try RawClient(port: port)
        #expect(try client.readInfo().json["max_payload"] as? Int == 2048)

        try "listen: 127.0.0.1:1\nmax_payload: 1024\n".write(toFile: config, atomically: false, encoding: .utf8)
        #expect(kill(process.processIdentifier, SIGHUP) == 0)
        #expect(eventually(timeout: 10) {
            log().contains("Failed to reload server configuration: config reload not supported for Port: old=\(port), new=1")
        })
        let after = try RawClient(port: port)
        #expect(try after.readInfo().json["max_payload"] as? Int == 2048)
        try after.send("CONNECT {\"verbose\":false}\r\n")
        #expect(try after.sync().isEmpty)
        #expect(process.isRunning)
    }
}
