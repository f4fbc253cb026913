import Testing
@testable import NATSProtocol
import TestSupport

// Feeds the same input to a parser in many chunkings (whole, one byte at a time, every two-way split,
// seeded random splits) and checks that every chunking records the same op sequence and outcome.
// Each chunk lives in its own buffer that is scribbled over after the parse call, so a parser that kept
// a view into an earlier chunk records garbage and the comparison fails.

func wireBytes(_ s: String) -> [UInt8] { Array(s.utf8) }


// MARK: - Client ops

enum ClientOp: Equatable, Sendable, CustomStringConvertible {
    case connect([UInt8])
    case pub(subject: [UInt8], reply: [UInt8], payload: [UInt8])
    case hpub(subject: [UInt8], reply: [UInt8], headers: [UInt8], payload: [UInt8])
    case sub(subject: [UInt8], queue: [UInt8], sid: [UInt8])
    case unsub(sid: [UInt8], max: Int?)
    case ping, pong, ok
    case info([UInt8])
    case err([UInt8])

    static func pub(_ s: String, _ p: String) -> ClientOp { .pub(s, "", p) }
    static func pub(_ s: String, _ r: String, _ p: String) -> ClientOp {
        .pub(subject: wireBytes(s), reply: wireBytes(r), payload: wireBytes(p))
    }
    static func hpub(_ s: String, _ h: String, _ p: String) -> ClientOp { .hpub(s, "", h, p) }
    static func hpub(_ s: String, _ r: String, _ h: String, _ p: String) -> ClientOp {
        .hpub(subject: wireBytes(s), reply: wireBytes(r), headers: wireBytes(h), payload: wireBytes(p))
    }
    static func sub(_ s: String, _ sid: String) -> ClientOp { .sub(s, "", sid) }
    static func sub(_ s: String, _ q: String, _ sid: String) -> ClientOp {
        .sub(subject: wireBytes(s), queue: wireBytes(q), sid: wireBytes(sid))
    }
    static func unsub(_ sid: String, _ max: Int? = nil) -> ClientOp { .unsub(sid: wireBytes(sid), max: max) }
    static func connect(_ j: String) -> ClientOp { .connect(wireBytes(j)) }
    static func info(_ j: String) -> ClientOp { .info(wireBytes(j)) }
    static func err(_ m: String) -> ClientOp { .err(wireBytes(m)) }

    var description: String {
        func s(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self).debugDescription }
        switch self {
        case .connect(let j): return "CONNECT \(s(j))"
        case .pub(let a, let r, let p): return "PUB \(s(a)) \(s(r)) \(s(p))"
        case .hpub(let a, let r, let h, let p): return "HPUB \(s(a)) \(s(r)) \(s(h)) \(s(p))"
        case .sub(let a, let q, let i): return "SUB \(s(a)) \(s(q)) \(s(i))"
        case .unsub(let i, let m): return "UNSUB \(s(i)) \(String(describing: m))"
        case .ping: return "PING"
        case .pong: return "PONG"
        case .ok: return "+OK"
        case .info(let j): return "INFO \(s(j))"
        case .err(let m): return "-ERR \(s(m))"
        }
    }
}

/// Records every op (copying the views during the callback). Returns false after `stopAfter` ops.
struct ClientRecorder: ClientOpHandler {
    var ops: [ClientOp] = []
    var stopAfter = Int.max
    /// What `acceptsHeaders` answers (the connection's negotiated `headers`).
    var headers = true
    var acceptsHeaders: Bool { headers }

    private mutating func add(_ op: ClientOp) -> Bool {
        ops.append(op)
        return ops.count < stopAfter
    }
    mutating func connect(json: UnsafeRawBufferPointer) -> Bool { add(.connect(Array(json))) }
    mutating func pub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        add(.pub(subject: Array(subject), reply: Array(reply), payload: Array(payload)))
    }
    mutating func hpub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        add(.hpub(subject: Array(subject), reply: Array(reply), headers: Array(headers), payload: Array(payload)))
    }
    mutating func sub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer) -> Bool {
        add(.sub(subject: Array(subject), queue: Array(queue), sid: Array(sid)))
    }
    mutating func unsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool { add(.unsub(sid: Array(sid), max: max)) }
    mutating func ping() -> Bool { add(.ping) }
    mutating func pong() -> Bool { add(.pong) }
    mutating func info(json: UnsafeRawBufferPointer) -> Bool { add(.info(Array(json))) }
    mutating func ok() -> Bool { add(.ok) }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { add(.err(Array(message))) }
}

