// The client library's parser for what a server sends: INFO, MSG, HMSG, PING, PONG, +OK, -ERR.
// Same technique as ClientParser: byte-at-a-time state machine, arguments and payloads are views into the
// caller's bytes, and only a frame split across calls is copied into a bounded buffer.
//
// Framing follows the server (and nats.go's client parser, which mirrors it): op names are
// case-insensitive; MSG, HMSG and -ERR need a space or tab after the name, INFO takes optional blanks;
// fields are separated by any run of spaces/tabs; lines end at LF with an optional CR; PING, PONG and
// +OK ignore bytes up to the LF; a payload must be followed by exactly CRLF.

/// Why `ServerParser.parse` gave up. The client should drop the connection (and reconnect).
public enum ServerParseError: Error, Equatable, Sendable {
    /// Not a server op, or a payload not followed by CRLF.
    case unknownOperation
    /// An argument line longer than `maxControlLine`.
    case controlLineTooLong
    /// MSG/HMSG with a wrong argument count or a bad size (including header size > total size).
    case badArguments
    /// A MSG/HMSG larger than `maxPayload`.
    case payloadTooLarge
}

/// The outcome of one `ServerParser.parse` call.
public enum ServerParseResult: Equatable, Sendable {
    /// Every byte was consumed; a partial frame may be pending for the next call.
    case ok
    /// A handler returned false; the bytes after that op were not consumed.
    case stopped
    /// The input is invalid. Later calls return the same error.
    case error(ServerParseError)
}

/// Receives the server ops `ServerParser` recognises, in order. Every view is valid only during the call.
/// Each method returns false to stop parsing at once.
public protocol ServerOpHandler {
    /// `INFO <json>`: the raw argument bytes (2.9.10 ends them with a space before CRLF; it is kept).
    mutating func info(json: UnsafeRawBufferPointer) -> Bool
    /// `MSG <subject> <sid> [reply] <#bytes>`. An empty `reply` means none.
    mutating func msg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool
    /// `HMSG <subject> <sid> [reply] <#hdr> <#total>`: `headers` is the whole block including its final
    /// CRLFCRLF, `payload` follows it.
    mutating func hmsg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool
    /// `PING`: the client must answer PONG.
    mutating func ping() -> Bool
    /// `PONG`: answers one of the client's PINGs, in order.
    mutating func pong() -> Bool
    /// `+OK`: acknowledgement of one op when the connection is verbose.
    mutating func ok() -> Bool
    /// `-ERR '<text>'`: the text inside the quotes (the raw text when it is not quoted).
    mutating func err(message: UnsafeRawBufferPointer) -> Bool
}

/// Parses the server -> client protocol for one connection, byte-at-a-time: frames may be split anywhere
/// across calls. Not thread-safe: one connection, one reader thread.
public struct ServerParser: Sendable {
    /// Longest argument line accepted (INFO JSON included); longer is `.controlLineTooLong`.
    public var maxControlLine: Int
    /// Largest MSG/HMSG total size accepted (default 64 MiB, the most a server can be configured to);
    /// larger is `.payloadTooLarge`. Bounds the split buffer.
    public var maxPayload: Int = 64 * 1024 * 1024

    private var state: State = .start
    private var word: Word = .msg
    private var wordPos = 0
    private var split = SplitBuffer()
    private var argSawCR = false
    private var head = ServerMessageHead()
    private var payloadOffset = 0
    private var payloadHave = 0
    private var failure: ServerParseError?

    /// Creates a parser; the default control line (64 KiB) leaves room for a large INFO.
    public init(maxControlLine: Int = 4096 * 16) {
        self.maxControlLine = maxControlLine
    }

    /// Bytes held for a frame split across calls.
    public var bufferedByteCount: Int { split.count }
    /// Capacity of the split-frame buffer (for tests: it must stay bounded).
    public var bufferCapacity: Int { split.capacity }

