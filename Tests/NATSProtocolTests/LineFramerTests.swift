import Testing
@testable import NATSProtocol

// The framing both parsers share, driven directly through a vocabulary of neither: ABC and ABD part
// at their third letter (the parsers' names part at the second at the latest), DATA carries a payload
// whose size is its argument, PING ignores its line.

private enum ToyWord: UInt8, OpWord {
    case abc, abd, ping, data

    var spelling: StaticString {
        switch self {
        case .abc: "ABC"
        case .abd: "ABD"
        case .ping: "PING"
        case .data: "DATA"
        }
    }

    var tail: WordTail {
        switch self {
        case .abc: .arguments
        case .abd, .data: .blankThenArguments
        case .ping: .ignoredLine
        }
    }

    static func lead(_ byte: UInt8, connectFirst: Bool) -> OpLead<ToyWord> {
        if connectFirst && byte != 0x50 { return .refused }  // only PING may come first
        switch ASCII.upper(byte) {
        case 0x41: return .word(.abc)
        case 0x50: return .word(.ping)
        case 0x44: return .word(.data)
        default: return .unknown
        }
    }

    static func instead(of word: ToyWord, at position: Int, _ upper: UInt8) -> ToyWord? {
        word == .abc && position == 2 && upper == 0x44 ? .abd : nil
    }
}

/// Runs the framer over `input` cut at `cuts`, as a parser's loop does, and names each event. Each
/// chunk is its own array, overwritten after use, so a view kept past its chunk reads garbage.
private func frame(_ input: String, cuts: [Int] = [], maxControlLine: Int = 16, connectFirst: Bool = false) -> [String] {
    var framer = LineFramer(maxControlLine: maxControlLine, word: ToyWord.abc)
    framer.connectFirst = connectFirst
    var out: [String] = []
    let bytes = Array(input.utf8)
    var start = 0
    for end in cuts + [bytes.count] {
        var chunk = Array(bytes[start..<end])
        start = end
        let failed = chunk.withUnsafeBytes { buf -> Bool in
            var i = 0
            while true {
                switch framer.next(buf, &i) {
                case .end:
                    return false
                case .line(let line, let inSplit):
                    let text = String(decoding: line, as: UTF8.self)
                    if framer.word == .data {
                        switch framer.beginPayload(size: Int(text) ?? 0, line: line, inSplit: inSplit, buf, &i) {
                        case .here(let body): out.append("DATA " + String(decoding: body, as: UTF8.self))
                        case .pending: continue
                        case .badEnd: out.append("failure unknownOperation"); return true  // as both parsers map it
                        }
                    } else {
                        out.append("\(framer.word) \(text)")
                    }
                    framer.endLine(inSplit: inSplit)
                case .bare:
                    out.append("\(framer.word)")
                case .message(let line, let body):
                    out.append("DATA " + String(decoding: body, as: UTF8.self) + " after " + String(decoding: line, as: UTF8.self))
                    framer.endLine(inSplit: true)
                case .failure(let f):
                    out.append("failure \(f)")
                    framer.abandon()
                    return true
                }
            }
        }
        for k in chunk.indices { chunk[k] = 0x7E }
        if failed { break }
    }
    return out
}

/// The events of `input` cut in every way into up to three pieces, and one byte at a time; each must
/// equal the events of the whole input, which are returned. A payload that completes in the split
/// buffer also names its line, so that form is normalised away before comparing.
private func framesAlike(_ input: String, maxControlLine: Int = 16, connectFirst: Bool = false,
                         sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
    func plain(_ events: [String]) -> [String] {
        events.map { $0.hasPrefix("DATA ") ? String($0.split(separator: " after ", maxSplits: 1).first ?? "") : $0 }
    }
    let whole = frame(input, maxControlLine: maxControlLine, connectFirst: connectFirst)
    let n = input.utf8.count
    var cutsList: [[Int]] = [Array(1..<max(1, n))]
    for a in 0...n {
        for b in a...n { cutsList.append([a, b]) }
    }
    for cuts in cutsList {
        let got = plain(frame(input, cuts: cuts, maxControlLine: maxControlLine, connectFirst: connectFirst))
        #expect(got == plain(whole), "cut at \(cuts)", sourceLocation: sourceLocation)
        if got != plain(whole) { break }
    }
    return plain(whole)
}

