import Foundation
import Formats
import Testing
@testable import JetStream
import TestSupport

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
        guard let broker = try await ReferenceBroker.start("jscons-ref") else { return }
        defer { broker.stop() }
        let (connection, rig) = try streamS(on: broker)
        defer { rig.finish() }
        for (subject, body) in [("s.a", "one"), ("s.b", "two"), ("s.a", "three")] {
            _ = try connection.request(subject, body)
            try rig.publish(subject, body)
        }

        /// The reference frames after a publish against what `stream` (S unless named) sends for it;
        /// the subjects too when `subjects`.
        func compare(_ subject: String, _ body: String, _ label: String, frames: Int = 1,
                     stream: ConsumerRig? = nil, subjects: Bool = true) throws {
            try connection.publish(subject, body)
            let reference = try connection.frames(frames)
            // The reference connection does not subscribe to advisories.
            let ours = deliveries((stream ?? rig).call(subject, body, reply: "_INBOX.api")).filter { !$0.subject.hasPrefix("$JS.EVENT.") }
            #expect(ours.count >= frames, "\(label): our answer count")
            for (k, frame) in reference.enumerated() where k < ours.count {
                #expect(normalized(ours[k].payload) == normalized(frame.payload), "\(label) payload \(k)")
                #expect(ours[k].headers == frame.headers, "\(label) headers \(k)")
                #expect(normalized(ours[k].reply) == normalized(frame.reply), "\(label) reply \(k)")
                if subjects {
                    #expect((ours[k].shown ?? ours[k].subject) == frame.subject, "\(label) subject \(k)")
                }
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
        // max_ack_pending 1 stalls a waiting batch; a no_wait request behind it: 408 Requests Pending.
        try compare("$JS.API.CONSUMER.CREATE.S.MP", #"{"stream_name":"S","config":{"durable_name":"MP","ack_policy":"explicit","max_ack_pending":1}}"#, "MP create")
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.MP", #"{"batch":5,"expires":30000000000}"#, "MP batch", frames: 1)
        try compare("$JS.API.CONSUMER.MSG.NEXT.S.MP", #"{"batch":1,"no_wait":true}"#, "MP requests pending")
        try compare("$JS.API.CONSUMER.INFO.S.MP", "", "MP info")

        // A work-queue stream with max_consumers 3: its rules, in 2.9.10's order.
        var workConfig = StreamConfig(name: "W")
        workConfig.subjects = ["w.>"]
        workConfig.retention = .workqueue
        workConfig.maxConsumers = 3
        workConfig.storage = .memory
        _ = try connection.request("$JS.API.STREAM.CREATE.W",
                                   #"{"name":"W","subjects":["w.>"],"retention":"workqueue","max_consumers":3,"storage":"memory"}"#)
        let work = try ConsumerRig(workConfig)
        defer { work.finish() }
        for subject in ["w.a", "w.b", "w.a"] {
            _ = try connection.request(subject, "job")
            try work.publish(subject, "job")
        }
        func compareWork(_ subject: String, _ body: String, _ label: String, frames: Int = 1) throws {
            try compare(subject, body, label, frames: frames, stream: work, subjects: false)
        }
        let workCreates: [(String, String)] = [
            ("W.A", #"{"stream_name":"W","config":{"ack_policy":"none"}}"#),
            ("W.A", #"{"stream_name":"W","config":{"ack_policy":"all"}}"#),
            ("W.A", #"{"stream_name":"W","config":{"ack_policy":"explicit","filter_subject":"w.a"}}"#),
            ("W.B", #"{"stream_name":"W","config":{"ack_policy":"explicit"}}"#),
            ("W.B", #"{"stream_name":"W","config":{"ack_policy":"explicit","filter_subject":"w.*"}}"#),
            ("W.B", #"{"stream_name":"W","config":{"ack_policy":"explicit","filter_subject":"w.b","deliver_policy":"last"}}"#),
            ("W.B", #"{"stream_name":"W","config":{"ack_policy":"explicit","filter_subject":"w.b"}}"#),
            ("W.C", #"{"stream_name":"W","config":{"ack_policy":"explicit","filter_subject":"w.c"}}"#),
            ("W.D", #"{"stream_name":"W","config":{"ack_policy":"explicit","filter_subject":"w.d"}}"#),
        ]
        for (names, body) in workCreates {
            try compareWork("$JS.API.CONSUMER.CREATE." + names, body, names + " " + body)
        }
        // A batch, then no_wait while that request still holds the backlog, then the ack that removes.
        try compareWork("$JS.API.CONSUMER.MSG.NEXT.W.A", #"{"batch":1}"#, "work NEXT", frames: 1)
        try compareWork("$JS.API.CONSUMER.MSG.NEXT.W.A", #"{"batch":5,"expires":30000000000}"#, "work NEXT waiting", frames: 1)
        try compareWork("$JS.API.CONSUMER.MSG.NEXT.W.A", #"{"batch":1,"no_wait":true}"#, "work NEXT requests pending")
        try compareWork("$JS.API.CONSUMER.INFO.W.A", "", "work INFO")
    }

    /// A push consumer against nats-server 2.9.10: its deliveries, the answers to +ACK with a
    /// reply, -NAK and +TERM, the info after them, headers-only deliveries and an idle heartbeat.
    @Test(.enabled(if: ReferencePeer.available || ReferencePeer.required, "nats-server 2.9.10 is not installed"))
    func pushDeliveriesAndAcksMatchTheReference() async throws {
        guard let broker = try await ReferenceBroker.start("jscons-push") else { return }
        defer { broker.stop() }
        let (connection, rig) = try streamS(on: broker)
        defer { rig.finish() }
        _ = try connection.request("s.h", "hdr", headers: [("K", "v")])
        try rig.publish("s.h", "hdr", headers: WireConnection.headerBlock([("K", "v")]))
        for (subject, body) in [("s.a", "one"), ("s.b", "two")] {
            _ = try connection.request(subject, body)
            try rig.publish(subject, body)
        }

        /// Reference frames after a publish, split into the API answer and the rest in order.
        func exchange(_ subject: String, _ body: String, reply: String = "_INBOX.api", frames: Int)
            throws -> (answer: [WireConnection.Frame], others: [WireConnection.Frame]) {
            try connection.publish(subject, body, reply: reply)
            let got = try connection.frames(frames)
            return (got.filter { $0.subject == reply }, got.filter { $0.subject != reply })
        }
        func ours(_ actions: [EngineAction]) -> [WireConnection.Frame] {
            deliveries(actions).filter { !$0.subject.hasPrefix("$JS.EVENT.") }.map { WireConnection.Frame(subject: $0.shown ?? $0.subject, reply: $0.reply, headers: $0.headers, payload: $0.payload) }
        }
        func same(_ a: [WireConnection.Frame], _ b: [WireConnection.Frame], _ label: String) {
            #expect(a.count == b.count, "\(label): \(a.count) frames, reference \(b.count)")
            for (x, y) in zip(a, b) {
                #expect(x.subject == y.subject, "\(label) subject")
                #expect(normalized(x.reply) == normalized(y.reply), "\(label) reply")
                #expect(x.headers == y.headers, "\(label) headers")
                #expect(normalized(x.payload) == normalized(y.payload), "\(label) payload")
            }
        }

        let create = #"{"stream_name":"S","config":{"durable_name":"PU","deliver_subject":"out.p","ack_policy":"explicit","filter_subject":"s.>"}}"#
        let reference = try exchange("$JS.API.CONSUMER.CREATE.S.PU", create, frames: 4)
        let mine = ours(rig.call("$JS.API.CONSUMER.CREATE.S.PU", create, reply: "_INBOX.api"))
        same(mine.filter { $0.subject == "_INBOX.api" }, reference.answer, "push create")
        same(mine.filter { $0.subject != "_INBOX.api" }, reference.others, "push deliveries")
        let referenceAcks = reference.others.map(\.reply)
        let ourAcks = mine.filter { $0.subject != "_INBOX.api" }.map(\.reply)
        guard referenceAcks.count == 3, ourAcks.count == 3 else { return }

        // +ACK with a reply: an empty message back.
        let acked = try exchange(referenceAcks[0], "+ACK", reply: "_INBOX.ack", frames: 1)
        same(ours(rig.call(ourAcks[0], "+ACK", reply: "_INBOX.ack")), acked.answer, "ack reply")
        // -NAK: sent again at once, with two deliveries in its ack subject.
        let naked = try exchange(referenceAcks[1], "-NAK", reply: "_INBOX.nak", frames: 2)
        let ourNak = ours(rig.call(ourAcks[1], "-NAK", reply: "_INBOX.nak"))
        same(ourNak.filter { $0.subject == "_INBOX.nak" }, naked.answer, "nak reply")
        same(ourNak.filter { $0.subject != "_INBOX.nak" }, naked.others, "nak redelivery")
        // +TERM without a reply, then the info.
        try connection.send("PUB \(referenceAcks[2]) 5\r\n+TERM\r\n")
        _ = rig.call(ourAcks[2], "+TERM", reply: "")
        let info = try exchange("$JS.API.CONSUMER.INFO.S.PU", "", frames: 1)
        same(ours(rig.call("$JS.API.CONSUMER.INFO.S.PU", "", reply: "_INBOX.api")), info.answer, "info after acks")

        // Headers only, and a heartbeat once idle.
        let hb = #"{"stream_name":"S","config":{"name":"HB","deliver_subject":"out.h","headers_only":true,"idle_heartbeat":500000000,"filter_subject":"s.h"}}"#
        let hbReference = try exchange("$JS.API.CONSUMER.CREATE.S.HB", hb, frames: 3)
        let hbOurs = ours(rig.call("$JS.API.CONSUMER.CREATE.S.HB", hb, reply: "_INBOX.api")) + ours(rig.tick(after: 500_000_000))
        same(hbOurs.filter { $0.subject == "_INBOX.api" }, hbReference.answer, "headers-only create")
        same(hbOurs.filter { $0.subject != "_INBOX.api" }, hbReference.others, "headers-only delivery and heartbeat")

        // The heartbeating consumer goes, so its heartbeats do not mix with what follows.
        try connection.publish("$JS.API.CONSUMER.DELETE.S.HB", "")
        while try connection.frame().subject != "_INBOX.api" {}
        _ = rig.call("$JS.API.CONSUMER.DELETE.S.HB", "", reply: "_INBOX.api")

        // Pull: a request that expires, and one that gets a heartbeat first.
        _ = try exchange("$JS.API.CONSUMER.CREATE.S.PL", #"{"stream_name":"S","config":{"durable_name":"PL","ack_policy":"explicit","deliver_policy":"new"}}"#, frames: 1)
        _ = rig.call("$JS.API.CONSUMER.CREATE.S.PL", #"{"stream_name":"S","config":{"durable_name":"PL","ack_policy":"explicit","deliver_policy":"new"}}"#)
        let expiring = try exchange("$JS.API.CONSUMER.MSG.NEXT.S.PL", #"{"batch":4,"expires":200000000}"#, reply: "_INBOX.pl1", frames: 1)
        _ = rig.call("$JS.API.CONSUMER.MSG.NEXT.S.PL", #"{"batch":4,"expires":200000000}"#, reply: "_INBOX.pl1")
        same(ours(rig.tick(after: 200_000_001)), expiring.answer, "pull 408")
        let beating = try exchange("$JS.API.CONSUMER.MSG.NEXT.S.PL", #"{"batch":2,"expires":500000000,"idle_heartbeat":200000000}"#,
                                   reply: "_INBOX.pl2", frames: 1)
        _ = rig.call("$JS.API.CONSUMER.MSG.NEXT.S.PL", #"{"batch":2,"expires":500000000,"idle_heartbeat":200000000}"#, reply: "_INBOX.pl2")
        same(ours(rig.tick(after: 200_000_001)), beating.answer, "pull heartbeat")
        // Its 408 at 500 ms, after one more heartbeat.
        while try connection.frame().headers.hasPrefix("NATS/1.0 408") == false {}
        _ = rig.tick(after: 300_000_000)
        _ = try exchange("$JS.API.CONSUMER.DELETE.S.PU", "", frames: 1)
        _ = rig.call("$JS.API.CONSUMER.DELETE.S.PU", "", reply: "_INBOX.api")

        // Flow control: two messages of 700 KB pass half of the first 2 MiB window.
        let big = String(repeating: "F", count: 700_000)
        for _ in 0..<2 {
            _ = try connection.request("s.f", big)
            try rig.publish("s.f", big)
        }
        let fc = #"{"stream_name":"S","config":{"name":"FC","deliver_subject":"out.f","flow_control":true,"idle_heartbeat":5000000000,"filter_subject":"s.f"}}"#
        try connection.publish("$JS.API.CONSUMER.CREATE.S.FC", fc)
        var fcFrames: [WireConnection.Frame] = []
        while fcFrames.count < 4 {
            let f = try connection.frame()
            if f.subject == "_INBOX.api" || f.subject == "s.f" || f.subject == "out.f" { fcFrames.append(f) }
        }
        let fcReference = (answer: fcFrames.filter { $0.subject == "_INBOX.api" }, others: fcFrames.filter { $0.subject != "_INBOX.api" })
        let fcOurs = ours(rig.call("$JS.API.CONSUMER.CREATE.S.FC", fc, reply: "_INBOX.api"))
        let referenceRequest = fcReference.others.last
        let ourRequest = fcOurs.last
        #expect(fcOurs.count == 4)
        #expect(ourRequest?.headers == referenceRequest?.headers)
        #expect(ourRequest?.headers == "NATS/1.0 100 FlowControl Request\r\n\r\n")
        let pattern = #"^\$JS\.FC\.S\.FC\.[0-9A-Za-z]{4}$"#
        #expect(referenceRequest?.reply.range(of: pattern, options: .regularExpression) != nil)
        #expect(ourRequest?.reply.range(of: pattern, options: .regularExpression) != nil)
        same(Array(fcOurs.dropLast().filter { $0.subject != "_INBOX.api" }), Array(fcReference.others.dropLast()), "flow-controlled deliveries")
    }

    /// A connection to the reference broker and a ConsumerRig, each with the memory stream S on
    /// `s.>`. The connection takes every inbox and the deliver subjects `out.p`, `out.h` and `out.f`
    /// exactly (2.9.10 binds a push consumer only to a subscription on exactly its deliver subject).
    private func streamS(on broker: ReferenceBroker) throws -> (WireConnection, ConsumerRig) {
        let connection = try WireConnection(port: broker.port, subscriptions: ["_INBOX.>", "out.p", "out.h", "out.f"],
                                            reply: "_INBOX.api")
        var streamConfig = StreamConfig(name: "S")
        streamConfig.subjects = ["s.>"]
        streamConfig.storage = .memory
        _ = try connection.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"],"storage":"memory"}"#)
        return (connection, try ConsumerRig(streamConfig))
    }
}
