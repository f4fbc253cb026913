// Lame duck mode (nats-server's SIGUSR2): listener closed, INFO with "ldm":true to protocol-1
// clients, grace period, clients closed, then shutdown. Driven in-process with short durations.

import Foundation
import Glibc
import NATSConfig
import Synchronization
import Testing

@testable import NATSServer

/// Runs `server.enterLameDuckMode()` (which blocks until shutdown) on a thread of its own.
private final class LameDuckRunner: Sendable {
    let server: Server
    private let done = Mutex(false)

    init(_ server: Server) {
        self.server = server
    }

    func start() {
        Thread.detachNewThread { [self] in
            server.enterLameDuckMode()
            done.withLock { $0 = true }
        }
    }

    /// Waits (polling) until lame duck mode ended; false on timeout.
    func waitUntilFinished(timeout: Double) -> Bool {
        eventually(timeout: timeout) { done.withLock { $0 } }
    }
}

/// True when a TCP connect to 127.0.0.1:`port` is refused.
private func connectRefused(port: Int) -> Bool {
    do {
        let client = try RawClient(port: port)
        // Accepted by the kernel backlog before the close: the broker must close it at once.
        return try client.drainUntilClosed(timeout: 1)
    } catch {
        return true
    }
}

@Suite("Lame duck mode")
struct LameDuckTests {
    private func broker(grace: Duration = .milliseconds(300), duration: Duration = .milliseconds(600)) throws -> TestBroker {
        try TestBroker { options in
            options.lameDuckGracePeriod = grace
            options.lameDuckDuration = duration
        }
    }

    @Test("a protocol-1 client gets the INFO with ldm true in 2.9.10's field order, then is closed")
    func protocolOneClientSeesLameDuckInfoThenClose() throws {
        let broker = try broker()
        let port = broker.port
        let client = try broker.connected(#"{"verbose":false,"pedantic":false,"protocol":1}"#)
        let runner = LameDuckRunner(broker.server)
        runner.start()
        let line = try #require(try client.readLine())
        #expect(line.hasPrefix("INFO {\"server_id\":\""))
        #expect(line.hasSuffix(",\"client_ip\":\"127.0.0.1\",\"ldm\":true} "))
        #expect(line.contains("\"port\":\(port),\"headers\":true,\"max_payload\":1048576,\"client_id\":"))
        #expect(try client.linesUntilClosed(timeout: 10) == [])
        #expect(runner.waitUntilFinished(timeout: 10))
        #expect(broker.server.port == 0)  // shut down
    }

    @Test("a protocol-0 client gets no lame duck INFO but is closed after the grace period")
    func protocolZeroClientGetsNoInfo() throws {
        let broker = try broker()
        let client = try broker.connected(#"{"verbose":false,"pedantic":false,"protocol":0}"#)
        let runner = LameDuckRunner(broker.server)
        runner.start()
        #expect(try client.linesUntilClosed(timeout: 10) == [])
        #expect(runner.waitUntilFinished(timeout: 10))
    }

    @Test("the listener refuses new connections as soon as lame duck mode starts, while clients stay open")
    func listenerRefusesNewConnections() throws {
        let broker = try broker(grace: .seconds(30), duration: .seconds(60))
        let port = broker.port
        let client = try broker.connected(#"{"verbose":false,"pedantic":false,"protocol":1}"#)
        let runner = LameDuckRunner(broker.server)
        runner.start()
        let line = try #require(try client.readLine())
        #expect(line.hasSuffix("\"ldm\":true} "))
        #expect(broker.server.isInLameDuckMode)
        #expect(eventually(timeout: 5) { connectRefused(port: port) })
        // Within the grace period the existing client still works.
        try client.send("SUB a 1\r\nPUB a 2\r\nhi\r\n")
        try client.expect("MSG a 1 2")
        try client.expect("hi")
        // Shutdown cuts the grace period short.
        broker.server.shutdown()
        #expect(runner.waitUntilFinished(timeout: 10))
        #expect(try client.drainUntilClosed(timeout: 5))
    }

    @Test("several clients are all closed, spread over the duration, and the server shuts down")
    func allClientsClosed() throws {
        let broker = try broker(grace: .milliseconds(100), duration: .milliseconds(400))
        let clients = try (0..<4).map { _ in try broker.connected(#"{"verbose":false,"protocol":1}"#) }
        let runner = LameDuckRunner(broker.server)
        runner.start()
        for client in clients {
            let lines = try #require(try client.linesUntilClosed(timeout: 10))
            #expect(lines.count == 1 && lines[0].contains("\"ldm\":true"))
        }
        #expect(runner.waitUntilFinished(timeout: 10))
    }

    @Test("config: lame_duck_duration below 30s is refused with 2.9.10's text; durations are applied")
    func configKeys() throws {
        func parse(_ text: String) throws -> Options {
            var options = Options()
            try options.apply(ConfigParser.parse(text, file: "nats.conf", environment: [:]))
            return options
        }
        #expect(throws: ConfigError.self) { try parse("lame_duck_duration: \"6s\"") }
        do {
            _ = try parse("port: 1\nlame_duck_duration: \"6s\"")
        } catch let error as ConfigError {
            #expect(error.description == "nats.conf:2:21: invalid lame_duck_duration of 6s, minimum is 30 seconds")
        }
        let options = try parse("lame_duck_duration: \"1m30s\"\nlame_duck_grace_period: \"2s\"")
        #expect(options.lameDuckDuration == .seconds(90))
        #expect(options.lameDuckGracePeriod == .seconds(2))
        #expect(Options().lameDuckDuration == .seconds(120))
        #expect(Options().lameDuckGracePeriod == .seconds(10))
    }
}
