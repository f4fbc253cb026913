// Connect, publish, subscribe, flush, headers, queue groups, limits: against both brokers.

import Foundation
import TestSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import NATSClient

@Suite("Core messaging", .timeLimit(.minutes(2)))
struct CoreTests {
    @Test("connects and reports the server's INFO", arguments: Broker.enabled)
    func connectsAndReportsServerInfo(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        #expect(client.isConnected)
        #expect(client.connectedServer == "127.0.0.1:\(server.port)")
        let info = try #require(client.serverInfo)
        #expect(info.headers)
        #expect(info.maxPayload == 1_048_576)
        await client.close()
        #expect(client.isClosed)
    }

    @Test("a published message reaches a subscriber with subject, reply and payload", arguments: Broker.enabled)
    func publishReachesSubscriber(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("greet.*")
        try await client.flush()
        try await client.publish(bytes("hello"), subject: "greet.joe", reply: "answers.1")
        try await client.publish(bytes(""), subject: "greet.ann")
        let messages = try await take(2, from: sub)
        #expect(messages[0].subject == "greet.joe")
        #expect(messages[0].reply == "answers.1")
        #expect(messages[0].string == "hello")
        #expect(messages[1].subject == "greet.ann")
        #expect(messages[1].reply == nil)
        #expect(messages[1].payload.isEmpty)
        let stats = client.statistics
        #expect(stats.outMessages == 2)
        #expect(stats.inMessages == 2)
        await client.close()
    }

    @Test("messages from one publisher arrive complete and in order across connections", arguments: Broker.enabled)
    func manyMessagesArriveInOrder(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let receiver = try await NATSClient.connect(testOptions(server))
        let sender = try await NATSClient.connect(testOptions(server))
        let sub = try await receiver.subscribe("seq")
        try await receiver.flush()
        let count = 20_000
        for index in 0..<count {
            try await sender.publish(bytes(String(index)), subject: "seq")
        }
        try await sender.flush()
        let messages = try await take(count, from: sub, seconds: 30)
        #expect(messages.map(\.string) == (0..<count).map(String.init))
        #expect(sub.droppedCount == 0)
        await sender.close()
        await receiver.close()
    }

    @Test("headers round-trip and a header-less subscriber still gets the payload", arguments: Broker.enabled)
    func headersRoundTrip(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("h")
        try await client.flush()
        var headers = Headers()
        try headers.append(name: "X-Trace", value: "abc")
        try headers.append(name: "X-Trace", value: "def")
        try headers.append(name: "Content-Type", value: "text/plain")
        try await client.publish(bytes("body"), subject: "h", headers: headers)
        let message = try #require(try await take(1, from: sub).first)
        #expect(message.string == "body")
        let received = try #require(message.headers)
        #expect(received.values(for: "x-trace") == ["abc", "def"])
        #expect(received["Content-Type"] == "text/plain")
        #expect(message.status == nil)
        await client.close()
    }

    @Test("a queue group delivers each message to exactly one member", arguments: Broker.enabled)
    func queueGroupDeliversOnce(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let first = try await client.subscribe("work", queue: "q")
        let second = try await client.subscribe("work", queue: "q")
        let plain = try await client.subscribe("work")
        try await client.flush()
        for index in 0..<200 { try await client.publish(bytes("\(index)"), subject: "work") }
        try await client.flush()
        _ = try await take(200, from: plain)
        #expect(await eventually { first.pendingMessages + second.pendingMessages == 200 })
        var seen = Set<String>()
        for message in try await take(first.pendingMessages, from: first) { seen.insert(message.string) }
        for message in try await take(second.pendingMessages, from: second) { seen.insert(message.string) }
        #expect(seen.count == 200)
        await client.close()
    }

    @Test("unsubscribe(after:) ends iteration after exactly N messages", arguments: Broker.enabled)
    func autoUnsubscribe(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("auto")
        try await sub.unsubscribe(after: 3)
        try await client.flush()
        for index in 0..<10 { try await client.publish(bytes("\(index)"), subject: "auto") }
        try await client.flush()
        let all = try await within(10) {
            var received: [String] = []
            for try await message in sub { received.append(message.string) }
            return received
        }
        #expect(all == ["0", "1", "2"])
        await client.close()
    }

