// The broker's parser for what clients send, byte-at-a-time and zero-copy, reproducing nats-server
// 2.9.10 (`client.parse` in server/parser.go with `processPub`, `processHeaderPub`, `processSub`,
// `processUnsub`, `processInfo`, `processErr` in server/client.go, and `parseSize`/`splitArg`).
//
// Facts of 2.9.10 this parser reproduces (read in parser.go and checked against the real server):
// - Op names are case-insensitive. PUB, HPUB, SUB, UNSUB, -ERR need at least one space or tab after the
//   name; CONNECT and INFO take their argument right after the name (`CONNECT{...}` is accepted).
//   Any further spaces/tabs are skipped; the first other byte starts the argument line, whatever it is.
// - The argument line ends at LF. If a CR appeared anywhere after its first byte, the byte before the LF
//   is dropped (parser.go keeps one `drop` flag per line), so `PUB foo 5\rX\n` has the argument `foo 5\r`.
// - PING, PONG and +OK ignore every byte up to the next LF (`PINGX\r\n` is a PING).
// - The control-line limit applies to the argument line of every op with arguments
//   (`overMaxControlLineLimit`, also while a line is split across reads); it is never checked for the
//   blanks before the arguments nor for PING/PONG/+OK.
// - PUB/HPUB arguments split on spaces and tabs only (`processPub`), SUB/UNSUB arguments also on CR/LF
//   (`splitArg`). Sizes go through `parseSize`: ASCII digits only, at most 9 of them, else invalid.
// - A payload must be followed by exactly CRLF, else `Unknown Protocol Operation`; the op is delivered only
//   after that CRLF.
// - What a client may send besides its own ops:
//   - `INFO <json>`: `processInfo` ignores it for a client connection once the JSON decodes, and closes
//     the connection (no -ERR) when it does not. Delivered through `info(json:)`; the broker decodes.
//   - `+OK`: ignored (parser.go state OP_PLUS_OK). Delivered through `ok()`.
//   - `-ERR <text>`: `processErr` logs it and closes the connection (no -ERR back). Delivered through
//     `err(message:)`, which should return false. `-ERR` without a blank is an unknown op.
//   - `MSG`: 'M' is not a valid first byte for a client connection (only routes/leafnodes reach OP_M):
//     `Unknown Protocol Operation`. So are `RS+`, `LS+`, `A+`.
//   - `HMSG <anything>`: parser.go reaches HMSG_ARG and, for a client, runs no argument processing; the
//     message size stays 0, so the next two bytes must be CRLF and then `processInboundMsg` runs with an
//     empty subject (the real server answers +OK when verbose). Delivered as
//     `pub(subject: <empty>, reply: <empty>, payload: <empty>)`; an empty subject never occurs otherwise.
//   - Anything else, including an empty line or a leading blank: `Unknown Protocol Operation`.
// - When auth is required and CONNECT has not been seen, any first op byte other than 'C'/'c' is an
//   `Authorization Violation` (checked before the op is recognised).

/// The client verbs whose bad arguments close the connection without an -ERR.
public enum ClientVerb: Equatable, Sendable {
    case connect, pub, hpub, sub, unsub, info, err
}

/// Why `ClientParser.parse` gave up. Each maps to one reaction of nats-server 2.9.10 (see `ServerError`).
public enum ClientParseError: Error, Equatable, Sendable {
    /// `-ERR 'Unknown Protocol Operation'`, then close.
    case unknownOperation
    /// `-ERR 'Authorization Violation'`, then close.
    case authorizationViolation
    /// `-ERR 'maximum control line exceeded'`, then close.
    case maxControlLineExceeded
    /// `-ERR 'Maximum Payload Violation'`, then close.
    case maxPayloadViolation
    /// Wrong argument count or a bad size: close with no -ERR. The parser produces it for PUB, HPUB, SUB
    /// and UNSUB; the other verbs are for the broker (bad CONNECT or INFO JSON, a client -ERR).
    case badArguments(ClientVerb)
}

/// The outcome of one `ClientParser.parse` call.
public enum ClientParseResult: Equatable, Sendable {
    /// Every byte was consumed; a partial frame may be pending for the next call.
    case ok
    /// A handler returned false; the bytes after that op were not consumed.
    case stopped
    /// The input is invalid; the connection must close. Later calls return the same error.
    case error(ClientParseError)
}

