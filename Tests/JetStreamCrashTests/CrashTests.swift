// SIGKILL during a publish load, restart on the same store: what was acknowledged survives.
// Each round: a pull consumer takes 10 messages and acks 4; a load client publishes with acks
// (64 in flight, a Nats-Msg-Id on every message); the broker is killed with SIGKILL once a random
// number of PubAcks has come back, and restarted on the same store directory. Then:
// - a consumer reading the whole load subject sees every acknowledged message at the sequence its
//   PubAck named, each id once, ids in publish order;
// - publishing an acknowledged id again is answered `"duplicate": true` with the original sequence;
// - a torn record appended to the stream's newest block file is cut: the next message takes the next
//   sequence and reads back;
// - the 6 unacknowledged deliveries of the pull consumer come again (acks may be lost too: 2.9.10
//   writes consumer state every 100 ms, so redelivery of acked messages is allowed, not required).
// JS_CRASH_ROUNDS (default 5) sets the number of rounds per broker; JS_CRASH_SEED the random seed.
// nats-server 2.9.10 runs it as the proof that the test holds; ours runs once its `-js -sd <dir>`
// INFO says "jetstream":true.
import Foundation
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

enum CrashEnvironment {
    static let environment = ProcessInfo.processInfo.environment
    static var rounds: Int { environment["JS_CRASH_ROUNDS"].flatMap(Int.init).map { max(1, $0) } ?? 5 }
    static var seed: UInt64 { environment["JS_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max) }
    static var referencePath: String { environment["NATS_REFERENCE_BIN"] ?? "/usr/sbin/nats-server" }
    static var referenceAvailable: Bool { FileManager.default.isExecutableFile(atPath: referencePath) }
    static var required: Bool { environment["REQUIRE_PEERS"] == "1" }

    static var oursPath: String? {
        if let path = environment["NATS_SERVER_BIN"], !path.isEmpty { return path }
        return try? builtExecutable("nats-server")
    }

    /// Whether our broker runs JetStream: `jetstream` in NATS_SERVER_CAPABILITIES, or `-js -sd <tmp>`
    /// starts it and its INFO says `"jetstream":true` (probed once).
    static let oursHasJetStream: Bool = {
        let named = (environment["NATS_SERVER_CAPABILITIES"] ?? "").split(separator: ",")
            .contains { $0.trimmingCharacters(in: .whitespaces) == "jetstream" }
        if named { return true }
        guard let path = oursPath, let store = try? temporaryDirectory("js-probe") else { return false }
        defer { removeTemporary(store) }
        guard let broker = try? JetStreamBroker.start(binary: path, store: store, readyTimeout: 10) else { return false }
        defer { broker.kill9() }
        return broker.info.contains(#""jetstream":true"#)
    }()
}

/// A broker process with `-js -sd <store>` on a free loopback port.
final class JetStreamBroker {
    let process: Process
    let port: Int
    /// The INFO line a first connection read.
    let info: String

    private init(process: Process, port: Int, info: String) {
        self.process = process
        self.port = port
        self.info = info
    }

    /// Starts `binary` and waits until a connection reads its INFO line.
    /// Throws `TestFailure` when it exits or does not accept within `readyTimeout` seconds.
    static func start(binary: String, store: String, readyTimeout: Double = 20) throws -> JetStreamBroker {
        var lastError = ""
        for _ in 0..<5 {
            let port = try freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", store]
            let log = store + "/broker-\(port).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? handle.close()
            let deadline = Date().addingTimeInterval(readyTimeout)
            while Date() < deadline, process.isRunning {
                if let fd = try? connectLoopback(port: port, timeoutSeconds: 2) {
                    defer { close(fd) }
                    var bytes: [UInt8] = []
                    var chunk = [UInt8](repeating: 0, count: 4096)
                    while !bytes.contains(10) {
                        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                        if n <= 0 { break }
                        bytes += chunk[0..<n]
                    }
                    let line = String(decoding: bytes, as: UTF8.self)
                    if line.hasPrefix("INFO ") { return JetStreamBroker(process: process, port: port, info: line) }
                }
                usleep(20_000)
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            lastError = (try? String(contentsOfFile: log, encoding: .utf8)).map { String($0.suffix(600)) } ?? ""
        }
        throw TestFailure("\(binary) -js -sd \(store) did not start; log: \(lastError)")
    }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(10_000) }
        }
        kill9()
    }
}

/// What the load client saw: the acknowledged ids and the sequence each PubAck named.
final class LoadRecord: Sendable {
    private let state = Mutex<(acked: [Int: Int], error: String?)>(([:], nil))

