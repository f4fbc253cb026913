import Foundation
import Testing
@testable import JetStream
import TestSupport

/// The reference broker, nats-server 2.9.10, and whether a run must have it.
enum ReferencePeer {
    static let environment = ProcessInfo.processInfo.environment
    /// `REQUIRE_PEERS=1` turns a missing reference broker into a failure instead of a skip.
    static var required: Bool { environment["REQUIRE_PEERS"] == "1" }
    /// `NATS_REFERENCE_BIN`, else Debian's /usr/sbin/nats-server.
    static var path: String { environment["NATS_REFERENCE_BIN"] ?? "/usr/sbin/nats-server" }
    static var available: Bool { FileManager.default.isExecutableFile(atPath: path) }
}

/// A plain NATS connection over a socket: requests on one reply subject, answered in order.
private final class RawConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = try connectLoopback(port: port, timeoutSeconds: 10)
        _ = try line()   // INFO
        try send("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nSUB _INBOX.jsapi 1\r\nPING\r\n")
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

    func line() throws -> String {
        while true {
            if let end = buffer.firstIndex(of: 0x0A), end > 0, buffer[end - 1] == 0x0D {
                let text = String(decoding: buffer[..<(end - 1)], as: UTF8.self)
                buffer.removeFirst(end + 1)
                return text
            }
            try fill()
        }
    }

    /// Publishes `body` to `subject` with the reply subject, returns the payload of the answer.
    func request(_ subject: String, _ body: String) throws -> String {
        try exchange("PUB \(subject) _INBOX.jsapi \(body.utf8.count)\r\n\(body)\r\n")
    }

    /// Sends `command` (a PUB or HPUB with the reply subject) and returns the answer's payload.
    func exchange(_ command: String) throws -> String {
        try send(command)
        while true {
            let head = try line()
            if head == "PING" { try send("PONG\r\n"); continue }
            guard head.hasPrefix("MSG "), let size = head.split(separator: " ").last.flatMap({ Int($0) }) else {
                throw TestFailure("unexpected line from the broker: \(head)")
            }
            while buffer.count < size + 2 { try fill() }
            let payload = String(decoding: buffer[..<size], as: UTF8.self)
            buffer.removeFirst(size + 2)
            return payload
        }
    }
}