@Suite("LineFramer")
struct LineFramerTests {
    @Test("lines, ignored lines and payloads come out the same in every chunking")
    func eventsInEveryChunking() {
        let input = "ABC x\r\nabd \t y z\nPINGjunk\r\nDATA 3\r\nabc\r\nData 0\r\n\r\n"
        #expect(framesAlike(input) == ["abc x", "abd y z", "ping", "DATA abc", "DATA "])
    }

    @Test("a name goes on as another that spells the same up to the letter where they part")
    func namesPartLate() {
        #expect(framesAlike("aBd q\r\n") == ["abd q"])
        #expect(framesAlike("ABE q\r\n") == ["failure unknownOperation"])
        #expect(framesAlike("AD q\r\n") == ["failure unknownOperation"])  // the parting letter at the wrong place
        #expect(framesAlike("ABDq\r\n") == ["failure unknownOperation"])  // ABD needs a blank, ABC does not
        #expect(framesAlike("ABCq\r\n") == ["abc q"])
    }

    @Test("a CR anywhere after the first byte drops the byte before the LF")
    func carriageReturnRule() {
        #expect(framesAlike("ABC a\rb\n") == ["abc a\r"])
        #expect(framesAlike("ABC a\rb\r\n") == ["abc a\rb"])
        #expect(framesAlike("ABC \r\n") == ["abc \r"])  // the first byte is taken whatever it is
        #expect(framesAlike("ABC ab\n") == ["abc ab"])
    }

    @Test("the control-line limit: exactly the limit passes, one more byte fails, in every chunking")
    func controlLineLimit() {
        let limit = String(repeating: "x", count: 16)
        #expect(framesAlike("ABC \(limit)\r\n") == ["abc \(limit)"])
        #expect(framesAlike("ABC \(limit)x\r\n") == ["failure controlLineTooLong"])
        // Without its LF a line may hold one byte more, which can still turn out to be the CR.
        #expect(framesAlike("ABC \(limit)x") == [])
        #expect(framesAlike("ABC \(limit)xy") == ["failure controlLineTooLong"])
    }

    @Test("connect-first refuses any other first byte and leaves clearing to the parser")
    func connectFirstGate() {
        #expect(framesAlike("PING\r\nABC x\r\n", connectFirst: true) == ["ping", "failure connectFirst"])
        #expect(framesAlike("ABC x\r\n", connectFirst: true) == ["failure connectFirst"])
    }

    @Test("a payload must be followed by exactly CRLF")
    func payloadEnd() {
        #expect(framesAlike("DATA 2\r\nabX\r\n") == ["failure unknownOperation"])
        #expect(framesAlike("DATA 2\r\nab\rX") == ["failure unknownOperation"])
        #expect(framesAlike("DATA 2\r\nab\r\nDATA 1\r\nc\r\n") == ["DATA ab", "DATA c"])
    }

    @Test("a split line and payload are kept in the split buffer and released when delivered")
    func splitBufferLifetime() {
        var framer = LineFramer(maxControlLine: 16, word: ToyWord.abc)
        let head = Array("DATA 4\r\nab".utf8)
        let tail = Array("cd\r\n".utf8)
        var i = 0
        head.withUnsafeBytes { buf in
            guard case .line(let line, false) = framer.next(buf, &i) else { Issue.record("no line"); return }
            guard case .pending = framer.beginPayload(size: 4, line: line, inSplit: false, buf, &i) else {
                Issue.record("payload not pending"); return
            }
            guard case .end = framer.next(buf, &i) else { Issue.record("no end"); return }
        }
        #expect(framer.split.count == 3)  // the line "4" and "ab"
        i = 0
        tail.withUnsafeBytes { buf in
            guard case .message(let line, let body) = framer.next(buf, &i) else { Issue.record("no message"); return }
            #expect(line.first == 0x34)  // starts with the line, which the parser's ranges refer to
            #expect(Array(body) == Array("abcd".utf8))
            framer.endLine(inSplit: true)
        }
        #expect(framer.split.count == 0)
    }
}