    func ack(id: Int, seq: Int) { state.withLock { $0.acked[id] = seq } }
    func fail(_ message: String) { state.withLock { $0.error = message } }
    var count: Int { state.withLock { $0.acked.count } }
    var acked: [Int: Int] { state.withLock { $0.acked } }
    var error: String? { state.withLock { $0.error } }
}

/// Publishes `crash.<id % 4>` with `Nats-Msg-Id: c-<id>` from `firstID` on, `window` PubAcks in
/// flight, until the connection breaks; records every PubAck. Runs on its own thread.
func runLoad(port: Int, firstID: Int, window: Int, record: LoadRecord, finished: DispatchSemaphore) {
    defer { finished.signal() }
    guard let client = try? WireClient(port: port, inbox: "_load") else {
        record.fail("the load client could not connect")
        return
    }
    var nextID = firstID
    var inFlight = 0
    while true {
        do {
            var batch: [UInt8] = []
            while inFlight < window {
                batch += WireClient.publication("crash.\(nextID % 4)", reply: "_load.\(nextID)",
                                                headers: [("Nats-Msg-Id", "c-\(nextID)")], payload: "payload \(nextID)")
                nextID += 1
                inFlight += 1
            }
            try client.send(batch)
            guard let answer = try client.readMessage(until: Date().addingTimeInterval(10)) else {
                record.fail("no PubAck within 10 s")
                return
            }
            guard answer.subject.hasPrefix("_load."), let id = Int(answer.subject.dropFirst("_load.".count)) else { continue }
            inFlight -= 1
            guard let json = answer.json, json["error"] == nil, let seq = json["seq"] as? Int, json["duplicate"] == nil else {
                record.fail("unexpected PubAck for c-\(id): \(answer.text)")
                return
            }
            record.ack(id: id, seq: seq)
        } catch {
            // The broker was killed: the connection ends, and so does the load.
            return
        }
    }
}

/// One broker's crash run: `rounds` rounds of load, SIGKILL, restart, checks.
struct CrashRun {
    var binary: String
    var rounds: Int
    var seed: UInt64

