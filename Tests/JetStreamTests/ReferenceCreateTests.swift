import Foundation
import Testing
@testable import JetStream
import TestSupport

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
        guard let broker = try await ReferenceBroker.start("jsapi-ref") else { return }
        defer { broker.stop() }

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
        let connection = try WireConnection(port: broker.port, subscriptions: ["_INBOX.jsapi"], reply: "_INBOX.jsapi")
        var existing: [StreamConfig] = []
        for (name, body) in cases {
            let reference = try connection.request("$JS.API.STREAM.CREATE.\(name)", body).payload
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
        let headers = [("Nats-Msg-Id", "m1")]
        #expect(try connection.request("A", "hi", headers: headers).payload
                == String(decoding: JetStreamAPIResponse.pubAck(stream: "A", sequence: 1), as: UTF8.self))
        #expect(try connection.request("A", "hi", headers: headers).payload
                == String(decoding: JetStreamAPIResponse.pubAck(stream: "A", sequence: 1, duplicate: true), as: UTF8.self))
        #expect(try connection.request("A", "x").payload == String(decoding: JetStreamAPIResponse.pubAck(stream: "A", sequence: 2), as: UTF8.self))
        // The INFO of that stream against ours after the same two messages went into a file store.
        let directory = try temporaryDirectory("jsapi-ours")
        defer { removeTemporary(directory) }
        let config = try #require(existing.first { $0.name == "A" })
        let oursStore = try StreamStore(directory: directory + "/A", limits: config.limits)
        try oursStore.store(subject: "A", headers: Array(WireConnection.headerBlock(headers).utf8), payload: Array("hi".utf8))
        try oursStore.store(subject: "A", payload: Array("x".utf8))
        let state = oursStore.state
        oursStore.close()
        let info = try connection.request("$JS.API.STREAM.INFO.A", "").payload
        let ours = JetStreamAPIResponse.streamInfo("stream_info_response", config: config, created: wallClockNanoseconds(),
                                                   state: StreamInfoState(state), paging: APIPaging())
        #expect(normalizedTimes(String(decoding: ours, as: UTF8.self)) == normalizedTimes(info))
        #expect(normalizedTimes(info).contains(#""first_ts":"<time>""#))

        // MSG.DELETE and PURGE answers, and the errors of a file stream for missing sequences.
        func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
        let deleteKind = "stream_msg_delete_response"
        #expect(try connection.request("$JS.API.STREAM.MSG.DELETE.A", #"{"seq":2}"#).payload == text(JetStreamAPIResponse.success(deleteKind)))
        for sequence: UInt64 in [2, 99] {
            let missing = JetStreamAPIError.messageDeleteMissing(sequence: sequence, lastSequence: 2, storage: .file)
            #expect(try connection.request("$JS.API.STREAM.MSG.DELETE.A", #"{"seq":\#(sequence)}"#).payload
                    == text(JetStreamAPIResponse.error(deleteKind, missing)))
        }
        #expect(try connection.request("$JS.API.STREAM.PURGE.A", #"{"seq":1,"keep":1}"#).payload
                == text(JetStreamAPIResponse.purgeError(StreamStoreError.invalidPurge.apiError(in: .purge))))
        #expect(try connection.request("$JS.API.STREAM.PURGE.A", "").payload == text(JetStreamAPIResponse.purge(purged: 1)))
    }
}

/// `json` with every time after the year 2000 replaced (created, first_ts, last_ts).
private func normalizedTimes(_ json: String) -> String {
    json.replacingOccurrences(of: #""2[0-9]{3}-[0-9]{2}-[0-9]{2}T[^"]*Z""#, with: #""<time>""#, options: .regularExpression)
}
