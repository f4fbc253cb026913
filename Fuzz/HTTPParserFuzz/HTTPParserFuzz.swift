// libFuzzer target for HTTPRequestParser. Built by scripts/fuzz.sh (target http) together with the parser's
// source files (no package, no Foundation).
//
// Oracle: no crash, and feeding the input whole or split in two (at a point taken from the input) gives
// exactly the same requests and the same final outcome.

private struct Collector: HTTPParserDelegate {
    var events: [String] = []
    mutating func parserDidParseHead(_ head: HTTPRequestHead) -> Int {
        events.append("head \(head.method) \(head.target) \(head.version) \(head.headers.count) \(head.keepAlive)")
        return 4096
    }
    mutating func parserDidParseRequest(_ head: HTTPRequestHead, body: [UInt8]) -> Bool {
        events.append("request \(head.target) \(body)")
        return true
    }
}

private func run(_ data: UnsafeRawBufferPointer, split: Int) -> [String] {
    var parser = HTTPRequestParser(maxHeadSize: 1024)
    var collector = Collector()
    var outcome = HTTPParseResult.ok
    let pieces = split > 0 && split < data.count
        ? [UnsafeRawBufferPointer(rebasing: data[0..<split]), UnsafeRawBufferPointer(rebasing: data[split...])]
        : [data]
    for piece in pieces {
        outcome = parser.parse(piece, into: &collector)
        if case .error = outcome { break }
    }
    collector.events.append("end \(outcome)")
    return collector.events
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPParser(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    guard let start, count > 0 else { return 0 }
    let data = UnsafeRawBufferPointer(start: start, count: count)
    let whole = run(data, split: 0)
    let split = Int(data[0]) * count / 256
    let pieces = run(data, split: split)
    if whole != pieces {
        fatalError("HTTPRequestParser: split at \(split) changed the result:\n\(whole)\nvs\n\(pieces)")
    }
    return 0
}