    @Test("unsubscribe stops delivery and ends iteration", arguments: Broker.enabled)
    func unsubscribeStopsDelivery(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("u")
        let watcher = try await client.subscribe("u")
        try await client.flush()
        try await client.publish(bytes("before"), subject: "u")
        _ = try await take(1, from: watcher)
        await sub.unsubscribe()
        try await client.flush()
        try await client.publish(bytes("after"), subject: "u")
        _ = try await take(1, from: watcher)
        let rest = try await within(10) {
            var received: [String] = []
            for try await message in sub { received.append(message.string) }
            return received
        }
        #expect(rest == ["before"])
        await client.close()
    }

    @Test("a subscription over its pending limit drops, counts and reports a slow consumer", arguments: Broker.enabled)
    func slowConsumerIsReported(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let events = EventLog(client)
        let sub = try await client.subscribe("slow")
        sub.pendingLimits = .init(messages: 10, bytes: 0)
        try await client.flush()
        for _ in 0..<50 { try await client.publish(bytes("x"), subject: "slow") }
        try await client.flush()
        #expect(sub.pendingMessages == 10)
        #expect(sub.droppedCount == 40)
        #expect(await eventually { events.contains { $0 == .slowConsumer(subject: "slow", dropped: 1) } })
        let kept = try await take(10, from: sub)
        #expect(kept.count == 10)
        await client.close()
    }

    @Test("the byte pending limit counts payload bytes", arguments: Broker.enabled)
    func bytePendingLimit(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("bytes")
        sub.pendingLimits = .init(messages: 0, bytes: 1000)
        try await client.flush()
        for _ in 0..<5 { try await client.publish([UInt8](repeating: 7, count: 300), subject: "bytes") }
        try await client.flush()
        #expect(sub.pendingMessages == 3)
        #expect(sub.pendingBytes == 900)
        #expect(sub.droppedCount == 2)
        await client.close()
    }

