import Testing
@testable import JetStream
import TestSupport

/// A consumer half that records what the engine tells it and answers from settable values.
final class FakeConsumers: ConsumerHandling {
    func consumerInfos(stream: String, now: Int64) -> (infos: [[UInt8]], actions: [EngineAction]) { ([], []) }
    var interest = true
    var counts: [String: Int] = [:]
    var stored: [(stream: String, sequence: UInt64, subject: String)] = []
    var changed: [String] = []
    var deleted: [String] = []
    var recovered: [String] = []
    var handled: [String] = []
    var persisted = 0
    var deadline: Int64?
    var ticks: [Int64] = []
    /// What `handle` answers to the request's reply subject (a consumer API response), if set.
    var answer: [UInt8]?
    /// Set to make `recover` fail.
    var recoverError: StreamStoreError?

    func recover(stream: StreamContext, now: Int64) throws(StreamStoreError) -> [EngineAction] {
        if let recoverError { throw recoverError }
        recovered.append(stream.name)
        return []
    }

    func handle(_ message: InboundMessage, streams: [String: StreamContext], now: Int64) -> [EngineAction] {
        handled.append(message.subject)
        guard let answer, !message.reply.isEmpty else { return [] }
        return [.reply(message.reply, answer)]
    }

    func stored(stream: StreamContext, sequence: UInt64, subject: String, now: Int64) -> [EngineAction] {
        stored.append((stream.name, sequence, subject))
        return []
    }

    func hasInterest(stream: StreamContext, subject: String) -> Bool { interest }
    func streamChanged(stream: StreamContext, now: Int64) -> [EngineAction] { changed.append(stream.name); return [] }
    func streamDeleted(stream: StreamContext) -> [EngineAction] { deleted.append(stream.name); return [] }
    func consumerCount(stream: String) -> Int { counts[stream] ?? 0 }
    var nextDeadline: Int64? { deadline }
    func tick(now: Int64) -> [EngineAction] { ticks.append(now); return [] }
    func persist() { persisted += 1 }
}

/// An engine on a temporary directory, driven with a clock the test sets.
final class EngineHarness {
    let directory: String
    let consumers = FakeConsumers()
    var engine: JetStreamEngine
    var now: Int64 = 1_700_000_000_000_000_000
    var options: JetStreamOptions

    init(_ tag: String, maxMemory: Int64 = 1 << 30, maxStore: Int64 = 10 << 30, domain: String = "") throws {
        directory = try temporaryDirectory(tag)
        options = JetStreamOptions(storeDirectory: directory + "/jetstream", maxMemory: maxMemory, maxStore: maxStore, domain: domain)
        engine = JetStreamEngine(options: options, consumers: consumers)
    }

    deinit { removeTemporary(directory) }

    @discardableResult
    func start() throws -> [EngineAction] { try engine.start(now: now) }

    /// Stops the engine and starts a new one on the same directory (same fake consumers).
    @discardableResult
    func restart() throws -> [EngineAction] {
        engine.shutdown()
        engine = JetStreamEngine(options: options, consumers: consumers)
        return try engine.start(now: now)
    }

    /// Sends a message and returns every action.
    func send(_ subject: String, _ body: String = "", reply: String = "_INBOX.r", headers: [(String, String)] = []) -> [EngineAction] {
        var block: [UInt8] = []
        if !headers.isEmpty {
            block = Array("NATS/1.0\r\n".utf8)
            for (k, v) in headers { block += Array("\(k): \(v)\r\n".utf8) }
            block += Array("\r\n".utf8)
        }
        return engine.handle(InboundMessage(subject: subject, reply: reply, headers: block, payload: Array(body.utf8)), now: now)
    }

    /// The payload sent to the reply subject, as text; nil when there was none.
    func request(_ subject: String, _ body: String = "", headers: [(String, String)] = []) -> String? {
        let actions = send(subject, body, reply: "_INBOX.r", headers: headers)
        return Self.replies(actions, to: "_INBOX.r").first.map { String(decoding: $0.payload, as: UTF8.self) }
    }

    static func replies(_ actions: [EngineAction], to subject: String) -> [(headers: [UInt8], payload: [UInt8])] {
        actions.compactMap {
            if case .send(let s, _, _, let h, let p) = $0, s == subject { return (h, p) }
            return nil
        }
    }
}

func pubAck(_ stream: String, _ seq: UInt64, duplicate: Bool = false, domain: String = "") -> String {
    String(decoding: JetStreamAPIResponse.pubAck(stream: stream, sequence: seq, domain: domain, duplicate: duplicate), as: UTF8.self)
}

func pubAckError(_ stream: String, _ error: JetStreamAPIError) -> String {
    String(decoding: JetStreamAPIResponse.pubAckError(stream: stream, error), as: UTF8.self)
}