/// Receives the client ops `ClientParser` recognises, in order. Every view is valid only during the call.
/// Each method returns false to stop parsing at once (the connection is closing).
public protocol ClientOpHandler {
    /// `CONNECT <json>`: the raw argument bytes (not validated as JSON).
    mutating func connect(json: UnsafeRawBufferPointer) -> Bool
    /// `PUB <subject> [reply] <#bytes>` and its payload. An empty `reply` means none.
    /// An empty `subject` is 2.9.10's client-HMSG quirk (see the file comment): count it as an inbound
    /// message, check publish permission on "", send +OK when verbose, skip the pedantic check, route nowhere.
    mutating func pub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool
    /// `HPUB`: `headers` is the whole header block including its final CRLFCRLF; `payload` follows it.
    mutating func hpub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool
    /// `SUB <subject> [queue] <sid>`. An empty `queue` means none. The subject is not validated.
    mutating func sub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer) -> Bool
    /// `UNSUB <sid> [max]`. `max` is nil when absent or not a valid size (2.9.10 then unsubscribes at once,
    /// as it does for 0).
    mutating func unsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool
    /// `PING` (any bytes up to the LF are ignored): the broker answers PONG, even before CONNECT.
    mutating func ping() -> Bool
    /// `PONG`: answers a server PING (resets the outstanding-ping count).
    mutating func pong() -> Bool
    /// `INFO <json>` from a client: 2.9.10 ignores valid JSON and closes silently on invalid JSON.
    mutating func info(json: UnsafeRawBufferPointer) -> Bool
    /// `+OK` from a client: ignored by 2.9.10.
    mutating func ok() -> Bool
    /// `-ERR <text>` from a client (surrounding single quotes removed): 2.9.10 logs it and closes.
    mutating func err(message: UnsafeRawBufferPointer) -> Bool
    /// Whether this connection negotiated headers (`"headers":true` in CONNECT). When false, an HPUB
    /// fails at its control line with `.badArguments(.hpub)` before its arguments are even read, as
    /// 2.9.10's `processHeaderPub` does. Read once per HPUB line.
    var acceptsHeaders: Bool { get }
}

extension ClientOpHandler {
    /// Headers are accepted unless the handler says otherwise.
    public var acceptsHeaders: Bool { true }
}

/// Parses the client -> server protocol for one connection, byte-at-a-time: frames may be split anywhere
/// across calls. Arguments and payloads are views into the bytes passed to `parse`; only a frame split
/// across calls is copied, into a buffer bounded by the control-line and payload limits.
/// Not thread-safe: one connection, one thread.
public struct ClientParser: Sendable {
    /// Longest argument line accepted (CONNECT JSON included); longer is `.maxControlLineExceeded`.
    public var maxControlLine: Int {
        get { framer.maxControlLine }
        set { framer.maxControlLine = newValue }
    }
    /// Largest PUB/HPUB total size accepted; larger is `.maxPayloadViolation`.
    public var maxPayload: Int
    /// When true (auth required and no CONNECT seen yet), any op other than CONNECT fails with
    /// `.authorizationViolation` at its first byte, as nats-server 2.9.10 does. Cleared by CONNECT.
    public var requireConnectFirst: Bool {
        get { framer.connectFirst }
        set { framer.connectFirst = newValue }
    }

    // Internal for @inlinable: parse is specialised for the caller's handler type (the broker's),
    // so handler calls are direct and the op path inlines; unspecialised it went through witness tables.
    @usableFromInline var framer: LineFramer<Word>
    @usableFromInline var head = MessageHead()
    @usableFromInline var failure: ClientParseError?

    /// Creates a parser with the 2.9.10 defaults (4 KiB control line, 1 MiB payload).
    public init(maxControlLine: Int = 4096, maxPayload: Int = 1_048_576) {
        self.framer = LineFramer(maxControlLine: maxControlLine, word: .pub)
        self.maxPayload = maxPayload
    }

    /// Bytes held for a frame split across calls (for tests and monitoring).
    public var bufferedByteCount: Int { framer.split.count }
    /// Capacity of the split-frame buffer (for tests: it must stay bounded).
    public var bufferCapacity: Int { framer.split.capacity }

