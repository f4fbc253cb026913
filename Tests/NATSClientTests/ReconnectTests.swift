// Reconnect: the broker process is killed and restarted on the same port mid-stream.

import Foundation
import TestSupport
import Synchronization
import Testing
@testable import NATSClient
#if canImport(Glibc)
import Glibc
#endif

@Suite("Reconnect", .timeLimit(.minutes(3)))
struct ReconnectTests {
    @Test("subscriptions come back with their queue group and remaining auto-unsubscribe count", arguments: Broker.enabled)
    func subscriptionsAreRestored(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let events = EventLog(client)
        let plain = try await client.subscribe("r.plain")
        let workerA = try await client.subscribe("r.work", queue: "workers")
        let workerB = try await client.subscribe("r.work", queue: "workers")
        let limited = try await client.subscribe("r.limited")
        try await limited.unsubscribe(after: 5)
        try await client.flush()
        for index in 0..<2 { try await client.publish(bytes("\(index)"), subject: "r.limited") }
        try await client.flush()
        #expect(limited.pendingMessages == 2)

        await server.kill()
        #expect(await eventually { !client.isConnected })
        try await server.start()
        #expect(await eventually(20) { events.contains { if case .reconnected = $0 { true } else { false } } })
        #expect(client.statistics.reconnects == 1)

        try await client.publish(bytes("p"), subject: "r.plain")
        for index in 0..<100 { try await client.publish(bytes("\(index)"), subject: "r.work") }
        for index in 2..<10 { try await client.publish(bytes("\(index)"), subject: "r.limited") }
        try await client.flush()

        #expect(try await take(1, from: plain).first?.string == "p")
        // One delivery per message to the group: the queue group survived (two plain subs would get 200).
        #expect(workerA.pendingMessages + workerB.pendingMessages == 100)
        // 5 in total: 2 before the restart and exactly 3 after it, then the subscription ends.
        let rest = try await within(10) {
            var received: [String] = []
            for try await message in limited { received.append(message.string) }
            return received
        }
        #expect(rest == ["0", "1", "2", "3", "4"])
        await client.close()
    }

    @Test("publishes made while disconnected are delivered after the reconnect, behind the re-subscribe", arguments: Broker.enabled)
    func bufferedPublishesAreDelivered(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("buffered")
        try await client.flush()
        for index in 0..<100 { try await client.publish(bytes("\(index)"), subject: "buffered") }
        try await client.flush()
        // Everything flushed before the loss was delivered.
        #expect(sub.pendingMessages == 100)

        await server.kill()
        #expect(await eventually { !client.isConnected })
        for index in 100..<300 { try await client.publish(bytes("\(index)"), subject: "buffered") }
        // A flush issued while disconnected waits for the reconnect.
        let flushed = Task { try await client.flush(timeout: .seconds(30)) }
        try await server.start()
        try await flushed.value
        let all = try await take(300, from: sub)
        #expect(all.map(\.string) == (0..<300).map(String.init))
        #expect(sub.droppedCount == 0)
        await client.close()
    }

    @Test("killed mid-stream: every message of a batch whose flush() succeeded is delivered", arguments: Broker.enabled)
    func flushedBatchesSurviveAKill(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        var options = testOptions(server)
        options.reconnectBufferSize = 64 * 1024 * 1024
        let client = try await NATSClient.connect(options)
        let sub = try await client.subscribe("stream")
        sub.pendingLimits = .init(messages: 0, bytes: 0)
        try await client.flush()
        let batches = 40, batchSize = 50
        var confirmed: [Int] = []
        var restart: Task<Void, Error>?
        for batch in 0..<batches {
            if batch == 10 {
                await server.kill()
                // Restart once the client noticed, while publishing continues.
                restart = Task {
                    _ = await eventually(20) { !client.isConnected }
                    try await server.start()
                }
            }
            for index in 0..<batchSize {
                try await client.publish(bytes("\(batch * batchSize + index)"), subject: "stream")
            }
            do {
                try await client.flush(timeout: .seconds(30))
                confirmed.append(batch)
            } catch {
                // Only a batch sent into the dying connection may be lost, and flush says so.
                guard error == .disconnected else { throw error }
            }
        }
        try await restart?.value
        try await client.flush(timeout: .seconds(30))
        let received = Set(try await take(sub.pendingMessages, from: sub).map(\.string))
        #expect(confirmed.count >= batches - 2)
        for batch in confirmed {
            for index in 0..<batchSize {
                #expect(received.contains(String(batch * batchSize + index)), "lost message \(batch * batchSize + index) of a flushed batch")
            }
        }
        await client.close()
    }

