// What ClientParser and ServerParser share: the framing state machine (LineFramer), ASCII sizes,
// argument splitting into views, the bounded split-frame buffer. Nothing here allocates except
// SplitBuffer when a frame is split.

import Glibc

/// ASCII codes the parsers test for.
@usableFromInline
enum ASCII {
    @usableFromInline static let cr: UInt8 = 0x0D
    @usableFromInline static let lf: UInt8 = 0x0A
    @usableFromInline static let space: UInt8 = 0x20
    @usableFromInline static let tab: UInt8 = 0x09
    @usableFromInline static let quote: UInt8 = 0x27  // '
    @usableFromInline static let zero: UInt8 = 0x30
    @usableFromInline static let nine: UInt8 = 0x39

    /// Upper-cases an ASCII letter (any other byte comes back unchanged).
    @inlinable @inline(__always)
    static func upper(_ b: UInt8) -> UInt8 {
        (b >= 0x61 && b <= 0x7A) ? b &- 0x20 : b
    }

    @inlinable @inline(__always)
    static func isBlank(_ b: UInt8) -> Bool { b == space || b == tab }
}

/// Parses a decimal size the way nats-server 2.9.10 `parseSize` (server/util.go) does: only ASCII digits,
/// at most `maxDigits` of them (2.9.10 allows 9, "999M"), no sign. Returns nil for empty, too long,
/// non-digit input, or a value that would overflow `Int`.
@inlinable @inline(__always)
func parseDecimalSize(_ v: UnsafeRawBufferPointer, maxDigits: Int = 9) -> Int? {
    let n = v.count
    if n == 0 || n > maxDigits { return nil }
    var value = 0
    for i in 0..<n {
        let d = v[i]
        guard d >= ASCII.zero && d <= ASCII.nine else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(Int(d &- ASCII.zero))
        if o1 || o2 { return nil }
        value = s
    }
    return value
}

/// An empty view: "absent" in every handler callback.
@inlinable var emptyView: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

/// Up to five argument views cut out of a control line (HMSG with a reply has five), plus how many
/// arguments the line really had (`count` keeps counting past five so callers can reject a wrong argument
/// count). No allocation.
@usableFromInline
struct ArgViews {
    @usableFromInline var a0 = emptyView
    @usableFromInline var a1 = emptyView
    @usableFromInline var a2 = emptyView
    @usableFromInline var a3 = emptyView
    @usableFromInline var a4 = emptyView
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable @inline(__always)
    subscript(i: Int) -> UnsafeRawBufferPointer {
        switch i {
        case 0: return a0
        case 1: return a1
        case 2: return a2
        case 3: return a3
        case 4: return a4
        default: return emptyView
        }
    }

    @inlinable @inline(__always)
    mutating func append(_ v: UnsafeRawBufferPointer) {
        switch count {
        case 0: a0 = v
        case 1: a1 = v
        case 2: a2 = v
        case 3: a3 = v
        case 4: a4 = v
        default: break
        }
        count += 1
    }

    /// Splits `line` on runs of spaces and tabs (and also CR and LF when `crlfSeparates`, as 2.9.10's
    /// `splitArg` does for SUB/UNSUB; its PUB/HPUB splitter only knows space and tab).
    @inlinable @inline(__always)
    static func split(_ line: UnsafeRawBufferPointer, crlfSeparates: Bool) -> ArgViews {
        var out = ArgViews()
        guard let base = line.baseAddress else { return out }
        var start = -1
        let n = line.count
        var i = 0
        while i < n {
            if start >= 0 {
                // Inside an argument: skip 8 bytes at a time while none is <= 0x20 (every separator
                // is). The lowest flagged byte of `low` is exact (borrows only run upwards).
                while i &+ 8 <= n {
                    let w = UInt64(littleEndian: (base + i).loadUnaligned(as: UInt64.self))
                    let low = (w &- 0x2121_2121_2121_2121) & ~w & 0x8080_8080_8080_8080
                    if low != 0 {
                        i &+= low.trailingZeroBitCount &>> 3
                        break
                    }
                    i &+= 8
                }
                if i >= n { break }
            }
            let b = line[i]
            if b > ASCII.space {
                if start < 0 { start = i }
                i += 1
                continue
            }
            let sep = b == ASCII.space || b == ASCII.tab || (crlfSeparates && (b == ASCII.cr || b == ASCII.lf))
            if sep {
                if start >= 0 {
                    out.append(UnsafeRawBufferPointer(start: base + start, count: i - start))
                    start = -1
                }
            } else if start < 0 {
                start = i
            }
            i += 1
        }
        if start >= 0 {
            out.append(UnsafeRawBufferPointer(start: base + start, count: n - start))
        }
        return out
    }
}

