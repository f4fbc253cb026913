// libFuzzer target for ClientParser: built by scripts/fuzz.sh together with the parser sources (one module,
// no SwiftPM). For every input it checks, and traps on failure:
// - no crash and no sanitizer report (ASan);
// - the input fed whole, in pseudo-random chunks, and (when short) one byte at a time gives the same ops
//   and the same result;
// - the split buffer never grows past control line + payload limit (+ growth slack).
// The first input byte picks the configuration (auth rule, limits) and the chunking seed.

/// Records ops as a flat byte log: a tag, then each field length-prefixed.
struct FuzzClientLog: ClientOpHandler {
    var log: [UInt8] = []
    mutating func field(_ v: UnsafeRawBufferPointer) {
        var n = v.count
        for _ in 0..<4 { log.append(UInt8(truncatingIfNeeded: n)); n >>= 8 }
        log.append(contentsOf: v)
    }
    mutating func tag(_ t: UInt8) -> Bool { log.append(t); return true }
    mutating func connect(json: UnsafeRawBufferPointer) -> Bool { field(json); return tag(1) }
    mutating func pub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        field(subject); field(reply); field(payload); return tag(2)
    }
    mutating func hpub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        field(subject); field(reply); field(headers); field(payload); return tag(3)
    }
    mutating func sub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer) -> Bool {
        field(subject); field(queue); field(sid); return tag(4)
    }
    mutating func unsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool {
        field(sid)
        var m = max ?? -1
        for _ in 0..<8 { log.append(UInt8(truncatingIfNeeded: m)); m >>= 8 }
        return tag(5)
    }
    mutating func ping() -> Bool { tag(6) }
    mutating func pong() -> Bool { tag(7) }
    mutating func info(json: UnsafeRawBufferPointer) -> Bool { field(json); return tag(8) }
    mutating func ok() -> Bool { tag(9) }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { field(message); return tag(10) }
}

/// Feeds `input` in chunks whose sizes come from `nextSize`; returns the log and the first non-ok result.
func fuzzRunClient(_ input: UnsafeRawBufferPointer, _ config: UInt8, _ nextSize: (inout UInt64) -> Int) -> ([UInt8], ClientParseResult) {
    let strict = config & 0x10 != 0
    var parser = strict ? ClientParser(maxControlLine: 64, maxPayload: 256) : ClientParser()
    parser.requireConnectFirst = config & 0x01 != 0
    let bound = parser.maxControlLine + 1 + parser.maxPayload + 4096
    var rec = FuzzClientLog()
    var state = UInt64(config) &* 0x9E37_79B9_7F4A_7C15 | 1
    var at = 0
    var result = ClientParseResult.ok
    while at < input.count {
        let size = Swift.min(input.count - at, Swift.max(1, nextSize(&state)))
        // A private copy per chunk, poisoned afterwards: a view kept across calls shows up as a log mismatch.
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
        chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[at..<(at + size)]))
        result = parser.parse(UnsafeRawBufferPointer(chunk), into: &rec)
        chunk.initializeMemory(as: UInt8.self, repeating: 0xEE)
        chunk.deallocate()
        precondition(parser.bufferCapacity <= bound, "split buffer grew to \(parser.bufferCapacity) > \(bound)")
        at += size
        if result != .ok { break }
    }
    return (rec.log, result)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func clientParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let config = data[0]
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let whole = fuzzRunClient(input, config) { _ in Int.max }
    let chunked = fuzzRunClient(input, config) { s in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Int(truncatingIfNeeded: (s >> 33) % 23) + 1
    }
    precondition(whole.0 == chunked.0 && whole.1 == chunked.1, "chunked parse differs from whole parse")
    if input.count <= 600 {
        let bytewise = fuzzRunClient(input, config) { _ in 1 }
        precondition(whole.0 == bytewise.0 && whole.1 == bytewise.1, "byte-at-a-time parse differs from whole parse")
    }
    return 0
}