    /// Feeds bytes; calls the handler once per complete op, in order.
    /// - Returns: `.ok` when all bytes were consumed, `.stopped` when a handler returned false,
    ///   `.error` when the input is invalid (sticky: later calls return it again).
    @inlinable
    public mutating func parse<H: ClientOpHandler>(_ bytes: UnsafeRawBufferPointer, into handler: inout H) -> ClientParseResult {
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
                switch f {
                case .unknownOperation: return fail(.unknownOperation)
                case .controlLineTooLong: return fail(.maxControlLineExceeded)
                case .connectFirst: return fail(.authorizationViolation)
                }
            }
        }
    }

    // MARK: - Internals

    @usableFromInline
    mutating func fail(_ e: ClientParseError) -> ClientParseResult {
        failure = e
        framer.abandon()
        return .error(e)
    }

    /// Handles one complete argument line. `next` is the index after its LF and is advanced past a
    /// payload found in `bytes`. Returns nil to continue parsing.
    @inlinable
    mutating func completeLine<H: ClientOpHandler>(_ line: UnsafeRawBufferPointer, inSplit: Bool,
                                                   _ bytes: UnsafeRawBufferPointer, _ next: inout Int,
                                                   _ handler: inout H) -> ClientParseResult? {
        let word = framer.word
        var go = true
        switch word {
        case .connect:
            requireConnectFirst = false
            go = handler.connect(json: line)
        case .info:
            go = handler.info(json: line)
        case .err:
            go = handler.err(message: line.unquoted())
        case .sub:
            let a = ArgViews.split(line, crlfSeparates: true)
            switch a.count {
            case 2: go = handler.sub(subject: a.a0, queue: emptyView, sid: a.a1)
            case 3: go = handler.sub(subject: a.a0, queue: a.a1, sid: a.a2)
            default: return fail(.badArguments(.sub))
            }
        case .unsub:
            let a = ArgViews.split(line, crlfSeparates: true)
            switch a.count {
            case 1: go = handler.unsub(sid: a.a0, max: nil)
            case 2: go = handler.unsub(sid: a.a0, max: parseDecimalSize(a.a1))
            default: return fail(.badArguments(.unsub))
            }
        case .pub, .hpub, .hmsg:
            var h = MessageHead()
            if word == .hmsg {
                h.kind = .emptyPublish
            } else {
                let isH = word == .hpub
                let verb: ClientVerb = isH ? .hpub : .pub
                if isH && !handler.acceptsHeaders { return fail(.badArguments(.hpub)) }
                let a = ArgViews.split(line, crlfSeparates: false)
                let base = isH ? 3 : 2
                guard a.count == base || a.count == base + 1 else { return fail(.badArguments(verb)) }
                h.subject = line.range(of: a.a0)
                if a.count == base + 1 { h.reply = line.range(of: a.a1) }
                if isH {
                    h.kind = .headers
                    guard let hdr = parseDecimalSize(a[a.count - 2]),
                          let total = parseDecimalSize(a[a.count - 1]), hdr <= total
                    else { return fail(.badArguments(.hpub)) }
                    h.headerSize = hdr
                    h.size = total
                } else {
                    guard let total = parseDecimalSize(a[a.count - 1]) else { return fail(.badArguments(.pub)) }
                    h.size = total
                }
                if h.size > maxPayload { return fail(.maxPayloadViolation) }
            }
            switch framer.beginPayload(size: h.size, line: line, inSplit: inSplit, bytes, &next) {
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

    /// Calls the handler for a complete message. `line` is the argument line `h`'s ranges refer to.
    @inlinable
    func deliver<H: ClientOpHandler>(_ h: MessageHead, line: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                                     _ handler: inout H) -> Bool {
        switch h.kind {
        case .plain:
            return handler.pub(subject: line.view(h.subject), reply: line.view(h.reply), payload: body)
        case .headers:
            return handler.hpub(subject: line.view(h.subject), reply: line.view(h.reply),
                                headers: body.slice(0, h.headerSize), payload: body.slice(h.headerSize, body.count))
        case .emptyPublish:
            return handler.pub(subject: emptyView, reply: emptyView, payload: emptyView)
        }
    }

    /// The client op names. PUB stands for every name that begins with P until a letter says otherwise;
    /// HPUB for those with H.
    @usableFromInline
    enum Word: UInt8, OpWord {
        case connect, hpub, hmsg, pub, ping, pong, sub, unsub, info, ok, err

        @inlinable @inline(__always)
        var spelling: StaticString {
            switch self {
            case .connect: "CONNECT"
            case .hpub: "HPUB"
            case .hmsg: "HMSG"
            case .pub: "PUB"
            case .ping: "PING"
            case .pong: "PONG"
            case .sub: "SUB"
            case .unsub: "UNSUB"
            case .info: "INFO"
            case .ok: "+OK"
            case .err: "-ERR"
            }
        }

        @inlinable @inline(__always)
        var tail: WordTail {
            switch self {
            case .connect, .info: .arguments
            case .ping, .pong, .ok: .ignoredLine
            case .hpub, .hmsg, .pub, .sub, .unsub, .err: .blankThenArguments
            }
        }

        @inlinable @inline(__always)
        static func lead(_ byte: UInt8, connectFirst: Bool) -> OpLead<Word> {
            if connectFirst && byte != 0x43 && byte != 0x63 { return .refused }
            switch ASCII.upper(byte) {
            case 0x43: return .word(.connect)  // C
            case 0x50: return .word(.pub)      // P (PING and PONG through `instead`)
            case 0x48: return .word(.hpub)     // H (HMSG through `instead`)
            case 0x53: return .word(.sub)      // S
            case 0x55: return .word(.unsub)    // U
            case 0x49: return .word(.info)     // I
            case 0x2B: return .word(.ok)       // +
            case 0x2D: return .word(.err)      // -
            default: return .unknown
            }
        }

        @inlinable @inline(__always)
        static func instead(of word: Word, at position: Int, _ upper: UInt8) -> Word? {
            guard position == 1 else { return nil }
            switch (word, upper) {
            case (.pub, 0x49): return .ping   // PI
            case (.pub, 0x4F): return .pong   // PO
            case (.hpub, 0x4D): return .hmsg  // HM
            default: return nil
            }
        }
    }
}

/// The parsed head of a PUB/HPUB: ranges into its argument line, and sizes.
@usableFromInline
struct MessageHead: Sendable {
    @usableFromInline
    enum Kind: UInt8, Sendable { case plain, headers, emptyPublish }
    @usableFromInline var kind: Kind = .plain
    @usableFromInline var subject = BufferRange()
    @usableFromInline var reply = BufferRange()
    @usableFromInline var headerSize = 0
    @usableFromInline var size = 0

    @inlinable init() {}
}