    @Test("a payload over max_payload is refused before it is sent", arguments: Broker.enabled)
    func maxPayloadIsEnforced(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        await #expect(throws: NATSError.maxPayloadExceeded(size: 1_048_577, limit: 1_048_576)) {
            try await client.publish([UInt8](repeating: 0, count: 1_048_577), subject: "big")
        }
        // The connection is still usable.
        try await client.flush()
        #expect(client.isConnected)
        await client.close()
    }

    @Test("invalid subjects and queue names are rejected with a clear error", arguments: Broker.enabled)
    func invalidSubjectsAreRejected(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        for subject in ["", "a..b", "a b", "a\r\nPUB x 1", "foo.*", "foo.>"] {
            await #expect(throws: NATSError.self) { try await client.publish(bytes("x"), subject: subject) }
        }
        for subject in ["", "a..b", "a.>.b", "a b"] {
            await #expect(throws: NATSError.self) { _ = try await client.subscribe(subject) }
        }
        await #expect(throws: NATSError.self) { _ = try await client.subscribe("ok", queue: "bad queue") }
        try await client.flush()
        #expect(client.isConnected)
        await client.close()
    }

    @Test("flush is a barrier: a second client sees everything published before it returned", arguments: Broker.enabled)
    func flushIsABarrier(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let a = try await NATSClient.connect(testOptions(server))
        let b = try await NATSClient.connect(testOptions(server))
        let sub = try await b.subscribe("barrier")
        try await b.flush()
        for index in 0..<1000 { try await a.publish(bytes("\(index)"), subject: "barrier") }
        try await a.flush()
        // After a's flush the server routed everything; b's flush then guarantees it arrived.
        try await b.flush()
        #expect(sub.pendingMessages == 1000)
        await a.close()
        await b.close()
    }

    @Test("echo off suppresses a client's own messages", arguments: Broker.enabled)
    func echoOff(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        var options = testOptions(server)
        options.echo = false
        let quiet = try await NATSClient.connect(options)
        let other = try await NATSClient.connect(testOptions(server))
        let sub = try await quiet.subscribe("echo")
        try await quiet.flush()
        try await quiet.publish(bytes("own"), subject: "echo")
        try await other.publish(bytes("other"), subject: "echo")
        try await quiet.flush()
        try await other.flush()
        let message = try #require(try await take(1, from: sub).first)
        #expect(message.string == "other")
        try await quiet.flush()
        #expect(sub.pendingMessages == 0)
        await quiet.close()
        await other.close()
    }

    @Test("close ends subscriptions, fails later calls with closed, and is idempotent", arguments: Broker.enabled)
    func closeEndsEverything(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let events = EventLog(client)
        let sub = try await client.subscribe("x")
        await client.close()
        await client.close()
        let received = try await within(5) {
            var count = 0
            for try await _ in sub { count += 1 }
            return count
        }
        #expect(received == 0)
        await #expect(throws: NATSError.closed) { try await client.publish(bytes("x"), subject: "x") }
        await #expect(throws: NATSError.closed) { try await client.flush() }
        await #expect(throws: NATSError.closed) { _ = try await client.subscribe("y") }
        await #expect(throws: NATSError.closed) { _ = try await client.request(bytes("x"), subject: "x") }
        #expect(await eventually { events.contains { $0 == .closed(nil) } })
    }

    @Test("drain delivers messages in flight, then closes", arguments: Broker.enabled)
    func drainDeliversInFlight(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let publisher = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("d")
        try await client.flush()
        for index in 0..<500 { try await publisher.publish(bytes("\(index)"), subject: "d") }
        try await publisher.flush()
        let consumer = Task {
            var count = 0
            for try await _ in sub { count += 1 }
            return count
        }
        try await client.drain(timeout: .seconds(20))
        #expect(try await consumer.value == 500)
        #expect(client.isClosed)
        await publisher.close()
    }
}

@Suite("Connection errors", .timeLimit(.minutes(2)))
struct ConnectionErrorTests {
    @Test("a bad URL fails with invalidURL")
    func badURL() async throws {
        for url in ["http://127.0.0.1:4222", "nats://host:notaport", "nats://:4222", "nats://h:70000", "nats://h:1/path"] {
            await #expect(throws: NATSError.self) { _ = try await NATSClient.connect(url) }
            do {
                _ = try await NATSClient.connect(url)
            } catch {
                guard case .invalidURL = error else {
                    Issue.record("\(url): expected invalidURL, got \(error)")
                    continue
                }
            }
        }
    }

    @Test("out-of-range options are refused before connecting")
    func badOptions() async throws {
        var jitter = NATSClient.Options(url: "nats://127.0.0.1:1")
        jitter.reconnectJitter = .nan
        var pings = NATSClient.Options(url: "nats://127.0.0.1:1")
        pings.maxPingsOutstanding = 0
        var inbox = NATSClient.Options(url: "nats://127.0.0.1:1")
        inbox.inboxPrefix = "bad prefix"
        for options in [jitter, pings, inbox] {
            do {
                _ = try await NATSClient.connect(options)
                Issue.record("connect accepted bad options")
            } catch {
                guard case .invalidArgument = error else {
                    Issue.record("expected invalidArgument, got \(error)")
                    continue
                }
            }
        }
    }

    @Test("URLs carry user, password and token")
    func urlCredentials() throws {
        let full = try ServerAddress(parsing: "nats://alice:s%40cret@example.com:4333")
        #expect(full.user == "alice")
        #expect(full.password == "s@cret")
        #expect(full.host == "example.com")
        #expect(full.port == 4333)
        let token = try ServerAddress(parsing: "nats://tok123@10.0.0.1")
        #expect(token.token == "tok123")
        #expect(token.port == 4222)
        let bare = try ServerAddress(parsing: "localhost:5000")
        #expect(bare.host == "localhost" && bare.port == 5000)
        let v6 = try ServerAddress(parsing: "nats://[::1]:4222")
        #expect(v6.host == "::1" && v6.hostPort == "[::1]:4222")
    }