/// A byte range inside the split buffer (offsets, so it survives the buffer growing).
@usableFromInline
struct BufferRange: Sendable {
    @usableFromInline var offset = 0
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable init(offset: Int, count: Int) {
        self.offset = offset
        self.count = count
    }
}

/// Storage of `SplitBuffer`: one heap block, grown only on the split-frame path.
@usableFromInline
final class SplitStorage {
    @usableFromInline var base: UnsafeMutableRawPointer?
    @usableFromInline var capacity = 0
    @usableFromInline var count = 0

    init() {}

    deinit { base?.deallocate() }

    @discardableResult
    func grow(to newCapacity: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 1)
        if let old = base {
            if count > 0 { p.copyMemory(from: old, byteCount: count) }
            old.deallocate()
        }
        base = p
        capacity = newCapacity
        return p
    }
}

/// Holds the bytes of one frame that arrived split across `parse` calls: first the control-line
/// arguments, then (for messages) the payload. The owner bounds it: the arguments by the control-line
/// limit, the payload by the size already checked against the payload limit. Views handed out stay
/// valid until the next mutating call. Copy-on-write, so a copied parser never shares live bytes.
@usableFromInline
struct SplitBuffer: @unchecked Sendable {
    @usableFromInline var storage = SplitStorage()
    /// Capacity kept after a frame completes; a larger block is released so an idle connection does not
    /// pin the memory of one big split message.
    let retainLimit: Int

    @usableFromInline
    init(retainLimit: Int = 16 * 1024) {
        self.retainLimit = retainLimit
    }

    @inlinable var count: Int { storage.count }
    @usableFromInline var capacity: Int { storage.capacity }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = SplitStorage()
            if storage.count > 0, let src = storage.base {
                copy.grow(to: storage.count).copyMemory(from: src, byteCount: storage.count)
                copy.count = storage.count
            }
            storage = copy
        }
    }

    /// Makes room for `total` bytes in all (never shrinks).
    @usableFromInline
    mutating func reserve(total: Int) {
        makeUnique()
        if storage.capacity < total { storage.grow(to: total) }
    }

    @usableFromInline
    mutating func append(_ v: UnsafeRawBufferPointer) {
        guard v.count > 0, let src = v.baseAddress else { return }
        makeUnique()
        let need = storage.count + v.count
        let base: UnsafeMutableRawPointer
        if storage.capacity < need || storage.base == nil {
            base = storage.grow(to: Swift.max(need, Swift.min(storage.capacity * 2, need + 4096), 256))
        } else if let b = storage.base {
            base = b
        } else {
            return
        }
        (base + storage.count).copyMemory(from: src, byteCount: v.count)
        storage.count = need
    }

    /// Forgets the frame; keeps the block only when it is small.
    @usableFromInline
    mutating func reset() {
        makeUnique()
        if storage.capacity > retainLimit {
            storage.base?.deallocate()
            storage.base = nil
            storage.capacity = 0
        }
        storage.count = 0
    }

    /// A view of `count` bytes at `offset` (valid until the next mutating call).
    @inlinable @inline(__always)
    func view(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        guard count > 0, let base = storage.base else { return emptyView }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    @inlinable @inline(__always)
    func view(_ r: BufferRange) -> UnsafeRawBufferPointer { view(r.offset, r.count) }
}

extension UnsafeRawBufferPointer {
    /// The sub-view `r` of this buffer (which must contain it).
    @inlinable @inline(__always)
    func view(_ r: BufferRange) -> UnsafeRawBufferPointer {
        guard r.count > 0, let base = baseAddress else { return emptyView }
        return UnsafeRawBufferPointer(start: base + r.offset, count: r.count)
    }

