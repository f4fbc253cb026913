// jetstream-bench --consumer: the consumer half alone, over a memory stream of N messages: a pull
// consumer with explicit acks fetches them in batches (MSG.NEXT with a batch) and acks every
// delivery; a push consumer with ack none takes them as they are stored. No network: the rates
// are what ConsumerManager itself costs per message.
import JetStream

func consumerBench(_ args: inout ArraySlice<String>) throws {
    var count = 1_000_000, size = 128, batch = 100
    while let arg = args.popFirst() {
        switch arg {
        case "--msgs": count = Int(args.popFirst() ?? "") ?? -1
        case "--size": size = Int(args.popFirst() ?? "") ?? -1
        case "--batch": batch = Int(args.popFirst() ?? "") ?? -1
        default: throw Failure(description: "unknown argument \(arg)")
        }
    }
    guard count > 0, size >= 0, batch > 0 else { throw Failure(description: "bad --msgs, --size or --batch") }
    var config = StreamConfig(name: "B")
    config.subjects = ["b.>"]
    config.storage = .memory
    config = try config.validated()
    let store = StreamStore(memory: config.limits)
    let stream = StreamContext(name: "B", config: config, store: store, created: 1, directory: nil)
    let streams = ["B": stream]
    let manager = ConsumerManager(hasInterest: { _ in true })
    let payload = [UInt8](repeating: 0x61, count: size)
    var now: Int64 = 1
    for _ in 0..<count {
        now += 1
        let seq = try store.store(subject: "b.x", payload: payload, timestamp: now)
        _ = manager.stored(stream: stream, sequence: seq, subject: "b.x", now: now)
    }
    func call(_ subject: String, _ body: String, reply: String = "_INBOX.b") -> [EngineAction] {
        manager.handle(InboundMessage(subject: subject, reply: reply, payload: Array(body.utf8)), streams: streams, now: now)
    }
    _ = call("$JS.API.CONSUMER.CREATE.B.P", #"{"stream_name":"B","config":{"durable_name":"P","ack_policy":"explicit","max_ack_pending":-1}}"#)
    var delivered = 0
    var acks: [String] = []
    acks.reserveCapacity(batch)
    let t0 = seconds()
    var ackTime = 0.0
    while delivered < count {
        acks.removeAll(keepingCapacity: true)
        for case .send(_, _, let reply, _, _) in call("$JS.API.CONSUMER.MSG.NEXT.B.P", String(batch)) where !reply.isEmpty {
            acks.append(reply)
        }
        if acks.isEmpty { throw Failure(description: "no deliveries after \(delivered)") }
        delivered += acks.count
        let a0 = seconds()
        for ack in acks { _ = call(ack, "", reply: "") }
        ackTime += seconds() - a0
    }
    let t1 = seconds()
    print("pull: \(delivered) msgs of \(size) B in batches of \(batch), each acked: \(String(format1: t1 - t0)) s = \(Int(Double(delivered) / (t1 - t0))) msg/s (acks \(Int(Double(delivered) / ackTime)) /s alone)")

    // Push, ack none: deliveries happen inside stored().
    let push = StreamStore(memory: config.limits)
    let pushStream = StreamContext(name: "Q", config: config, store: push, created: 1, directory: nil)
    _ = manager.handle(InboundMessage(subject: "$JS.API.CONSUMER.CREATE.Q.D", reply: "_INBOX.b",
                                      payload: Array(#"{"stream_name":"Q","config":{"durable_name":"D","deliver_subject":"out"}}"#.utf8)),
                       streams: ["Q": pushStream], now: now)
    var pushed = 0
    let t2 = seconds()
    for _ in 0..<count {
        now += 1
        let seq = try push.store(subject: "b.x", payload: payload, timestamp: now)
        pushed += manager.stored(stream: pushStream, sequence: seq, subject: "b.x", now: now).count
    }
    let t3 = seconds()
    print("push: \(pushed) deliveries of \(size) B as stored (store included): \(String(format1: t3 - t2)) s = \(Int(Double(pushed) / (t3 - t2))) msg/s")
}
