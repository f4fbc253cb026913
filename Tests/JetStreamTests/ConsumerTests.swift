import Foundation
import Formats
import Testing
@testable import JetStream
import TestSupport

/// One stream and a ConsumerManager, driven with explicit times.
final class ConsumerRig {
    let stream: StreamContext
    let manager: ConsumerManager
    let directory: String?
    /// Subjects without interest (everything else has some).
    var deaf: Set<String> = []
    var now: Int64 = 1_700_000_000_000_000_000

    init(_ config: StreamConfig = StreamConfig(name: "S"), file: Bool = false, directory existing: String? = nil) throws {
        var cfg = try config.validated()
        if file { cfg.storage = .file }
        var dir: String?
        if file { dir = try existing ?? temporaryDirectory("jsconsumer") }
        directory = dir
        let store = file ? try StreamStore(directory: dir! + "/S", limits: cfg.limits, now: 0) : StreamStore(memory: cfg.limits)
        stream = StreamContext(name: cfg.name, config: cfg, store: store, created: now, directory: dir.map { $0 + "/S" })
        var deafBox: () -> Set<String> = { [] }
        manager = ConsumerManager(hasInterest: { deafBox().contains($0) == false })
        deafBox = { [unowned self] in self.deaf }
    }

    func finish(removing: Bool = true) {
        stream.store.close()
        if removing, let directory { removeTemporary(directory) }
    }

    var streams: [String: StreamContext] { [stream.name: stream] }

    @discardableResult
    func publish(_ subject: String, _ text: String = "x", headers: String = "") throws -> [EngineAction] {
        let seq = try stream.store.store(subject: subject, headers: Array(headers.utf8), payload: Array(text.utf8), timestamp: now)
        return manager.stored(stream: stream, sequence: seq, subject: subject, now: now)
    }

    func call(_ subject: String, _ body: String = "", reply: String = "_INBOX.r") -> [EngineAction] {
        manager.handle(InboundMessage(subject: subject, reply: reply, payload: Array(body.utf8)), streams: streams, now: now)
    }

    /// The payload sent to `_INBOX.r` by `actions`, as text.
    func answer(_ actions: [EngineAction], to reply: String = "_INBOX.r") -> String? {
        for case .send(let subject, _, _, _, let payload) in actions where subject == reply {
            return String(decoding: payload, as: UTF8.self)
        }
        return nil
    }

    func create(_ name: String, _ config: String) throws -> JSON {
        let body = #"{"stream_name":"S","config":"# + config + "}"
        let text = try #require(answer(call("$JS.API.CONSUMER.CREATE.S.\(name)", body)))
        return try JSON.parse(text)
    }

    func tick(after nanoseconds: Int64) -> [EngineAction] {
        now += nanoseconds
        return manager.tick(now: now)
    }
}

/// A delivery in the actions: subject routed to, subject shown, ack reply, headers, payload.
struct Delivery: Equatable {
    var subject: String
    var shown: String?
    var reply: String
    var headers: String
    var payload: String
}

func deliveries(_ actions: [EngineAction], to target: String? = nil) -> [Delivery] {
    actions.compactMap {
        guard case .send(let subject, let shown, let reply, let headers, let payload) = $0 else { return nil }
        if let target, subject != target { return nil }
        return Delivery(subject: subject, shown: shown, reply: reply, headers: String(decoding: headers, as: UTF8.self),
                        payload: String(decoding: payload, as: UTF8.self))
    }
}

func errCode(_ json: JSON) -> Int64? { json["error"]?["err_code"]?.intValue }

@Suite struct ConsumerConfigTests {
    @Test func generatedNamesAreEightBase62Digits() {
        for _ in 0..<500 {
            let name = ConsumerManager.generatedName()
            #expect(name.utf8.count == 8)
            #expect(name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) }, "\(name)")
        }
    }

