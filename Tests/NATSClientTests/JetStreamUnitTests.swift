// JetStream client helpers without a broker: ack subjects, times, config JSON, headers, names.

import Foundation
import Testing
@testable import NATSClient

@Suite("JetStream client units")
struct JetStreamUnitTests {
    @Test("the 9-token ack subject gives the delivery metadata; the 12-token form adds the domain")
    func ackSubjects() throws {
        let metadata = try #require(JetStreamMessage.parse(ackSubject: "$JS.ACK.ORDERS.worker.2.17.40.1700000000123456789.5"))
        #expect(metadata.stream == "ORDERS")
        #expect(metadata.consumer == "worker")
        #expect(metadata.delivered == 2)
        #expect(metadata.streamSequence == 17)
        #expect(metadata.consumerSequence == 40)
        #expect(metadata.timestampNanos == 1_700_000_000_123_456_789)
        #expect(abs(metadata.timestamp.timeIntervalSince1970 - 1_700_000_000.123456789) < 1e-6)
        #expect(metadata.pending == 5)
        #expect(metadata.domain == nil)
        let long = try #require(JetStreamMessage.parse(ackSubject: "$JS.ACK.hub.ACCHASH.S.C.1.2.3.4.5.token"))
        #expect(long.domain == "hub")
        #expect(long.stream == "S")
        #expect(long.pending == 5)
        #expect(JetStreamMessage.parse(ackSubject: "$JS.ACK.S.C.1.2.3.4") == nil)
        #expect(JetStreamMessage.parse(ackSubject: "_INBOX.S.C.1.2.3.4.5.6") == nil)
        #expect(JetStreamMessage.parse(ackSubject: "$JS.ACK.S.C.x.2.3.4.5") == nil)
    }

    @Test("the API prefix follows the domain or an explicit prefix")
    func apiPrefix() throws {
        let client = NATSClient.forTesting(NATSClient.Options(url: "nats://127.0.0.1:1"))
        #expect(try client.jetStream().apiPrefix == "$JS.API")
        #expect(try client.jetStream(domain: "hub").apiPrefix == "$JS.hub.API")
        #expect(try client.jetStream(domain: "hub", prefix: "imported.JS.API.").apiPrefix == "imported.JS.API")
        #expect(throws: JetStreamError.self) { _ = try client.jetStream(prefix: "bad.*") }
        #expect(throws: JetStreamError.self) { _ = try client.jetStream(domain: "a b") }
    }

    @Test("RFC 3339 times with nanoseconds and offsets parse; the Go zero time is none")
    func times() throws {
        let date = try #require(RFC3339Nano.parse("2023-11-14T22:13:20.123456789Z"))
        #expect(abs(date.timeIntervalSince1970 - 1_700_000_000.123456789) < 1e-6)
        let offset = try #require(RFC3339Nano.parse("2023-11-14T23:13:20+01:00"))
        #expect(offset.timeIntervalSince1970 == 1_700_000_000)
        #expect(RFC3339Nano.parse("0001-01-01T00:00:00Z") == nil)
        #expect(RFC3339Nano.parse("yesterday") == nil)
        #expect(RFC3339Nano.parse("2023-11-14T22:13:20") == nil)
        #expect(RFC3339Nano.format(Date(timeIntervalSince1970: 1_700_000_000.5)) == "2023-11-14T22:13:20.500000000Z")
    }

    @Test("configs encode durations as nanoseconds and round-trip")
    func configJSON() throws {
        var stream = StreamConfig(name: "S", subjects: ["a.>"])
        stream.maxAge = .seconds(90)
        stream.duplicateWindow = .milliseconds(1500)
        let streamJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(stream)) as? [String: Any]
        #expect(streamJSON?["max_age"] as? Int == 90_000_000_000)
        #expect(streamJSON?["duplicate_window"] as? Int == 1_500_000_000)
        #expect(streamJSON?["max_msgs"] as? Int == -1)
        #expect(try JSONDecoder().decode(StreamConfig.self, from: JSONEncoder().encode(stream)) == stream)

