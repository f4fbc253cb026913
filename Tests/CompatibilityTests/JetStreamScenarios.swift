// JetStream on the wire: raw-protocol `$JS.API.*` requests, publishes with replies, pulls and acks,
// played against nats-server 2.9.10 and our broker, both started with `-js -sd <fresh dir>`.
// Transcripts go through `JetStreamNormalizer` (times, ack-subject timestamps, generated names) and
// drop PONGs: 2.9.10 sends API answers and PubAcks from another goroutine, so whether an answer comes
// before or after the PONG of its barrier varies from run to run. Every `.request` step waits for the
// answers it expects before the next step is written, which keeps the order of the answers fixed.
// Expected texts were read from Debian's nats-server 2.9.10.

private let crlf = "\r\n"
private let js = BrokerConfig(jetstream: true)
private let connect = #"CONNECT {"verbose":false,"headers":true,"no_responders":true}"# + crlf
/// The connection's answers arrive on `r.>` (sid 1).
private let start = connect + "SUB r.> 1\r\n"

private func pub(_ subject: String, _ reply: String? = nil, _ payload: String = "") -> String {
    "PUB \(subject) \(reply.map { $0 + " " } ?? "")\(payload.utf8.count)\r\n\(payload)\r\n"
}

private func hpub(_ subject: String, _ reply: String? = nil, headers: [String], _ payload: String) -> String {
    let block = "NATS/1.0\r\n" + headers.map { $0 + crlf }.joined() + crlf
    return "HPUB \(subject) \(reply.map { $0 + " " } ?? "")\(block.utf8.count) \(block.utf8.count + payload.utf8.count)\r\n"
        + block + payload + crlf
}

/// An API answer as 2.9.10 sends it.
private func answer(_ reply: String, _ json: String, sid: Int = 1) -> String {
    "MSG \(reply) \(sid) \(json.utf8.count)\r\n\(json)\r\n"
}

/// A PubAck or an ack's confirmation: 2.9.10 writes these with an empty reply field, hence the two spaces.
private func pubAck(_ reply: String, _ json: String, sid: Int = 1) -> String {
    "MSG \(reply) \(sid)  \(json.utf8.count)\r\n\(json)\r\n"
}

/// A header-only status message (`NATS/1.0 404 No Messages`) or a Direct Get reply. JetStream writes
/// them with an empty reply field (two spaces); the core no-responders status has none.
private func headerMessage(_ reply: String, status: String? = nil, headers: [String] = [], _ payload: String = "",
                           sid: Int = 1, emptyReplyField: Bool = true) -> String {
    let block = "NATS/1.0" + (status.map { " " + $0 } ?? "") + crlf + headers.map { $0 + crlf }.joined() + crlf
    let gap = emptyReplyField ? "  " : " "
    return "HMSG \(reply) \(sid)\(gap)\(block.utf8.count) \(block.utf8.count + payload.utf8.count)\r\n\(block)\(payload)\r\n"
}

/// A delivery: the stored subject on the MSG line and the 9-token ack subject as reply (timestamp normalized).
private func jsDelivery(_ subject: String, sid: Int, stream: String = "S", consumer: String, deliveries: Int = 1,
                      streamSeq: Int, consumerSeq: Int, pending: Int, _ payload: String) -> String {
    let ack = "$JS.ACK.\(stream).\(consumer).\(deliveries).\(streamSeq).\(consumerSeq).<ts>.\(pending)"
    return "MSG \(subject) \(sid) \(ack) \(payload.utf8.count)\r\n\(payload)\r\n"
}