    /// Feeds bytes; calls the handler once per complete op, in order.
    /// - Returns: `.ok` when all bytes were consumed, `.stopped` when a handler returned false,
    ///   `.error` when the input is invalid (sticky: later calls return it again).
    public mutating func parse<H: ServerOpHandler>(_ bytes: UnsafeRawBufferPointer, into handler: inout H) -> ServerParseResult {
        if let f = failure { return .error(f) }
        let n = bytes.count
        var i = 0
        while i < n {
            switch state {
            case .start:
                switch ASCII.upper(bytes[i]) {
                case 0x4D: word = .msg; wordPos = 1; state = .word    // M
                case 0x48: word = .hmsg; wordPos = 1; state = .word   // H
                case 0x49: word = .info; wordPos = 1; state = .word   // I
                case 0x50: state = .p                                 // P
                case 0x2B: word = .ok; wordPos = 1; state = .word     // +
                case 0x2D: word = .err; wordPos = 1; state = .word    // -
                default: return fail(.unknownOperation)
                }
                i += 1
            case .p:
                switch ASCII.upper(bytes[i]) {
                case 0x49: word = .ping   // I
                case 0x4F: word = .pong   // O
                default: return fail(.unknownOperation)
                }
                wordPos = 2; state = .word; i += 1
            case .word:
                let spelling = word.spelling
                guard ASCII.upper(bytes[i]) == spelling.utf8Start[wordPos] else { return fail(.unknownOperation) }
                wordPos += 1
                i += 1
                if wordPos == spelling.utf8CodeUnitCount {
                    switch word {
                    case .info: state = .blanks
                    case .ping, .pong, .ok: state = .skipLine
                    case .msg, .hmsg, .err: state = .needBlank
                    }
                }
            case .needBlank:
                guard ASCII.isBlank(bytes[i]) else { return fail(.unknownOperation) }
                state = .blanks
                i += 1
            case .blanks:
                while i < n && ASCII.isBlank(bytes[i]) { i += 1 }
                if i == n { break }
                let first = i
                if let lf = bytes.firstLF(from: first + 1) {
                    var end = lf
                    if lf - 1 > first && (bytes[lf - 1] == ASCII.cr || bytes.containsCR(first + 1, lf)) { end = lf - 1 }
                    i = lf + 1
                    if let r = completeLine(bytes.slice(first, end), inSplit: false, bytes, &i, &handler) { return r }
                } else {
                    if n - first > maxControlLine + 1 { return fail(.controlLineTooLong) }
                    split.reset()
                    split.append(bytes.slice(first, n))
                    argSawCR = bytes.containsCR(first + 1, n)
                    state = .arg
                    i = n
                }
            case .arg:
                let lf = bytes.firstLF(from: i)
                let end = lf ?? n
                if split.count + (end - i) > maxControlLine + 1 { return fail(.controlLineTooLong) }
                split.append(bytes.slice(i, end))
                if !argSawCR { argSawCR = bytes.containsCR(i, end) }
                guard let lf else { i = n; break }
                i = lf + 1
                let line = split.view(0, split.count - (argSawCR ? 1 : 0))
                if let r = completeLine(line, inSplit: true, bytes, &i, &handler) { return r }
            case .skipLine:
                guard let lf = bytes.firstLF(from: i) else { i = n; break }
                i = lf + 1
                state = .start
                let go: Bool
                switch word {
                case .ping: go = handler.ping()
                case .pong: go = handler.pong()
                default: go = handler.ok()
                }
                if !go { return .stopped }
            case .payload:
                let take = Swift.min(head.size - payloadHave, n - i)
                split.append(bytes.slice(i, i + take))
                payloadHave += take
                i += take
                if payloadHave == head.size { state = .endR }
            case .endR:
                guard bytes[i] == ASCII.cr else { return fail(.unknownOperation) }
                state = .endN
                i += 1
            case .endN:
                guard bytes[i] == ASCII.lf else { return fail(.unknownOperation) }
                i += 1
                state = .start
                let go = deliver(head, line: split.view(0, split.count), body: split.view(payloadOffset, head.size), &handler)
                split.reset()
                if !go { return .stopped }
            }
        }
        return .ok
    }

    // MARK: - Internals