        var consumer = ConsumerConfig(durableName: "d")
        consumer.ackWait = .seconds(3)
        consumer.backoff = [.seconds(1), .seconds(2)]
        consumer.deliverPolicy = .byStartSequence
        consumer.optStartSeq = 9
        let consumerJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(consumer)) as? [String: Any]
        #expect(consumerJSON?["ack_wait"] as? Int == 3_000_000_000)
        #expect(consumerJSON?["backoff"] as? [Int] == [1_000_000_000, 2_000_000_000])
        #expect(consumerJSON?["deliver_policy"] as? String == "by_start_sequence")
        #expect(consumerJSON?["name"] == nil)
        #expect(try JSONDecoder().decode(ConsumerConfig.self, from: JSONEncoder().encode(consumer)) == consumer)
    }

    @Test("publish options become Nats-* headers next to the caller's")
    func publishHeaders() throws {
        var mine = Headers()
        try mine.append(name: "X-Trace", value: "1")
        let options = PublishOptions(msgID: "id-1", expectedStream: "S", expectedLastSequence: 4,
                                     expectedLastSubjectSequence: 0, expectedLastMsgID: "id-0")
        let merged = try #require(try options.merged(into: mine))
        #expect(merged["X-Trace"] == "1")
        #expect(merged["Nats-Msg-Id"] == "id-1")
        #expect(merged["Nats-Expected-Stream"] == "S")
        #expect(merged["Nats-Expected-Last-Sequence"] == "4")
        #expect(merged["Nats-Expected-Last-Subject-Sequence"] == "0")
        #expect(merged["Nats-Expected-Last-Msg-Id"] == "id-0")
        #expect(try PublishOptions().merged(into: nil) == nil)
        #expect(throws: JetStreamError.self) { _ = try PublishOptions(msgID: "a\r\nb").merged(into: nil) }
    }

    @Test("PubAcks as the server writes them parse without JSONDecoder; anything else is left to it")
    func pubAckFastPath() throws {
        let plain = try #require(PubAck(fastParsing: Array(#"{"stream":"ORDERS", "seq":42}"#.utf8)))
        #expect(plain.stream == "ORDERS")
        #expect(plain.sequence == 42)
        #expect(!plain.duplicate)
        #expect(plain.domain == nil)
        let duplicate = try #require(PubAck(fastParsing: Array(#"{"stream":"S", "seq":7,"duplicate": true}"#.utf8)))
        #expect(duplicate.duplicate)
        #expect(duplicate.sequence == 7)
        let domain = try #require(PubAck(fastParsing: Array(#"{"stream":"S","domain":"hub","seq":1}"#.utf8)))
        #expect(domain.domain == "hub")
        for other in [#"{"error":{"code":503,"err_code":10077,"description":"x"},"stream":"S","seq":0}"#,
                      #"{"stream":"S\u0041","seq":1}"#, #"{"stream":"S","seq":}"#, #"{"stream":"S"}"#,
                      #"{"stream":"S","seq":1"#, #"{"stream":"S","seq":99999999999999999999999}"#, "", "[]"] {
            #expect(PubAck(fastParsing: Array(other.utf8)) == nil, "\(other)")
        }
        let decoded = try JetStreamContext.decodeAPI(Array(#"{"stream":"S","seq":3,"duplicate":true}"#.utf8), as: PubAck.self, subject: "x")
        #expect(decoded == PubAck(fastParsing: Array(#"{"stream":"S","seq":3,"duplicate":true}"#.utf8)))
    }

    @Test("API errors decode with their err_code; names and versions are checked")
    func errorsAndNames() throws {
        let payload = Array(#"{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#.utf8)
        #expect(throws: JetStreamError.api(code: 404, errCode: 10059, description: "stream not found")) {
            _ = try JetStreamContext.decodeAPI(payload, as: StreamInfo.self, subject: "x")
        }
        #expect(throws: JetStreamError.self) { _ = try JetStreamContext.decodeAPI(Array("nope".utf8), as: PubAck.self, subject: "x") }
        for bad in ["", "a.b", "a*", "a>", "a b", "a/b"] {
            #expect(throws: JetStreamError.self) { try JetStreamContext.validateName(bad, what: "stream") }
        }
        try JetStreamContext.validateName("ORDERS-1_x", what: "stream")
        #expect(JetStreamContext.predates29("2.8.4"))
        #expect(!JetStreamContext.predates29("2.9.10"))
        #expect(!JetStreamContext.predates29("2.10.0-beta"))
        #expect(!JetStreamContext.predates29(nil))
        #expect(throws: JetStreamError.self) { try KeyValue.validateKey(".a") }
        #expect(throws: JetStreamError.self) { try KeyValue.validateKey("a*") }
        try KeyValue.validateKey("a.*", wildcards: true)
        try KeyValue.validateKey("user/1=a_b-c.d")
    }
}
