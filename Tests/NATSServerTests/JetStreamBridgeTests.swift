// JetStream inside the broker: what the engine captures reaches it, what it sends is routed like a
// publish (deliveries show the stored subject), publishers wait for it rather than lose messages,
// and the store outlives the server.

import Foundation
import Testing
@testable import NATSServer

/// A broker with JetStream on a fresh store directory (removed at the end).
private final class JetStreamBroker {
    let directory: String
    private(set) var broker: TestBroker?

    init() throws {
        directory = NSTemporaryDirectory() + "js-bridge-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try restart()
    }

    deinit {
        broker = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Stops the running broker (if any) and starts a new one on the same store.
    func restart() throws {
        broker = nil
        broker = try TestBroker { [directory] in
            $0.jetStream = true
            $0.storeDirectory = directory
            $0.httpPort = -1
        }
    }

    func connected() throws -> RawClient {
        try #require(broker).connected(#"{"verbose":false,"pedantic":false,"headers":true}"#)
    }
}

extension RawClient {
    /// Subscribes `_R.<sid>` and sends a request there; returns the reply's payload as JSON.
    func jsRequest(_ subject: String, _ body: String, sid: Int = 99) throws -> [String: Any] {
        try send("SUB _R.\(sid) \(sid)\r\nPUB \(subject) _R.\(sid) \(body.utf8.count)\r\n\(body)\r\n")
        let (_, payload) = try nextMessage()
        try send("UNSUB \(sid)\r\n")
        let json = try JSONSerialization.jsonObject(with: Data(payload))
        return try #require(json as? [String: Any])
    }

    /// The next MSG (or HMSG): its control line and its payload (headers dropped).
    func nextMessage(timeout: Double = RawClient.timeout) throws -> (line: String, payload: [UInt8]) {
        while true {
            guard let line = try readLine(timeout: timeout) else { throw HarnessError("no message arrived") }
            if line == "PING" {
                try send("PONG\r\n")
                continue
            }
            let parts = line.split(separator: " ")
            if parts.first == "MSG", let size = Int(parts.last!) {
                return (line, try readBody(count: size))
            }
            if parts.first == "HMSG", let total = Int(parts.last!), let headerSize = Int(parts[parts.count - 2]) {
                let body = try readBody(count: total)
                return (line, Array(body[headerSize...]))
            }
            throw HarnessError("expected a message, got: \(line)")
        }
    }
}

@Suite("JetStream in the broker", .serialized)
struct JetStreamBridgeTests {
    @Test func aPublishOnAStreamSubjectIsStoredAcknowledgedAndStillRouted() throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        let created = try client.jsRequest("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"]}"#)
        #expect(created["did_create"] as? Bool == true)

        try client.send("SUB s.> 1\r\nSUB _A 2\r\nPUB s.a _A 5\r\nhello\r\n")
        var lines: [String] = []
        for _ in 0..<2 { lines.append(try client.nextMessage().line) }
        #expect(lines.contains("MSG s.a 1 _A 5"))
        // {"stream":"S", "seq":1}, with the empty reply field 2.9.10 writes for a PubAck
        #expect(lines.contains("MSG _A 2  23"))

