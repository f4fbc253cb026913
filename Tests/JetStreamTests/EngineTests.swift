import Formats
import Foundation
import Testing
@testable import JetStream
import TestSupport

/// `err_code` of a response's error, nil when it has none.
private func errCode(_ text: String?) -> Int64? {
    guard let text, let json = try? JSON.parse(text) else { return nil }
    return json["error"]?["err_code"]?.intValue
}

private func field(_ text: String?, _ path: String...) -> JSON? {
    guard let text, var json = try? JSON.parse(text) else { return nil }
    for key in path {
        guard let next = json[key] else { return nil }
        json = next
    }
    return json
}

@Suite struct EngineTests {
    @Test func startCapturesTheAPIAndCreateCapturesTheStreamSubjects() throws {
        let h = try EngineHarness("engine-start")
        #expect(try h.start() == [.capture("$JS.API.>"), .capture("$JS.ACK.>"), .capture("$JS.FC.>")])
        let actions = h.send("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["a.*","b"]}"#)
        #expect(actions.prefix(2) == [.capture("a.*"), .capture("b")])
        let response = EngineHarness.replies(actions, to: "_INBOX.r").first.map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(field(response, "did_create")?.boolValue == true)
        #expect(field(response, "type")?.stringValue == "io.nats.jetstream.api.v1.stream_create_response")
        // The same create again is answered the same way and captures nothing new.
        let again = h.send("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["a.*","b"]}"#)
        #expect(again.count == 1)
        #expect(errCode(h.request("$JS.API.STREAM.CREATE.T", #"{"name":"T","subjects":["a.x"]}"#)) == 10065)
        #expect(errCode(h.request("$JS.API.STREAM.CREATE.T", "{")) == 10025)
    }

    @Test func publishAcksStoresAndTellsTheConsumers() throws {
        let h = try EngineHarness("engine-pub")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.>"]}"#)
        #expect(h.request("s.a", "one") == pubAck("S", 1))
        #expect(h.request("s.b", "two") == pubAck("S", 2))
        #expect(h.consumers.stored.map(\.sequence) == [1, 2])
        #expect(h.consumers.stored.map(\.subject) == ["s.a", "s.b"])
        // Without a reply subject the message is stored and nothing is sent.
        #expect(h.send("s.c", "three", reply: "").isEmpty)
        #expect(h.engine.streams["S"]?.store.state.messages == 3)
        // A subject no stream captures is dropped.
        #expect(h.send("other", "x").isEmpty)
    }

    @Test func msgIdDeduplicatesWithinTheWindowAndSurvivesARestart() throws {
        let h = try EngineHarness("engine-dedupe")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s"],"duplicate_window":1000000000}"#)
        #expect(h.request("s", "a", headers: [("Nats-Msg-Id", "m1")]) == pubAck("S", 1))
        #expect(h.request("s", "a", headers: [("Nats-Msg-Id", "m1")]) == pubAck("S", 1, duplicate: true))
        try h.restart()
        #expect(h.request("s", "a", headers: [("Nats-Msg-Id", "m1")]) == pubAck("S", 1, duplicate: true))
        // Expected-Last-Msg-Id sees the rebuilt last id.
        #expect(h.request("s", "b", headers: [("Nats-Expected-Last-Msg-Id", "m1")]) == pubAck("S", 2))
        #expect(h.request("s", "c", headers: [("Nats-Expected-Last-Msg-Id", "m1")])
                == pubAckError("S", .streamWrongLastMessageID("")))
        // Past the window the id is new again.
        h.now += 1_000_000_000
        #expect(h.request("s", "a", headers: [("Nats-Msg-Id", "m1")]) == pubAck("S", 3))
    }

    @Test func expectedHeadersAreCheckedInOrder() throws {
        let h = try EngineHarness("engine-expected")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.*"],"max_msg_size":100}"#)
        #expect(h.request("s.a", "1") == pubAck("S", 1))
        #expect(h.request("s.b", "2") == pubAck("S", 2))
        #expect(h.request("s.a", "x", headers: [("Nats-Expected-Stream", "T")]) == pubAckError("S", .streamNotMatch))
        #expect(h.request("s.a", "x", headers: [("Nats-Expected-Last-Subject-Sequence", "2")])
                == pubAckError("S", .streamWrongLastSequence(1)))
        #expect(h.request("s.c", "x", headers: [("Nats-Expected-Last-Subject-Sequence", "0")]) == pubAck("S", 3))
        #expect(h.request("s.a", "x", headers: [("Nats-Expected-Last-Sequence", "2")]) == pubAckError("S", .streamWrongLastSequence(3)))
        #expect(h.request("s.a", "x", headers: [("Nats-Expected-Last-Sequence", "3")]) == pubAck("S", 4))
        // The stream check comes before de-duplication.
        #expect(h.request("s.a", "x", headers: [("Nats-Msg-Id", "i"), ("Nats-Expected-Stream", "T")]) == pubAckError("S", .streamNotMatch))
        #expect(h.request("s.a", String(repeating: "x", count: 101)) == pubAckError("S", .messageExceedsMaximum))
        #expect(h.request("s.a", "x", headers: [("Nats-Rollup", "sub")]) == pubAckError("S", .streamRollupFailed("rollup not permitted")))
        // A lower-case name is another header for 2.9.10.
        #expect(h.request("s.a", "x", headers: [("nats-expected-stream", "T")]) == pubAck("S", 5))
    }