    /// The sub-view `lo..<hi` (which must lie inside this buffer).
    @inlinable @inline(__always)
    func slice(_ lo: Int, _ hi: Int) -> UnsafeRawBufferPointer {
        guard hi > lo, let base = baseAddress else { return emptyView }
        return UnsafeRawBufferPointer(start: base + lo, count: hi - lo)
    }

    /// Where `sub` (a view into this buffer) sits, as offsets.
    @inlinable @inline(__always)
    func range(of sub: UnsafeRawBufferPointer) -> BufferRange {
        guard sub.count > 0, let base = baseAddress, let s = sub.baseAddress else { return BufferRange() }
        return BufferRange(offset: s - base, count: sub.count)
    }

    /// Index of the first LF at or after `from`, or nil.
    @inlinable @inline(__always)
    func firstLF(from: Int) -> Int? {
        guard from < count, let base = baseAddress else { return nil }
        guard let hit = memchr(base + from, Int32(ASCII.lf), count - from) else { return nil }
        return UnsafeRawPointer(hit) - base
    }

    /// Whether a CR occurs in `lo..<hi`.
    @inlinable @inline(__always)
    func containsCR(_ lo: Int, _ hi: Int) -> Bool {
        var i = lo
        while i < hi {
            if self[i] == ASCII.cr { return true }
            i += 1
        }
        return false
    }

    /// Strips one pair of surrounding single quotes (the `-ERR 'text'` form).
    @inlinable @inline(__always)
    func unquoted() -> UnsafeRawBufferPointer {
        if count >= 2, self[0] == ASCII.quote, self[count - 1] == ASCII.quote, let base = baseAddress {
            return UnsafeRawBufferPointer(start: base + 1, count: count - 2)
        }
        return self
    }
}

// MARK: - Framing

// The framing both parsers share. Both directions of the protocol frame their ops the same way (the
// server's parser.go and nats.go's client parser mirror each other): an op name spelled
// case-insensitively, the blanks before its argument line, an argument line up to LF (a CR anywhere
// after its first byte drops the byte before the LF, as parser.go's `drop` flag does), a line that
// PING, PONG and +OK ignore up to LF, and a payload followed by exactly CRLF.
//
// What differs stays with each parser: its op names (an `OpWord` type), what the arguments mean, and
// its handler. The framer does not call the handler; it returns an event and the parser's loop makes
// the handler call. So the handler calls stay direct in each parser's specialised `parse`, and the
// framer needs no knowledge of either handler protocol.

/// What an op name is followed by.
@usableFromInline
enum WordTail: UInt8, Sendable {
    /// Optional blanks, then the argument line (INFO, CONNECT: `CONNECT{...}` is accepted).
    case arguments
    /// At least one blank, then optional blanks, then the argument line (PUB, MSG, -ERR, ...).
    case blankThenArguments
    /// Anything up to the LF is ignored (PING, PONG, +OK).
    case ignoredLine
}

/// How the first byte of an op begins it.
@usableFromInline
enum OpLead<Word>: Sendable where Word: Sendable {
    /// The byte is the first letter of `Word` (or of a name that `Word.instead` picks later).
    case word(Word)
    /// No op starts with this byte.
    case unknown
    /// The connection must send CONNECT first and this byte cannot begin it.
    case refused
}

/// The op names one direction of the protocol knows.
@usableFromInline
protocol OpWord: Sendable {
    /// The name in upper case.
    var spelling: StaticString { get }
    /// What follows the name.
    var tail: WordTail { get }
    /// How the first byte (as received, not upper-cased) begins an op. `connectFirst` is true while
    /// only CONNECT may begin one.
    static func lead(_ byte: UInt8, connectFirst: Bool) -> OpLead<Self>
    /// The name to go on with when the upper-cased byte at `position` does not spell `word`: one that
    /// spells the same up to `position` and has that byte there (PING after the P of PUB), or nil.
    static func instead(of word: Self, at position: Int, _ upper: UInt8) -> Self?
}