    private mutating func fail(_ e: ServerParseError) -> ServerParseResult {
        failure = e
        split.reset()
        return .error(e)
    }

    private mutating func completeLine<H: ServerOpHandler>(_ line: UnsafeRawBufferPointer, inSplit: Bool,
                                                          _ bytes: UnsafeRawBufferPointer, _ next: inout Int,
                                                          _ handler: inout H) -> ServerParseResult? {
        if line.count > maxControlLine { return fail(.controlLineTooLong) }
        state = .start
        var go = true
        switch word {
        case .info:
            go = handler.info(json: line)
        case .err:
            go = handler.err(message: line.unquoted())
        case .msg, .hmsg:
            let isH = word == .hmsg
            let a = ArgViews.split(line, crlfSeparates: true)
            let base = isH ? 4 : 3
            guard a.count == base || a.count == base + 1 else { return fail(.badArguments) }
            var h = ServerMessageHead()
            h.subject = line.range(of: a.a0)
            h.sid = line.range(of: a.a1)
            if a.count == base + 1 { h.reply = line.range(of: a.a2) }
            guard let total = parseDecimalSize(a[a.count - 1], maxDigits: 18) else { return fail(.badArguments) }
            if isH {
                guard let hdr = parseDecimalSize(a[a.count - 2], maxDigits: 18), hdr <= total else { return fail(.badArguments) }
                h.hasHeaders = true
                h.headerSize = hdr
            }
            h.size = total
            if total > maxPayload { return fail(.payloadTooLarge) }
            return beginPayload(h, line: line, inSplit: inSplit, bytes, &next, &handler)
        case .ping, .pong, .ok:
            break  // not reached: these have no argument line
        }
        if inSplit { split.reset() }
        return go ? nil : .stopped
    }

    private mutating func beginPayload<H: ServerOpHandler>(_ h: ServerMessageHead, line: UnsafeRawBufferPointer, inSplit: Bool,
                                                          _ bytes: UnsafeRawBufferPointer, _ next: inout Int,
                                                          _ handler: inout H) -> ServerParseResult? {
        let p = next
        let n = bytes.count
        if n - p >= h.size + 2 {
            guard bytes[p + h.size] == ASCII.cr, bytes[p + h.size + 1] == ASCII.lf else { return fail(.unknownOperation) }
            next = p + h.size + 2
            let go = deliver(h, line: line, body: bytes.slice(p, p + h.size), &handler)
            if inSplit { split.reset() }
            return go ? nil : .stopped
        }
        if !inSplit {
            split.reset()
            split.append(line)
        }
        head = h
        payloadOffset = split.count
        payloadHave = 0
        split.reserve(total: payloadOffset + h.size)
        state = h.size > 0 ? .payload : .endR
        return nil
    }

    private func deliver<H: ServerOpHandler>(_ h: ServerMessageHead, line: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                                            _ handler: inout H) -> Bool {
        if h.hasHeaders {
            return handler.hmsg(subject: line.view(h.subject), sid: line.view(h.sid), reply: line.view(h.reply),
                                headers: body.slice(0, h.headerSize), payload: body.slice(h.headerSize, body.count))
        }
        return handler.msg(subject: line.view(h.subject), sid: line.view(h.sid), reply: line.view(h.reply), payload: body)
    }

    private enum State: UInt8 {
        case start, p, word, needBlank, blanks, arg, skipLine, payload, endR, endN
    }

    private enum Word: UInt8 {
        case msg, hmsg, info, ping, pong, ok, err

        var spelling: StaticString {
            switch self {
            case .msg: "MSG"
            case .hmsg: "HMSG"
            case .info: "INFO"
            case .ping: "PING"
            case .pong: "PONG"
            case .ok: "+OK"
            case .err: "-ERR"
            }
        }
    }
}

/// The parsed head of a MSG/HMSG: ranges into its argument line, and sizes.
struct ServerMessageHead: Sendable {
    var hasHeaders = false
    var subject = BufferRange()
    var sid = BufferRange()
    var reply = BufferRange()
    var headerSize = 0
    var size = 0
}