    @Test func aStartTimePastInt64NanosecondsSaturatesInsteadOfTrapping() throws {
        let body = Array(#"{"stream_name":"S","config":{"deliver_policy":"by_start_time","opt_start_time":"6548-12-07T18:56:17.65548126Z"}}"#.utf8)
        let (_, config) = try ConsumerConfig.decodeRequest(body)
        #expect(config.optStartTime == .max)
        let early = Array(#"{"stream_name":"S","config":{"opt_start_time":"0001-01-01T00:00:00Z"}}"#.utf8)
        #expect(try ConsumerConfig.decodeRequest(early).config.optStartTime == 0)
    }

    @Test func defaultsFollow2_9_10() throws {
        var c = ConsumerConfig()
        c.ackPolicy = .explicit
        let d = c.withDefaults()
        #expect(d.ackWait == 30_000_000_000)
        #expect(d.maxAckPending == 1000)
        #expect(d.maxWaiting == 512)
        #expect(d.maxDeliver == -1)
        var push = ConsumerConfig()
        push.deliverSubject = "d"
        #expect(push.withDefaults().maxWaiting == 0)
        #expect(push.withDefaults().ackWait == 0)
        var back = c
        back.backoff = [1_000_000_000, 2_000_000_000]
        #expect(back.withDefaults().ackWait == 1_000_000_000)
    }

    @Test func createErrorsCarry2_9_10Codes() throws {
        let rig = try ConsumerRig(StreamConfig(name: "S"))
        defer { rig.finish() }
        let cases: [(String, Int64)] = [
            (#"{"ack_policy":"explicit","deliver_subject":"d.*"}"#, 10079),
            (#"{"ack_policy":"explicit","deliver_subject":"S"}"#, 10081),
            (#"{"deliver_subject":"d","max_waiting":3}"#, 10080),
            (#"{"deliver_subject":"d","max_ack_pending":3}"#, 10082),
            (#"{"deliver_subject":"d","idle_heartbeat":1000}"#, 10083),
            (#"{"idle_heartbeat":1000000000}"#, 10088),
            (#"{"flow_control":true}"#, 10089),
            (#"{"deliver_subject":"d","flow_control":true}"#, 10108),
            (#"{"filter_subject":"other"}"#, 10093),
            (#"{"deliver_policy":"by_start_sequence"}"#, 10094),
            (#"{"deliver_policy":"last_per_subject"}"#, 10094),
            (#"{"opt_start_seq":4}"#, 10094),
            (#"{"ack_policy":"explicit","max_deliver":2,"backoff":[1,2]}"#, 10116),
            (#"{"max_batch":-1}"#, 10114),
            (#"{"max_expires":10}"#, 10115),
            (#"{"max_waiting":-1}"#, 10087),
            (#"{"rate_limit_bps":5}"#, 10086),
            (#"{"sample_freq":"x%"}"#, 10095),
            (#"{"ack_policy":"maybe"}"#, 10025),
            (#"{"num_replicas":3}"#, 10074),
        ]
        for (config, code) in cases {
            #expect(errCode(try rig.create("C", config)) == code, "\(config)")
        }
        // The forms' own checks.
        let mismatch = rig.answer(rig.call("$JS.API.CONSUMER.CREATE.S", #"{"stream_name":"T","config":{}}"#))
        #expect(mismatch?.contains("10056") == true)
        let durableInLegacy = rig.answer(rig.call("$JS.API.CONSUMER.CREATE.S", #"{"stream_name":"S","config":{"durable_name":"d"}}"#))
        #expect(durableInLegacy?.contains("10020") == true)
        let noDurable = rig.answer(rig.call("$JS.API.CONSUMER.DURABLE.CREATE.S.D", #"{"stream_name":"S","config":{}}"#))
        #expect(noDurable?.contains("10018") == true)
        let otherDurable = rig.answer(rig.call("$JS.API.CONSUMER.DURABLE.CREATE.S.D", #"{"stream_name":"S","config":{"durable_name":"E"}}"#))
        #expect(otherDurable?.contains("10017") == true)
        let filter = rig.answer(rig.call("$JS.API.CONSUMER.CREATE.S.C.S", #"{"stream_name":"S","config":{}}"#))
        #expect(filter?.contains("10131") == true)
        #expect(rig.answer(rig.call("$JS.API.CONSUMER.CREATE.X.C", #"{"stream_name":"X","config":{}}"#))?.contains("10059") == true)
        #expect(rig.answer(rig.call("$JS.API.CONSUMER.CREATE.S.C", "nope"))?.contains("10025") == true)
    }

    @Test func recreateWithTheSameConfigIsFineAndFixedFieldsAreNot() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        #expect(errCode(try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit"}"#)) == nil)
        #expect(errCode(try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit"}"#)) == nil)
        let changed = try rig.create("C", #"{"durable_name":"C","ack_policy":"all"}"#)
        #expect(errCode(changed) == 10012)
        #expect(changed["error"]?["description"]?.stringValue == "ack policy can not be updated")
        // max_ack_pending may change.
        let updated = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","max_ack_pending":5}"#)
        #expect(updated["config"]?["max_ack_pending"]?.intValue == 5)
        #expect(rig.manager.consumerCount(stream: "S") == 1)
    }

    @Test func workQueueRules() throws {
        var cfg = StreamConfig(name: "S")
        cfg.subjects = ["w.>"]
        cfg.retention = .workqueue
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        #expect(errCode(try rig.create("A", #"{"ack_policy":"none"}"#)) == 10084)
        #expect(errCode(try rig.create("A", #"{"ack_policy":"all"}"#)) == 10098)
        #expect(errCode(try rig.create("A", #"{"ack_policy":"explicit"}"#)) == nil)
        #expect(errCode(try rig.create("B", #"{"ack_policy":"explicit"}"#)) == 10099)
        let rig2 = try ConsumerRig(cfg)
        defer { rig2.finish() }
        #expect(errCode(try rig2.create("A", #"{"ack_policy":"explicit","filter_subject":"w.a.>"}"#)) == nil)
        #expect(errCode(try rig2.create("B", #"{"ack_policy":"explicit","filter_subject":"w.a.b"}"#)) == 10100)
        #expect(errCode(try rig2.create("B", #"{"ack_policy":"explicit","filter_subject":"w.b","deliver_policy":"new"}"#)) == 10101)
        #expect(errCode(try rig2.create("B", #"{"ack_policy":"explicit","filter_subject":"w.b"}"#)) == nil)
    }

    @Test func maxConsumers() throws {
        var cfg = StreamConfig(name: "S")
        cfg.maxConsumers = 1
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        #expect(errCode(try rig.create("A", "{}")) == nil)
        #expect(errCode(try rig.create("B", "{}")) == 10026)
    }
}

@Suite struct PullConsumerTests {
    @Test func batchDeliversUnderTheStoredSubjectWithNineTokenAckSubjects() throws {
        var cfg = StreamConfig(name: "S")
        cfg.subjects = ["s.>"]
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        try rig.publish("s.a", "1")
        try rig.publish("s.b", "2")
        try rig.publish("s.c", "3")
        let info = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit"}"#)
        #expect(info["num_pending"]?.intValue == 3)
        let got = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", "2", reply: "_INBOX.p"))
        #expect(got.count == 2)
        #expect(got[0] == Delivery(subject: "_INBOX.p", shown: "s.a", reply: "$JS.ACK.S.C.1.1.1.\(rig.now).2", headers: "", payload: "1"))
        #expect(got[1].reply == "$JS.ACK.S.C.1.2.2.\(rig.now).1")
        // Acking the first moves the floor.
        let ackReply = rig.call(got[0].reply, "+ACK", reply: "_INBOX.ack")
        #expect(deliveries(ackReply, to: "_INBOX.ack") == [Delivery(subject: "_INBOX.ack", shown: nil, reply: "", headers: "", payload: "")])
        let after = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(after["ack_floor"]?["stream_seq"]?.intValue == 1)
        #expect(after["delivered"]?["stream_seq"]?.intValue == 2)
        #expect(after["num_ack_pending"]?.intValue == 1)
        #expect(after["num_pending"]?.intValue == 1)
        // +NXT acks the second and asks for one more on its reply.
        let next = deliveries(rig.call(got[1].reply, "+NXT", reply: "_INBOX.n"), to: "_INBOX.n")
        #expect(next.map(\.payload) == ["3"])
    }

    @Test func statusRepliesFollowTheFactsTable() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","max_batch":5,"max_expires":2000000000,"max_bytes":100}"#)
        let next = "$JS.API.CONSUMER.MSG.NEXT.S.C"
        func status(_ body: String) -> String? { deliveries(rig.call(next, body, reply: "_INBOX.q"), to: "_INBOX.q").first?.headers }
        #expect(status(#"{"no_wait":true}"#) == "NATS/1.0 404 No Messages\r\n\r\n")
        #expect(status(#"{"batch":6}"#) == "NATS/1.0 409 Exceeded MaxRequestBatch of 5\r\n\r\n")
        #expect(status(#"{"expires":3000000000}"#) == "NATS/1.0 409 Exceeded MaxRequestExpires of 2s\r\n\r\n")
        #expect(status(#"{"max_bytes":101}"#) == "NATS/1.0 409 Exceeded MaxRequestMaxBytes of 100\r\n\r\n")
        #expect(status(#"{"expires":1000000000,"idle_heartbeat":600000000}"#) == "NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n")
        // A request that expires: 408 with what it still wanted.
        #expect(deliveries(rig.call(next, #"{"batch":3,"expires":1000000000}"#, reply: "_INBOX.e")).isEmpty)
        #expect(rig.manager.nextDeadline == rig.now + 1_000_000_001)
        let timeout = deliveries(rig.tick(after: 1_000_000_001), to: "_INBOX.e")
        #expect(timeout.map(\.headers) == ["NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nNats-Pending-Bytes: 0\r\n\r\n"])
        // A message bigger than max_bytes closes the request (a JSON request without batch asks for 0).
        try rig.publish("S", String(repeating: "x", count: 80))
        let big = deliveries(rig.call(next, #"{"max_bytes":50}"#, reply: "_INBOX.b"), to: "_INBOX.b")
        #expect(big.map(\.headers) == ["NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 0\r\nNats-Pending-Bytes: 50\r\n\r\n"])
        // no_wait with a message: it is delivered, then 408.
        let oneShot = deliveries(rig.call(next, #"{"batch":2,"no_wait":true}"#, reply: "_INBOX.w"), to: "_INBOX.w")
        #expect(oneShot.count == 2)
        #expect(oneShot[0].payload.count == 80)
        #expect(oneShot[1].headers == "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n")
        // Heartbeats while waiting.
        _ = rig.call(next, #"{"expires":2000000000,"idle_heartbeat":500000000}"#, reply: "_INBOX.h")
        let beat = deliveries(rig.tick(after: 500_000_001), to: "_INBOX.h")
        #expect(beat.map(\.headers) == ["NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n"])
        // Deleting the consumer releases what waits.
        let deleted = rig.call("$JS.API.CONSUMER.DELETE.S.C")
        #expect(deliveries(deleted, to: "_INBOX.h").map(\.headers) == ["NATS/1.0 409 Consumer Deleted\r\n\r\n"])
        #expect(rig.answer(deleted) == #"{"type":"io.nats.jetstream.api.v1.consumer_delete_response","success":true}"#)
    }

    @Test func noWaitBehindAStalledBatchIsRequestsPending() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        for k in 1...3 { try rig.publish("S", "m\(k)") }
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","max_ack_pending":1}"#)
        #expect(deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", #"{"batch":5,"expires":30000000000}"#, reply: "_INBOX.a"), to: "_INBOX.a").count == 1)
        let pendingReply = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", #"{"batch":1,"no_wait":true}"#, reply: "_INBOX.b"), to: "_INBOX.b")
        #expect(pendingReply.map(\.headers) == ["NATS/1.0 408 Requests Pending\r\n\r\n"])
    }

    @Test func maxWaitingAndPushBasedRefusals() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","max_waiting":1}"#)
        _ = rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", #"{"expires":5000000000}"#, reply: "_INBOX.1")
        let full = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", "", reply: "_INBOX.2"), to: "_INBOX.2")
        #expect(full.map(\.headers) == ["NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n"])
        _ = try rig.create("P", #"{"durable_name":"P","deliver_subject":"out"}"#)
        let push = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.P", "", reply: "_INBOX.3"), to: "_INBOX.3")
        #expect(push.map(\.headers) == ["NATS/1.0 409 Consumer is push based\r\n\r\n"])
        // An unknown consumer gets no reply at all.
        #expect(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.X", "", reply: "_INBOX.4").isEmpty)
    }
}

@Suite struct AckTests {
    @Test func ackWaitRedeliversAndMaxDeliverSendsItsAdvisory() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        try rig.publish("S", "m")
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","ack_wait":1000000000,"max_deliver":2,"deliver_subject":"out"}"#)
        let first = deliveries(rig.tick(after: 0), to: "out")
        _ = first
        let info = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(info["delivered"]?["consumer_seq"]?.intValue == 1)
        #expect(info["push_bound"]?.boolValue == true)
        let again = deliveries(rig.tick(after: 1_001_000_000), to: "out")
        #expect(again.count == 1)
        #expect(again.first?.reply.hasPrefix("$JS.ACK.S.C.2.1.2.") == true)
        let info2 = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(info2["num_redelivered"]?.intValue == 1)
        // The third would pass max_deliver: the advisory instead, and nothing pending. (The
        // scan after a redelivery runs ack_wait + 2 ms later, as 2.9.10's timer does.)
        #expect(rig.tick(after: 1_001_000_000).isEmpty)
        let gone = rig.tick(after: 1_000_000)
        #expect(deliveries(gone, to: "out").isEmpty)
        let advisory = try #require(rig.answer(gone, to: "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.C"))
        let doc = try JSON.parse(advisory)
        #expect(doc["type"]?.stringValue == "io.nats.jetstream.advisory.v1.max_deliver")
        #expect(doc["stream_seq"]?.intValue == 1)
        #expect(doc["deliveries"]?.intValue == 2)
        let info3 = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(info3["num_ack_pending"]?.intValue == 0)
    }

    @Test func nakWithDelayTermAndProgress() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        try rig.publish("S", "a")
        try rig.publish("S", "b")
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","deliver_subject":"out"}"#)
        let sent = deliveries(rig.tick(after: 0), to: "out")
        // Created with interest: the create already delivered both.
        #expect(sent.isEmpty)
        let info = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(info["num_ack_pending"]?.intValue == 2)
        let ack1 = "$JS.ACK.S.C.1.1.1.\(rig.now).1"
        let ack2 = "$JS.ACK.S.C.1.2.2.\(rig.now).0"
        // Plain NAK: at once.
        let nak = deliveries(rig.call(ack1, "-NAK", reply: ""), to: "out")
        #expect(nak.map(\.payload) == ["a"])
        // NAK with a delay: not before it.
        #expect(deliveries(rig.call(ack2, #"-NAK {"delay":2000000000}"#, reply: ""), to: "out").isEmpty)
        #expect(deliveries(rig.tick(after: 1_000_000_000), to: "out").isEmpty)
        #expect(deliveries(rig.tick(after: 1_100_000_000), to: "out").map(\.payload) == ["b"])
        // +WPI pushes the ack wait out; +TERM ends it.
        _ = rig.call("$JS.ACK.S.C.2.1.3.\(rig.now).0", "+WPI", reply: "")
        _ = rig.call("$JS.ACK.S.C.2.2.4.\(rig.now).0", "+TERM", reply: "")
        let done = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(done["num_ack_pending"]?.intValue == 1)
        _ = rig.call("$JS.ACK.S.C.2.1.3.\(rig.now).0", "", reply: "")
        let empty = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(empty["num_ack_pending"]?.intValue == 0)
        #expect(empty["ack_floor"]?["stream_seq"]?.intValue == 2)
        #expect(empty["ack_floor"]?["consumer_seq"]?.intValue == 4)
    }

    @Test func ackAllIsCumulativeAndMaxAckPendingPauses() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        for k in 1...5 { try rig.publish("S", "m\(k)") }
        let created = rig.call("$JS.API.CONSUMER.CREATE.S.C", #"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"all","max_ack_pending":2,"deliver_subject":"out"}}"#)
        #expect(deliveries(created, to: "out").map(\.payload) == ["m1", "m2"])
        let more = deliveries(rig.call("$JS.ACK.S.C.1.2.2.\(rig.now).3", "", reply: ""), to: "out")
        #expect(more.map(\.payload) == ["m3", "m4"])
        let info = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(info["ack_floor"]?["stream_seq"]?.intValue == 2)
        #expect(info["num_ack_pending"]?.intValue == 2)
    }

    @Test func backoffStepsTheRedeliveries() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        try rig.publish("S", "m")
        _ = rig.call("$JS.API.CONSUMER.CREATE.S.C", #"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_deliver":5,"backoff":[1000000000,3000000000],"deliver_subject":"out"}}"#)
        #expect(deliveries(rig.tick(after: 1_002_000_000), to: "out").count == 1)
        #expect(deliveries(rig.tick(after: 2_000_000_000), to: "out").isEmpty)
        #expect(deliveries(rig.tick(after: 1_100_000_000), to: "out").count == 1)
    }
}

@Suite struct PushConsumerTests {
    @Test func deliversOnlyWithInterestAndSendsHeartbeatsAndFlowControl() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        rig.deaf = ["out"]
        try rig.publish("S", "a", headers: "NATS/1.0\r\nK: v\r\n\r\n")
        let created = rig.call("$JS.API.CONSUMER.CREATE.S.C", #"{"stream_name":"S","config":{"durable_name":"C","deliver_subject":"out","idle_heartbeat":1000000000,"flow_control":true,"headers_only":true}}"#)
        #expect(deliveries(created, to: "out").isEmpty)
        let info = try JSON.parse(rig.answer(created)!)
        #expect(info["push_bound"] == nil)
        rig.deaf = []
        let got = deliveries(rig.tick(after: 100_000_000), to: "out")
        #expect(got.map(\.headers) == ["NATS/1.0\r\nK: v\r\nNats-Msg-Size: 1\r\n\r\n"])
        #expect(got.map(\.payload) == [""])
        let beat = deliveries(rig.tick(after: 1_000_000_000), to: "out")
        #expect(beat.map(\.headers) == ["NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n"])
        // A big message passes half the 2 MiB window: a flow-control request follows it, and
        // nothing more goes out until it is answered.
        try rig.publish("S", String(repeating: "z", count: 1))
        let consumer = try #require(rig.manager.consumers["S"]?["C"])
        consumer.pendingBytes = consumer.windowBytes / 2 + 1
        let withFC = rig.publish2("S")
        let fc = withFC.filter { $0.headers.hasPrefix("NATS/1.0 100 FlowControl Request") }
        #expect(fc.count == 1)
        #expect(fc.first?.reply.hasPrefix("$JS.FC.S.C.") == true)
        consumer.pendingBytes = consumer.windowBytes + 1
        #expect(deliveries(try rig.publish("S", "stalled"), to: "out").isEmpty)
        let resumed = deliveries(rig.call(fc[0].reply, "", reply: ""), to: "out")
        #expect(resumed.count == 1)
    }

    @Test func ephemeralGoesAfterItsInactiveThreshold() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        let info = try JSON.parse(rig.answer(rig.call("$JS.API.CONSUMER.CREATE.S", #"{"stream_name":"S","config":{"deliver_subject":"gone"}}"#))!)
        let name = try #require(info["name"]?.stringValue)
        #expect(name.utf8.count == 8)
        #expect(info["config"]?["inactive_threshold"]?.intValue == 5_000_000_000)
        rig.deaf = ["gone"]
        _ = rig.tick(after: 100_000_000)
        #expect(rig.manager.consumerCount(stream: "S") == 1)
        _ = rig.tick(after: 5_000_000_000)
        #expect(rig.manager.consumerCount(stream: "S") == 0)
        // A pull ephemeral without requests goes too.
        _ = try rig.create("E", #"{"inactive_threshold":1000000000}"#)
        _ = rig.tick(after: 900_000_000)
        #expect(rig.manager.consumerCount(stream: "S") == 1)
        _ = rig.tick(after: 200_000_000)
        #expect(rig.manager.consumerCount(stream: "S") == 0)
    }
}

extension ConsumerRig {
    /// Publishes one byte and returns the deliveries to `out`.
    func publish2(_ subject: String) -> [Delivery] {
        deliveries((try? publish(subject, "y")) ?? [], to: "out")
    }
}

@Suite struct DeliverPolicyTests {
    @Test(arguments: [
        (#"{"deliver_policy":"all"}"#, ["a1", "b1", "a2", "b2"]),
        (#"{"deliver_policy":"last"}"#, ["b2"]),
        (#"{"deliver_policy":"new"}"#, []),
        (#"{"deliver_policy":"by_start_sequence","opt_start_seq":3}"#, ["a2", "b2"]),
        (#"{"deliver_policy":"last_per_subject","filter_subject":"s.>"}"#, ["a2", "b2"]),
        (#"{"filter_subject":"s.a"}"#, ["a1", "a2"]),
        (#"{"deliver_policy":"last","filter_subject":"s.a"}"#, ["a2"]),
    ])
    func startsWhere2_9_10Starts(config: String, expected: [String]) throws {
        var cfg = StreamConfig(name: "S")
        cfg.subjects = ["s.>"]
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        for (s, p) in [("s.a", "a1"), ("s.b", "b1"), ("s.a", "a2"), ("s.b", "b2")] { try rig.publish(s, p) }
        _ = try rig.create("C", config)
        let got = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", #"{"batch":10,"no_wait":true}"#, reply: "_INBOX.x"), to: "_INBOX.x")
        #expect(got.filter { $0.headers.isEmpty }.map(\.payload) == expected)
    }

    @Test func byStartTimeAndReplayOriginal() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        let t0 = rig.now
        try rig.publish("S", "1")
        rig.now += 2_000_000_000
        try rig.publish("S", "2")
        rig.now += 1_000_000_000
        try rig.publish("S", "3")
        var t = [UInt8]()
        JetStreamJSON.appendTime(t0 + 1, to: &t)
        let byTime = #"{"deliver_policy":"by_start_time","opt_start_time":"# + String(decoding: t, as: UTF8.self) + #","deliver_subject":"o1"}"#
        let c1 = rig.call("$JS.API.CONSUMER.CREATE.S.T", #"{"stream_name":"S","config":"# + byTime + "}")
        #expect(deliveries(c1, to: "o1").map(\.payload) == ["2", "3"])
        let c2 = rig.call("$JS.API.CONSUMER.CREATE.S.R", #"{"stream_name":"S","config":{"replay_policy":"original","deliver_subject":"o2"}}"#)
        #expect(deliveries(c2, to: "o2").map(\.payload) == ["1"])
        #expect(deliveries(rig.tick(after: 1_000_000_000), to: "o2").isEmpty)
        #expect(deliveries(rig.tick(after: 1_000_000_000), to: "o2").map(\.payload) == ["2"])
        #expect(deliveries(rig.tick(after: 1_000_000_000), to: "o2").map(\.payload) == ["3"])
    }
}

@Suite struct RetentionTests {
    @Test func workQueueRemovesOnAck() throws {
        var cfg = StreamConfig(name: "S")
        cfg.retention = .workqueue
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        try rig.publish("S", "job")
        _ = try rig.create("W", #"{"durable_name":"W","ack_policy":"explicit"}"#)
        let got = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.W", "", reply: "_INBOX.w"), to: "_INBOX.w")
        #expect(rig.stream.store.state.messages == 1)
        _ = rig.call(got[0].reply, "+ACK", reply: "")
        #expect(rig.stream.store.state.messages == 0)
    }

    @Test func interestRemovesOnceEveryConsumerAcked() throws {
        var cfg = StreamConfig(name: "S")
        cfg.subjects = ["i.>"]
        cfg.retention = .interest
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        _ = try rig.create("A", #"{"durable_name":"A","ack_policy":"explicit"}"#)
        _ = try rig.create("B", #"{"durable_name":"B","ack_policy":"explicit","filter_subject":"i.b"}"#)
        #expect(rig.manager.hasInterest(stream: rig.stream, subject: "i.a"))
        try rig.publish("i.a", "only A")
        try rig.publish("i.b", "both")
        let a = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.A", "2", reply: "_INBOX.a"), to: "_INBOX.a")
        let b = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.B", "1", reply: "_INBOX.b"), to: "_INBOX.b")
        _ = rig.call(a[0].reply, "", reply: "")
        #expect(rig.stream.store.state.messages == 1)
        _ = rig.call(a[1].reply, "", reply: "")
        #expect(rig.stream.store.state.messages == 1)
        _ = rig.call(b[0].reply, "", reply: "")
        #expect(rig.stream.store.state.messages == 0)
    }
}

@Suite struct ConsumerPersistenceTests {
    @Test func stateSurvivesARestartAndPendingIsRedelivered() throws {
        let rig = try ConsumerRig(file: true)
        let directory = try #require(rig.directory)
        defer { removeTemporary(directory) }
        for k in 1...3 { try rig.publish("S", "m\(k)") }
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"explicit","ack_wait":1000000000}"#)
        let got = deliveries(rig.call("$JS.API.CONSUMER.MSG.NEXT.S.C", "2", reply: "_INBOX.p"), to: "_INBOX.p")
        _ = rig.call(got[0].reply, "", reply: "")
        // Within 100 ms nothing is written yet; the timer writes it.
        #expect(rig.manager.nextDeadline != nil)
        _ = rig.tick(after: 100_000_000)
        let statePath = directory + "/S/obs/C/o.dat"
        #expect(FileManager.default.fileExists(atPath: statePath))
        rig.finish(removing: false)

        let again = try ConsumerRig(file: true, directory: directory)
        again.now = rig.now
        _ = try again.manager.recover(stream: again.stream, now: again.now)
        let info = try JSON.parse(again.answer(again.call("$JS.API.CONSUMER.INFO.S.C"))!)
        #expect(info["delivered"]?["stream_seq"]?.intValue == 2)
        #expect(info["ack_floor"]?["stream_seq"]?.intValue == 1)
        #expect(info["num_ack_pending"]?.intValue == 1)
        let redelivered = deliveries(again.call("$JS.API.CONSUMER.MSG.NEXT.S.C", "2", reply: "_INBOX.r2"), to: "_INBOX.r2")
        #expect(redelivered.map(\.payload) == ["m3"])
        let late = deliveries(again.tick(after: 1_100_000_000), to: "_INBOX.r2")
        #expect(late.map(\.payload) == ["m2"])
        #expect(late.first?.reply.hasPrefix("$JS.ACK.S.C.2.2.") == true)
        again.manager.persist()
        again.finish(removing: false)

        // A damaged state file is an error naming it.
        var bytes = try #require(FileManager.default.contents(atPath: statePath))
        bytes[6] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: statePath))
        let broken = try ConsumerRig(file: true, directory: directory)
        defer { broken.finish(removing: false) }
        #expect(throws: StreamStoreError.self) { _ = try broken.manager.recover(stream: broken.stream, now: broken.now) }
        do {
            _ = try broken.manager.recover(stream: broken.stream, now: broken.now)
        } catch {
            #expect(error.description.contains(statePath))
        }
    }

    /// The start is on disk from the create on: messages stored between the create and a crash
    /// before the first timed write are still delivered after recovery (deliver policy new).
    @Test func theStartIsWrittenAtCreate() throws {
        let rig = try ConsumerRig(file: true)
        let directory = try #require(rig.directory)
        defer { removeTemporary(directory) }
        try rig.publish("S", "old")
        _ = try rig.create("N", #"{"durable_name":"N","deliver_policy":"new","ack_policy":"explicit"}"#)
        try rig.publish("S", "after create")
        rig.finish(removing: false)
        let again = try ConsumerRig(file: true, directory: directory)
        defer { again.finish(removing: false) }
        _ = try again.manager.recover(stream: again.stream, now: again.now)
        let got = deliveries(again.call("$JS.API.CONSUMER.MSG.NEXT.S.N", "5", reply: "_INBOX.n"), to: "_INBOX.n")
        #expect(got.first?.payload == "after create")
    }

    @Test func memoryStreamsKeepNothingAndDeleteRemovesFiles() throws {
        let rig = try ConsumerRig(file: true)
        defer { rig.finish() }
        _ = try rig.create("C", #"{"durable_name":"C"}"#)
        let folder = rig.directory! + "/S/obs/C"
        #expect(FileManager.default.fileExists(atPath: folder + "/meta.inf"))
        _ = rig.call("$JS.API.CONSUMER.DELETE.S.C")
        #expect(!FileManager.default.fileExists(atPath: folder))
    }
}

@Suite struct ConsumerRobustnessTests {
    @Test func advisoriesFollowTheLifecycle() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        try rig.publish("S", "a")
        try rig.publish("S", "b")
        let created = rig.call("$JS.API.CONSUMER.CREATE.S.C", #"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","deliver_subject":"out"}}"#)
        let createdAdvisory = try JSON.parse(try #require(rig.answer(created, to: "$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.C")))
        #expect(createdAdvisory["type"]?.stringValue == "io.nats.jetstream.advisory.v1.consumer_action")
        #expect(createdAdvisory["action"]?.stringValue == "create")
        #expect(createdAdvisory["id"]?.stringValue?.utf8.count == 22)
        let acks = deliveries(created, to: "out").map(\.reply)
        let nak = try JSON.parse(try #require(rig.answer(rig.call(acks[0], "-NAK", reply: ""), to: "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.C")))
        #expect(nak["type"]?.stringValue == "io.nats.jetstream.advisory.v1.nak")
        #expect(nak["consumer_seq"]?.intValue == 1)
        let term = try JSON.parse(try #require(rig.answer(rig.call(acks[1], "+TERM", reply: ""), to: "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.C")))
        #expect(term["type"]?.stringValue == "io.nats.jetstream.advisory.v1.terminated")
        #expect(term["stream_seq"]?.intValue == 2)
        let deleted = rig.call("$JS.API.CONSUMER.DELETE.S.C")
        #expect(rig.answer(deleted, to: "$JS.EVENT.ADVISORY.CONSUMER.DELETED.S.C")?.contains(#""action":"delete""#) == true)
    }

    /// Values a client can send that would overflow or walk huge ranges are taken without a trap.
    @Test func hostileValuesDoNotTrap() throws {
        let rig = try ConsumerRig()
        defer { rig.finish() }
        try rig.publish("S", "a")
        let max = Int64.max
        _ = try rig.create("C", #"{"durable_name":"C","ack_policy":"all","ack_wait":\#(max),"inactive_threshold":\#(max),"deliver_subject":"out","idle_heartbeat":\#(max)}"#)
        _ = try rig.create("E", #"{"durable_name":"E","ack_policy":"explicit","max_deliver":3,"backoff":[\#(max),\#(max)]}"#)
        _ = rig.call("$JS.API.CONSUMER.MSG.NEXT.S.E", #"{"batch":1,"expires":\#(max),"idle_heartbeat":\#(max / 2)}"#, reply: "_INBOX.h")
        _ = rig.call("$JS.API.CONSUMER.MSG.NEXT.S.E", #"{"batch":-5,"max_bytes":-1}"#, reply: "_INBOX.h2")
        _ = rig.call("$JS.ACK.S.C.1.18446744073709551615.1.0.0", "", reply: "")
        _ = rig.call("$JS.ACK.S.C.x.y.z.0.0", "+ACK", reply: "_INBOX.a")
        _ = rig.call("$JS.ACK.S.E.1.1.1.0.0", #"-NAK {"delay":\#(max)}"#, reply: "")
        _ = rig.call("$JS.ACK.S.E.1.1.1.0.0", "-NAK -9999999999h", reply: "")
        _ = rig.call("$JS.ACK.S.E.1.1.1.0.0", "+NXT {\"batch\":", reply: "_INBOX.n")
        _ = rig.call("$JS.API.CONSUMER.NAMES.S", #"{"offset":-4}"#)
        _ = rig.call("$JS.API.CONSUMER.LIST.S", #"{"offset":99999999999}"#)
        _ = rig.tick(after: 1)
        _ = rig.tick(after: Int64.max / 4)
        #expect(rig.manager.consumerCount(stream: "S") == 2)
        let bad = rig.answer(rig.call("$JS.API.CONSUMER.CREATE.S.Q", #"{"stream_name":"S","config":{"opt_start_seq":-1}}"#))
        #expect(bad?.contains("10025") == true)
    }
}

@Suite struct RateLimitTests {
    /// rate_limit_bps 8000 = 1000 bytes a second after a burst of max_msg_size (1000 here).
    @Test func pushDeliveriesWaitForTheRateLimit() throws {
        var cfg = StreamConfig(name: "S")
        cfg.maxMessageSize = 1000
        let rig = try ConsumerRig(cfg)
        defer { rig.finish() }
        for _ in 0..<3 { try rig.publish("S", String(repeating: "p", count: 400)) }
        let created = rig.call("$JS.API.CONSUMER.CREATE.S.R", #"{"stream_name":"S","config":{"durable_name":"R","deliver_subject":"out","rate_limit_bps":8000}}"#)
        // Two fit in the burst (about 430 bytes each with subjects); the third waits.
        #expect(deliveries(created, to: "out").count == 2)
        #expect(deliveries(rig.tick(after: 100_000_000), to: "out").isEmpty)
        #expect(deliveries(rig.tick(after: 500_000_000), to: "out").count == 1)
    }
}

@Suite struct ConsumerStateFileTests {
    @Test func roundTripsAndRefusesEveryDamagedOrCutCopy() throws {
        var state = ConsumerStateFile.State()
        state.deliveredConsumer = 1_000_007
        state.deliveredStream = 2_000_003
        state.ackFloorConsumer = 999_000
        state.ackFloorStream = 1_999_000
        state.pending = [1_999_001: PendingDelivery(deliverySequence: 999_001, timestamp: 1_700_000_000_123_456_789),
                         1_999_050: PendingDelivery(deliverySequence: 999_060, timestamp: -5)]
        state.redelivered = [1_999_001: 3]
        let bytes = ConsumerStateFile.encode(state)
        #expect(try ConsumerStateFile.decode(bytes, path: "p") == state)
        for cut in 0..<bytes.count {
            #expect(throws: StreamStoreError.self) { _ = try ConsumerStateFile.decode(Array(bytes[..<cut]), path: "p") }
        }
        for index in bytes.indices {
            var damaged = bytes
            damaged[index] ^= 0x10
            #expect(throws: StreamStoreError.self) { _ = try ConsumerStateFile.decode(damaged, path: "p") }
        }
        var random = SeededGenerator(seed: 14)
        for _ in 0..<500 {
            let junk = random.bytes(Int(random.next() % 64))
            _ = try? ConsumerStateFile.decode(Array("JSC1".utf8) + junk, path: "p")
        }
    }
}