    @Test("a request made while disconnected is answered after the reconnect", arguments: Broker.enabled)
    func requestAcrossReconnect(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let responder = try await startResponder(client, subject: "rr") { Array("ok:".utf8) + $0 }
        // Create the shared inbox before the outage.
        #expect(try await client.request(bytes("1"), subject: "rr").string == "ok:1")
        await server.kill()
        #expect(await eventually { !client.isConnected })
        let pending = Task { try await client.request(bytes("2"), subject: "rr", timeout: .seconds(30)) }
        try await server.start()
        // Same connection: the responder's SUB and the inbox SUB are replayed before the request.
        #expect(try await pending.value.string == "ok:2")
        responder.cancel()
        await client.close()
    }

    @Test("keep-alive PINGs are answered and do not disturb a healthy connection", arguments: Broker.enabled)
    func keepAliveOnHealthyConnection(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        var options = testOptions(server)
        options.pingInterval = .milliseconds(20)
        options.maxPingsOutstanding = 2
        let client = try await NATSClient.connect(options)
        let events = EventLog(client)
        #expect(await eventually(20) { client.state.withLock { $0.keepAlivePongs >= 10 } })
        #expect(!events.contains { if case .disconnected = $0 { true } else { false } })
        #expect(client.statistics.reconnects == 0)
        await client.close()
    }

    @Test("a publish beyond the reconnect buffer fails with reconnectBufferExceeded", arguments: Broker.enabled)
    func reconnectBufferLimit(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        var options = testOptions(server)
        options.reconnectBufferSize = 1000
        options.reconnectWait = .seconds(1)
        let client = try await NATSClient.connect(options)
        await server.kill()
        #expect(await eventually { !client.isConnected })
        var accepted = 0
        var failure: NATSError?
        for _ in 0..<100 {
            do {
                try await client.publish([UInt8](repeating: 1, count: 100), subject: "full")
                accepted += 1
            } catch {
                failure = error
                break
            }
        }
        #expect(failure == .reconnectBufferExceeded(limit: 1000))
        #expect(accepted > 0 && accepted < 10)
        await client.close()
    }

