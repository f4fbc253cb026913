import Testing
@testable import HTTPServer
import TestSupport

/// What the parser produced for one input, in a comparable form.
struct ParsedRequest: Equatable, CustomStringConvertible {
    var method: String
    var target: String
    var version: String
    var headers: [String]          // "Name: value" in order
    var body: String
    var keepAlive: Bool

    init(_ method: String, _ target: String, version: String = "HTTP/1.1", headers: [String],
         body: String = "", keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.keepAlive = keepAlive
    }

    var description: String { "\(method) \(target) \(version) \(headers) body=\(body.debugDescription) ka=\(keepAlive)" }
}

struct ParseOutcome: Equatable {
    var requests: [ParsedRequest] = []
    var heads = 0
    var error: HTTPParseError?
}

struct Collector: HTTPParserDelegate {
    var outcome = ParseOutcome()
    var bodyLimit: Int
    mutating func parserDidParseHead(_ head: HTTPRequestHead) -> Int {
        outcome.heads += 1
        return bodyLimit
    }
    mutating func parserDidParseRequest(_ head: HTTPRequestHead, body: [UInt8]) -> Bool {
        outcome.requests.append(ParsedRequest(
            head.method.rawValue, head.target, version: head.version.description,
            headers: head.headers.fields.map { "\($0.name): \($0.value)" },
            body: String(decoding: body, as: UTF8.self), keepAlive: head.keepAlive))
        return true
    }
}

/// Feeds `input` cut at `cuts` (sorted offsets) and collects the result.
func parse(_ input: [UInt8], cuts: [Int] = [], maxHeadSize: Int = 16 * 1024, bodyLimit: Int = 1 << 20) -> ParseOutcome {
    var parser = HTTPRequestParser(maxHeadSize: maxHeadSize)
    var collector = Collector(bodyLimit: bodyLimit)
    var start = 0
    for end in cuts + [input.count] where end >= start {
        let result = input[start..<end].withUnsafeBytes { parser.parse($0, into: &collector) }
        start = end
        if case .error(let error) = result {
            collector.outcome.error = error
            break
        }
        #expect(result == .ok)
    }
    return collector.outcome
}


/// The chunking verifier: whole, byte at a time, every two-way split and seeded random splits must all
/// give `expected`.
func verifyChunkings(_ text: String, _ expected: ParseOutcome, maxHeadSize: Int = 16 * 1024,
                     bodyLimit: Int = 1 << 20, sourceLocation: SourceLocation = #_sourceLocation) {
    let input = Array(text.utf8)
    func check(_ cuts: [Int], _ label: String) -> Bool {
        let got = parse(input, cuts: cuts, maxHeadSize: maxHeadSize, bodyLimit: bodyLimit)
        #expect(got == expected, "\(label) cuts=\(cuts)", sourceLocation: sourceLocation)
        return got == expected
    }
    guard check([], "whole") else { return }
    guard check(Array(0..<input.count), "byte at a time") else { return }
    for split in 0...input.count {
        guard check([split], "two-way split") else { return }
    }
    var rng = SeededGenerator(seed: 0x5EED)
    for _ in 0..<50 {
        let count = Int.random(in: 1...max(1, input.count / 3), using: &rng)
        let cuts = (0..<count).map { _ in Int.random(in: 0...input.count, using: &rng) }.sorted()
        guard check(cuts, "random") else { return }
    }
}

@Suite("HTTP request parser")
struct ParserTests {
    @Test func parsesASimpleGetWithOrderedHeaders() {
        verifyChunkings(
            "GET /varz?subs=1 HTTP/1.1\r\nHost: localhost:8222\r\nUser-Agent: t\r\nAccept: */*\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
            ParseOutcome(requests: [
                ParsedRequest("GET", "/varz?subs=1", headers: [
                    "Host: localhost:8222", "User-Agent: t", "Accept: */*", "X-Dup: 1", "x-dup: 2",
                ]),
            ], heads: 1))
    }

    @Test func parsesContentLengthBody() {
        verifyChunkings(
            "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"name\":\"a\"}\n",
            ParseOutcome(requests: [
                ParsedRequest("POST", "/v1/users", headers: ["Host: x", "Content-Length: 13"], body: "{\"name\":\"a\"}\n"),
            ], heads: 1))
    }

