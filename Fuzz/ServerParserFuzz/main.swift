// libFuzzer target for ServerParser (the client library's parser): built by scripts/fuzz.sh with the
// parser sources. Same checks as ClientParserFuzz: no crash, whole == chunked == byte-at-a-time, bounded
// split buffer. The first input byte picks the limits and the chunking seed.

struct FuzzServerLog: ServerOpHandler {
    var log: [UInt8] = []
    mutating func field(_ v: UnsafeRawBufferPointer) {
        var n = v.count
        for _ in 0..<4 { log.append(UInt8(truncatingIfNeeded: n)); n >>= 8 }
        log.append(contentsOf: v)
    }
    mutating func tag(_ t: UInt8) -> Bool { log.append(t); return true }
    mutating func info(json: UnsafeRawBufferPointer) -> Bool { field(json); return tag(1) }
    mutating func msg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool {
        field(subject); field(sid); field(reply); field(payload); return tag(2)
    }
    mutating func hmsg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        field(subject); field(sid); field(reply); field(headers); field(payload); return tag(3)
    }
    mutating func ping() -> Bool { tag(4) }
    mutating func pong() -> Bool { tag(5) }
    mutating func ok() -> Bool { tag(6) }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { field(message); return tag(7) }
}

func fuzzRunServer(_ input: UnsafeRawBufferPointer, _ config: UInt8, _ nextSize: (inout UInt64) -> Int) -> ([UInt8], ServerParseResult) {
    var parser = ServerParser(maxControlLine: config & 0x10 != 0 ? 96 : 4096)
    parser.maxPayload = config & 0x20 != 0 ? 256 : 65536
    let bound = parser.maxControlLine + 1 + parser.maxPayload + 4096
    var rec = FuzzServerLog()
    var state = UInt64(config) &* 0x9E37_79B9_7F4A_7C15 | 1
    var at = 0
    var result = ServerParseResult.ok
    while at < input.count {
        let size = Swift.min(input.count - at, Swift.max(1, nextSize(&state)))
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
public func serverParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let config = data[0]
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let whole = fuzzRunServer(input, config) { _ in Int.max }
    let chunked = fuzzRunServer(input, config) { s in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Int(truncatingIfNeeded: (s >> 33) % 23) + 1
    }
    precondition(whole.0 == chunked.0 && whole.1 == chunked.1, "chunked parse differs from whole parse")
    if input.count <= 600 {
        let bytewise = fuzzRunServer(input, config) { _ in 1 }
        precondition(whole.0 == bytewise.0 && whole.1 == bytewise.1, "byte-at-a-time parse differs from whole parse")
    }
    return 0
}