    @Test func rollupKeepsOnlyTheNewMessage() throws {
        let h = try EngineHarness("engine-rollup")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.*"],"allow_rollup_hdrs":true}"#)
        for subject in ["s.a", "s.a", "s.b"] { _ = h.request(subject, "x") }
        #expect(h.request("s.a", "y", headers: [("Nats-Rollup", "sub")]) == pubAck("S", 4))
        #expect(h.engine.streams["S"]?.store.state.messages == 2)
        #expect(h.request("s.c", "z", headers: [("Nats-Rollup", "all")]) == pubAck("S", 5))
        #expect(h.engine.streams["S"]?.store.state.messages == 1)
        #expect(h.consumers.changed == ["S", "S"])
        // An unknown rollup value gets no answer and stores nothing.
        #expect(h.send("s.c", "z", headers: [("Nats-Rollup", "some")]).isEmpty)
        #expect(h.engine.streams["S"]?.store.state.lastSequence == 5)
    }

    @Test func discardNewSealedAndNoAck() throws {
        let h = try EngineHarness("engine-limits")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s"],"max_msgs":1,"discard":"new"}"#)
        #expect(h.request("s", "1") == pubAck("S", 1))
        #expect(h.request("s", "2") == pubAckError("S", .streamStoreFailed("maximum messages exceeded")))
        // The refused message did not cost the acknowledged one.
        #expect((try h.engine.streams["S"]?.store.load(1))?.payload == Array("1".utf8))
        let update = h.request("$JS.API.STREAM.UPDATE.S", #"{"name":"S","subjects":["s"],"max_msgs":1,"discard":"new","sealed":true}"#)
        #expect(field(update, "config", "sealed")?.boolValue == true)
        #expect(field(update, "config", "deny_purge")?.boolValue == true)
        #expect(h.request("s", "3") == pubAckError("S", .streamSealed))
        #expect(errCode(h.request("$JS.API.STREAM.PURGE.S")) == 10109)
        #expect(errCode(h.request("$JS.API.STREAM.UPDATE.S", #"{"name":"S","subjects":["s"]}"#)) == 10052)

        _ = h.request("$JS.API.STREAM.CREATE.N", #"{"name":"N","subjects":["n"],"no_ack":true}"#)
        #expect(h.send("n", "x").isEmpty)
        #expect(h.engine.streams["N"]?.store.state.messages == 1)
    }

    @Test func interestStreamWithoutInterestUsesTheSequenceOnly() throws {
        let h = try EngineHarness("engine-interest")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.I", #"{"name":"I","subjects":["i"],"retention":"interest"}"#)
        h.consumers.interest = false
        #expect(h.request("i", "x") == pubAck("I", 1))
        h.consumers.interest = true
        #expect(h.request("i", "y") == pubAck("I", 2))
        h.consumers.interest = false
        #expect(h.request("i", "z") == pubAck("I", 3))
        let state = try #require(h.engine.streams["I"]?.store.state)
        #expect(state.messages == 1 && state.lastSequence == 3 && state.firstSequence == 2)
        #expect(h.consumers.stored.map(\.sequence) == [2])
        try h.restart()
        h.consumers.interest = true
        #expect(h.request("i", "w") == pubAck("I", 4))
    }

    @Test func republishCopiesWithStreamHeaders() throws {
        let h = try EngineHarness("engine-republish")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.R", #"{"name":"R","subjects":["r.*"],"republish":{"src":"r.*","dest":"out.{{wildcard(1)}}"}}"#)
        _ = h.request("r.a", "one")
        let actions = h.send("r.a", "two", headers: [("X", "1")])
        let copy = try #require(EngineHarness.replies(actions, to: "out.a").first)
        #expect(String(decoding: copy.headers, as: UTF8.self)
                == "NATS/1.0\r\nX: 1\r\nNats-Stream: R\r\nNats-Subject: r.a\r\nNats-Sequence: 2\r\nNats-Last-Sequence: 1\r\n\r\n")
        #expect(copy.payload == Array("two".utf8))
        // The copy goes out before the PubAck, as 2.9.10 sends them.
        #expect(actions.firstIndex { if case .send(let s, _, _, _, _) = $0 { return s == "out.a" }; return false } == 0)
        #expect(SubjectTransform(source: ">", destination: "copy.>")?.apply("a.b") == "copy.a.b")
        #expect(SubjectTransform(source: "r.*", destination: "x")?.apply("q.a") == nil)
    }

    @Test func streamsMessagesAndCreatedTimeSurviveARestart() throws {
        let h = try EngineHarness("engine-restart")
        try h.start()
        let created = h.request("$JS.API.STREAM.CREATE.F", #"{"name":"F","subjects":["f.*"]}"#)
        _ = h.request("$JS.API.STREAM.CREATE.M", #"{"name":"M","subjects":["m"],"storage":"memory"}"#)
        for k in 1...5 { _ = h.request("f.\(k)", "payload \(k)") }
        _ = h.request("m", "gone after restart")
        h.now += 1_000
        let actions = try h.restart()
        #expect(actions == [.capture("$JS.API.>"), .capture("$JS.ACK.>"), .capture("$JS.FC.>"), .capture("f.*"), .capture("m")])
        #expect(h.consumers.recovered.sorted() == ["F", "M"])
        #expect(h.consumers.persisted == 1)
        let info = h.request("$JS.API.STREAM.INFO.F")
        #expect(field(info, "created") == field(created, "created"))
        #expect(field(info, "state", "messages")?.intValue == 5)
        #expect(field(h.request("$JS.API.STREAM.INFO.M"), "state", "messages")?.intValue == 0)
        #expect(h.request("f.9", "next") == pubAck("F", 6))
    }

    @Test func aCorruptConfigIsAStartErrorNamingTheFile() throws {
        let h = try EngineHarness("engine-corrupt")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.F", #"{"name":"F"}"#)
        h.engine.shutdown()
        let meta = h.options.storeDirectory + "/$G/streams/F/meta.json"
        try Data("{\"created\":".utf8).write(to: URL(fileURLWithPath: meta))
        let engine = JetStreamEngine(options: h.options, consumers: h.consumers)
        #expect(throws: JetStreamStartError.self) { try engine.start(now: h.now) }
        do {
            _ = try engine.start(now: h.now)
        } catch {
            #expect(error.path == meta)
            #expect(error.description.contains("meta.json"))
        }
    }

    @Test func anUnusableStoreDirectoryIsAStartError() throws {
        let directory = try temporaryDirectory("engine-unusable")
        defer { removeTemporary(directory) }
        let file = directory + "/file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let engine = JetStreamEngine(options: JetStreamOptions(storeDirectory: file + "/jetstream", maxMemory: 1, maxStore: 1),
                                     consumers: FakeConsumers())
        do {
            _ = try engine.start(now: 0)
            Issue.record("start succeeded on a directory under a file")
        } catch {
            #expect(error.path.hasPrefix(file))
        }
    }

    @Test func maxAgeExpiresOnTheTimerAndAtStart() throws {
        let h = try EngineHarness("engine-age")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.A", #"{"name":"A","subjects":["a"],"max_age":1000000000}"#)
        let first = h.now
        _ = h.request("a", "1")
        h.now += 500_000_000
        _ = h.request("a", "2")
        // The first message's expiry comes before the periodic sync.
        #expect(h.engine.nextDeadline == first + 1_000_000_000)
        h.now += 600_000_000
        _ = h.engine.tick(now: h.now)
        #expect(h.engine.streams["A"]?.store.state.messages == 1)
        #expect(h.consumers.changed == ["A"])
        h.engine.shutdown()
        h.now += 1_000_000_000
        let engine = JetStreamEngine(options: h.options, consumers: h.consumers)
        _ = try engine.start(now: h.now)
        #expect(engine.streams["A"]?.store.state.messages == 0)
        engine.shutdown()
    }

    @Test func directGetAnswersOnlyForAllowDirect() throws {
        let h = try EngineHarness("engine-direct")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.D", #"{"name":"D","subjects":["d.*"],"allow_direct":true}"#)
        _ = h.request("$JS.API.STREAM.CREATE.N", #"{"name":"N","subjects":["n"]}"#)
        _ = h.request("d.a", "one", headers: [("H", "v")])
        _ = h.request("d.b", "two")
        _ = h.request("n", "x")
        #expect(h.send("$JS.API.DIRECT.GET.N", #"{"seq":1}"#).isEmpty)
        let first = try #require(EngineHarness.replies(h.send("$JS.API.DIRECT.GET.D", #"{"seq":1}"#), to: "_INBOX.r").first)
        let stamp = "2023-11-14T22:13:20Z"
        #expect(String(decoding: first.headers, as: UTF8.self)
                == "NATS/1.0\r\nH: v\r\nNats-Stream: D\r\nNats-Subject: d.a\r\nNats-Sequence: 1\r\nNats-Time-Stamp: \(stamp)\r\n\r\n")
        #expect(first.payload == Array("one".utf8))
        let last = try #require(EngineHarness.replies(h.send("$JS.API.DIRECT.GET.D.d.b"), to: "_INBOX.r").first)
        #expect(String(decoding: last.headers, as: UTF8.self).contains("Nats-Sequence: 2\r\n"))
        func status(_ body: String, _ subject: String = "$JS.API.DIRECT.GET.D") -> String? {
            EngineHarness.replies(h.send(subject, body), to: "_INBOX.r").first.map { String(decoding: $0.headers, as: UTF8.self) }
        }
        #expect(status("") == "NATS/1.0 408 Empty Request\r\n\r\n")
        #expect(status("{}") == "NATS/1.0 408 Empty Request\r\n\r\n")
        #expect(status("nope") == "NATS/1.0 408 Malformed Request\r\n\r\n")
        #expect(status(#"{"seq":1,"last_by_subj":"d.a"}"#) == "NATS/1.0 408 Bad Request\r\n\r\n")
        #expect(status(#"{"seq":9}"#) == "NATS/1.0 404 Message Not Found\r\n\r\n")
        #expect(status("x", "$JS.API.DIRECT.GET.D.d.a") == "NATS/1.0 408 Bad Request\r\n\r\n")
        // Direct Get is outside the API counters.
        #expect(h.engine.statistics().apiTotal == 2)
    }

    @Test func deleteRemovesFilesReleasesSubjectsAndTellsTheConsumers() throws {
        let h = try EngineHarness("engine-delete")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.X", #"{"name":"X","subjects":["x.>"]}"#)
        _ = h.request("x.1", "a")
        #expect(errCode(h.request("$JS.API.STREAM.DELETE.X", "body")) == 10038)
        let actions = h.send("$JS.API.STREAM.DELETE.X")
        #expect(actions.contains(.release("x.>")))
        #expect(h.consumers.deleted == ["X"])
        #expect(!FileManager.default.fileExists(atPath: h.options.storeDirectory + "/$G/streams/X"))
        #expect(errCode(h.request("$JS.API.STREAM.DELETE.X")) == 10059)
        #expect(h.send("x.1", "a").isEmpty)
        try h.restart()
        #expect(h.engine.streams.isEmpty)
    }

    @Test func accountInfoCountsAndLimits() throws {
        let h = try EngineHarness("engine-account", maxMemory: 1000, maxStore: 1 << 30, domain: "hub")
        try h.start()
        h.consumers.counts["S"] = 2
        #expect(errCode(h.request("$JS.API.STREAM.CREATE.M", #"{"name":"M","storage":"memory","max_bytes":2000}"#)) == 10028)
        #expect(errCode(h.request("$JS.API.STREAM.CREATE.B", #"{"name":"B","max_bytes":2147483648}"#)) == 10047)
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s"]}"#)
        #expect(h.request("s", "x") == pubAck("S", 1, domain: "hub"))
        let info = try #require(h.request("$JS.API.INFO"))
        #expect(info == #"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"storage":32,"streams":1,"consumers":2,"limits":{"max_memory":-1,"max_storage":-1,"max_streams":-1,"max_consumers":-1,"max_ack_pending":-1,"memory_max_stream_bytes":-1,"storage_max_stream_bytes":-1,"max_bytes_required":false},"domain":"hub","api":{"total":3,"errors":2}}"#)
        let stats = h.engine.statistics()
        #expect(stats.apiTotal == 4 && stats.apiErrors == 2 && stats.streams == 1 && stats.consumers == 2)
        #expect(stats.storage == 32 && stats.messages == 1 && stats.streamDetails.map(\.name) == ["S"])
    }

    @Test func consumerCallsGoToTheConsumerHalfAndAreCounted() throws {
        let h = try EngineHarness("engine-consumer")
        try h.start()
        h.consumers.answer = Array(#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","error":{"code":404,"err_code":10014,"description":"consumer not found"}}"#.utf8)
        _ = h.request("$JS.API.CONSUMER.INFO.S.C")
        _ = h.send("$JS.ACK.S.C.1.1.1.1.0", "+ACK")
        _ = h.send("$JS.FC.S.C.abcd", "")
        #expect(h.consumers.handled == ["$JS.API.CONSUMER.INFO.S.C", "$JS.ACK.S.C.1.1.1.1.0", "$JS.FC.S.C.abcd"])
        let stats = h.engine.statistics()
        #expect(stats.apiTotal == 1 && stats.apiErrors == 1)
        // Subjects no handler takes get nothing.
        #expect(h.send("$JS.API.STREAM.INFO").isEmpty)
        #expect(h.send("$JS.API.STREAM.BOGUS.S").isEmpty)
        #expect(h.engine.statistics().apiTotal == 1)
    }

    @Test func messageGetDeleteAndPurge() throws {
        let h = try EngineHarness("engine-msgs")
        try h.start()
        _ = h.request("$JS.API.STREAM.CREATE.S", #"{"name":"S","subjects":["s.*"]}"#)
        _ = h.request("s.a", "hello", headers: [("K", "v")])
        _ = h.request("s.b", "")
        _ = h.request("s.a", "again")
        let get = h.request("$JS.API.STREAM.MSG.GET.S", #"{"seq":1}"#)
        #expect(field(get, "message", "hdrs")?.stringValue == Data("NATS/1.0\r\nK: v\r\n\r\n".utf8).base64EncodedString())
        #expect(field(get, "message", "data")?.stringValue == Data("hello".utf8).base64EncodedString())
        #expect(field(h.request("$JS.API.STREAM.MSG.GET.S", #"{"seq":2}"#), "message", "data") == nil)
        #expect(field(h.request("$JS.API.STREAM.MSG.GET.S", #"{"last_by_subj":"s.a"}"#), "message", "seq")?.intValue == 3)
        #expect(field(h.request("$JS.API.STREAM.MSG.GET.S", #"{"next_by_subj":"s.b","seq":1}"#), "message", "seq")?.intValue == 2)
        #expect(errCode(h.request("$JS.API.STREAM.MSG.GET.S", #"{"seq":7}"#)) == 10037)
        #expect(errCode(h.request("$JS.API.STREAM.MSG.GET.S", "")) == 10003)
        #expect(errCode(h.request("$JS.API.STREAM.MSG.GET.S", #"{"seq":-1}"#)) == 10025)
        #expect(errCode(h.request("$JS.API.STREAM.MSG.GET.Q", #"{"seq":1}"#)) == 10059)
        #expect(h.request("$JS.API.STREAM.MSG.DELETE.S", #"{"seq":2}"#) == #"{"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","success":true}"#)
        let info = h.request("$JS.API.STREAM.INFO.S", #"{"deleted_details":true,"subjects_filter":"s.*"}"#)
        #expect(field(info, "state", "deleted")?.elements == [.int(2)])
        #expect(field(info, "state", "subjects", "s.a")?.intValue == 2)
        #expect(field(info, "total")?.intValue == 1 && field(info, "limit")?.intValue == 100_000)
        #expect(h.request("$JS.API.STREAM.PURGE.S", #"{"filter":"s.a","keep":1}"#)
                == #"{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":1}"#)
        #expect(errCode(h.request("$JS.API.STREAM.PURGE.S", #"{"seq":2,"keep":1}"#)) == 10003)
        #expect(h.consumers.changed == ["S", "S"])
    }

    @Test func namesAndListPageAndFilter() throws {
        let h = try EngineHarness("engine-names")
        try h.start()
        for name in ["C", "A", "B"] { _ = h.request("$JS.API.STREAM.CREATE.\(name)", #"{"name":"\#(name)","subjects":["\#(name.lowercased()).>"]}"#) }
        #expect(h.request("$JS.API.STREAM.NAMES") == #"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":3,"offset":0,"limit":1024,"streams":["A","B","C"]}"#)
        #expect(h.request("$JS.API.STREAM.NAMES", #"{"offset":2}"#) == #"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":3,"offset":2,"limit":1024,"streams":["C"]}"#)
        #expect(h.request("$JS.API.STREAM.NAMES", #"{"subject":"b.x"}"#) == #"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":1,"offset":0,"limit":1024,"streams":["B"]}"#)
        #expect(h.request("$JS.API.STREAM.NAMES", #"{"subject":"z"}"#) == #"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":0,"offset":0,"limit":1024,"streams":null}"#)
        let list = h.request("$JS.API.STREAM.LIST", #"{"offset":1}"#)
        #expect(field(list, "streams")?.elements?.compactMap { $0["config"]?["name"]?.stringValue } == ["B", "C"])
        #expect(field(list, "limit")?.intValue == 256)
        #expect(errCode(h.request("$JS.API.STREAM.NAMES", "[")) == 10025)
    }
}
