// jetstream-bench: appends messages to a file-backed StreamStore in a fresh directory, closes it,
// reopens it (full recovery: every record read and verified) and loads every message back. One
// line per phase on stdout; the RSS lines show what the index costs per stored message.
//
//   jetstream-bench [--msgs N] [--size BYTES] [--subjects K] [--sync-every-write] [--keep]
//   jetstream-bench --reopen DIRECTORY
//   jetstream-bench --engine [--msgs N] [--size BYTES] [--subjects K] [--msg-id]
//   jetstream-bench --consumer [--msgs N] [--size BYTES] [--batch N]   (see ConsumerBench.swift)
//
// --keep leaves the store's directory in place (its path is printed); --reopen opens such a
// directory in a fresh process, so the RSS it reports is the recovered store's alone. --engine
// publishes through JetStreamEngine.handle instead (file stream, a reply subject, so every
// message gets its PubAck built; --msg-id adds a unique Nats-Msg-Id header): the whole publish
// path without the network.
//
// Exit status: 0, or 2 for bad arguments or a failed store call.
import Glibc
import JetStream

struct Failure: Error, CustomStringConvertible { let description: String }

func seconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Resident set size in bytes, from /proc/self/statm.
func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0, resident = 0
    guard withUnsafeMutablePointer(to: &size, { s in withUnsafeMutablePointer(to: &resident) { r in
        withVaList([s, r]) { vfscanf(file, "%ld %ld", $0) } } }) == 2 else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func run() throws {
    var count = 1_000_000, size = 128, subjects = 16, syncEveryWrite = false, keep = false, engine = false, msgID = false
    var args = CommandLine.arguments.dropFirst()
    while let arg = args.popFirst() {
        switch arg {
        case "--msgs": count = Int(args.popFirst() ?? "") ?? -1
        case "--size": size = Int(args.popFirst() ?? "") ?? -1
        case "--subjects": subjects = Int(args.popFirst() ?? "") ?? -1
        case "--sync-every-write": syncEveryWrite = true
        case "--keep": keep = true
        case "--reopen": return try reopen(args.popFirst() ?? "")
        case "--engine": engine = true
        case "--msg-id": msgID = true
        case "--consumer": return try consumerBench(&args)
        default: throw Failure(description: "unknown argument \(arg)")
        }
    }
    guard count > 0, size >= 0, subjects > 0 else { throw Failure(description: "bad --msgs, --size or --subjects") }
    var template = Array("/tmp/jetstream-bench-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp failed") }
    let directory = String(cString: made)
    defer { if keep { print("kept: \(directory)") } else { _ = system("rm -rf '\(directory)'") } }

    let names = (0..<subjects).map { "bench.subject.\($0)" }
    let payload = [UInt8](repeating: 0x61, count: size)
    if engine { return try publishThroughEngine(directory: directory, names: names, payload: payload, count: count, msgID: msgID) }
    let options = FileStoreOptions(syncEveryWrite: syncEveryWrite)
    var store = try StreamStore(directory: directory, limits: StreamLimits(), options: options)
    let t0 = seconds()
    for i in 0..<count { try store.store(subject: names[i % subjects], payload: payload) }
    store.close()
    let t1 = seconds()
    print("append: \(count) msgs of \(size) B in \(String(format1: t1 - t0)) s = \(Int(Double(count) / (t1 - t0))) msg/s")

    let rssBefore = residentBytes()
    store = try StreamStore(directory: directory, limits: StreamLimits(), options: options)
    let t2 = seconds()
    let rssAfter = residentBytes()
    print("reopen: \(store.state.messages) msgs in \(String(format1: t2 - t1)) s; RSS +\((rssAfter - rssBefore) / 1024) KiB = \((rssAfter - rssBefore) / count) B/msg")
    var total = 0
    for seq in 1...UInt64(count) { total &+= try store.load(seq).payload.count }
    let t3 = seconds()
    store.close()
    print("load: \(count) msgs in \(String(format1: t3 - t2)) s = \(Int(Double(count) / (t3 - t2))) msg/s (\(total) payload bytes)")
}

/// A consumer half with no consumers.
final class NoConsumers: ConsumerHandling {
    func recover(stream: StreamContext, now: Int64) throws(StreamStoreError) -> [EngineAction] { [] }
    func handle(_ message: InboundMessage, streams: [String: StreamContext], now: Int64) -> [EngineAction] { [] }
    func stored(stream: StreamContext, sequence: UInt64, subject: String, now: Int64) -> [EngineAction] { [] }
    func consumerInfos(stream: String, now: Int64) -> (infos: [[UInt8]], actions: [EngineAction]) { ([], []) }
    func hasInterest(stream: StreamContext, subject: String) -> Bool { false }
    func streamChanged(stream: StreamContext, now: Int64) -> [EngineAction] { [] }
    func streamDeleted(stream: StreamContext) -> [EngineAction] { [] }
    func consumerCount(stream: String) -> Int { 0 }
    var nextDeadline: Int64? { nil }
    func tick(now: Int64) -> [EngineAction] { [] }
    func persist() {}
}

func publishThroughEngine(directory: String, names: [String], payload: [UInt8], count: Int, msgID: Bool) throws {
    let options = JetStreamOptions(storeDirectory: directory, maxMemory: 1 << 30, maxStore: 1 << 40)
    let engine = JetStreamEngine(options: options, consumers: NoConsumers())
    do { _ = try engine.start(now: wallClockNanoseconds()) } catch { throw Failure(description: error.description) }
    let create = InboundMessage(subject: "$JS.API.STREAM.CREATE.BENCH", reply: "r",
                                payload: Array(#"{"name":"BENCH","subjects":["bench.>"]}"#.utf8))
    _ = engine.handle(create, now: wallClockNanoseconds())
    var acks = 0
    let t0 = seconds()
    for i in 0..<count {
        var headers: [UInt8] = []
        if msgID { headers = Array("NATS/1.0\r\nNats-Msg-Id: \(i)\r\n\r\n".utf8) }
        let message = InboundMessage(subject: names[i % names.count], reply: "_INBOX.ack", headers: headers, payload: payload)
        acks += engine.handle(message, now: wallClockNanoseconds()).count
    }
    let t1 = seconds()
    engine.shutdown()
    guard acks == count else { throw Failure(description: "\(acks) PubAcks for \(count) messages") }
    print("engine publish: \(count) msgs of \(payload.count) B\(msgID ? " with Nats-Msg-Id" : "") in \(String(format1: t1 - t0)) s = \(Int(Double(count) / (t1 - t0))) msg/s")
}

func reopen(_ directory: String) throws {
    let rssBefore = residentBytes()
    let t0 = seconds()
    let store = try StreamStore(directory: directory, limits: StreamLimits())
    let t1 = seconds()
    let rssAfter = residentBytes()
    let count = Int(store.state.messages)
    print("reopen: \(count) msgs in \(String(format1: t1 - t0)) s; RSS \(rssBefore / 1024) -> \(rssAfter / 1024) KiB, +\((rssAfter - rssBefore) / max(count, 1)) B/msg")
    store.close()
}

extension String {
    init(format1 value: Double) { self = String(Double(Int(value * 1000)) / 1000) }
}

do {
    try run()
} catch {
    print("jetstream-bench: \(error)")
    exit(2)
}
