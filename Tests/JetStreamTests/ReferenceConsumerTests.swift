import Foundation
import Formats
import Testing
@testable import JetStream
import TestSupport

/// A NATS connection that reads whole MSG/HMSG frames (subject, reply, headers, payload).
private final class FrameConnection {
    struct Frame: Equatable {
        var subject: String
        var reply: String
        var headers: String
        var payload: String
    }

    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = try connectLoopback(port: port, timeoutSeconds: 10)
        _ = try line()
        try send("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nSUB _INBOX.> 1\r\nSUB out.> 2\r\nPING\r\n")
        guard try line() == "PONG" else { throw TestFailure("no PONG after CONNECT") }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TestFailure("write failed: errno \(errno)") }
            offset += n
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw TestFailure("read from the broker failed (\(n), errno \(errno))") }
        buffer.append(contentsOf: chunk[..<n])
    }

    private func line() throws -> String {
        while true {
            if let end = buffer.firstIndex(of: 0x0A), end > 0, buffer[end - 1] == 0x0D {
                let text = String(decoding: buffer[..<(end - 1)], as: UTF8.self)
                buffer.removeFirst(end + 1)
                return text
            }
            try fill()
        }
    }

    private func take(_ count: Int) throws -> String {
        while buffer.count < count + 2 { try fill() }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        buffer.removeFirst(count + 2)
        return text
    }

    /// The next message frame.
    func frame() throws -> Frame {
        while true {
            let head = try line()
            if head == "PING" { try send("PONG\r\n"); continue }
            if head == "PONG" { continue }
            let parts = head.split(separator: " ").map(String.init)
            if parts.first == "MSG" {
                let reply = parts.count == 5 ? parts[3] : ""
                return Frame(subject: parts[1], reply: reply, headers: "", payload: try take(Int(parts.last!)!))
            }
            if parts.first == "HMSG" {
                let reply = parts.count == 6 ? parts[3] : ""
                let headerSize = Int(parts[parts.count - 2])!, total = Int(parts.last!)!
                let all = try take(total)
                let bytes = Array(all.utf8)
                return Frame(subject: parts[1], reply: reply, headers: String(decoding: bytes[..<headerSize], as: UTF8.self),
                             payload: String(decoding: bytes[headerSize...], as: UTF8.self))
            }
            throw TestFailure("unexpected line from the broker: \(head)")
        }
    }

    /// Publishes and returns the first `count` frames that follow.
    func publish(_ subject: String, _ body: String, reply: String = "_INBOX.api", count: Int = 1) throws -> [Frame] {
        try send("PUB \(subject) \(reply) \(body.utf8.count)\r\n\(body)\r\n")
        return try (0..<count).map { _ in try frame() }
    }
}

/// Times and generated names replaced, so our answers and 2.9.10's compare.
private func normalized(_ text: String) -> String {
    var t = text.replacingOccurrences(of: #""(created|last_active|opt_start_time)":"[^"]*""#, with: #""$1":"<time>""#,
                                      options: .regularExpression)
    t = t.replacingOccurrences(of: #"\$JS\.ACK\.([^.]+)\.([^.]+)\.(\d+)\.(\d+)\.(\d+)\.\d+\.(\d+)"#, with: "$$JS.ACK.$1.$2.$3.$4.$5.<ts>.$6",
                               options: .regularExpression)
    return t
}

@Suite struct ReferenceConsumerTests {
    /// Consumer creates (valid, re-created, refused), INFO, NAMES, LIST, DELETE and MSG.NEXT
    /// status replies against nats-server 2.9.10 `-js` and against ConsumerManager over a stream
    /// with the same messages: the same bytes once times are taken out.
    @Test(.enabled(if: ReferencePeer.available || ReferencePeer.required, "nats-server 2.9.10 is not installed"))
    func consumerAnswersMatchTheReference() async throws {
        guard ReferencePeer.available else {
            Issue.record("nats-server 2.9.10 not found at \(ReferencePeer.path) but REQUIRE_PEERS=1")
            return
        }
        let storeDirectory = try temporaryDirectory("jscons-ref")
        defer { removeTemporary(storeDirectory) }
        let port = try freePort()
        let broker = try ChildProcess(executable: ReferencePeer.path,
                                      arguments: ["-js", "-sd", storeDirectory, "-a", "127.0.0.1", "-p", String(port)],
                                      environment: ProcessInfo.processInfo.environment)
        _ = try await broker.waitForLine("ready line") { $0.contains("Server is ready") }
        defer { kill(broker.process.processIdentifier, SIGKILL) }
        let connection = try FrameConnection(port: port)

        var streamConfig = StreamConfig(name: "S")
        streamConfig.subjects = ["s.>"]
        streamConfig.storage = .memory
        _ = try connection.publish("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"],"storage":"memory"}"#)
        let rig = try ConsumerRig(streamConfig)
        defer { rig.finish() }
        for (subject, body) in [("s.a", "one"), ("s.b", "two"), ("s.a", "three")] {
            _ = try connection.publish(subject, body)
            try rig.publish(subject, body)
        }