    /// Plays the rounds; returns what did not hold (empty when everything did). Throws when the
    /// broker or a connection fails in a way that stops the run.
    func run() throws -> [String] {
        var failures: [String] = []
        func check(_ condition: Bool, _ message: @autoclosure () -> String) {
            if !condition { failures.append(message()) }
        }
        let store = try temporaryDirectory("js-crash")
        defer { removeTemporary(store) }
        var broker = try JetStreamBroker.start(binary: binary, store: store)
        defer { broker.stop() }
        var random = SeededGenerator(seed: seed)
        var nextID = 1
        var allAcked: [Int: Int] = [:]

        var client = try WireClient(port: broker.port)
        try expectSuccess(client.request("$JS.API.STREAM.CREATE.CRASH", #"{"name":"CRASH","subjects":["crash.*","work.*"]}"#),
                          "stream create")
        try expectSuccess(client.request("$JS.API.CONSUMER.DURABLE.CREATE.CRASH.work",
                                         #"{"stream_name":"CRASH","config":{"durable_name":"work","ack_policy":"explicit","ack_wait":2000000000,"filter_subject":"work.*"}}"#),
                          "work consumer create")

        for round in 1...rounds {
            let context = "round \(round) (seed \(seed))"
            // A pull consumer's deliveries, 4 of 10 acknowledged.
            var workSeqs: [Int] = []
            for k in 0..<10 {
                let ack = try client.request("work.\(round)", "work \(round).\(k)")
                guard let seq = ack.json?["seq"] as? Int else { throw TestFailure("\(context): work PubAck \(ack.text)") }
                workSeqs.append(seq)
            }
            let fetched = try fetch(client, consumer: "work", wanting: Set(workSeqs), context: context)
            var unacked = Set(workSeqs)
            for (seq, message) in fetched where workSeqs.firstIndex(of: seq).map({ $0 % 3 == 0 }) ?? true {
                // Acks with a reply are confirmed with an empty message once processed.
                _ = try client.request(message.reply, "+ACK")
                unacked.remove(seq)
            }
            check(unacked.count == 6, "\(context): 6 work messages stay unacknowledged")

            // The load, and SIGKILL once `threshold` PubAcks came back.
            let record = LoadRecord()
            let finished = DispatchSemaphore(value: 0)
            let threshold = Int.random(in: 100...1500, using: &random)
            let port = broker.port
            let firstID = nextID
            Thread { runLoad(port: port, firstID: firstID, window: 64, record: record, finished: finished) }.start()
            let deadline = Date().addingTimeInterval(30)
            while record.count < threshold, record.error == nil, Date() < deadline { usleep(1_000) }
            broker.kill9()
            if finished.wait(timeout: .now() + 30) == .timedOut { throw TestFailure("\(context): the load client did not stop") }
            if let error = record.error { throw TestFailure("\(context): load: \(error)") }
            // A write torn by the crash: the start of a record at the end of the stream's newest block.
            let tornBlock = try tearNewestBlock(in: store, stream: "CRASH", using: &random)
            let acked = record.acked
            check(acked.count >= threshold, "\(context): \(acked.count) PubAcks before the kill, wanted \(threshold)")
            nextID = (acked.keys.max() ?? firstID) + 1_000
            allAcked.merge(acked) { old, _ in old }

            broker = try JetStreamBroker.start(binary: binary, store: store)
            client = try connectWhenReady(port: broker.port, context: context)

            // Every acknowledged message, at its sequence, once, in order.
            let checker = "check\(round)"
            try expectSuccess(client.request("$JS.API.CONSUMER.DURABLE.CREATE.CRASH.\(checker)",
                                             #"{"stream_name":"CRASH","config":{"durable_name":"\#(checker)","ack_policy":"none","filter_subject":"crash.*"}}"#),
                              "\(context): checker create")
            let stored = try readAll(client, consumer: checker, context: context)
            _ = try client.request("$JS.API.CONSUMER.DELETE.CRASH.\(checker)")
            var seen: [Int: Int] = [:]
            var previous = 0
            var outOfOrder = 0
            var duplicates = 0
            for (seq, id) in stored {
                if seen[id] != nil { duplicates += 1 }
                seen[id] = seq
                if id <= previous { outOfOrder += 1 }
                previous = id
            }
            check(duplicates == 0, "\(context): \(duplicates) ids stored twice")
            check(outOfOrder == 0, "\(context): \(outOfOrder) ids out of publish order")
            let missing = allAcked.filter { seen[$0.key] != $0.value }
            check(missing.isEmpty, """
                \(context): \(missing.count) of \(allAcked.count) acknowledged messages missing or moved after SIGKILL \
                (e.g. \(missing.sorted { $0.key < $1.key }.prefix(5).map { "c-\($0.key)@\($0.value) -> \(seen[$0.key].map(String.init) ?? "absent")" }))
                """)

            // The torn tail was cut: the next message takes the next sequence and reads back.
            let info = try client.request("$JS.API.STREAM.INFO.CRASH")
            let lastSequence = (info.json?["state"] as? [String: Any])?["last_seq"] as? Int ?? -1
            let fresh = try client.request("crash.fresh", "after the torn tail of \(tornBlock)")
            check(fresh.json?["seq"] as? Int == lastSequence + 1,
                  "\(context): after a torn \(tornBlock), last_seq \(lastSequence) and a new message got \(fresh.text)")
            let readBack = try client.request("$JS.API.STREAM.MSG.GET.CRASH", #"{"seq":\#(lastSequence + 1)}"#)
            check((readBack.json?["message"] as? [String: Any])?["subject"] as? String == "crash.fresh",
                  "\(context): the message after the torn tail: \(readBack.text)")

            // De-duplication survives: an acknowledged id is a duplicate with its first sequence.
            let probes = [acked.keys.max(), acked.keys.min()].compactMap { $0 }
            for id in probes {
                let answer = try client.request("crash.\(id % 4)", "again", headers: [("Nats-Msg-Id", "c-\(id)")])
                check(answer.json?["duplicate"] as? Bool == true, "\(context): c-\(id) again: \(answer.text)")
                check(answer.json?["seq"] as? Int == acked[id], "\(context): c-\(id) again: \(answer.text)")
            }

            // The unacknowledged deliveries come again.
            let redelivered = try fetch(client, consumer: "work", wanting: unacked, context: context)
            check(unacked.isSubset(of: Set(redelivered.keys)),
                    "\(context): not redelivered: \(unacked.subtracting(redelivered.keys).sorted())")
            for message in redelivered.values {
                _ = try client.request(message.reply, "+ACK")
            }
        }
        return failures
    }

    /// Appends the first bytes of a record (a length that promises more, a sequence, a few random bytes)
    /// to the most recently written `.blk` file under the stream's directory, as a crash in the middle of
    /// a write leaves it; returns the file's path relative to the store. Both brokers keep a stream's
    /// messages in `<n>.blk` files in a directory named after the stream.
    private func tearNewestBlock(in store: String, stream: String, using random: inout SeededGenerator) throws -> String {
        guard let walker = FileManager.default.enumerator(atPath: store) else { throw TestFailure("cannot list \(store)") }
        var newest: (path: String, date: Date)?
        while let relative = walker.nextObject() as? String {
            guard relative.hasSuffix(".blk"), relative.split(separator: "/").contains(Substring(stream)) else { continue }
            let path = store + "/" + relative
            guard let date = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date else { continue }
            if newest == nil || date >= newest!.date { newest = (relative, date) }
        }
        guard let block = newest else { throw TestFailure("no .blk file of stream \(stream) under \(store)") }
        var torn: [UInt8] = [200, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 6) + [0, 0]
        torn += (0..<Int.random(in: 4...20, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let fd = open(store + "/" + block.path, O_WRONLY | O_APPEND)
        guard fd >= 0 else { throw TestFailure("open \(block.path): errno \(errno)") }
        defer { close(fd) }
        guard torn.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == torn.count else {
            throw TestFailure("append to \(block.path): errno \(errno)")
        }
        return block.path
    }

    private func expectSuccess(_ answer: WireMessage, _ what: String) throws {
        guard let json = answer.json, json["error"] == nil else { throw TestFailure("\(what): \(answer.text)") }
    }

    /// Connects and asks for the stream until JetStream answers (it may still be recovering).
    private func connectWhenReady(port: Int, context: String) throws -> WireClient {
        let deadline = Date().addingTimeInterval(30)
        var last = ""
        while Date() < deadline {
            if let client = try? WireClient(port: port),
               let answer = try? client.request("$JS.API.STREAM.INFO.CRASH", timeout: 2) {
                if let json = answer.json, json["error"] == nil { return client }
                last = answer.status.map { "status \($0)" } ?? answer.text
            }
            usleep(50_000)
        }
        throw TestFailure("\(context): the restarted broker's stream did not answer within 30 s: \(last)")
    }

    /// Pulls from `consumer` until every sequence in `wanting` was delivered (or 20 s passed);
    /// returns the deliveries by stream sequence (the last one of a sequence wins).
    private func fetch(_ client: WireClient, consumer: String, wanting: Set<Int>,
                       context: String) throws -> [Int: WireMessage] {
        var got: [Int: WireMessage] = [:]
        let deadline = Date().addingTimeInterval(20)
        while !wanting.isSubset(of: Set(got.keys)), Date() < deadline {
            let reply = client.newReply()
            try client.send(WireClient.publication("$JS.API.CONSUMER.MSG.NEXT.CRASH.\(consumer)", reply: reply,
                                                   payload: #"{"batch":20,"expires":1000000000}"#))
            while let message = try client.readMessage(until: Date().addingTimeInterval(5)) {
                if message.subject == reply, message.status != nil { break }
                guard let seq = streamSequence(message.reply) else { continue }
                got[seq] = message
            }
        }
        return got
    }

    /// Reads the whole load subject through `consumer` (ack none): (stream sequence, id) in delivery order.
    private func readAll(_ client: WireClient, consumer: String, context: String) throws -> [(Int, Int)] {
        var out: [(Int, Int)] = []
        while true {
            let reply = client.newReply()
            try client.send(WireClient.publication("$JS.API.CONSUMER.MSG.NEXT.CRASH.\(consumer)", reply: reply,
                                                   payload: #"{"batch":1000,"no_wait":true}"#))
            var count = 0
            // A filled batch ends without a status message; a short one ends with 404 or 408.
            while count < 1000 {
                guard let message = try client.readMessage(until: Date().addingTimeInterval(10)) else {
                    throw TestFailure("\(context): reading the stream stalled after \(out.count) messages")
                }
                if message.subject == reply, message.status != nil { break }
                guard let seq = streamSequence(message.reply) else { continue }
                count += 1
                // Messages without a load id (those published after a restart) count for the batch only.
                if let idText = message.header("Nats-Msg-Id"), idText.hasPrefix("c-"), let id = Int(idText.dropFirst(2)) {
                    out.append((seq, id))
                }
            }
            if count == 0 { return out }
        }
    }

    /// The stream sequence of a 9-token `$JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<cseq>.<ts>.<pending>`.
    private func streamSequence(_ ackSubject: String) -> Int? {
        let tokens = ackSubject.split(separator: ".")
        guard tokens.count == 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        return Int(tokens[5])
    }
}

@Suite("JetStream: SIGKILL during a publish load, restart on the same store", .serialized)
struct CrashTests {
    @Test("nats-server 2.9.10 -js keeps every acknowledged message, its de-duplication and its unacknowledged deliveries",
          .enabled(if: CrashEnvironment.referenceAvailable || CrashEnvironment.required,
                   "nats-server 2.9.10 is not installed (REQUIRE_PEERS=1 turns this into a failure)"))
    func reference() async throws {
        try #require(CrashEnvironment.referenceAvailable, "nats-server 2.9.10 missing at \(CrashEnvironment.referencePath)")
        let run = CrashRun(binary: CrashEnvironment.referencePath, rounds: CrashEnvironment.rounds, seed: CrashEnvironment.seed)
        let failures = try await offPool { try run.run() }
        #expect(failures.isEmpty, Comment(rawValue: failures.joined(separator: "\n")))
    }

    @Test("our broker -js keeps every acknowledged message, its de-duplication and its unacknowledged deliveries",
          .enabled(if: CrashEnvironment.oursHasJetStream, "our broker has no JetStream yet (-js -sd <dir> refused or INFO lacks jetstream:true)"))
    func ours() async throws {
        let binary = try #require(CrashEnvironment.oursPath)
        let run = CrashRun(binary: binary, rounds: CrashEnvironment.rounds, seed: CrashEnvironment.seed)
        let failures = try await offPool { try run.run() }
        #expect(failures.isEmpty, Comment(rawValue: failures.joined(separator: "\n")))
    }
}
