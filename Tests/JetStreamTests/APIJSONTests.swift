import Testing
@testable import JetStream

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// The create check of `body` for a stream named `name` in the subject, against `existing`.
private func create(_ name: String, _ body: String, existing: [StreamConfig] = []) throws(JetStreamAPIError) -> StreamConfig {
    try StreamConfig.checkCreate(subjectName: name, body: Array(body.utf8), existing: existing).config
}

/// The error `body` gets, or nil when it is accepted.
private func createError(_ name: String, _ body: String, existing: [StreamConfig] = []) -> JetStreamAPIError? {
    do { _ = try create(name, body, existing: existing); return nil } catch { return error }
}

@Suite struct StreamConfigTests {
    @Test func defaultsAreFilledAsByTheReference() throws {
        let config = try create("ORDERS", #"{"name":"ORDERS"}"#)
        #expect(config.subjects == ["ORDERS"])
        #expect(config.maxMessages == -1 && config.maxBytes == -1 && config.maxMessagesPerSubject == -1)
        #expect(config.maxMessageSize == -1 && config.maxConsumers == -1)
        #expect(config.duplicateWindow == 120_000_000_000)
        #expect(config.replicas == 1 && config.storage == .file && config.retention == .limits && config.discard == .old)
        var out: [UInt8] = []
        config.write(to: &out)
        #expect(text(out) == #"{"name":"ORDERS","subjects":["ORDERS"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false}"#)
    }

    @Test func aShortMaxAgeBecomesTheDuplicateWindow() throws {
        let config = try create("S", #"{"name":"S","max_age":1000000000}"#)
        #expect(config.duplicateWindow == 1_000_000_000)
    }

    @Test func decodingFollowsGo() throws {
        // Keys without regard to case, the last of a repeated key, null leaves the default,
        // unknown fields ignored, discard without regard to case.
        let config = try StreamConfig.decode(Array(#"{"NAME":"x","name":"S","Max_Msgs":5,"max_bytes":null,"allow_msg_ttl":true,"discard":"NEW","storage":"memory","retention":"workqueue"}"#.utf8))
        #expect(config.name == "S" && config.maxMessages == 5 && config.maxBytes == 0)
        #expect(config.discard == .new && config.storage == .memory && config.retention == .workqueue)
        #expect(try StreamConfig.decode(Array("null".utf8)) == StreamConfig())
    }

    @Test(arguments: ["", "   ", "{", "[]", "42", #"{"name":5}"#, #"{"name":"S","max_msgs":1.5}"#,
                      #"{"name":"S","max_msgs":"5"}"#, #"{"name":"S","max_msg_size":4294967296}"#,
                      #"{"name":"S","storage":"disk"}"#, #"{"name":"S","retention":"Limits"}"#,
                      #"{"name":"S","subjects":"a"}"#, #"{"name":"S","sealed":"true"}"#, #"{"name":"S","max_age":1e9}"#])
    func badBodiesAreInvalidJSON(body: String) {
        #expect(createError("S", body) == .invalidJSON)
    }

    @Test func createChecksAnswerWithTheReferenceErrors() {
        #expect(createError("S", "null") == .streamMismatch)
        #expect(createError("S", #"{"name":"T"}"#) == .streamMismatch)
        #expect(createError("a/b", #"{"name":"a/b"}"#) == .streamNameContainsPathSeparators)
        #expect(createError("S", #"{"name":"S","sealed":true}"#)
                == .streamInvalidConfig("stream configuration for create can not be sealed"))
        #expect(createError("S", #"{"name":"S","mirror_direct":true}"#)
                == .streamInvalidConfig("stream has no mirror but does have mirror direct"))
        #expect(createError("a.b", #"{"name":"a.b"}"#)
                == .streamInvalidConfig("stream name is required and can not contain '.', '*', '>'"))
        #expect(createError("S", #"{"name":"S","num_replicas":3}"#) == .replicasNotSupported)
        #expect(createError("S", #"{"name":"S","num_replicas":6}"#) == .streamInvalidConfig("maximum replicas is 5"))
        #expect(createError("S", #"{"name":"S","num_replicas":-1}"#) == .replicasCountNegative)
        #expect(createError("S", #"{"name":"S","max_age":1000}"#) == .streamInvalidConfig("max age needs to be >= 100ms"))
        #expect(createError("S", #"{"name":"S","duplicate_window":-1}"#)
                == .streamInvalidConfig("duplicates window can not be negative"))
        #expect(createError("S", #"{"name":"S","max_age":1000000000,"duplicate_window":2000000000}"#)
                == .streamInvalidConfig("duplicates window can not be larger then max age"))
        #expect(createError("S", #"{"name":"S","duplicate_window":1000}"#)
                == .streamInvalidConfig("duplicates window needs to be >= 100ms"))
        #expect(createError("S", #"{"name":"S","deny_purge":true,"allow_rollup_hdrs":true}"#)
                == .streamInvalidConfig("roll-ups require the purge permission"))
        #expect(createError("S", #"{"name":"S","discard_new_per_subject":true}"#)
                == .streamInvalidConfig("discard new per subject requires discard new policy to be set"))
        #expect(createError("S", #"{"name":"S","discard":"new","discard_new_per_subject":true}"#)
                == .streamInvalidConfig("discard new per subject requires max msgs per subject > 0"))
        #expect(createError("S", #"{"name":"S","subjects":["a","a"]}"#) == .streamInvalidConfig("duplicate subjects detected"))
        #expect(createError("S", #"{"name":"S","subjects":["$JS.API.x"]}"#)
                == .streamInvalidConfig("subjects overlap with jetstream api"))
        #expect(createError("S", #"{"name":"S","subjects":["a..b"]}"#) == .streamInvalidConfig("invalid subject"))
        #expect(createError("S", #"{"name":"S","subjects":["a.>","a.b"]}"#)
                == .streamInvalidConfig(#"subject "a.>" overlaps with "a.b""#))
        #expect(createError("S", #"{"name":"S","subjects":["a"],"republish":{"src":"b","dest":"c"}}"#)
                == .streamInvalidConfig("stream configuration for republish source is not valid subset of subjects"))
        #expect(createError("S", #"{"name":"S","subjects":["a.*"],"republish":{"dest":"a.x"}}"#)
                == .streamInvalidConfig("stream configuration for republish destination forms a cycle"))
        #expect(createError("S", #"{"name":"S","mirror":{"name":"M"}}"#) == .streamInvalidConfig("stream mirrors are not supported"))
    }

    @Test func anExistingStreamIsReusedOrRefused() throws {
        let first = try create("S", #"{"name":"S","subjects":["orders.*"]}"#)
        let again = try StreamConfig.checkCreate(subjectName: "S", body: Array(#"{"name":"S","subjects":["orders.*"],"max_msgs":0}"#.utf8),
                                                 existing: [first])
        #expect(again.existed && again.config == first)
        #expect(createError("S", #"{"name":"S","subjects":["orders.*"],"max_msgs":5}"#, existing: [first]) == .streamNameExists)
        #expect(createError("T", #"{"name":"T","subjects":["orders.new"]}"#, existing: [first]) == .streamSubjectOverlap)
        #expect(createError("T", #"{"name":"T","subjects":[">"]}"#, existing: [first]) == .streamSubjectOverlap)
        #expect(createError("T", #"{"name":"T","subjects":["orders.a.b"]}"#, existing: [first]) == nil)
    }

    @Test func subjectCollisions() {
        #expect(StreamConfig.subjectsCollide("a.*", "a.b"))
        #expect(StreamConfig.subjectsCollide("a.>", "*.b.c"))
        #expect(StreamConfig.subjectsCollide("*.b", "a.*"))
        #expect(!StreamConfig.subjectsCollide("a.*", "a.b.c"))
        #expect(!StreamConfig.subjectsCollide("a.>", "a"))
        #expect(!StreamConfig.subjectsCollide("a.b", "a.c"))
    }
}

@Suite struct APIJSONTests {
    @Test func errorObjectsAndEnvelopes() {
        #expect(text(JetStreamAPIResponse.error("stream_info_response", .streamNotFound))
                == #"{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#)
        #expect(text(JetStreamAPIResponse.error("stream_create_response", .streamInvalidConfig(#"subject "a.>" overlaps"#)))
                == #"{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{"code":500,"err_code":10052,"description":"subject \"a.\u003e\" overlaps"}}"#)
        #expect(JetStreamAPIError.streamStoreFailed("maximum messages exceeded").code == 503)
    }

    @Test func pubAcksAreByteForByte() {
        #expect(text(JetStreamAPIResponse.pubAck(stream: "S", sequence: 1)) == #"{"stream":"S", "seq":1}"#)
        #expect(text(JetStreamAPIResponse.pubAck(stream: "S", sequence: 7, duplicate: true)) == #"{"stream":"S", "seq":7,"duplicate": true}"#)
        #expect(text(JetStreamAPIResponse.pubAck(stream: "S", sequence: 2, domain: "hub"))
                == #"{"stream":"S", "domain":"hub", "seq":2}"#)
        #expect(text(JetStreamAPIResponse.pubAckError(stream: "S", .streamNotMatch))
                == #"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"S","seq":0}"#)
    }

    @Test func timesAreWrittenAsGoWritesThem() {
        func time(_ ns: Int64) -> String { var out: [UInt8] = []; JetStreamJSON.appendTime(ns, to: &out); return text(out) }
        #expect(time(0) == #""0001-01-01T00:00:00Z""#)
        #expect(time(1_700_000_000_000_000_000) == #""2023-11-14T22:13:20Z""#)
        #expect(time(1_700_000_000_120_000_000) == #""2023-11-14T22:13:20.12Z""#)
        #expect(time(1_700_000_000_000_000_001) == #""2023-11-14T22:13:20.000000001Z""#)
    }

    @Test func streamStateWritesOptionalCountsOnlyWhenSet() {
        var state = StreamState()
        var out: [UInt8] = []
        StreamInfoState(state).write(to: &out)
        #expect(text(out) == #"{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#)
        state.messages = 2; state.bytes = 70; state.firstSequence = 1; state.lastSequence = 3; state.deleted = 1; state.subjects = 2
        state.firstTime = 1_700_000_000_000_000_000; state.lastTime = 1_700_000_000_500_000_000
        out = []
        StreamInfoState(state, consumers: 1).write(to: &out)
        #expect(text(out) == #"{"messages":2,"bytes":70,"first_seq":1,"first_ts":"2023-11-14T22:13:20Z","last_seq":3,"last_ts":"2023-11-14T22:13:20.5Z","num_subjects":2,"num_deleted":1,"consumer_count":1}"#)
    }

    @Test func storeErrorsMapPerCall() {
        #expect(StreamStoreError.maximumMessagesExceeded.apiError(in: .publish) == .streamStoreFailed("maximum messages exceeded"))
        #expect(StreamStoreError.messageTooLarge(size: 10, limit: 5).apiError(in: .publish) == .messageExceedsMaximum)
        #expect(StreamStoreError.notFound.apiError(in: .messageGet) == .noMessageFound)
        #expect(StreamStoreError.notFound.apiError(in: .messageDelete) == .streamMessageDeleteFailed("no message found"))
        #expect(StreamStoreError.invalidPurge.apiError(in: .purge) == .badRequest)
        #expect(StreamStoreError.closed.apiError(in: .purge) == .streamGeneral("stream store closed"))
        #expect(JetStreamAPIError.messageDeleteMissing(sequence: 3, lastSequence: 9, storage: .memory) == .sequenceNotFound(3))
        #expect(JetStreamAPIError.messageDeleteMissing(sequence: 0, lastSequence: 9, storage: .file)
                == .streamMessageDeleteFailed("no message found"))
        #expect(JetStreamAPIError.messageDeleteMissing(sequence: 10, lastSequence: 9, storage: .file)
                == .streamMessageDeleteFailed("stream store EOF"))
        #expect(JetStreamAPIError.messageDeleteMissing(sequence: 4, lastSequence: 9, storage: .file).text == "sequence 4 not found")
    }
}
