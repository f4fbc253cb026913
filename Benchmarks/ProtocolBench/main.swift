// ProtocolBench: micro-benchmarks for NATSProtocol (both parsers, subject trie, encoder).
// Not a SwiftPM target: scripts/microbench.sh compiles this file together with
// Sources/NATSProtocol/*.swift using `swiftc -O` and runs it. Reports numbers only; asserts nothing.

let clock = ContinuousClock()

func seconds(_ duration: Duration) -> Double {
    let parts = duration.components
    return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
}

/// Runs `body` once to warm up, then `rounds` times; returns the best time in seconds.
func best(rounds: Int = 5, _ body: () -> Void) -> Double {
    body()
    var fastest = Double.infinity
    for _ in 0..<rounds {
        let start = clock.now
        body()
        fastest = min(fastest, seconds(clock.now - start))
    }
    return fastest
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func format(_ value: Double, decimals: Int = 1) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return String(rounded)
}

var sink: UInt64 = 0  // defeats dead-code elimination

// MARK: - Parser

struct CountingHandler: ClientOpHandler {
    var messages = 0
    var payloadBytes = 0
    mutating func connect(json: UnsafeRawBufferPointer) -> Bool { true }
    mutating func pub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        messages += 1
        payloadBytes += payload.count + subject.count
        return true
    }
    mutating func hpub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        messages += 1
        payloadBytes += headers.count + payload.count
        return true
    }
    mutating func sub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer) -> Bool { true }
    mutating func unsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool { true }
    mutating func ping() -> Bool { true }
    mutating func pong() -> Bool { true }
    mutating func info(json: UnsafeRawBufferPointer) -> Bool { true }
    mutating func ok() -> Bool { true }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { true }
}

func benchParser(payloadSize: Int, chunkSize: Int) -> UInt64 {
    var stream: [UInt8] = []
    let payload = [UInt8](repeating: 0x61, count: payloadSize)
    while stream.count < 8 << 20 {
        Encoder.pub(&stream, subject: "bench.subject.\(stream.count % 7)", payload: payload)
    }
    var handler = CountingHandler()
    let time = best {
        var parser = ClientParser(maxControlLine: 4096, maxPayload: 1 << 20)
        stream.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let end = min(offset + chunkSize, all.count)
                _ = parser.parse(UnsafeRawBufferPointer(rebasing: all[offset..<end]), into: &handler)
                offset = end
            }
        }
    }
    let checksum = UInt64(handler.payloadBytes)
    let perRound = handler.messages / 6
    print("parser  PUB \(pad(String(payloadSize) + "B", 5)) chunks \(pad(String(chunkSize), 6))  "
        + "\(format(Double(stream.count) / time / 1e6)) MB/s  \(format(Double(perRound) / time / 1e6, decimals: 2)) M msgs/s")
    return checksum
}

/// Counts what the client library's parser delivers.
struct CountingServerHandler: ServerOpHandler {
    var messages = 0
    var payloadBytes = 0
    mutating func info(json: UnsafeRawBufferPointer) -> Bool { true }
    mutating func msg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool {
        messages += 1
        payloadBytes += payload.count + subject.count
        return true
    }
    mutating func hmsg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        messages += 1
        payloadBytes += headers.count + payload.count
        return true
    }
    mutating func ping() -> Bool { true }
    mutating func pong() -> Bool { true }
    mutating func ok() -> Bool { true }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { true }
}

/// The client side: MSG frames through `ServerParser`, cut into `chunkSize` reads.
func benchServerParser(payloadSize: Int, chunkSize: Int) -> UInt64 {
    var stream: [UInt8] = []
    let payload = [UInt8](repeating: 0x61, count: payloadSize)
    while stream.count < 8 << 20 {
        Encoder.msg(&stream, subject: "bench.subject.\(stream.count % 7)", sid: "1", payload: payload)
    }
    var handler = CountingServerHandler()
    let time = best {
        var parser = ServerParser()
        stream.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let end = min(offset + chunkSize, all.count)
                _ = parser.parse(UnsafeRawBufferPointer(rebasing: all[offset..<end]), into: &handler)
                offset = end
            }
        }
    }
    let checksum = UInt64(handler.payloadBytes)
    let perRound = handler.messages / 6
    print("parser  MSG \(pad(String(payloadSize) + "B", 5)) chunks \(pad(String(chunkSize), 6))  "
        + "\(format(Double(stream.count) / time / 1e6)) MB/s  \(format(Double(perRound) / time / 1e6, decimals: 2)) M msgs/s")
    return checksum
}

// MARK: - Trie

final class Sub {
    let id: Int
    init(_ id: Int) { self.id = id }
}

struct XorShift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