/// Why the framer gave up; each parser maps it to its own error.
@usableFromInline
enum FrameFailure: UInt8, Sendable {
    /// Not an op name, a missing blank after one, or a payload not followed by CRLF.
    case unknownOperation
    /// An argument line longer than the control-line limit.
    case controlLineTooLong
    /// `OpLead.refused`: an op other than CONNECT before CONNECT.
    case connectFirst
}

/// What `LineFramer.next` found.
@usableFromInline
enum FrameEvent {
    /// Every byte was consumed; a partial frame may be pending.
    case end
    /// The complete argument line of the op `word` names, without its line end. `inSplit` says it is a
    /// view into the split buffer (the line came in pieces) rather than into the input. When a
    /// payload follows, the parser calls `beginPayload`; unless that leaves it `.pending`, and for
    /// lines without a payload, it calls `endLine(inSplit:)` when done with the line.
    case line(UnsafeRawBufferPointer, inSplit: Bool)
    /// The ignored line of the op `word` names (PING, PONG, +OK) ended.
    case bare
    /// A payload that arrived in pieces is complete, CRLF included: `line` begins with its argument
    /// line (ranges the parser took in the line hold in it) and `body` is the payload, both in the
    /// split buffer, valid until `endLine(inSplit: true)`.
    case message(line: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer)
    /// The input is invalid.
    case failure(FrameFailure)
}

/// What `LineFramer.beginPayload` found.
@usableFromInline
enum PayloadStart {
    /// The payload and its CRLF are all in the input: a view of the payload. The input index is past
    /// the CRLF.
    case here(UnsafeRawBufferPointer)
    /// The payload is incomplete; the line and what there is of the payload were kept, and `next`
    /// will return `.message` when the rest has come.
    case pending
    /// The payload is not followed by CRLF.
    case badEnd
}

/// The shared framing state machine, byte-at-a-time: frames may be split anywhere across calls. Lines
/// and payloads are views into the input; only a frame split across calls is copied, into a buffer
/// bounded by the control-line limit and the payload size the parser checked.
@usableFromInline
struct LineFramer<Word: OpWord>: Sendable {
    /// Longest argument line accepted.
    @usableFromInline var maxControlLine: Int
    /// While true, only CONNECT may begin an op (`Word.lead` sees it; a word set without CONNECT
    /// ignores it, and then the compiler drops the load).
    @usableFromInline var connectFirst = false
    /// The op being framed (the last one begun).
    @usableFromInline var word: Word
    @usableFromInline var state: State = .start
    @usableFromInline var wordPos = 0
    @usableFromInline var split = SplitBuffer()
    @usableFromInline var argSawCR = false
    @usableFromInline var payloadOffset = 0
    @usableFromInline var payloadHave = 0
    @usableFromInline var payloadSize = 0

    /// `word` is any name; it is replaced when the first op begins.
    @inlinable
    init(maxControlLine: Int, word: Word) {
        self.maxControlLine = maxControlLine
        self.word = word
    }

