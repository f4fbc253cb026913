// The client library's parser for what a server sends: INFO, MSG, HMSG, PING, PONG, +OK, -ERR.
// It shares ClientParser's framing state machine (LineFramer in ParserSupport.swift): byte-at-a-time,
// arguments and payloads are views into the caller's bytes, and only a frame split across calls is
// copied into a bounded buffer.
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
    public var maxControlLine: Int {
        get { framer.maxControlLine }
        set { framer.maxControlLine = newValue }
    }
    /// Largest MSG/HMSG total size accepted (default 64 MiB, the most a server can be configured to);
    /// larger is `.payloadTooLarge`. Bounds the split buffer.
    public var maxPayload: Int = 64 * 1024 * 1024

    private var framer: LineFramer<Word>
    private var head = ServerMessageHead()
    private var failure: ServerParseError?

    /// Creates a parser; the default control line (64 KiB) leaves room for a large INFO.
    public init(maxControlLine: Int = 4096 * 16) {
        framer = LineFramer(maxControlLine: maxControlLine, word: .msg)
    }

    /// Bytes held for a frame split across calls.
    public var bufferedByteCount: Int { framer.split.count }
    /// Capacity of the split-frame buffer (for tests: it must stay bounded).
    public var bufferCapacity: Int { framer.split.capacity }

    /// Feeds bytes; calls the handler once per complete op, in order.
    /// - Returns: `.ok` when all bytes were consumed, `.stopped` when a handler returned false,
    ///   `.error` when the input is invalid (sticky: later calls return it again).
    public mutating func parse<H: ServerOpHandler>(_ bytes: UnsafeRawBufferPointer, into handler: inout H) -> ServerParseResult {
        if let f = failure { return .error(f) }
        var i = 0
        while true {
            switch framer.next(bytes, &i) {
            case .end:
                return .ok
            case .line(let line, let inSplit):
                if let r = completeLine(line, inSplit: inSplit, bytes, &i, &handler) { return r }
            case .bare:
                let go: Bool
                switch framer.word {
                case .ping: go = handler.ping()
                case .pong: go = handler.pong()
                default: go = handler.ok()
                }
                if !go { return .stopped }
            case .message(let line, let body):
                let go = deliver(head, line: line, body: body, &handler)
                framer.endLine(inSplit: true)
                if !go { return .stopped }
            case .failure(let f):
                return fail(f == .controlLineTooLong ? .controlLineTooLong : .unknownOperation)
            }
        }
    }

    // MARK: - Internals

    private mutating func fail(_ e: ServerParseError) -> ServerParseResult {
        failure = e
        framer.abandon()
        return .error(e)
    }

    private mutating func completeLine<H: ServerOpHandler>(_ line: UnsafeRawBufferPointer, inSplit: Bool,
                                                          _ bytes: UnsafeRawBufferPointer, _ next: inout Int,
                                                          _ handler: inout H) -> ServerParseResult? {
        var go = true
        switch framer.word {
        case .info:
            go = handler.info(json: line)
        case .err:
            go = handler.err(message: line.unquoted())
        case .msg, .hmsg:
            let isH = framer.word == .hmsg
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
            switch framer.beginPayload(size: total, line: line, inSplit: inSplit, bytes, &next) {
            case .here(let body):
                go = deliver(h, line: line, body: body, &handler)
            case .pending:
                head = h
                return nil
            case .badEnd:
                return fail(.unknownOperation)
            }
        case .ping, .pong, .ok:
            break  // not reached: these have no argument line
        }
        framer.endLine(inSplit: inSplit)
        return go ? nil : .stopped
    }

    private func deliver<H: ServerOpHandler>(_ h: ServerMessageHead, line: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                                            _ handler: inout H) -> Bool {
        if h.hasHeaders {
            return handler.hmsg(subject: line.view(h.subject), sid: line.view(h.sid), reply: line.view(h.reply),
                                headers: body.slice(0, h.headerSize), payload: body.slice(h.headerSize, body.count))
        }
        return handler.msg(subject: line.view(h.subject), sid: line.view(h.sid), reply: line.view(h.reply), payload: body)
    }

    /// The server op names. PING stands for both names that begin with P until the O of PONG.
    private enum Word: UInt8, OpWord {
        case msg, hmsg, info, ping, pong, ok, err

        @inline(__always)
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

        @inline(__always)
        var tail: WordTail {
            switch self {
            case .info: .arguments
            case .ping, .pong, .ok: .ignoredLine
            case .msg, .hmsg, .err: .blankThenArguments
            }
        }

        @inline(__always)
        static func lead(_ byte: UInt8, connectFirst: Bool) -> OpLead<Word> {
            switch ASCII.upper(byte) {
            case 0x4D: .word(.msg)      // M
            case 0x48: .word(.hmsg)     // H
            case 0x49: .word(.info)     // I
            case 0x50: .word(.ping)     // P (PONG through `instead`)
            case 0x2B: .word(.ok)       // +
            case 0x2D: .word(.err)      // -
            default: .unknown
            }
        }

        static func instead(of word: Word, at position: Int, _ upper: UInt8) -> Word? {
            position == 1 && word == .ping && upper == 0x4F ? .pong : nil  // PO
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
