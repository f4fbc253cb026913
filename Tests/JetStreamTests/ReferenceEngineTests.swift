import Foundation
import Testing
@testable import JetStream
import TestSupport

/// One request of a scripted session: a message on `subject` with a reply subject, and whether
/// an answer is expected.
private struct Step {
    var subject: String
    var body: String = ""
    var headers: [(String, String)] = []
    var answered = true
    /// Messages the step also sends elsewhere (republished copies on a watched subject).
    var copies = 0
}

/// Times (created, first_ts, last_ts, message times, Nats-Time-Stamp) replaced, so two brokers
/// compare. The account's `storage` is taken out too: 2.9.10's account usage drifts from its
/// streams' bytes after file-store purges and rollups (here it ends up reporting more than its
/// streams hold, whose STREAM.INFO bytes match ours); ours reports the streams' bytes, which
/// EngineTests checks.
private func normalized(_ text: String) -> String {
    var text = text.replacingOccurrences(of: #"2[0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9:.]*Z"#, with: "<time>", options: .regularExpression)
    if text.hasPrefix(#"{"type":"io.nats.jetstream.api.v1.account_info_response""#) {
        text = text.replacingOccurrences(of: #""storage":[0-9]+"#, with: #""storage":<n>"#, options: .regularExpression)
    }
    return text
}

@Suite struct ReferenceEngineTests {
    /// A scripted session of stream API calls and publishes, sent to nats-server 2.9.10 `-js` and
    /// to our engine: every answer (headers and payload) is the same once times are taken out, and
    /// the requests 2.9.10 does not answer get no answer from ours either.
    @Test(.enabled(if: ReferencePeer.available || ReferencePeer.required, "nats-server 2.9.10 is not installed"))
    func sessionAnswersMatchTheReference() async throws {
        let big = String(repeating: "z", count: 1100)
        try await compare(domain: "", steps: [
            Step(subject: "$JS.API.INFO"),
            Step(subject: "$JS.API.STREAM.CREATE.S1",
                 body: #"{"name":"S1","subjects":["s1.*"],"allow_direct":true,"allow_rollup_hdrs":true,"max_msg_size":1024}"#),
            Step(subject: "$JS.API.STREAM.CREATE.S1",
                 body: #"{"name":"S1","subjects":["s1.*"],"allow_direct":true,"allow_rollup_hdrs":true,"max_msg_size":1024}"#),
            Step(subject: "$JS.API.STREAM.CREATE.S2", body: #"{"name":"S2","subjects":["s1.a"]}"#),
            Step(subject: "$JS.API.STREAM.CREATE.BIG", body: #"{"name":"BIG","max_bytes":21474836480}"#),
            Step(subject: "$JS.API.STREAM.CREATE.MEM", body: #"{"name":"MEM","storage":"memory","max_bytes":2147483648}"#),
            Step(subject: "$JS.API.STREAM.CREATE.API", body: #"{"name":"API","subjects":["$JS.API.x"]}"#),
            Step(subject: "s1.a", body: "one"),
            Step(subject: "s1.b", body: "two", headers: [("Nats-Msg-Id", "x")]),
            Step(subject: "s1.b", body: "two", headers: [("Nats-Msg-Id", "x")]),
            Step(subject: "s1.a", body: "e", headers: [("Nats-Expected-Stream", "other")]),
            Step(subject: "s1.a", body: "e", headers: [("Nats-Expected-Last-Subject-Sequence", "5")]),
            Step(subject: "s1.a", body: "e", headers: [("Nats-Expected-Last-Sequence", "1")]),
            Step(subject: "s1.a", body: "e", headers: [("Nats-Expected-Last-Msg-Id", "y")]),
            Step(subject: "s1.a", body: "three", headers: [("Nats-Expected-Last-Sequence", "2")]),
            Step(subject: "s1.c", body: big),
            Step(subject: "s1.a", body: "r", headers: [("Nats-Rollup", "bogus")], answered: false),
            Step(subject: "s1.a", body: "r", headers: [("Nats-Rollup", "all")]),
            Step(subject: "s1.d", body: "five", headers: [("A", "1"), ("B", "two words")]),
            Step(subject: "$JS.API.STREAM.INFO.S1"),
            Step(subject: "$JS.API.STREAM.INFO.S1", body: #"{"subjects_filter":">"}"#),
            Step(subject: "$JS.API.STREAM.INFO.S1", body: #"{"deleted_details":true,"unknown":1}"#),
            Step(subject: "$JS.API.STREAM.INFO.NOPE"),
            Step(subject: "$JS.API.STREAM.INFO.S1", body: "bad json"),
            Step(subject: "$JS.API.STREAM.NAMES"),
            Step(subject: "$JS.API.STREAM.NAMES", body: #"{"subject":"zzz"}"#),
            Step(subject: "$JS.API.STREAM.LIST"),
            Step(subject: "$JS.API.STREAM.MSG.GET.S1", body: #"{"seq":2}"#),
            Step(subject: "$JS.API.STREAM.MSG.GET.S1", body: #"{"last_by_subj":"s1.a"}"#),
            Step(subject: "$JS.API.STREAM.MSG.GET.S1", body: #"{"next_by_subj":"s1.*","seq":3}"#),
            Step(subject: "$JS.API.STREAM.MSG.GET.S1", body: #"{"seq":99}"#),
            Step(subject: "$JS.API.STREAM.MSG.GET.S1", body: ""),
            Step(subject: "$JS.API.STREAM.MSG.GET.S1", body: #"{"seq":1,"last_by_subj":"x"}"#),
            Step(subject: "$JS.API.DIRECT.GET.S1", body: #"{"seq":2}"#),
            Step(subject: "$JS.API.DIRECT.GET.S1", body: #"{"seq":5}"#),
            Step(subject: "$JS.API.DIRECT.GET.S1.s1.a"),
            Step(subject: "$JS.API.DIRECT.GET.S1", body: ""),
            Step(subject: "$JS.API.DIRECT.GET.S1", body: #"{"seq":99}"#),
            Step(subject: "$JS.API.DIRECT.GET.S1", body: "bad"),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.S1", body: #"{"seq":2}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.S1", body: #"{"name":"S1","subjects":["s1.*"],"storage":"memory"}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.S1",
                 body: #"{"name":"S1","subjects":["s1.*","t1"],"allow_direct":true,"allow_rollup_hdrs":true,"max_msg_size":1024}"#),
            Step(subject: "t1", body: "six"),
            Step(subject: "$JS.API.STREAM.UPDATE.S1",
                 body: #"{"name":"S1","subjects":["s1.*","t1"],"allow_direct":true,"max_msg_size":1024,"sealed":true}"#),
            Step(subject: "s1.a", body: "sealed"),
            Step(subject: "$JS.API.STREAM.PURGE.S1"),
            Step(subject: "$JS.API.STREAM.CREATE.R", body: #"{"name":"R","subjects":["r.>"],"deny_purge":true,"deny_delete":true}"#),
            Step(subject: "r.x", body: "r"),
            Step(subject: "$JS.API.STREAM.PURGE.R"),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.R", body: #"{"seq":1}"#),
            Step(subject: "$JS.API.STREAM.CREATE.NA", body: #"{"name":"NA","subjects":["na"],"no_ack":true}"#),
            Step(subject: "na", body: "quiet", answered: false),
            Step(subject: "$JS.API.STREAM.CREATE.RU", body: #"{"name":"RU","subjects":["ru.*"],"storage":"memory","allow_rollup_hdrs":true}"#),
            Step(subject: "ru.a", body: "1"), Step(subject: "ru.b", body: "2"), Step(subject: "ru.a", body: "3"),
            Step(subject: "ru.a", body: "4", headers: [("Nats-Rollup", "sub")]),
            Step(subject: "$JS.API.STREAM.INFO.RU"),
            Step(subject: "$JS.API.INFO"),
            Step(subject: "$JS.API.STREAM.CREATE.P", body: #"{"name":"P","subjects":["p.*"]}"#),
            Step(subject: "p.a", body: "1"), Step(subject: "p.a", body: "2"), Step(subject: "p.a", body: "3"),
            Step(subject: "p.b", body: "4"), Step(subject: "p.b", body: "5"),
            Step(subject: "$JS.API.STREAM.PURGE.P", body: #"{"filter":"p.a","keep":1}"#),
            Step(subject: "$JS.API.STREAM.PURGE.P", body: #"{"seq":2,"keep":1}"#),
            Step(subject: "$JS.API.STREAM.PURGE.P", body: #"{"seq":5}"#),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.P", body: #"{"seq":1}"#),
            Step(subject: "$JS.API.STREAM.INFO.P"),
            Step(subject: "$JS.API.STREAM.DELETE.P", body: "x"),
            Step(subject: "$JS.API.STREAM.DELETE.P"),
            Step(subject: "$JS.API.STREAM.DELETE.P"),
            Step(subject: "$JS.API.STREAM.CREATE.K",
                 body: #"{"name":"K","subjects":["k.>"],"max_msgs_per_subject":1,"discard":"new","discard_new_per_subject":true}"#),
            Step(subject: "k.a", body: "v1"),
            Step(subject: "k.a", body: "v2"),
            Step(subject: "k.b", body: "v1", headers: [("Nats-Expected-Last-Subject-Sequence", "0")]),
            Step(subject: "$JS.API.STREAM.INFO", answered: false),
            Step(subject: "$JS.API.STREAM.NAMES.X", answered: false),
            Step(subject: "$JS.API.DIRECT.GET.R", body: #"{"seq":1}"#, answered: false),
            Step(subject: "$JS.API.STREAM.NAMES", body: "["),
            Step(subject: "$JS.API.STREAM.LIST", body: #"{"offset":"a"}"#),
            Step(subject: "$JS.API.STREAM.LIST", body: #"{"offset":1,"subject":"k.x"}"#),
            Step(subject: "$JS.API.STREAM.PURGE.K", body: "x"),
            Step(subject: "$JS.API.STREAM.PURGE.K", body: #"{"seq":-1}"#),
            Step(subject: "$JS.API.STREAM.PURGE.NOPE"),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.K", body: "x"),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.K", body: #"{"seq":1.5}"#),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.K", body: #"{"seq":0}"#),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.K", body: #"{"seq":50}"#),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.NOPE", body: #"{"seq":1}"#),
            Step(subject: "$JS.API.STREAM.MSG.GET.K", body: "[1]"),
            Step(subject: "$JS.API.STREAM.MSG.GET.K", body: "null"),
            Step(subject: "$JS.API.STREAM.MSG.GET.K", body: #"{"last_by_subj":"k.a","next_by_subj":"k.a"}"#),
            Step(subject: "$JS.API.STREAM.MSG.GET.NOPE", body: #"{"seq":1}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.K", body: "x"),
            Step(subject: "$JS.API.STREAM.UPDATE.K", body: #"{"name":"J"}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.NOPE", body: #"{"name":"NOPE"}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.K", body: #"{"name":"K","subjects":["r.x"]}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.K", body: #"{"name":"K","subjects":["k.>"],"max_consumers":5}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.K", body: #"{"name":"K","subjects":["k.>"],"retention":"workqueue"}"#),
            Step(subject: "$JS.API.STREAM.UPDATE.R", body: #"{"name":"R","subjects":["r.>"],"deny_purge":true}"#),
            Step(subject: "$JS.API.STREAM.INFO.K", body: #"{"offset":"a"}"#),
            Step(subject: "$JS.API.STREAM.INFO.K", body: #"{"subjects_filter":"k.*","offset":1}"#),
            Step(subject: "$JS.API.STREAM.DELETE.NOPE"),
            Step(subject: "$JS.API.STREAM.LEADER.STEPDOWN.K"),
            Step(subject: "$JS.API.STREAM.PEER.REMOVE.K", body: #"{"peer":"x"}"#),
            Step(subject: "$JS.API.CONSUMER.LEADER.STEPDOWN.K.C"),
            Step(subject: "$JS.API.INFO", body: "ignored"),
        ])
    }

    /// With a JetStream domain: account info, PubAcks, stream info, update and list carry it.
    @Test(.enabled(if: ReferencePeer.available || ReferencePeer.required, "nats-server 2.9.10 is not installed"))
    func domainAnswersMatchTheReference() async throws {
        try await compare(domain: "hub", steps: [
            Step(subject: "$JS.API.INFO"),
            Step(subject: "$JS.API.STREAM.CREATE.D", body: #"{"name":"D","subjects":["d.*"]}"#),
            Step(subject: "d.a", body: "1"),
            Step(subject: "d.a", body: "1", headers: [("Nats-Msg-Id", "one")]),
            Step(subject: "d.a", body: "1", headers: [("Nats-Msg-Id", "one")]),
            Step(subject: "d.a", body: "1", headers: [("Nats-Expected-Last-Sequence", "abc")]),
            Step(subject: "$JS.API.STREAM.INFO.D"),
            Step(subject: "$JS.API.STREAM.UPDATE.D", body: #"{"name":"D","subjects":["d.*"],"max_msgs":10}"#),
            Step(subject: "$JS.API.STREAM.LIST"),
            Step(subject: "$JS.API.STREAM.NAMES"),
            Step(subject: "$JS.API.INFO"),
        ])
    }

    /// Republished copies (with and without headers, headers_only, wildcard mapping), an interest
    /// stream without consumers (sequence used, nothing stored), and a KV bucket as nats.py drives
    /// one (create/update by expected subject sequence, delete and purge markers, rollups, get,
    /// purge_deletes).
    @Test(.enabled(if: ReferencePeer.available || ReferencePeer.required, "nats-server 2.9.10 is not installed"))
    func republishInterestAndKVMatchTheReference() async throws {
        let kv = #"{"name":"KV_b","subjects":["$KV.b.>"],"max_msgs_per_subject":5,"discard":"new","deny_delete":true,"allow_rollup_hdrs":true,"allow_direct":true,"duplicate_window":120000000000,"max_age":0}"#
        try await compare(domain: "", watching: ["out.>", "ho.>"], steps: [
            Step(subject: "$JS.API.STREAM.CREATE.RP",
                 body: #"{"name":"RP","subjects":["rp.*"],"republish":{"src":"rp.*","dest":"out.{{wildcard(1)}}"}}"#),
            Step(subject: "rp.a", body: "one", copies: 1),
            Step(subject: "rp.a", body: "two", headers: [("X", "1")], copies: 1),
            Step(subject: "rp.b", body: "three", copies: 1),
            Step(subject: "$JS.API.STREAM.CREATE.HO",
                 body: #"{"name":"HO","subjects":["h.>"],"republish":{"dest":"ho.>","headers_only":true}}"#),
            Step(subject: "h.x.y", body: "payload", copies: 1),
            Step(subject: "h.x.y", body: "payload", headers: [("Nats-Msg-Id", "m")], copies: 1),
            Step(subject: "$JS.API.STREAM.CREATE.I", body: #"{"name":"I","subjects":["i.*"],"retention":"interest"}"#),
            Step(subject: "i.a", body: "nobody"),
            Step(subject: "i.a", body: "nobody", headers: [("Nats-Msg-Id", "n1")]),
            Step(subject: "i.a", body: "nobody", headers: [("Nats-Msg-Id", "n1")]),
            Step(subject: "$JS.API.STREAM.INFO.I"),
            Step(subject: "$JS.API.STREAM.CREATE.KV_b", body: kv),
            Step(subject: "$KV.b.k1", body: "v1", headers: [("Nats-Expected-Last-Subject-Sequence", "0")]),
            Step(subject: "$KV.b.k1", body: "v1", headers: [("Nats-Expected-Last-Subject-Sequence", "0")]),
            Step(subject: "$KV.b.k1", body: "v2", headers: [("Nats-Expected-Last-Subject-Sequence", "1")]),
            Step(subject: "$KV.b.k2", body: "x"),
            Step(subject: "$JS.API.STREAM.MSG.GET.KV_b", body: #"{"last_by_subj":"$KV.b.k1"}"#),
            Step(subject: "$KV.b.k2", body: "", headers: [("KV-Operation", "DEL")]),
            Step(subject: "$KV.b.k1", body: "", headers: [("KV-Operation", "PURGE"), ("Nats-Rollup", "sub")]),
            Step(subject: "$JS.API.DIRECT.GET.KV_b.$KV.b.k1"),
            Step(subject: "$JS.API.STREAM.INFO.KV_b", body: #"{"subjects_filter":"$KV.b.>"}"#),
            Step(subject: "$JS.API.STREAM.PURGE.KV_b", body: #"{"filter":"$KV.b.k2","keep":0}"#),
            Step(subject: "$JS.API.STREAM.PURGE.KV_b", body: #"{"filter":"$KV.b.k1","keep":1}"#),
            Step(subject: "$JS.API.STREAM.MSG.DELETE.KV_b", body: #"{"seq":3}"#),
            Step(subject: "$JS.API.STREAM.NAMES", body: #"{"subject":"$KV.b.>"}"#),
            Step(subject: "$JS.API.STREAM.INFO.KV_b"),
            Step(subject: "$JS.API.INFO"),
        ])
    }

    /// Runs `steps` against nats-server 2.9.10 (with `domain`) and our engine and compares every answer.
    private func compare(domain: String, watching: [String] = [], steps: [Step]) async throws {
        let maxMemory: Int64 = 1 << 30
        let maxStore: Int64 = 10 << 30
        let started = try await ReferenceBroker.start("jsengine-ref") { port, directory in
            """
            listen: 127.0.0.1:\(port)
            jetstream {
              store_dir: "\(directory)/store"
              max_memory_store: \(maxMemory)
              max_file_store: \(maxStore)
              \(domain.isEmpty ? "" : "domain: \(domain)")
            }
            """
        }
        guard let broker = started else { return }
        defer { broker.stop() }
        let connection = try WireConnection(port: broker.port, subscriptions: ["_INBOX.ref.>"], reply: "_INBOX.ref")
        for (k, subject) in watching.enumerated() { try connection.subscribe(subject, sid: k + 2) }

        let ours = try EngineHarness("jsengine-ours", maxMemory: maxMemory, maxStore: maxStore, domain: domain)
        // These sessions create no consumers, so an interest stream has no interest.
        ours.consumers.interest = false
        try ours.start()

        for (k, step) in steps.enumerated() {
            let reply = "_INBOX.ref.\(k)"
            try connection.publish(step.subject, step.body, reply: reply, headers: step.headers)
            let block = step.headers.isEmpty ? [] : Array(WireConnection.headerBlock(step.headers).utf8)
            let actions = ours.engine.handle(InboundMessage(subject: step.subject, reply: reply, headers: block,
                                                            payload: Array(step.body.utf8)), now: wallClockNanoseconds())
            let answers = EngineHarness.replies(actions, to: reply)
            guard step.answered else {
                #expect(answers.isEmpty, "step \(k) \(step.subject): we answered where 2.9.10 does not")
                continue
            }
            // An unanswered step before this one would show up here first under its own reply subject.
            // Copies and the answer leave 2.9.10 through different queues, so their order is not fixed.
            var referenceCopies: [WireConnection.Frame] = []
            var replies: [WireConnection.Frame] = []
            while replies.isEmpty || referenceCopies.count < step.copies {
                let received = try connection.frame()
                if received.subject.hasPrefix("_INBOX.ref.") { replies.append(received) } else { referenceCopies.append(received) }
            }
            let ourCopies: [(subject: String, headers: String, payload: String)] = actions.compactMap {
                guard case .send(let subject, _, _, let headers, let payload) = $0, subject != reply else { return nil }
                return (subject, String(decoding: headers, as: UTF8.self), String(decoding: payload, as: UTF8.self))
            }
            #expect(ourCopies.map(\.subject) == referenceCopies.map(\.subject), "step \(k) copies")
            for (mine, theirs) in zip(ourCopies, referenceCopies) {
                #expect(mine.headers == theirs.headers && mine.payload == theirs.payload, "step \(k) copy \(theirs.headers)")
            }
            let reference = replies[0]
            #expect(reference.subject == reply, "step \(k) \(step.subject): 2.9.10 answered \(reference.subject)")
            let answer = try #require(answers.first, "step \(k) \(step.subject): no answer from ours; 2.9.10 said \(reference.payload)")
            #expect(normalized(String(decoding: answer.headers, as: UTF8.self)) == normalized(reference.headers),
                    "step \(k) \(step.subject) headers")
            #expect(normalized(String(decoding: answer.payload, as: UTF8.self)) == normalized(reference.payload),
                    "step \(k) \(step.subject) \(step.body.prefix(60))")
        }
    }
}