    @Test func parsesChunkedBodyWithExtensionsAndTrailers() {
        verifyChunkings(
            "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5;name=value\r\nhello\r\n1A\r\n, and twenty-six more byte\r\n0\r\nX-Trailer: t\r\n\r\n",
            ParseOutcome(requests: [
                ParsedRequest("POST", "/u", headers: ["Host: x", "Transfer-Encoding: chunked"],
                              body: "hello, and twenty-six more byte"),
            ], heads: 1))
    }

    @Test func parsesPipelinedRequestsInOrder() {
        verifyChunkings(
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                + "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
                + "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ParseOutcome(requests: [
                ParsedRequest("GET", "/a", headers: ["Host: x"]),
                ParsedRequest("POST", "/b", headers: ["Host: x", "Content-Length: 3"], body: "abc"),
                ParsedRequest("POST", "/c", headers: ["Host: x", "Transfer-Encoding: chunked"], body: "xy"),
                ParsedRequest("GET", "/d", headers: ["Host: x", "Connection: close"], keepAlive: false),
            ], heads: 4))
    }

    @Test func acceptsBareLFLineEndsLeadingEmptyLinesAndTrimsValues() {
        verifyChunkings(
            "\r\n\nGET / HTTP/1.1\nHost:   x \t\nEmpty:\n\n",
            ParseOutcome(requests: [ParsedRequest("GET", "/", headers: ["Host: x", "Empty: "])], heads: 1))
    }

    @Test func appliesHTTP10KeepAliveRules() {
        verifyChunkings(
            "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                + "GET /c HTTP/1.1\r\nHost: x\r\nConnection: upgrade, CLOSE\r\n\r\n",
            ParseOutcome(requests: [
                ParsedRequest("GET", "/a", version: "HTTP/1.0", headers: [], keepAlive: false),
                ParsedRequest("GET", "/b", version: "HTTP/1.0", headers: ["Connection: Keep-Alive"], keepAlive: true),
                ParsedRequest("GET", "/c", headers: ["Host: x", "Connection: upgrade, CLOSE"], keepAlive: false),
            ], heads: 3))
    }

    @Test func headerLookupIsCaseInsensitiveAndKeepsOrder() {
        var headers = HTTPHeaders([("Content-Type", "a"), ("X-A", "1"), ("x-a", "2")])
        #expect(headers["content-type"] == "a")
        #expect(headers.values(for: "X-a") == ["1", "2"])
        headers.replaceOrAdd(name: "X-A", value: "3")
        #expect(headers.fields.map(\.name) == ["Content-Type", "X-A"])
        #expect(headers["x-a"] == "3")
        headers.remove(name: "CONTENT-TYPE")
        #expect(headers.count == 1)
    }

    @Test func reportsExpectContinueAndFramingOnTheHead() {
        struct HeadCatcher: HTTPParserDelegate {
            var head: HTTPRequestHead?
            mutating func parserDidParseHead(_ head: HTTPRequestHead) -> Int { self.head = head; return 100 }
            mutating func parserDidParseRequest(_ head: HTTPRequestHead, body: [UInt8]) -> Bool { true }
        }
        var parser = HTTPRequestParser()
        var catcher = HeadCatcher()
        let input = Array("PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n".utf8)
        let result = input.withUnsafeBytes { parser.parse($0, into: &catcher) }
        #expect(result == .ok)
        #expect(catcher.head?.expectsContinue == true)
        #expect(catcher.head?.framing == .contentLength(10))
        #expect(parser.hasPartialRequest)
    }

    @Test func stopsAfterARequestWhenTheDelegateAsks() {
        struct StopAfterOne: HTTPParserDelegate {
            var targets: [String] = []
            mutating func parserDidParseHead(_ head: HTTPRequestHead) -> Int { 100 }
            mutating func parserDidParseRequest(_ head: HTTPRequestHead, body: [UInt8]) -> Bool {
                targets.append(head.target)
                return false
            }
        }
        let first = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        let input = Array((first + "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n").utf8)
        var parser = HTTPRequestParser()
        var delegate = StopAfterOne()
        let result = input.withUnsafeBytes { parser.parse($0, into: &delegate) }
        #expect(result == .stopped(consumed: first.utf8.count))
        let rest = input[first.utf8.count...].withUnsafeBytes { parser.parse($0, into: &delegate) }
        #expect(rest == .stopped(consumed: input.count - first.utf8.count))
        #expect(delegate.targets == ["/1", "/2"])
    }

    static let mustFail: [(String, String, HTTPStatus)] = [
        ("no version", "GET /\r\n\r\n", .badRequest),
        ("extra space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", .badRequest),
        ("missing host", "GET / HTTP/1.1\r\n\r\n", .badRequest),
        ("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .badRequest),
        ("bad version", "GET / HTTQ/1.1\r\nHost: x\r\n\r\n", .badRequest),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .httpVersionNotSupported),
        ("relative target", "GET users HTTP/1.1\r\nHost: x\r\n\r\n", .badRequest),
        ("bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", .badRequest),
        ("space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", .badRequest),
        ("no colon", "GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", .badRequest),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", .badRequest),
        ("NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\u{0}b\r\n\r\n", .badRequest),
        ("bare CR", "GET / HTTP/1.1\rHost: x\r\n\r\n", .badRequest),
        ("bad content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", .badRequest),
        ("negative content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", .badRequest),
        ("conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", .badRequest),
        ("length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", .badRequest),
        ("gzip coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .notImplemented),
        ("chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .badRequest),
        ("chunked in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .badRequest),
        ("bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .badRequest),
        ("empty chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", .badRequest),
        ("no CRLF after chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", .badRequest),
        ("head over limit", "GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 17_000) + "\r\n\r\n", .requestHeaderFieldsTooLarge),
        ("endless request line", "GET /" + String(repeating: "a", count: 17_000), .requestHeaderFieldsTooLarge),
        ("trailers over limit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + String(repeating: "t", count: 17_000), .requestHeaderFieldsTooLarge),
        ("length over limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n", .contentTooLarge),
        ("absurd length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", .contentTooLarge),
        ("chunks over limit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" + String(repeating: "a", count: 512) + "\r\n201\r\n", .contentTooLarge),
        ("huge chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n", .contentTooLarge),
    ]

    @Test(arguments: 0..<ParserTests.mustFail.count)
    func rejectsMalformedInputWithTheExactStatusUnderEveryChunking(_ index: Int) {
        let (name, text, status) = Self.mustFail[index]
        let input = Array(text.utf8)
        let whole = parse(input, bodyLimit: 1024)
        #expect(whole.error?.status == status, "\(name)")
        #expect(whole.requests.isEmpty, "\(name)")
        let bytewise = parse(input, cuts: Array(0..<input.count), bodyLimit: 1024)
        #expect(bytewise == whole, "\(name) byte at a time")
        for split in stride(from: 0, through: input.count, by: max(1, input.count / 64)) {
            #expect(parse(input, cuts: [split], bodyLimit: 1024) == whole, "\(name) split at \(split)")
        }
    }

    @Test func staysFailedAfterAnError() {
        var parser = HTTPRequestParser()
        var collector = Collector(bodyLimit: 10)
        let bad = Array("BAD\r\n".utf8)
        let first = bad.withUnsafeBytes { parser.parse($0, into: &collector) }
        let good = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let second = good.withUnsafeBytes { parser.parse($0, into: &collector) }
        #expect(first == second)
        #expect(collector.outcome.requests.isEmpty)
    }

    @Test func survivesSeededRandomBytesAndMutatedRequests() {
        var rng = SeededGenerator(seed: 42)
        let seeds = [
            "POST /v1/x?a=b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.0\r\n\r\n",
        ].map { Array($0.utf8) }
        for round in 0..<3000 {
            var input: [UInt8]
            if round % 3 == 0 {
                input = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                input = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    input[Int.random(in: 0..<input.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            let whole = parse(input, maxHeadSize: 128, bodyLimit: 64)
            let cut = Int.random(in: 0...input.count, using: &rng)
            #expect(parse(input, cuts: [cut], maxHeadSize: 128, bodyLimit: 64) == whole)
        }
    }
}