    @Test("nothing listening gives connectionRefused naming host and port")
    func connectionRefused() async throws {
        let port = try freePort()
        await #expect(throws: NATSError.connectionRefused(host: "127.0.0.1", port: port)) {
            _ = try await NATSClient.connect("nats://127.0.0.1:\(port)")
        }
    }

    @Test("wrong credentials give authorizationViolation", arguments: Broker.enabled)
    func authorizationViolation(broker: Broker) async throws {
        let server = try await BrokerProcess(broker, arguments: ["--user", "alice", "--pass", "secret"])
        defer { server.stop() }
        await #expect(throws: NATSError.authorizationViolation) {
            _ = try await NATSClient.connect("nats://alice:wrong@127.0.0.1:\(server.port)")
        }
        await #expect(throws: NATSError.authorizationViolation) {
            _ = try await NATSClient.connect(server.url)
        }
        let client = try await NATSClient.connect("nats://alice:secret@127.0.0.1:\(server.port)")
        try await client.flush()
        await client.close()
        var options = NATSClient.Options(url: server.url)
        options.user = "alice"
        options.password = "secret"
        let viaOptions = try await NATSClient.connect(options)
        try await viaOptions.flush()
        await viaOptions.close()
    }

    @Test("token authentication from the URL and from options", arguments: Broker.enabled)
    func tokenAuthentication(broker: Broker) async throws {
        let server = try await BrokerProcess(broker, arguments: ["--auth", "s3cr3t"])
        defer { server.stop() }
        let client = try await NATSClient.connect("nats://s3cr3t@127.0.0.1:\(server.port)")
        try await client.flush()
        await client.close()
        var options = NATSClient.Options(url: server.url)
        options.token = "wrong"
        await #expect(throws: NATSError.authorizationViolation) { _ = try await NATSClient.connect(options) }
    }

    @Test("a server that never answers the handshake times out")
    func handshakeTimeout() async throws {
        // A listening socket that accepts (kernel backlog) but never sends INFO.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { TCPSocket.close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        listen(fd, 8)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var options = NATSClient.Options(url: "nats://127.0.0.1:\(UInt16(bigEndian: address.sin_port))")
        options.connectTimeout = .milliseconds(300)
        await #expect(throws: NATSError.timeout) { _ = try await NATSClient.connect(options) }
    }
}

@Suite("Back-pressure", .timeLimit(.minutes(2)))
struct BackPressureTests {
    @Test("publish suspends when the write buffer is full and resumes when the server reads again", arguments: Broker.enabled)
    func publishSuspendsWhenTheBufferIsFull(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer {
            server.signal(SIGCONT)
            server.stop()
        }
        var options = testOptions(server)
        options.writeBufferLimit = 64 * 1024
        options.pingInterval = .seconds(600)
        let client = try await NATSClient.connect(options)
        let payload = [UInt8](repeating: 42, count: 1024)
        let total = 40_000  // 40 MB: far more than the kernel's socket buffers hold
        server.signal(SIGSTOP)
        let published = Mutex(0)
        let publisher = Task {
            for _ in 0..<total {
                try await client.publish(payload, subject: "pressure")
                published.withLock { $0 += 1 }
            }
        }
        // The publisher ends up suspended, with the outbound buffer bounded by the limit.
        #expect(await eventually(30) { client.state.withLock { !$0.backpressure.isEmpty } })
        let buffered = client.state.withLock { $0.outbound.count }
        #expect(buffered <= 64 * 1024 + 1100)
        #expect(published.withLock { $0 } < total)
        server.signal(SIGCONT)
        try await within(60, "publishing after the server resumed") { try await publisher.value }
        try await client.flush(timeout: .seconds(60))
        #expect(client.statistics.outMessages == UInt64(total))
        await client.close()
    }
}