func benchTrie(cacheLimit: Int, subscriptions: Int, distinctSubjects: Int) -> UInt64 {
    var rng = XorShift(state: 0x1234_5678_9ABC_DEF1)
    var trie = SubjectTrie<Sub>(cacheLimit: cacheLimit)
    let words = ["orders", "users", "events", "metrics", "auth", "billing", "logs", "cache"]
    for i in 0..<subscriptions {
        let a = words[rng.below(words.count)]
        let b = "n\(rng.below(200))"
        let roll = rng.below(20)
        let subject: String
        switch roll {
        case 0: subject = "\(a).*"
        case 1: subject = "\(a).>"
        case 2: subject = "\(a).*.created"
        default: subject = "\(a).\(b).created"
        }
        let queue: String? = roll == 3 ? "workers" : nil
        trie.insert(subject: subject, queue: queue, value: Sub(i))
    }
    let subjects: [[UInt8]] = (0..<distinctSubjects).map { _ in
        Array("\(words[rng.below(words.count)]).n\(rng.below(200)).created".utf8)
    }
    let lookups = 2_000_000
    var order = [Int](repeating: 0, count: 4096)
    for i in 0..<order.count { order[i] = rng.below(subjects.count) }
    var fanout = 0
    let time = best(rounds: 3) {
        for i in 0..<lookups {
            let subject = subjects[order[i & 4095]]
            let result = subject.withUnsafeBytes { trie.match($0) }
            fanout &+= result.plain.count &+ result.queues.count
        }
    }
    let checksum = UInt64(fanout)
    let stats = trie.stats
    let label = cacheLimit == 0 ? "cache off" : "cache \(cacheLimit)"
    print("trie    \(pad(label, 10)) subs \(pad(String(subscriptions), 6)) subjects \(pad(String(distinctSubjects), 5)) "
        + "\(format(Double(lookups) / time / 1e6, decimals: 2)) M matches/s  hit rate \(format(stats.cacheHitRate, decimals: 3))  "
        + "avg fanout \(format(Double(fanout) / Double(lookups * 4), decimals: 2))")
    return checksum
}

// MARK: - Encoder

/// A fixed-capacity sink like the broker's outbound chunk.
struct FixedSink: ByteSink {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    var count = 0
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        precondition(count + bytes.count <= capacity, "FixedSink overflow")
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }
    mutating func append(byte: UInt8) {
        precondition(count < capacity, "FixedSink overflow")
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }
}

func benchEncoder(payloadSize: Int) -> UInt64 {
    let payload = [UInt8](repeating: 0x62, count: payloadSize)
    let subject = Array("bench.subject.encode".utf8)
    let sid = Array("12345".utf8)
    let reply = Array("_INBOX.abcdefgh.1".utf8)
    let messages = max(1, (64 << 20) / (payloadSize + 48))
    let capacity = 1 << 20
    let memory = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    defer { memory.deallocate() }
    var written = 0
    let fixedTime = best(rounds: 3) {
        written = 0
        var out = FixedSink(base: memory, capacity: capacity)
        subject.withUnsafeBytes { s in sid.withUnsafeBytes { i in reply.withUnsafeBytes { r in payload.withUnsafeBytes { p in
            for _ in 0..<messages {
                if out.count + payloadSize + 64 > capacity {
                    written += out.count
                    out.count = 0
                }
                Encoder.msg(&out, subject: s, sid: i, reply: r, payload: p)
            }
        } } } }
        written += out.count
    }
    var array: [UInt8] = []
    array.reserveCapacity(capacity)
    var arrayWritten = 0
    let arrayTime = best(rounds: 3) {
        arrayWritten = 0
        subject.withUnsafeBytes { s in sid.withUnsafeBytes { i in reply.withUnsafeBytes { r in payload.withUnsafeBytes { p in
            for _ in 0..<messages {
                if array.count + payloadSize + 64 > capacity {
                    arrayWritten += array.count
                    array.removeAll(keepingCapacity: true)
                }
                Encoder.msg(&array, subject: s, sid: i, reply: r, payload: p)
            }
        } } } }
        arrayWritten += array.count
    }
    let checksum = UInt64(written &+ arrayWritten)
    print("encoder MSG \(pad(String(payloadSize) + "B", 6)) fixed sink \(format(Double(written) / fixedTime / 1e6)) MB/s "
        + "(\(format(Double(messages) / fixedTime / 1e6, decimals: 2)) M msgs/s)   [UInt8] \(format(Double(arrayWritten) / arrayTime / 1e6)) MB/s "
        + "(\(format(Double(messages) / arrayTime / 1e6, decimals: 2)) M msgs/s)")
    return checksum
}

// MARK: - main

// Optional arguments pick sections: parser, msgparser, trie, encoder (default: all).
let sections = Set(CommandLine.arguments.dropFirst())
func wanted(_ section: String) -> Bool { sections.isEmpty || sections.contains(section) }

print("ProtocolBench (best of several rounds; single thread)")
if wanted("parser") {
for (payload, chunk) in [(16, 65536), (128, 65536), (1024, 65536), (128, 1500)] {
    sink &+= benchParser(payloadSize: payload, chunkSize: chunk)
}
}
if wanted("msgparser") {
for (payload, chunk) in [(16, 65536), (128, 65536), (1024, 65536), (128, 1500)] {
    sink &+= benchServerParser(payloadSize: payload, chunkSize: chunk)
}
}
if wanted("trie") {
for (subs, subjects) in [(100, 100), (10_000, 1000), (10_000, 4000)] {
    sink &+= benchTrie(cacheLimit: 1024, subscriptions: subs, distinctSubjects: subjects)
    sink &+= benchTrie(cacheLimit: 0, subscriptions: subs, distinctSubjects: subjects)
}
}
if wanted("encoder") {
for payload in [16, 128, 1024, 16384] {
    sink &+= benchEncoder(payloadSize: payload)
}
}
print("(checksum \(sink))")