    /// Consumes bytes from `i` until an event: the index is left after the bytes that event used.
    @inlinable @inline(__always)
    mutating func next(_ bytes: UnsafeRawBufferPointer, _ i: inout Int) -> FrameEvent {
        let n = bytes.count
        while i < n {
            switch state {
            // An op name, the blank after it and its argument line usually arrive in one read: each
            // state falls through to the next while bytes remain, rather than going round the loop
            // (and its dispatch) once per byte.
            case .start:
                switch Word.lead(bytes[i], connectFirst: connectFirst) {
                case .word(let w): word = w; wordPos = 1; state = .word
                case .unknown: return .failure(.unknownOperation)
                case .refused: return .failure(.connectFirst)
                }
                i += 1
                if i == n { break }
                fallthrough
            case .word:
                var spelling = word.spelling
                while true {
                    let upper = ASCII.upper(bytes[i])
                    if upper != spelling.utf8Start[wordPos] {
                        guard let w = Word.instead(of: word, at: wordPos, upper) else { return .failure(.unknownOperation) }
                        word = w
                        spelling = w.spelling
                    }
                    wordPos += 1
                    i += 1
                    if wordPos == spelling.utf8CodeUnitCount || i == n { break }
                }
                if wordPos < spelling.utf8CodeUnitCount { break }
                switch word.tail {
                case .arguments: state = .blanks; continue
                case .ignoredLine: state = .skipLine; continue
                case .blankThenArguments: state = .needBlank
                }
                if i == n { break }
                fallthrough
            case .needBlank:
                guard ASCII.isBlank(bytes[i]) else { return .failure(.unknownOperation) }
                state = .blanks
                i += 1
                fallthrough
            case .blanks:
                while i < n && ASCII.isBlank(bytes[i]) { i += 1 }
                if i == n { break }
                // The first byte of the argument line is taken whatever it is (parser.go *_SPC states).
                let first = i
                if let lf = bytes.firstLF(from: first + 1) {
                    var end = lf
                    if lf - 1 > first && (bytes[lf - 1] == ASCII.cr || bytes.containsCR(first + 1, lf)) { end = lf - 1 }
                    i = lf + 1
                    return completeLine(bytes.slice(first, end), inSplit: false)
                }
                if n - first > maxControlLine + 1 { return .failure(.controlLineTooLong) }
                split.reset()
                split.append(bytes.slice(first, n))
                argSawCR = bytes.containsCR(first + 1, n)
                state = .arg
                i = n
            case .arg:
                let lf = bytes.firstLF(from: i)
                let end = lf ?? n
                if split.count + (end - i) > maxControlLine + 1 { return .failure(.controlLineTooLong) }
                split.append(bytes.slice(i, end))
                if !argSawCR { argSawCR = bytes.containsCR(i, end) }
                guard let lf else { i = n; break }
                i = lf + 1
                return completeLine(split.view(0, split.count - (argSawCR ? 1 : 0)), inSplit: true)
            case .skipLine:
                guard let lf = bytes.firstLF(from: i) else { i = n; break }
                i = lf + 1
                state = .start
                return .bare
            case .payload:
                let take = Swift.min(payloadSize - payloadHave, n - i)
                split.append(bytes.slice(i, i + take))
                payloadHave += take
                i += take
                if payloadHave == payloadSize { state = .endR }
            case .endR:
                guard bytes[i] == ASCII.cr else { return .failure(.unknownOperation) }
                state = .endN
                i += 1
            case .endN:
                guard bytes[i] == ASCII.lf else { return .failure(.unknownOperation) }
                i += 1
                state = .start
                return .message(line: split.view(0, split.count), body: split.view(payloadOffset, payloadSize))
            }
        }
        return .end
    }

    @inlinable @inline(__always)
    mutating func completeLine(_ line: UnsafeRawBufferPointer, inSplit: Bool) -> FrameEvent {
        if line.count > maxControlLine { return .failure(.controlLineTooLong) }
        state = .start
        return .line(line, inSplit: inSplit)
    }

    /// After a `.line` whose op carries `size` payload bytes (checked against the parser's limit):
    /// hands back the payload when it and its CRLF are all in `bytes` from `next`, else keeps the line
    /// (if not already held) and what there is of the payload. `next` is the index after the line.
    @inlinable @inline(__always)
    mutating func beginPayload(size: Int, line: UnsafeRawBufferPointer, inSplit: Bool,
                               _ bytes: UnsafeRawBufferPointer, _ next: inout Int) -> PayloadStart {
        let p = next
        if bytes.count - p >= size + 2 {
            guard bytes[p + size] == ASCII.cr, bytes[p + size + 1] == ASCII.lf else { return .badEnd }
            next = p + size + 2
            return .here(bytes.slice(p, p + size))
        }
        if !inSplit {
            split.reset()
            split.append(line)
        }
        payloadOffset = split.count
        payloadHave = 0
        payloadSize = size
        split.reserve(total: payloadOffset + size)
        state = size > 0 ? .payload : .endR
        return .pending
    }

    /// Done with a line (or a `.message`): a line held in the split buffer is dropped.
    @inlinable @inline(__always)
    mutating func endLine(inSplit: Bool) {
        if inSplit { split.reset() }
    }

    /// After a failure: drops whatever was held.
    @usableFromInline
    mutating func abandon() {
        split.reset()
    }

    @usableFromInline
    enum State: UInt8, Sendable {
        case start, word, needBlank, blanks, arg, skipLine, payload, endR, endN
    }
}