struct ClientConfig {
    var maxControlLine = 4096
    var maxPayload = 1_048_576
    var requireConnectFirst = false
    var stopAfter = Int.max

    func makeParser() -> ClientParser {
        var p = ClientParser(maxControlLine: maxControlLine, maxPayload: maxPayload)
        p.requireConnectFirst = requireConnectFirst
        return p
    }
}

/// What one chunking produced: the ops and the first non-`.ok` result (or `.ok`).
struct ClientRun: Equatable, CustomStringConvertible {
    var ops: [ClientOp]
    var result: ClientParseResult
    /// Largest split-buffer capacity seen after any call.
    var peakCapacity = 0

    static func == (a: ClientRun, b: ClientRun) -> Bool { a.ops == b.ops && a.result == b.result }
    var description: String { "\(result) \(ops)" }
}

/// Feeds `input` cut at `cuts` (ascending offsets) to a fresh parser.
func runClient(_ input: [UInt8], cuts: [Int], _ config: ClientConfig = ClientConfig()) -> ClientRun {
    var parser = config.makeParser()
    var rec = ClientRecorder(stopAfter: config.stopAfter)
    var result = ClientParseResult.ok
    var peak = 0
    forEachChunk(input, cuts: cuts) { chunk in
        result = parser.parse(chunk, into: &rec)
        peak = max(peak, parser.bufferCapacity)
        return result == .ok
    }
    return ClientRun(ops: rec.ops, result: result, peakCapacity: peak)
}

// MARK: - Server ops

enum ServerOp: Equatable, Sendable, CustomStringConvertible {
    case info([UInt8])
    case msg(subject: [UInt8], sid: [UInt8], reply: [UInt8], payload: [UInt8])
    case hmsg(subject: [UInt8], sid: [UInt8], reply: [UInt8], headers: [UInt8], payload: [UInt8])
    case ping, pong, ok
    case err([UInt8])

    static func info(_ j: String) -> ServerOp { .info(wireBytes(j)) }
    static func err(_ m: String) -> ServerOp { .err(wireBytes(m)) }
    static func msg(_ s: String, _ sid: String, _ p: String) -> ServerOp { .msg(s, sid, "", p) }
    static func msg(_ s: String, _ sid: String, _ r: String, _ p: String) -> ServerOp {
        .msg(subject: wireBytes(s), sid: wireBytes(sid), reply: wireBytes(r), payload: wireBytes(p))
    }
    static func hmsg(_ s: String, _ sid: String, _ h: String, _ p: String) -> ServerOp { .hmsg(s, sid, "", h, p) }
    static func hmsg(_ s: String, _ sid: String, _ r: String, _ h: String, _ p: String) -> ServerOp {
        .hmsg(subject: wireBytes(s), sid: wireBytes(sid), reply: wireBytes(r), headers: wireBytes(h), payload: wireBytes(p))
    }

    var description: String {
        func s(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self).debugDescription }
        switch self {
        case .info(let j): return "INFO \(s(j))"
        case .msg(let a, let i, let r, let p): return "MSG \(s(a)) \(s(i)) \(s(r)) \(s(p))"
        case .hmsg(let a, let i, let r, let h, let p): return "HMSG \(s(a)) \(s(i)) \(s(r)) \(s(h)) \(s(p))"
        case .ping: return "PING"
        case .pong: return "PONG"
        case .ok: return "+OK"
        case .err(let m): return "-ERR \(s(m))"
        }
    }
}

struct ServerRecorder: ServerOpHandler {
    var ops: [ServerOp] = []
    var stopAfter = Int.max

    private mutating func add(_ op: ServerOp) -> Bool {
        ops.append(op)
        return ops.count < stopAfter
    }
    mutating func info(json: UnsafeRawBufferPointer) -> Bool { add(.info(Array(json))) }
    mutating func msg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool {
        add(.msg(subject: Array(subject), sid: Array(sid), reply: Array(reply), payload: Array(payload)))
    }
    mutating func hmsg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        add(.hmsg(subject: Array(subject), sid: Array(sid), reply: Array(reply), headers: Array(headers), payload: Array(payload)))
    }
    mutating func ping() -> Bool { add(.ping) }
    mutating func pong() -> Bool { add(.pong) }
    mutating func ok() -> Bool { add(.ok) }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { add(.err(Array(message))) }
}