        func compare(_ subject: String, _ body: String, _ label: String, frames: Int = 1) throws {
            let reference = try connection.publish(subject, body, count: frames)
            let ours = deliveries(rig.call(subject, body, reply: "_INBOX.api"))
            #expect(ours.count >= frames, "\(label): our answer count")
            for (k, frame) in reference.enumerated() where k < ours.count {
                #expect(normalized(ours[k].payload) == normalized(frame.payload), "\(label) payload \(k)")
                #expect(ours[k].headers == frame.headers, "\(label) headers \(k)")
                #expect(normalized(ours[k].reply) == normalized(frame.reply), "\(label) reply \(k)")
                #expect((ours[k].shown ?? ours[k].subject) == frame.subject, "\(label) subject \(k)")
            }
        }
        let creates: [(String, String)] = [
            ("CREATE.S.P1", #"{"stream_name":"S","config":{"durable_name":"P1","ack_policy":"explicit"}}"#),
            ("CREATE.S.P1", #"{"stream_name":"S","config":{"durable_name":"P1","ack_policy":"explicit"}}"#),
            ("CREATE.S.P1", #"{"stream_name":"S","config":{"durable_name":"P1","ack_policy":"all"}}"#),
            ("CREATE.S.P1", #"{"stream_name":"S","config":{"durable_name":"P1","ack_policy":"explicit","max_ack_pending":7}}"#),
            ("DURABLE.CREATE.S.D1", #"{"stream_name":"S","config":{"durable_name":"D1","filter_subject":"s.a","deliver_policy":"last","ack_policy":"none","max_deliver":3,"description":"d"}}"#),
            ("CREATE.S.F1.s.b", #"{"stream_name":"S","config":{"filter_subject":"s.b","ack_policy":"explicit","backoff":[1000000000,2000000000],"max_deliver":4,"max_batch":10,"max_expires":2000000000,"max_bytes":1000,"inactive_threshold":60000000000,"headers_only":true}}"#),
            ("CREATE.S.Q1", #"{"stream_name":"S","config":{"deliver_policy":"by_start_sequence","opt_start_seq":2,"replay_policy":"original","sample_freq":"50%","mem_storage":true}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_subject":"out.x.*"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_subject":"s.x"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_subject":"out.x","max_waiting":3}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_subject":"out.x","idle_heartbeat":1000}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_subject":"out.x","flow_control":true}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"idle_heartbeat":1000000000}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"flow_control":true}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"filter_subject":"t.x"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_policy":"by_start_sequence"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_policy":"last_per_subject"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_policy":"all","opt_start_seq":3}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_policy":"new","opt_start_time":"2020-01-01T00:00:00Z"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"ack_policy":"explicit","max_deliver":2,"backoff":[1,2]}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"max_batch":-1}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"max_expires":5}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"max_waiting":-1}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"rate_limit_bps":100}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"sample_freq":"abc"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"deliver_subject":"out.x","max_ack_pending":5}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"ack_policy":"sometimes"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"num_replicas":3}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"durable_name":"Y"}}"#),
            ("CREATE.S.X", #"{"stream_name":"S","config":{"durable_name":"X","name":"Z"}}"#),
            ("CREATE.S.X.s.a", #"{"stream_name":"S","config":{"filter_subject":"s.b"}}"#),
            ("CREATE.S", #"{"stream_name":"S","config":{"durable_name":"Y"}}"#),
            ("CREATE.S.X", #"{"stream_name":"T","config":{}}"#),
            ("CREATE.T.X", #"{"stream_name":"T","config":{}}"#),
            ("CREATE.S.X", "not json"),
            ("CREATE.S.X", ""),
            ("DURABLE.CREATE.S.D2", #"{"stream_name":"S","config":{}}"#),
            ("DURABLE.CREATE.S.D2", #"{"stream_name":"S","config":{"durable_name":"D3"}}"#),
            ("CREATE.S.a>b", #"{"stream_name":"S","config":{}}"#),
        ]
        for (subject, body) in creates {
            try compare("$JS.API.CONSUMER." + subject, body, subject + " " + body)
        }
        try compare("$JS.API.CONSUMER.INFO.S.P1", "", "INFO")
        try compare("$JS.API.CONSUMER.INFO.S.D1", "", "INFO D1")
        try compare("$JS.API.CONSUMER.INFO.S.NOPE", "", "INFO missing")
        try compare("$JS.API.CONSUMER.INFO.S.P1", "x", "INFO with body")
        try compare("$JS.API.CONSUMER.NAMES.S", "", "NAMES")
        try compare("$JS.API.CONSUMER.NAMES.S", #"{"offset":2}"#, "NAMES offset")
        try compare("$JS.API.CONSUMER.NAMES.T", "", "NAMES missing stream")
        try compare("$JS.API.CONSUMER.LIST.S", "", "LIST")

        // Pull: a batch, the acks, and the status replies.
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.P1", "2", "NEXT 2", frames: 2)
        try compare("$JS.API.CONSUMER.INFO.S.P1", "", "INFO after NEXT")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.P1", #"{"batch":5,"no_wait":true}"#, "NEXT no_wait", frames: 2)
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.P1", #"{"no_wait":true}"#, "NEXT 404")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.F1", #"{"batch":11}"#, "NEXT over max_batch")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.F1", #"{"expires":3000000000}"#, "NEXT over max_expires")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.F1", #"{"max_bytes":2000}"#, "NEXT over max_bytes")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.F1", #"{"expires":1000000000,"idle_heartbeat":800000000}"#, "NEXT heartbeat too large")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.F1", #"{"batch":"x"}"#, "NEXT bad JSON")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.F1", #"{"batch":1,"no_wait":true}"#, "NEXT headers only")
        try compare("$JS.API.CONSUMER.INFO.S.F1", "", "INFO F1")
        try compare("$JS.API.CONSUMER.DELETE.S.Q1", "", "DELETE")
        try compare("$JS.API.CONSUMER.DELETE.S.Q1", "", "DELETE again")
        try compare("$JS.API.CONSUMER.LIST.S", #"{"offset":1}"#, "LIST offset")
    }
}