    @Test("closing before the reconnect reports the discarded buffered publishes", arguments: Broker.enabled)
    func discardedPublishesAreReported(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        var options = testOptions(server)
        options.reconnectWait = .seconds(1)
        let client = try await NATSClient.connect(options)
        let events = EventLog(client)
        await server.kill()
        #expect(await eventually { !client.isConnected })
        for _ in 0..<3 { try await client.publish(bytes("lost"), subject: "gone") }
        await client.close()
        #expect(await eventually {
            events.contains { if case .bufferedPublishesDiscarded(messages: 3, _) = $0 { true } else { false } }
        })
    }

    @Test("reconnecting gives up after maxReconnectAttempts and closes with reconnectFailed", arguments: Broker.enabled)
    func reconnectGivesUp(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        var options = testOptions(server)
        options.maxReconnectAttempts = 3
        let client = try await NATSClient.connect(options)
        let events = EventLog(client)
        let sub = try await client.subscribe("never")
        server.stop()
        #expect(await eventually(20) { client.isClosed })
        #expect(await eventually { events.contains { $0 == .closed(.reconnectFailed(attempts: 3)) } })
        let count = try await within(5) {
            var count = 0
            for try await _ in sub { count += 1 }
            return count
        }
        #expect(count == 0)
        await client.close()
    }

    @Test("with reconnect disabled a lost connection closes the client and ends subscriptions", arguments: Broker.enabled)
    func noReconnectCloses(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        var options = testOptions(server)
        options.allowReconnect = false
        let client = try await NATSClient.connect(options)
        let events = EventLog(client)
        let sub = try await client.subscribe("gone")
        try await client.flush()
        await server.kill()
        #expect(await eventually { client.isClosed })
        let count = try await within(5) {
            var count = 0
            for try await _ in sub { count += 1 }
            return count
        }
        #expect(count == 0)
        #expect(await eventually { events.contains { if case .closed(.some) = $0 { true } else { false } } })
        await #expect(throws: NATSError.closed) { try await client.publish(bytes("x"), subject: "gone") }
        await client.close()
    }

    @Test("a subscription the restarted server refuses ends with resubscribeFailed and an event", arguments: Broker.enabled)
    func failedResubscribeIsSurfaced(broker: Broker) async throws {
        try await broker.run(needing: .perUserAuthorization) {
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("natsclient-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let open = directory.appendingPathComponent("open.conf")
            let strict = directory.appendingPathComponent("strict.conf")
            try "authorization { users = [ { user: alice, password: pw } ] }\n".write(to: open, atomically: true, encoding: .utf8)
            try """
            authorization { users = [ { user: alice, password: pw, permissions: { subscribe: { deny: ["secret.>"] } } } ] }

            """.write(to: strict, atomically: true, encoding: .utf8)
            let port = try freePort()
            var server: BrokerProcess? = try await BrokerProcess(broker, port: port, arguments: ["-c", open.path])
            var options = testOptions(server!)
            options.user = "alice"
            options.password = "pw"
            let client = try await NATSClient.connect(options)
            let events = EventLog(client)
            let secret = try await client.subscribe("secret.data")
            let fine = try await client.subscribe("public.data")
            try await client.flush()
            await server?.kill()
            server = nil
            #expect(await eventually { !client.isConnected })
            let restarted = try await BrokerProcess(broker, port: port, arguments: ["-c", strict.path])
            defer { restarted.stop() }
            #expect(await eventually(20) {
                events.contains { if case .resubscribeFailed(subject: "secret.data", _) = $0 { true } else { false } }
            })
            do {
                for try await _ in secret {}
                Issue.record("iteration of a refused subscription ended without an error")
            } catch let error as NATSError {
                guard case .resubscribeFailed(subject: "secret.data", _) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
            }
            // The other subscription works.
            try await client.publish(bytes("ok"), subject: "public.data")
            #expect(try await take(1, from: fine).first?.string == "ok")
            await client.close()
        }
    }

    @Test("a connection whose server stops answering PINGs is declared stale and re-established")
    func staleConnectionIsReplaced() async throws {
        let fake = try SilentServer()
        defer { fake.stop() }
        var options = NATSClient.Options(url: "nats://127.0.0.1:\(fake.port)")
        options.pingInterval = .milliseconds(100)
        options.maxPingsOutstanding = 2
        options.reconnectWait = .milliseconds(20)
        let client = try await NATSClient.connect(options)
        let events = EventLog(client)
        #expect(await eventually(20) { fake.acceptedConnections >= 2 })
        #expect(await eventually { events.contains { if case .disconnected = $0 { true } else { false } } })
        await client.close()
    }

    @Test("lame duck mode is reported as an event", arguments: Broker.enabled)
    func lameDuckIsReported(broker: Broker) async throws {
        try await broker.run(needing: .lameDuckMode) {
            let server = try await BrokerProcess(broker)
            defer { server.stop() }
            let client = try await NATSClient.connect(testOptions(server))
            let events = EventLog(client)
            server.signal(SIGUSR2)  // nats-server: enter lame duck mode
            #expect(await eventually(20) { events.contains { if case .lameDuck = $0 { true } else { false } } })
            await client.close()
        }
    }

    @Test("servers announced in connect_urls are added and used for failover", arguments: Broker.enabled)
    func discoveredServersAreUsed(broker: Broker) async throws {
        try await broker.run(needing: .clustering) {
            let clusterA = try freePort()
            let clusterB = try freePort()
            let a = try await BrokerProcess(broker, arguments: ["--cluster_name", "c", "--cluster", "nats://127.0.0.1:\(clusterA)"])
            defer { a.stop() }
            var options = testOptions(a)
            options.maxReconnectAttempts = nil
            let client = try await NATSClient.connect(options)
            let events = EventLog(client)
            let b = try await BrokerProcess(broker, arguments: [
                "--cluster_name", "c", "--cluster", "nats://127.0.0.1:\(clusterB)", "--routes", "nats://127.0.0.1:\(clusterA)",
            ])
            defer { b.stop() }
            #expect(await eventually(20) { client.knownServers.contains("127.0.0.1:\(b.port)") })
            #expect(await eventually { events.contains { if case .discoveredServers = $0 { true } else { false } } })
            await a.kill()
            #expect(await eventually(20) { client.connectedServer == "127.0.0.1:\(b.port)" })
            try await client.flush()
            await client.close()
        }
    }
}

/// A fake server that completes the handshake and then never answers another PING.
final class SilentServer: @unchecked Sendable {
    // @unchecked: `accepted` is a Mutex; the fd is closed once by stop().
    let fd: Int32
    let port: Int
    private let accepted = Mutex(0)
    private let stopped = Mutex(false)

    var acceptedConnections: Int { accepted.withLock { $0 } }

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        listen(listener, 16)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        fd = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in self.acceptLoop() }
        thread.start()
    }

    private func acceptLoop() {
        while !stopped.withLock({ $0 }) {
            let connection = accept(fd, nil, nil)
            if connection < 0 { return }
            accepted.withLock { $0 += 1 }
            let thread = Thread { [self] in self.serve(connection) }
            thread.start()
        }
    }

    private func serve(_ connection: Int32) {
        defer { Glibc.close(connection) }
        let info = Array("INFO {\"server_id\":\"fake\",\"version\":\"2.9.10\",\"proto\":1,\"headers\":true,\"max_payload\":1048576}\r\n".utf8)
        _ = info.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var answered = false
        var seen: [UInt8] = []
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return }
            if !answered {
                seen.append(contentsOf: buffer[..<count])
                if String(decoding: seen, as: UTF8.self).contains("PING\r\n") {
                    answered = true
                    let pong = Array("PONG\r\n".utf8)
                    _ = pong.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
    }

    func stop() {
        stopped.withLock { $0 = true }
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}