struct ServerConfig {
    var maxControlLine = 4096 * 16
    var maxPayload = 64 * 1024 * 1024
    var stopAfter = Int.max
}

struct ServerRun: Equatable, CustomStringConvertible {
    var ops: [ServerOp]
    var result: ServerParseResult
    var peakCapacity = 0

    static func == (a: ServerRun, b: ServerRun) -> Bool { a.ops == b.ops && a.result == b.result }
    var description: String { "\(result) \(ops)" }
}

func runServer(_ input: [UInt8], cuts: [Int], _ config: ServerConfig = ServerConfig()) -> ServerRun {
    var parser = ServerParser(maxControlLine: config.maxControlLine)
    parser.maxPayload = config.maxPayload
    var rec = ServerRecorder(stopAfter: config.stopAfter)
    var result = ServerParseResult.ok
    var peak = 0
    forEachChunk(input, cuts: cuts) { chunk in
        result = parser.parse(chunk, into: &rec)
        peak = max(peak, parser.bufferCapacity)
        return result == .ok
    }
    return ServerRun(ops: rec.ops, result: result, peakCapacity: peak)
}

/// Copies each chunk into its own buffer, calls `body`, then scribbles over the buffer.
/// Stops when `body` returns false.
func forEachChunk(_ input: [UInt8], cuts: [Int], _ body: (UnsafeRawBufferPointer) -> Bool) {
    var start = 0
    for end in cuts + [input.count] where end >= start {
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: max(end - start, 1), alignment: 1)
        defer { chunk.deallocate() }
        for k in start..<end { chunk[k - start] = input[k] }
        let go = body(UnsafeRawBufferPointer(start: chunk.baseAddress, count: end - start))
        for k in 0..<chunk.count { chunk[k] = 0xEE }  // stale views must not survive
        start = end
        if !go { return }
    }
}

enum ChunkingVerifier {
    /// Runs `input` whole, byte by byte, at every two-way split and at `randomRuns` seeded random
    /// chunkings through `run` (which gets the cut offsets); expects every run to equal the whole-input
    /// run, and returns that run.
    @discardableResult
    static func verify<R: Equatable & CustomStringConvertible>(
        _ input: [UInt8], randomRuns: Int = 20, seed: UInt64 = 0x5EED,
        sourceLocation: SourceLocation = #_sourceLocation, run: ([Int]) -> R
    ) -> R {
        let whole = run([])
        let shown = String(decoding: input.prefix(200), as: UTF8.self).debugDescription
        let bytewise = run(Array(0..<input.count))
        #expect(bytewise == whole, "byte-at-a-time gave \(bytewise), whole gave \(whole) for \(shown)",
                sourceLocation: sourceLocation)
        if input.count > 1 {
            for cut in 1..<input.count {
                let r = run([cut])
                if r != whole {
                    Issue.record("split at \(cut) gave \(r), whole gave \(whole) for \(shown)", sourceLocation: sourceLocation)
                    break
                }
            }
        }
        var rng = SeededGenerator(seed: seed ^ UInt64(input.count))
        for _ in 0..<randomRuns {
            var cuts: [Int] = []
            var at = 0
            while input.count > 0 {
                at += Int.random(in: 1...max(1, min(64, input.count)), using: &rng)
                if at >= input.count { break }
                cuts.append(at)
            }
            let r = run(cuts)
            if r != whole {
                Issue.record("random cuts \(cuts) gave \(r), whole gave \(whole) for \(shown)", sourceLocation: sourceLocation)
                break
            }
        }
        return whole
    }

    @discardableResult
    static func verifyClient(_ input: [UInt8], _ config: ClientConfig = ClientConfig(), randomRuns: Int = 20,
                             seed: UInt64 = 0x5EED, sourceLocation: SourceLocation = #_sourceLocation) -> ClientRun {
        verify(input, randomRuns: randomRuns, seed: seed, sourceLocation: sourceLocation) { runClient(input, cuts: $0, config) }
    }

    @discardableResult
    static func verifyServer(_ input: [UInt8], _ config: ServerConfig = ServerConfig(), randomRuns: Int = 20,
                             seed: UInt64 = 0x5EED, sourceLocation: SourceLocation = #_sourceLocation) -> ServerRun {
        verify(input, randomRuns: randomRuns, seed: seed, sourceLocation: sourceLocation) { runServer(input, cuts: $0, config) }
    }
}