        let info = try client.jsRequest("$JS.API.STREAM.INFO.S", "")
        let state = try #require(info["state"] as? [String: Any])
        #expect(state["messages"] as? Int == 1)
    }

    @Test func thePubAckIsByteForByte2_9_10s() throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        _ = try client.jsRequest("$JS.API.STREAM.CREATE.ORDERS", #"{"name":"ORDERS","subjects":["orders.*"]}"#)
        try client.send("SUB _A 2\r\nPUB orders.new _A 2\r\n{}\r\n")
        let (_, payload) = try client.nextMessage()
        #expect(String(decoding: payload, as: UTF8.self) == #"{"stream":"ORDERS", "seq":1}"#)
    }

    @Test func theApiAnswersInsteadOfNoResponders() throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        try client.send("SUB _I 3\r\nHPUB $JS.API.INFO _I 12 12\r\nNATS/1.0\r\n\r\n\r\n")
        let (line, payload) = try client.nextMessage()
        // An API answer has no reply field at all (one space), unlike a PubAck.
        #expect(line.hasPrefix("MSG _I 3 ") && !line.hasPrefix("MSG _I 3  "))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])
        #expect(json["type"] as? String == "io.nats.jetstream.api.v1.account_info_response")
    }

    @Test func aPushDeliveryIsRoutedToTheDeliverSubjectUnderTheStoredSubject() throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        _ = try client.jsRequest("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"]}"#)
        try client.send("SUB deliver.here 7\r\n")
        try client.sync()
        let consumer = try client.jsRequest(
            "$JS.API.CONSUMER.CREATE.S.C",
            #"{"stream_name":"S","config":{"durable_name":"C","deliver_subject":"deliver.here","ack_policy":"explicit"}}"#)
        #expect(consumer["name"] as? String == "C")
        try client.send("PUB s.x.y 3\r\nabc\r\n")
        let (line, payload) = try client.nextMessage()
        let parts = line.split(separator: " ").map(String.init)
        #expect(parts.count == 5)
        #expect(parts[0] == "MSG" && parts[1] == "s.x.y" && parts[2] == "7")
        #expect(parts[3].hasPrefix("$JS.ACK.S.C.1.1.1."))
        #expect(payload == Array("abc".utf8))
    }

    @Test func aPullDeliveryGoesToTheRequestsReplySubject() throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        _ = try client.jsRequest("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"]}"#)
        _ = try client.jsRequest("$JS.API.CONSUMER.DURABLE.CREATE.S.P",
                                 #"{"stream_name":"S","config":{"durable_name":"P","ack_policy":"explicit"}}"#)
        try client.send("PUB s.one 1\r\n1\r\nSUB _PULL 5\r\nPUB $JS.API.CONSUMER.MSG.NEXT.S.P _PULL 1\r\n1\r\n")
        let (line, payload) = try client.nextMessage()
        let parts = line.split(separator: " ").map(String.init)
        #expect(parts[1] == "s.one" && parts[2] == "5")
        #expect(parts[3].hasPrefix("$JS.ACK.S.P.1.1.1."))
        #expect(payload == Array("1".utf8))
    }

    @Test func storedMessagesAndStreamsOutliveARestart() throws {
        let js = try JetStreamBroker()
        do {
            let client = try js.connected()
            _ = try client.jsRequest("$JS.API.STREAM.CREATE.KEEP", #"{"name":"KEEP","subjects":["keep"]}"#)
            try client.send("SUB _A 2\r\nPUB keep _A 7\r\npayload\r\n")
            _ = try client.nextMessage()
        }
        try js.restart()
        let client = try js.connected()
        let got = try client.jsRequest("$JS.API.STREAM.MSG.GET.KEEP", #"{"seq":1}"#)
        let message = try #require(got["message"] as? [String: Any])
        #expect(message["subject"] as? String == "keep")
        #expect(message["data"] as? String == Data("payload".utf8).base64EncodedString())
    }

    @Test func jszDetailsStreamsAndTheirConsumers() async throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        _ = try client.jsRequest("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"]}"#)
        _ = try client.jsRequest("$JS.API.CONSUMER.DURABLE.CREATE.S.C",
                                 #"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#)
        try client.send("SUB _A 2\r\nPUB s.a _A 2\r\nhi\r\n")
        _ = try client.nextMessage()
        let port = try #require(js.broker?.server.monitoringPort)
        let (_, body) = try await httpGet(port: port, path: "/jsz?streams=1&consumers=1&config=1")
        let jsz = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(jsz["streams"] as? Int == 1 && jsz["consumers"] as? Int == 1 && jsz["messages"] as? Int == 1)
        let account = try #require((jsz["account_details"] as? [[String: Any]])?.first)
        let stream = try #require((account["stream_detail"] as? [[String: Any]])?.first)
        #expect(stream["name"] as? String == "S")
        #expect((stream["config"] as? [String: Any])?["subjects"] as? [String] == ["s.>"])
        #expect((stream["state"] as? [String: Any])?["messages"] as? Int == 1)
        let consumer = try #require((stream["consumer_detail"] as? [[String: Any]])?.first)
        #expect(consumer["name"] as? String == "C")
        #expect(consumer["num_pending"] as? Int == 1)
    }

    @Test func aPublisherFasterThanTheStoreWaitsAndLosesNothing() throws {
        let js = try JetStreamBroker()
        let client = try js.connected()
        _ = try client.jsRequest("$JS.API.STREAM.CREATE.BULK", #"{"name":"BULK","subjects":["bulk"]}"#)
        // 6,000 x 16 KiB = 94 MiB, sent without waiting: well over the engine's inbox limit.
        let count = 6000
        let body = String(repeating: "x", count: 16 * 1024)
        var chunk = ""
        for _ in 0..<100 { chunk += "PUB bulk \(body.utf8.count)\r\n\(body)\r\n" }
        let bytes = Array(chunk.utf8)
        for _ in 0..<(count / 100) { try client.send(bytes: bytes) }
        try client.sync(timeout: 60)
        #expect(try eventually(timeout: 60) {
            let info = try client.jsRequest("$JS.API.STREAM.INFO.BULK", "")
            return (info["state"] as? [String: Any])?["messages"] as? Int == count
        })
    }
}