/// `json` with the value of `"created"` replaced, so two creates compare without their clocks.
private func normalized(_ json: String) -> String {
    json.replacingOccurrences(of: #""created":"[^"]*""#, with: #""created":"<time>""#, options: .regularExpression)
}

@Suite struct ReferenceCreateTests {
    /// The same `$JS.API.STREAM.CREATE` requests sent to nats-server 2.9.10 `-js` and run through
    /// our decoder, checks and encoder: the answers are the same bytes once the created time is
    /// taken out. The requests run in order, so the later ones see the streams the earlier made.
    @Test(.enabled(if: ReferencePeer.available || ReferencePeer.required, "nats-server 2.9.10 is not installed"))
    func createAnswersMatchTheReference() async throws {
        guard ReferencePeer.available else {
            Issue.record("nats-server 2.9.10 not found at \(ReferencePeer.path) but REQUIRE_PEERS=1")
            return
        }
        let storeDirectory = try temporaryDirectory("jsapi-ref")
        defer { removeTemporary(storeDirectory) }
        let port = try freePort()
        let broker = try ChildProcess(executable: ReferencePeer.path,
                                      arguments: ["-js", "-sd", storeDirectory, "-a", "127.0.0.1", "-p", String(port)],
                                      environment: ProcessInfo.processInfo.environment)
        _ = try await broker.waitForLine("ready line") { $0.contains("Server is ready") }
        defer { kill(broker.process.processIdentifier, SIGKILL) }

        let cases: [(name: String, body: String)] = [
            ("A", #"{"name":"A"}"#),
            ("B", #"{"name":"B","description":"d","subjects":["b.*","c.>"],"max_msgs":10,"max_age":1000000000,"storage":"memory","discard":"new","max_msgs_per_subject":2,"discard_new_per_subject":true,"allow_direct":true,"deny_delete":true,"no_ack":true,"allow_rollup_hdrs":true,"max_msg_size":1024,"max_bytes":4096,"max_consumers":3,"retention":"interest"}"#),
            ("A", #"{"name":"A","max_msgs":0,"duplicate_window":120000000000}"#),
            ("A", #"{"name":"A","max_msgs":5}"#),
            ("C", #"{"name":"C","subjects":["b.x"]}"#),
            ("C", #"{"name":"C","subjects":[">"]}"#),
            ("C", #"{"name":"X"}"#),
            ("C", ""),
            ("C", "null"),
            ("C", "[1]"),
            ("C", #"{"name":"C","max_msgs":"5"}"#),
            ("C", #"{"name":"C","max_msgs":1.5}"#),
            ("C", #"{"name":"C","storage":"disk"}"#),
            ("C", #"{"name":"C","sealed":true}"#),
            ("C", #"{"name":"C","mirror_direct":true}"#),
            ("C", #"{"name":"C","num_replicas":3}"#),
            ("C", #"{"name":"C","num_replicas":6}"#),
            ("C", #"{"name":"C","num_replicas":-1}"#),
            ("C", #"{"name":"C","max_age":1000}"#),
            ("C", #"{"name":"C","duplicate_window":-5}"#),
            ("C", #"{"name":"C","max_age":1000000000,"duplicate_window":2000000000}"#),
            ("C", #"{"name":"C","deny_purge":true,"allow_rollup_hdrs":true}"#),
            ("C", #"{"name":"C","discard_new_per_subject":true}"#),
            ("C", #"{"name":"C","discard":"new","discard_new_per_subject":true}"#),
            ("C", #"{"name":"C","subjects":["x","x"]}"#),
            ("C", #"{"name":"C","subjects":["$JS.API.STREAM.x"]}"#),
            ("C", #"{"name":"C","subjects":["x..y"]}"#),
            ("C", #"{"name":"C","subjects":["x.>","x.y"]}"#),
            ("C", #"{"name":"C","subjects":["r.*"],"republish":{"src":"q","dest":"out"}}"#),
            ("C", #"{"name":"C","subjects":["r.*"],"republish":{"dest":"r.x"}}"#),
            ("a/b", #"{"name":"a/b"}"#),
            ("D", #"{"NAME":"D","Subjects":["d.1","d.2"],"allow_msg_ttl":true,"discard":"NEW","duplicate_window":500000000}"#),
            ("E", #"{"name":"E","subjects":["e.*"],"republish":{"dest":"copy.>","headers_only":true},"max_age":60000000000}"#),
            ("F", #"{"name":"F","storage":"memory","retention":"workqueue","max_msgs_per_subject":1,"template_owner":""}"#),
        ]
        let connection = try RawConnection(port: port)
        var existing: [StreamConfig] = []
        for (name, body) in cases {
            let reference = try connection.request("$JS.API.STREAM.CREATE.\(name)", body)
            let ours: String
            do {
                let (config, existed) = try StreamConfig.checkCreate(subjectName: name, body: Array(body.utf8), existing: existing)
                if !existed { existing.append(config) }
                ours = String(decoding: JetStreamAPIResponse.streamInfo("stream_create_response", config: config, created: wallClockNanoseconds(),
                                                                         state: StreamInfoState(StreamState()), didCreate: true),
                              as: UTF8.self)
            } catch {
                ours = String(decoding: JetStreamAPIResponse.error("stream_create_response", error), as: UTF8.self)
            }
            #expect(normalized(ours) == normalized(reference), "CREATE.\(name) \(body)")
        }
        // PubAcks: a stored message, its duplicate by Nats-Msg-Id, and the next one.
        let headers = "NATS/1.0\r\nNats-Msg-Id: m1\r\n\r\n"
        let hpub = "HPUB A _INBOX.jsapi \(headers.utf8.count) \(headers.utf8.count + 2)\r\n\(headers)hi\r\n"
        #expect(try connection.exchange(hpub) == String(decoding: JetStreamAPIResponse.pubAck(stream: "A", sequence: 1), as: UTF8.self))
        #expect(try connection.exchange(hpub)
                == String(decoding: JetStreamAPIResponse.pubAck(stream: "A", sequence: 1, duplicate: true), as: UTF8.self))
        #expect(try connection.request("A", "x") == String(decoding: JetStreamAPIResponse.pubAck(stream: "A", sequence: 2), as: UTF8.self))
        // The INFO of that stream against ours after the same two messages went into a file store.
        let directory = try temporaryDirectory("jsapi-ours")
        defer { removeTemporary(directory) }
        let config = try #require(existing.first { $0.name == "A" })
        let oursStore = try StreamStore(directory: directory + "/A", limits: config.limits)
        try oursStore.store(subject: "A", headers: Array(headers.utf8), payload: Array("hi".utf8))
        try oursStore.store(subject: "A", payload: Array("x".utf8))
        let state = oursStore.state
        oursStore.close()
        let info = try connection.request("$JS.API.STREAM.INFO.A", "")
        let ours = JetStreamAPIResponse.streamInfo("stream_info_response", config: config, created: wallClockNanoseconds(),
                                                   state: StreamInfoState(state), paging: APIPaging())
        #expect(normalizedTimes(String(decoding: ours, as: UTF8.self)) == normalizedTimes(info))
        #expect(normalizedTimes(info).contains(#""first_ts":"<time>""#))

        // MSG.DELETE and PURGE answers, and the errors of a file stream for missing sequences.
        func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
        let deleteKind = "stream_msg_delete_response"
        #expect(try connection.request("$JS.API.STREAM.MSG.DELETE.A", #"{"seq":2}"#) == text(JetStreamAPIResponse.success(deleteKind)))
        for sequence: UInt64 in [2, 99] {
            let missing = JetStreamAPIError.messageDeleteMissing(sequence: sequence, lastSequence: 2, storage: .file)
            #expect(try connection.request("$JS.API.STREAM.MSG.DELETE.A", #"{"seq":\#(sequence)}"#)
                    == text(JetStreamAPIResponse.error(deleteKind, missing)))
        }
        #expect(try connection.request("$JS.API.STREAM.PURGE.A", #"{"seq":1,"keep":1}"#)
                == text(JetStreamAPIResponse.purgeError(StreamStoreError.invalidPurge.apiError(in: .purge))))
        #expect(try connection.request("$JS.API.STREAM.PURGE.A", "") == text(JetStreamAPIResponse.purge(purged: 1)))
    }
}

/// `json` with every time after the year 2000 replaced (created, first_ts, last_ts).
private func normalizedTimes(_ json: String) -> String {
    json.replacingOccurrences(of: #""2[0-9]{3}-[0-9]{2}-[0-9]{2}T[^"]*Z""#, with: #""<time>""#, options: .regularExpression)
}