private func apiType(_ name: String) -> String { #""type":"io.nats.jetstream.api.v1.\#(name)""# }

private func apiError(_ type: String, code: Int, errCode: Int, _ description: String, trailer: String = "") -> String {
    #"{\#(apiType(type)),"error":{"code":\#(code),"err_code":\#(errCode),"description":"\#(description)"}\#(trailer)}"#
}

/// A stream config as 2.9.10 answers it, with its defaults (`>` is written `\u003e`).
private func streamConfig(_ name: String, subjects: [String], allowDirect: Bool = false) -> String {
    let list = subjects.map { "\"" + $0.replacingOccurrences(of: ">", with: "\\u003e") + "\"" }.joined(separator: ",")
    return #"{"name":"\#(name)","subjects":[\#(list)],"retention":"limits","max_consumers":-1,"max_msgs":-1,"#
        + #""max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","#
        + #""num_replicas":1,"duplicate_window":120000000000,"allow_direct":\#(allowDirect),"mirror_direct":false,"#
        + #""sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false}"#
}

private let emptyState = #"{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"#
    + #""last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#

private func streamCreated(_ name: String, subjects: [String], allowDirect: Bool = false,
                           type: String = "stream_create_response") -> String {
    #"{\#(apiType(type)),"config":\#(streamConfig(name, subjects: subjects, allowDirect: allowDirect)),"#
        + #""created":"<time>","state":\#(emptyState),"did_create":true}"#
}

/// Stream `S` on `s.>` with Direct Get, and three messages: `s.a` "hi" (1), `s.b` "yo" with Nats-Msg-Id abc (2),
/// `s.a` "ok" with an expected-last-subject-sequence header (3).
private let setupS: [Step] = [
    .request(start + pub("$JS.API.STREAM.CREATE.S", "r.0", #"{"name":"S","subjects":["s.>"],"allow_direct":true}"#)),
    .request(pub("s.a", "r.p1", "hi") + hpub("s.b", "r.p2", headers: ["Nats-Msg-Id: abc"], "yo")
             + hpub("s.a", "r.p3", headers: ["Nats-Expected-Last-Subject-Sequence: 1"], "ok"), replies: 3),
]
private let setupSAnswers = answer("r.0", streamCreated("S", subjects: ["s.>"], allowDirect: true))
    + pubAck("r.p1", #"{"stream":"S", "seq":1}"#) + pubAck("r.p2", #"{"stream":"S", "seq":2}"#)
    + pubAck("r.p3", #"{"stream":"S", "seq":3}"#)

/// Stream `S` on `s.>` without Direct Get, and `s.a` "one", `s.b` "two", `s.a` "three".
private let setupPull: [Step] = [
    .request(start + pub("$JS.API.STREAM.CREATE.S", "r.0", #"{"name":"S","subjects":["s.>"]}"#)),
    .request(pub("s.a", "r.p1", "one") + pub("s.b", "r.p2", "two") + pub("s.a", "r.p3", "three"), replies: 3),
]
private let setupPullAnswers = answer("r.0", streamCreated("S", subjects: ["s.>"]))
    + pubAck("r.p1", #"{"stream":"S", "seq":1}"#) + pubAck("r.p2", #"{"stream":"S", "seq":2}"#)
    + pubAck("r.p3", #"{"stream":"S", "seq":3}"#)

/// A durable pull consumer's config as 2.9.10 answers it.
private func durableConfig(_ name: String, extra: String = "", trailer: String = "") -> String {
    #"{"durable_name":"\#(name)",\#(extra)"deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"#
        + #""max_deliver":-1,\#(trailer)"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0}"#
}

/// An explicit-ack push consumer's config (ephemeral: `name` only) as 2.9.10 answers it.
private func pushConfig(_ name: String, deliver: String) -> String {
    #"{"name":"\#(name)","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"#
        + #""replay_policy":"instant","max_ack_pending":1000,"deliver_subject":"\#(deliver)","#
        + #""inactive_threshold":5000000000,"num_replicas":0}"#
}

extension Scenarios {
    static let jetStream: [Scenario] = [
        Scenario(name: "JetStream: $JS.API.INFO on an empty account",
                 config: js,
                 steps: [.request(start + pub("$JS.API.INFO", "r.1"))],
                 expect: [.open(answer("r.1", #"{\#(apiType("account_info_response")),"memory":0,"storage":0,"#
                    + #""streams":0,"consumers":0,"limits":{"max_memory":-1,"max_storage":-1,"max_streams":-1,"#
                    + #""max_consumers":-1,"max_ack_pending":-1,"memory_max_stream_bytes":-1,"#
                    + #""storage_max_stream_bytes":-1,"max_bytes_required":false},"api":{"total":0,"errors":0}}"#))]),

        Scenario(name: "JetStream: STREAM.CREATE creates, accepts the same config again and refuses what 2.9.10 refuses",
                 config: js,
                 steps: [
                    .request(start + pub("$JS.API.STREAM.CREATE.S", "r.1", #"{"name":"S","subjects":["s.>"]}"#)),
                    .request(pub("$JS.API.STREAM.CREATE.S", "r.2", #"{"name":"S","subjects":["s.>"]}"#)),
                    .request(pub("$JS.API.STREAM.CREATE.S", "r.3", #"{"name":"S","subjects":["t.>"]}"#)),
                    .request(pub("$JS.API.STREAM.CREATE.T", "r.4", #"{"name":"T","subjects":["s.x"]}"#)),
                    .request(pub("$JS.API.STREAM.CREATE.U", "r.5", #"{"name":"V"}"#)),
                    .request(pub("$JS.API.STREAM.CREATE.U", "r.6", "{nope")),
                    .request(pub("$JS.API.STREAM.CREATE.U", "r.7")),
                    .request(pub("$JS.API.STREAM.CREATE.W", "r.8", #"{"name":"W","subjects":["w"],"num_replicas":3}"#)),
                 ],
                 expect: [.open(
                    answer("r.1", streamCreated("S", subjects: ["s.>"]))
                    + answer("r.2", streamCreated("S", subjects: ["s.>"]))
                    + answer("r.3", apiError("stream_create_response", code: 400, errCode: 10058,
                                             "stream name already in use with a different configuration"))
                    + answer("r.4", apiError("stream_create_response", code: 400, errCode: 10065,
                                             "subjects overlap with an existing stream"))
                    + answer("r.5", apiError("stream_create_response", code: 400, errCode: 10056,
                                             "stream name in subject does not match request"))
                    + answer("r.6", apiError("stream_create_response", code: 400, errCode: 10025, "invalid JSON"))
                    + answer("r.7", apiError("stream_create_response", code: 400, errCode: 10025, "invalid JSON"))
                    + answer("r.8", apiError("stream_create_response", code: 500, errCode: 10074,
                                             #"replicas \u003e 1 not supported in non-clustered mode"#)))]),

        Scenario(name: "JetStream: requests 2.9.10 has no handler for get no reply, not even no-responders",
                 config: js,
                 steps: [
                    .request(start + pub("$JS.API.STREAM.CREATE.a.b", "r.1", #"{"name":"a.b"}"#)
                             + pub("$JS.API.CONSUMER.MSG.NEXT.S.nope", "r.2", "1")
                             + pub("$JS.API.DIRECT.GET.S", "r.3", #"{"seq":1}"#)
                             + pub("$JS.API.STREAM.CREATE.S", "r.4", #"{"name":"S","subjects":["s.>"]}"#)),
                    // A stream without allow_direct: its Direct Get is not answered either.
                    .request(pub("$JS.API.DIRECT.GET.S", "r.5", #"{"seq":1}"#) + pub("$JS.API.STREAM.NAMES", "r.6")),
                 ],
                 expect: [.open(
                    answer("r.4", streamCreated("S", subjects: ["s.>"]))
                    + answer("r.6", #"{\#(apiType("stream_names_response")),"total":1,"offset":0,"limit":1024,"streams":["S"]}"#))]),

        Scenario(name: "JetStream: PubAcks for stored messages, a duplicate Msg-Id and the Nats-Expected-* errors",
                 config: js,
                 steps: [
                    .request(start + pub("$JS.API.STREAM.CREATE.S", "r.0", #"{"name":"S","subjects":["s.>"]}"#)),
                    .request(pub("s.a", "r.1", "hi") + hpub("s.b", "r.2", headers: ["Nats-Msg-Id: abc"], "yo")
                             + hpub("s.b", "r.3", headers: ["Nats-Msg-Id: abc"], "yo")
                             + hpub("s.a", "r.4", headers: ["Nats-Expected-Last-Sequence: 1"], "no")
                             + hpub("s.a", "r.5", headers: ["Nats-Expected-Stream: X"], "no")
                             + hpub("s.a", "r.6", headers: ["Nats-Expected-Last-Subject-Sequence: 1"], "ok")
                             + hpub("s.b", "r.7", headers: ["Nats-Expected-Last-Msg-Id: zzz"], "no")
                             + hpub("s.c", "r.8", headers: ["Nats-Expected-Last-Sequence: 3"], "ok")
                             + pub("s.c", nil, "no reply asked"), replies: 8),
                    // No stream for the subject: the core no-responders status.
                    .request(pub("nostream.x", "r.9", "x")),
                    .request(pub("$JS.API.STREAM.INFO.S", "r.10")),
                 ],
                 expect: [.open(
                    answer("r.0", streamCreated("S", subjects: ["s.>"]))
                    + pubAck("r.1", #"{"stream":"S", "seq":1}"#)
                    + pubAck("r.2", #"{"stream":"S", "seq":2}"#)
                    + pubAck("r.3", #"{"stream":"S", "seq":2,"duplicate": true}"#)
                    + pubAck("r.4", #"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 2"},"stream":"S","seq":0}"#)
                    + pubAck("r.5", #"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"S","seq":0}"#)
                    + pubAck("r.6", #"{"stream":"S", "seq":3}"#)
                    + pubAck("r.7", #"{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID: "},"stream":"S","seq":0}"#)
                    + pubAck("r.8", #"{"stream":"S", "seq":4}"#)
                    + headerMessage("r.9", status: "503", emptyReplyField: false)
                    + answer("r.10", #"{\#(apiType("stream_info_response")),"total":0,"offset":0,"limit":0,"config":"#
                             + streamConfig("S", subjects: ["s.>"]) + #","created":"<time>","state":{"messages":5,"#
                             + #""bytes":325,"first_seq":1,"first_ts":"<time>","last_seq":5,"last_ts":"<time>","#
                             + #""num_subjects":3,"consumer_count":0}}"#))]),

        Scenario(name: "JetStream: STREAM.UPDATE, INFO, NAMES and DELETE, and their not-found and immutable-field errors",
                 config: js,
                 steps: [
                    .request(start + pub("$JS.API.STREAM.CREATE.S", "r.0", #"{"name":"S","subjects":["s.>"]}"#)),
                    .request(pub("$JS.API.STREAM.UPDATE.S", "r.1", #"{"name":"S","subjects":["s.>","x"],"allow_direct":true}"#)),
                    .request(pub("$JS.API.STREAM.UPDATE.S", "r.2", #"{"name":"S","subjects":["s.>"],"storage":"memory"}"#)),
                    .request(pub("$JS.API.STREAM.UPDATE.NOPE", "r.3", #"{"name":"NOPE"}"#)),
                    .request(pub("$JS.API.STREAM.INFO.NOPE", "r.4")),
                    .request(pub("$JS.API.STREAM.NAMES", "r.5")),
                    .request(pub("$JS.API.STREAM.DELETE.S", "r.6")),
                    .request(pub("$JS.API.STREAM.DELETE.S", "r.7")),
                    .request(pub("$JS.API.STREAM.NAMES", "r.8")),
                 ],
                 expect: [.open(
                    answer("r.0", streamCreated("S", subjects: ["s.>"]))
                    + answer("r.1", #"{\#(apiType("stream_update_response")),"config":"#
                             + streamConfig("S", subjects: ["s.>", "x"], allowDirect: true)
                             + #","created":"<time>","state":\#(emptyState)}"#)
                    + answer("r.2", apiError("stream_update_response", code: 500, errCode: 10052,
                                             "stream configuration update can not change storage type"))
                    + answer("r.3", apiError("stream_update_response", code: 404, errCode: 10059, "stream not found"))
                    + answer("r.4", apiError("stream_info_response", code: 404, errCode: 10059, "stream not found",
                                             trailer: #","total":0,"offset":0,"limit":0"#))
                    + answer("r.5", #"{\#(apiType("stream_names_response")),"total":1,"offset":0,"limit":1024,"streams":["S"]}"#)
                    + answer("r.6", #"{\#(apiType("stream_delete_response")),"success":true}"#)
                    + answer("r.7", apiError("stream_delete_response", code: 404, errCode: 10059, "stream not found"))
                    + answer("r.8", #"{\#(apiType("stream_names_response")),"total":0,"offset":0,"limit":1024,"streams":null}"#))]),

        Scenario(name: "JetStream: MSG.GET by sequence, last and next by subject, a missing message, and MSG.DELETE",
                 config: js,
                 steps: setupS + [
                    .request(pub("$JS.API.STREAM.MSG.GET.S", "r.1", #"{"seq":1}"#)),
                    .request(pub("$JS.API.STREAM.MSG.GET.S", "r.2", #"{"last_by_subj":"s.b"}"#)),
                    .request(pub("$JS.API.STREAM.MSG.GET.S", "r.3", #"{"next_by_subj":"s.a","seq":2}"#)),
                    .request(pub("$JS.API.STREAM.MSG.GET.S", "r.4", #"{"seq":99}"#)),
                    .request(pub("$JS.API.STREAM.MSG.GET.S", "r.5", #"{"last_by_subj":"s.zz"}"#)),
                    .request(pub("$JS.API.STREAM.MSG.DELETE.S", "r.6", #"{"seq":1}"#)),
                    .request(pub("$JS.API.STREAM.MSG.DELETE.S", "r.7", #"{"seq":1}"#)),
                    .request(pub("$JS.API.STREAM.MSG.GET.S", "r.8", #"{"seq":1}"#)),
                 ],
                 expect: [.open(setupSAnswers
                    + answer("r.1", #"{\#(apiType("stream_msg_get_response")),"message":{"subject":"s.a","seq":1,"data":"aGk=","time":"<time>"}}"#)
                    + answer("r.2", #"{\#(apiType("stream_msg_get_response")),"message":{"subject":"s.b","seq":2,"#
                             + #""hdrs":"TkFUUy8xLjANCk5hdHMtTXNnLUlkOiBhYmMNCg0K","data":"eW8=","time":"<time>"}}"#)
                    + answer("r.3", #"{\#(apiType("stream_msg_get_response")),"message":{"subject":"s.a","seq":3,"#
                             + #""hdrs":"TkFUUy8xLjANCk5hdHMtRXhwZWN0ZWQtTGFzdC1TdWJqZWN0LVNlcXVlbmNlOiAxDQoNCg==","#
                             + #""data":"b2s=","time":"<time>"}}"#)
                    + answer("r.4", apiError("stream_msg_get_response", code: 404, errCode: 10037, "no message found"))
                    + answer("r.5", apiError("stream_msg_get_response", code: 404, errCode: 10037, "no message found"))
                    + answer("r.6", #"{\#(apiType("stream_msg_delete_response")),"success":true}"#)
                    + answer("r.7", apiError("stream_msg_delete_response", code: 500, errCode: 10057, "no message found"))
                    + answer("r.8", apiError("stream_msg_get_response", code: 404, errCode: 10037, "no message found")))]),

        Scenario(name: "JetStream: PURGE by filter, with keep, all, and seq with keep refused; INFO with subjects_filter",
                 config: js,
                 steps: setupS + [
                    .request(pub("$JS.API.STREAM.INFO.S", "r.1", #"{"subjects_filter":">"}"#)),
                    .request(pub("$JS.API.STREAM.PURGE.S", "r.2", #"{"filter":"s.b"}"#)),
                    .request(pub("$JS.API.STREAM.PURGE.S", "r.3", #"{"seq":2,"keep":1}"#)),
                    .request(pub("$JS.API.STREAM.PURGE.S", "r.4", #"{"keep":1}"#)),
                    .request(pub("$JS.API.STREAM.PURGE.S", "r.5")),
                    .request(pub("$JS.API.STREAM.INFO.S", "r.6")),
                 ],
                 expect: [.open(setupSAnswers
                    + answer("r.1", #"{\#(apiType("stream_info_response")),"total":2,"offset":0,"limit":100000,"config":"#
                             + streamConfig("S", subjects: ["s.>"], allowDirect: true) + #","created":"<time>","#
                             + #""state":{"messages":3,"bytes":195,"first_seq":1,"first_ts":"<time>","last_seq":3,"#
                             + #""last_ts":"<time>","num_subjects":2,"subjects":{"s.a":2,"s.b":1},"consumer_count":0}}"#)
                    + answer("r.2", #"{\#(apiType("stream_purge_response")),"success":true,"purged":1}"#)
                    + answer("r.3", apiError("stream_purge_response", code: 400, errCode: 10003, "bad request",
                                             trailer: #","purged":0"#))
                    + answer("r.4", #"{\#(apiType("stream_purge_response")),"success":true,"purged":1}"#)
                    + answer("r.5", #"{\#(apiType("stream_purge_response")),"success":true,"purged":1}"#)
                    + answer("r.6", #"{\#(apiType("stream_info_response")),"total":0,"offset":0,"limit":0,"config":"#
                             + streamConfig("S", subjects: ["s.>"], allowDirect: true) + #","created":"<time>","#
                             + #""state":{"messages":0,"bytes":0,"first_seq":4,"first_ts":"0001-01-01T00:00:00Z","#
                             + #""last_seq":3,"last_ts":"<time>","consumer_count":0}}"#))]),

        Scenario(name: "JetStream: DIRECT.GET by sequence and by subject, a missing message and an empty request",
                 config: js,
                 steps: setupS + [
                    .request(pub("$JS.API.DIRECT.GET.S", "r.1", #"{"seq":2}"#)),
                    .request(pub("$JS.API.DIRECT.GET.S.s.a", "r.2")),
                    .request(pub("$JS.API.DIRECT.GET.S", "r.3", #"{"last_by_subj":"s.b"}"#)),
                    .request(pub("$JS.API.DIRECT.GET.S", "r.4", #"{"seq":99}"#)),
                    .request(pub("$JS.API.DIRECT.GET.S", "r.5")),
                 ],
                 expect: [.open(setupSAnswers
                    + headerMessage("r.1", headers: ["Nats-Msg-Id: abc", "Nats-Stream: S", "Nats-Subject: s.b",
                                                     "Nats-Sequence: 2", "Nats-Time-Stamp: <time>"], "yo")
                    + headerMessage("r.2", headers: ["Nats-Expected-Last-Subject-Sequence: 1", "Nats-Stream: S",
                                                     "Nats-Subject: s.a", "Nats-Sequence: 3", "Nats-Time-Stamp: <time>"], "ok")
                    + headerMessage("r.3", headers: ["Nats-Msg-Id: abc", "Nats-Stream: S", "Nats-Subject: s.b",
                                                     "Nats-Sequence: 2", "Nats-Time-Stamp: <time>"], "yo")
                    + headerMessage("r.4", status: "404 Message Not Found")
                    + headerMessage("r.5", status: "408 Empty Request"))]),

        Scenario(name: "JetStream: consumer CREATE forms and their errors (10020, 10018, 10017, 10012, 10131, 10059, 10056, 10014)",
                 config: js,
                 steps: setupPull + [
                    .request(pub("$JS.API.CONSUMER.CREATE.S", "r.1", #"{"stream_name":"S","config":{"durable_name":"dd","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.2", #"{"stream_name":"S","config":{"ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.3", #"{"stream_name":"S","config":{"durable_name":"xx","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.4", #"{"stream_name":"S","config":{"durable_name":"dd","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.5", #"{"stream_name":"S","config":{"durable_name":"dd","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.6", #"{"stream_name":"S","config":{"durable_name":"dd","ack_policy":"all"}}"#)),
                    .request(pub("$JS.API.CONSUMER.CREATE.S.pp.s.a", "r.7", #"{"stream_name":"S","config":{"name":"pp","durable_name":"pp","ack_policy":"explicit","filter_subject":"s.b"}}"#)),
                    .request(pub("$JS.API.CONSUMER.CREATE.S.pp.s.a", "r.8", #"{"stream_name":"S","config":{"name":"pp","durable_name":"pp","ack_policy":"explicit","filter_subject":"s.a","max_batch":2}}"#)),
                    .request(pub("$JS.API.CONSUMER.CREATE.NOPE.x", "r.9", #"{"stream_name":"NOPE","config":{"durable_name":"x"}}"#)),
                    .request(pub("$JS.API.CONSUMER.CREATE.S.x", "r.10", #"{"stream_name":"T","config":{"durable_name":"x"}}"#)),
                    .request(pub("$JS.API.CONSUMER.INFO.S.nope", "r.11")),
                 ],
                 expect: [.open(setupPullAnswers
                    + answer("r.1", apiError("consumer_create_response", code: 400, errCode: 10020,
                                             "consumer expected to be ephemeral but a durable name was set in request"))
                    + answer("r.2", apiError("consumer_create_response", code: 400, errCode: 10018,
                                             "consumer expected to be durable but a durable name was not set"))
                    + answer("r.3", apiError("consumer_create_response", code: 400, errCode: 10017,
                                             "consumer name in subject does not match durable name in request"))
                    + answer("r.4", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"dd","created":"<time>","#
                             + #""config":\#(durableConfig("dd")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + answer("r.5", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"dd","created":"<time>","#
                             + #""config":\#(durableConfig("dd")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + answer("r.6", apiError("consumer_create_response", code: 500, errCode: 10012, "ack policy can not be updated"))
                    + answer("r.7", apiError("consumer_create_response", code: 400, errCode: 10131,
                                             "Consumer create request did not match filtered subject from create subject"))
                    + answer("r.8", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"pp","created":"<time>","#
                             + #""config":{"durable_name":"pp","name":"pp","deliver_policy":"all","ack_policy":"explicit","#
                             + #""ack_wait":30000000000,"max_deliver":-1,"filter_subject":"s.a","replay_policy":"instant","#
                             + #""max_waiting":512,"max_ack_pending":1000,"max_batch":2,"num_replicas":0},"#
                             + #""delivered":{"consumer_seq":0,"stream_seq":0},"ack_floor":{"consumer_seq":0,"stream_seq":0},"#
                             + #""num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":2}"#)
                    + answer("r.9", apiError("consumer_create_response", code: 404, errCode: 10059, "stream not found"))
                    + answer("r.10", apiError("consumer_create_response", code: 400, errCode: 10056,
                                              "stream name in subject does not match request"))
                    + answer("r.11", apiError("consumer_info_response", code: 404, errCode: 10014, "consumer not found")))]),

        Scenario(name: "JetStream: a legacy CREATE without a name makes an ephemeral with a generated name",
                 config: js,
                 steps: setupPull + [
                    .request(pub("$JS.API.CONSUMER.CREATE.S", "r.1", #"{"stream_name":"S","config":{"ack_policy":"none","deliver_subject":"d.leg"}}"#)),
                 ],
                 expect: [.open(setupPullAnswers
                    + answer("r.1", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"<name>","#
                             + #""created":"<time>","config":{"deliver_policy":"all","ack_policy":"none","max_deliver":-1,"#
                             + #""replay_policy":"instant","deliver_subject":"d.leg","inactive_threshold":5000000000,"#
                             + #""num_replicas":0},"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#))],
                 generatedNames: true),

        Scenario(name: "JetStream: MSG.NEXT delivers under the stored subject with 9-token ack subjects; +ACK with a reply is confirmed; INFO counts",
                 config: js,
                 steps: setupPull + [
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.1", #"{"stream_name":"S","config":{"durable_name":"dd","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.2", #"{"batch":2}"#), replies: 2),
                    // An ack subject is parsed for its sequences; the timestamp token is not checked.
                    .request(pub("$JS.ACK.S.dd.1.1.1.1796669676923160232.2", "r.3", "+ACK")),
                    .request(pub("$JS.API.CONSUMER.INFO.S.dd", "r.4")),
                 ],
                 expect: [.open(setupPullAnswers
                    + answer("r.1", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"dd","created":"<time>","#
                             + #""config":\#(durableConfig("dd")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + jsDelivery("s.a", sid: 1, consumer: "dd", streamSeq: 1, consumerSeq: 1, pending: 2, "one")
                    + jsDelivery("s.b", sid: 1, consumer: "dd", streamSeq: 2, consumerSeq: 2, pending: 1, "two")
                    + pubAck("r.3", "")
                    + answer("r.4", #"{\#(apiType("consumer_info_response")),"stream_name":"S","name":"dd","created":"<time>","#
                             + #""config":\#(durableConfig("dd")),"delivered":{"consumer_seq":2,"stream_seq":2,"#
                             + #""last_active":"<time>"},"ack_floor":{"consumer_seq":1,"stream_seq":1,"last_active":"<time>"},"#
                             + #""num_ack_pending":1,"num_redelivered":0,"num_waiting":0,"num_pending":1}"#))]),

        Scenario(name: "JetStream: pull status replies 409 (max_batch, push based), 408 (no_wait ran dry, expires), 404 and 400",
                 config: js,
                 steps: setupPull + [
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.dd", "r.1", #"{"stream_name":"S","config":{"durable_name":"dd","ack_policy":"explicit","max_batch":2}}"#)),
                    .request(pub("$JS.API.CONSUMER.CREATE.S.push", "r.2", #"{"stream_name":"S","config":{"name":"push","ack_policy":"none","deliver_subject":"d.push"}}"#)),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.3", #"{"batch":3}"#)),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.push", "r.4", "1")),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.5", #"{"batch":"#)),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.6", "2"), replies: 2),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.7", #"{"batch":2,"no_wait":true}"#), replies: 2),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.8", #"{"batch":2,"no_wait":true}"#)),
                    .request(pub("$JS.API.CONSUMER.MSG.NEXT.S.dd", "r.9", #"{"batch":2,"expires":200000000}"#)),
                 ],
                 expect: [.open(setupPullAnswers
                    + answer("r.1", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"dd","created":"<time>","#
                             + #""config":{"durable_name":"dd","deliver_policy":"all","ack_policy":"explicit","#
                             + #""ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"#
                             + #""max_ack_pending":1000,"max_batch":2,"num_replicas":0},"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + answer("r.2", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"push","created":"<time>","#
                             + #""config":{"name":"push","deliver_policy":"all","ack_policy":"none","max_deliver":-1,"#
                             + #""replay_policy":"instant","deliver_subject":"d.push","inactive_threshold":5000000000,"#
                             + #""num_replicas":0},"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + headerMessage("r.3", status: "409 Exceeded MaxRequestBatch of 2")
                    + headerMessage("r.4", status: "409 Consumer is push based")
                    + headerMessage("r.5", status: "400 Bad Request - unexpected end of JSON input")
                    + jsDelivery("s.a", sid: 1, consumer: "dd", streamSeq: 1, consumerSeq: 1, pending: 2, "one")
                    + jsDelivery("s.b", sid: 1, consumer: "dd", streamSeq: 2, consumerSeq: 2, pending: 1, "two")
                    + jsDelivery("s.a", sid: 1, consumer: "dd", streamSeq: 3, consumerSeq: 3, pending: 0, "three")
                    + headerMessage("r.7", status: "408 Request Timeout",
                                    headers: ["Nats-Pending-Messages: 1", "Nats-Pending-Bytes: 0"])
                    + headerMessage("r.8", status: "404 No Messages")
                    + headerMessage("r.9", status: "408 Request Timeout",
                                    headers: ["Nats-Pending-Messages: 2", "Nats-Pending-Bytes: 0"]))]),

        Scenario(name: "JetStream: a push consumer delivers to its deliver subject once it has interest, under the stored subject",
                 config: js,
                 steps: setupPull + [
                    .request(pub("$JS.API.CONSUMER.CREATE.S.eph", "r.1", #"{"stream_name":"S","config":{"name":"eph","ack_policy":"explicit","deliver_subject":"d.eph"}}"#)),
                    .request(connect + "SUB d.eph 7\r\n", replies: 3, on: 1),
                    .request(pub("s.b", "r.2", "four")),
                    .request("", replies: 1, on: 1),
                    .request(pub("$JS.API.CONSUMER.INFO.S.eph", "r.3")),
                 ],
                 expect: [
                    .open(setupPullAnswers
                        + answer("r.1", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"eph","created":"<time>","#
                                 + #""config":{"name":"eph","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"#
                                 + #""max_deliver":-1,"replay_policy":"instant","max_ack_pending":1000,"deliver_subject":"d.eph","#
                                 + #""inactive_threshold":5000000000,"num_replicas":0},"delivered":{"consumer_seq":0,"stream_seq":0},"#
                                 + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                                 + #""num_waiting":0,"num_pending":3}"#)
                        + pubAck("r.2", #"{"stream":"S", "seq":4}"#)
                        + answer("r.3", #"{\#(apiType("consumer_info_response")),"stream_name":"S","name":"eph","created":"<time>","#
                                 + #""config":{"name":"eph","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"#
                                 + #""max_deliver":-1,"replay_policy":"instant","max_ack_pending":1000,"deliver_subject":"d.eph","#
                                 + #""inactive_threshold":5000000000,"num_replicas":0},"delivered":{"consumer_seq":4,"stream_seq":4,"#
                                 + #""last_active":"<time>"},"ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":4,"#
                                 + #""num_redelivered":0,"num_waiting":0,"num_pending":0,"push_bound":true}"#)),
                    .open(jsDelivery("s.a", sid: 7, consumer: "eph", streamSeq: 1, consumerSeq: 1, pending: 2, "one")
                          + jsDelivery("s.b", sid: 7, consumer: "eph", streamSeq: 2, consumerSeq: 2, pending: 1, "two")
                          + jsDelivery("s.a", sid: 7, consumer: "eph", streamSeq: 3, consumerSeq: 3, pending: 0, "three")
                          + jsDelivery("s.b", sid: 7, consumer: "eph", streamSeq: 4, consumerSeq: 4, pending: 0, "four")),
                 ]),

        Scenario(name: "JetStream: a wildcard SUB covering a push consumer's deliver subject does not start delivery; a SUB on the subject itself does",
                 config: js,
                 steps: setupPull + [
                    .request("SUB d.> 2\r\n" + pub("$JS.API.CONSUMER.CREATE.S.w", "r.1", #"{"stream_name":"S","config":{"name":"w","ack_policy":"explicit","deliver_subject":"d.w"}}"#)),
                    .request(pub("$JS.API.CONSUMER.INFO.S.w", "r.2")),
                    .request(connect + "SUB d.w 9\r\n", replies: 3, on: 1),
                    .request("", replies: 3),
                    .request(pub("$JS.API.CONSUMER.INFO.S.w", "r.3")),
                 ],
                 expect: [
                    .open(setupPullAnswers
                        + answer("r.1", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"w","created":"<time>","#
                                 + #""config":\#(pushConfig("w", deliver: "d.w")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                                 + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                                 + #""num_waiting":0,"num_pending":3}"#)
                        + answer("r.2", #"{\#(apiType("consumer_info_response")),"stream_name":"S","name":"w","created":"<time>","#
                                 + #""config":\#(pushConfig("w", deliver: "d.w")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                                 + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                                 + #""num_waiting":0,"num_pending":3}"#)
                        + jsDelivery("s.a", sid: 2, consumer: "w", streamSeq: 1, consumerSeq: 1, pending: 2, "one")
                        + jsDelivery("s.b", sid: 2, consumer: "w", streamSeq: 2, consumerSeq: 2, pending: 1, "two")
                        + jsDelivery("s.a", sid: 2, consumer: "w", streamSeq: 3, consumerSeq: 3, pending: 0, "three")
                        + answer("r.3", #"{\#(apiType("consumer_info_response")),"stream_name":"S","name":"w","created":"<time>","#
                                 + #""config":\#(pushConfig("w", deliver: "d.w")),"delivered":{"consumer_seq":3,"stream_seq":3,"#
                                 + #""last_active":"<time>"},"ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":3,"#
                                 + #""num_redelivered":0,"num_waiting":0,"num_pending":0,"push_bound":true}"#)),
                    .open(jsDelivery("s.a", sid: 9, consumer: "w", streamSeq: 1, consumerSeq: 1, pending: 2, "one")
                          + jsDelivery("s.b", sid: 9, consumer: "w", streamSeq: 2, consumerSeq: 2, pending: 1, "two")
                          + jsDelivery("s.a", sid: 9, consumer: "w", streamSeq: 3, consumerSeq: 3, pending: 0, "three")),
                 ]),

        Scenario(name: "JetStream: CONSUMER.NAMES in name order, DELETE and a second DELETE",
                 config: js,
                 steps: setupPull + [
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.b", "r.1", #"{"stream_name":"S","config":{"durable_name":"b","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.DURABLE.CREATE.S.a", "r.2", #"{"stream_name":"S","config":{"durable_name":"a","ack_policy":"explicit"}}"#)),
                    .request(pub("$JS.API.CONSUMER.NAMES.S", "r.3")),
                    .request(pub("$JS.API.CONSUMER.DELETE.S.b", "r.4")),
                    .request(pub("$JS.API.CONSUMER.DELETE.S.b", "r.5")),
                    .request(pub("$JS.API.CONSUMER.NAMES.S", "r.6")),
                 ],
                 expect: [.open(setupPullAnswers
                    + answer("r.1", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"b","created":"<time>","#
                             + #""config":\#(durableConfig("b")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + answer("r.2", #"{\#(apiType("consumer_create_response")),"stream_name":"S","name":"a","created":"<time>","#
                             + #""config":\#(durableConfig("a")),"delivered":{"consumer_seq":0,"stream_seq":0},"#
                             + #""ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"#
                             + #""num_waiting":0,"num_pending":3}"#)
                    + answer("r.3", #"{\#(apiType("consumer_names_response")),"total":2,"offset":0,"limit":1024,"consumers":["a","b"]}"#)
                    + answer("r.4", #"{\#(apiType("consumer_delete_response")),"success":true}"#)
                    + answer("r.5", apiError("consumer_delete_response", code: 404, errCode: 10014, "consumer not found"))
                    + answer("r.6", #"{\#(apiType("consumer_names_response")),"total":1,"offset":0,"limit":1024,"consumers":["a"]}"#))]),
    ]
}
