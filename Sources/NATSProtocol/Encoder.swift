// Encoder: writes protocol ops into any ByteSink, without allocating.

/// Writes NATS protocol operations into a ``ByteSink``.
///
/// The primary entry points take `UnsafeRawBufferPointer` views and allocate nothing (numbers are
/// written digit by digit). An empty view means "absent" (no reply, no queue). `String`/`[UInt8]`
/// overloads exist for callers off the hot path.
public enum Encoder {
    /// `\r\n` as a view of static memory.
    @inlinable
    static var crlf: UnsafeRawBufferPointer {
        let text: StaticString = "\r\n"
        return UnsafeRawBufferPointer(start: text.utf8Start, count: 2)
    }

    // MARK: server -> client

    /// `MSG <subject> <sid> [reply] <#bytes>\r\n<payload>\r\n`
    ///
    /// The control line is assembled on the stack and handed to the sink in one piece, so a
    /// message costs three `append` calls (line, payload, CRLF).
    @inlinable
    ///
    /// `emptyReplyField` writes the reply field even when it is empty (two spaces), as 2.9.10 does
    /// for what its streams and consumers send without a reply.
    public static func msg<S: ByteSink>(
        _ sink: inout S, subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer,
        reply: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, emptyReplyField: Bool = false
    ) {
        let capacity = 4 + subject.count + 1 + sid.count + 1 + reply.count + 1 + 20 + 2
        withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { raw in
            var line = LineWriter(raw)
            line.put(ascii: "MSG ")
            line.put(subject)
            line.put(byte: 0x20)
            line.put(sid)
            if !reply.isEmpty || emptyReplyField {
                line.put(byte: 0x20)
                line.put(reply)
            }
            line.put(byte: 0x20)
            line.put(decimal: payload.count)
            line.put(byte: 0x0D)
            line.put(byte: 0x0A)
            sink.append(line.written)
        }
        sink.append(payload)
        sink.append(Self.crlf)
    }

    /// `HMSG <subject> <sid> [reply] <#hdr> <#total>\r\n<headers><payload>\r\n`
    ///
    /// `headers` is the whole header block including its final `\r\n\r\n`.
    @inlinable
    ///
    /// `emptyReplyField`: as in ``msg(_:subject:sid:reply:payload:emptyReplyField:)``.
    public static func hmsg<S: ByteSink>(
        _ sink: inout S, subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer,
        reply: UnsafeRawBufferPointer, headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
        emptyReplyField: Bool = false
    ) {
        let capacity = 5 + subject.count + 1 + sid.count + 1 + reply.count + 1 + 20 + 1 + 20 + 2
        withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { raw in
            var line = LineWriter(raw)
            line.put(ascii: "HMSG ")
            line.put(subject)
            line.put(byte: 0x20)
            line.put(sid)
            if !reply.isEmpty || emptyReplyField {
                line.put(byte: 0x20)
                line.put(reply)
            }
            line.put(byte: 0x20)
            line.put(decimal: headers.count)
            line.put(byte: 0x20)
            line.put(decimal: headers.count + payload.count)
            line.put(byte: 0x0D)
            line.put(byte: 0x0A)
            sink.append(line.written)
        }
        sink.append(headers)
        sink.append(payload)
        sink.append(Self.crlf)
    }

    /// `INFO <json> \r\n`: 2.9.10 puts a space before the CRLF, and so do we.
    @inlinable
    public static func info<S: ByteSink>(_ sink: inout S, json: UnsafeRawBufferPointer) {
        sink.append(ascii: "INFO ")
        sink.append(json)
        sink.append(ascii: " \r\n")
    }

    /// `PING\r\n`
    @inlinable
    public static func ping<S: ByteSink>(_ sink: inout S) {
        sink.append(ascii: "PING\r\n")
    }

    /// `PONG\r\n`
    @inlinable
    public static func pong<S: ByteSink>(_ sink: inout S) {
        sink.append(ascii: "PONG\r\n")
    }

    /// `+OK\r\n`
    @inlinable
    public static func ok<S: ByteSink>(_ sink: inout S) {
        sink.append(ascii: "+OK\r\n")
    }

    /// `-ERR '<text>'\r\n` for one of the catalogue errors.
    public static func error<S: ByteSink>(_ sink: inout S, _ error: ServerError) {
        error.wireLine.withUnsafeBytes { sink.append($0) }
    }

    // MARK: client -> server

    /// `PUB <subject> [reply] <#bytes>\r\n<payload>\r\n` (three `append` calls, as for MSG).
    @inlinable
    public static func pub<S: ByteSink>(
        _ sink: inout S, subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
        payload: UnsafeRawBufferPointer
    ) {
        let capacity = 4 + subject.count + 1 + reply.count + 1 + 20 + 2
        withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { raw in
            var line = LineWriter(raw)
            line.put(ascii: "PUB ")
            line.put(subject)
            if !reply.isEmpty {
                line.put(byte: 0x20)
                line.put(reply)
            }
            line.put(byte: 0x20)
            line.put(decimal: payload.count)
            line.put(byte: 0x0D)
            line.put(byte: 0x0A)
            sink.append(line.written)
        }
        sink.append(payload)
        sink.append(Self.crlf)
    }

    /// `HPUB <subject> [reply] <#hdr> <#total>\r\n<headers><payload>\r\n`
    ///
    /// `headers` is the whole header block including its final `\r\n\r\n`.
    @inlinable
    public static func hpub<S: ByteSink>(
        _ sink: inout S, subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
        headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer
    ) {
        let capacity = 5 + subject.count + 1 + reply.count + 1 + 20 + 1 + 20 + 2
        withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { raw in
            var line = LineWriter(raw)
            line.put(ascii: "HPUB ")
            line.put(subject)
            if !reply.isEmpty {
                line.put(byte: 0x20)
                line.put(reply)
            }
            line.put(byte: 0x20)
            line.put(decimal: headers.count)
            line.put(byte: 0x20)
            line.put(decimal: headers.count + payload.count)
            line.put(byte: 0x0D)
            line.put(byte: 0x0A)
            sink.append(line.written)
        }
        sink.append(headers)
        sink.append(payload)
        sink.append(Self.crlf)
    }

    /// `SUB <subject> [queue] <sid>\r\n`
    @inlinable
    public static func sub<S: ByteSink>(
        _ sink: inout S, subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer,
        sid: UnsafeRawBufferPointer
    ) {
        sink.append(ascii: "SUB ")
        sink.append(subject)
        if !queue.isEmpty {
            sink.append(byte: 0x20)
            sink.append(queue)
        }
        sink.append(byte: 0x20)
        sink.append(sid)
        sink.append(ascii: "\r\n")
    }

    /// `SUB <subject> [queue] <sid>\r\n` with a numeric sid.
    @inlinable
    public static func sub<S: ByteSink>(
        _ sink: inout S, subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer, sid: UInt64
    ) {
        sink.append(ascii: "SUB ")
        sink.append(subject)
        if !queue.isEmpty {
            sink.append(byte: 0x20)
            sink.append(queue)
        }
        sink.append(byte: 0x20)
        sink.append(decimal: sid)
        sink.append(ascii: "\r\n")
    }

    /// `UNSUB <sid> [max]\r\n`
    @inlinable
    public static func unsub<S: ByteSink>(_ sink: inout S, sid: UnsafeRawBufferPointer, max: Int?) {
        sink.append(ascii: "UNSUB ")
        sink.append(sid)
        if let max {
            sink.append(byte: 0x20)
            sink.append(decimal: max)
        }
        sink.append(ascii: "\r\n")
    }

    /// `UNSUB <sid> [max]\r\n` with a numeric sid.
    @inlinable
    public static func unsub<S: ByteSink>(_ sink: inout S, sid: UInt64, max: Int? = nil) {
        sink.append(ascii: "UNSUB ")
        sink.append(decimal: sid)
        if let max {
            sink.append(byte: 0x20)
            sink.append(decimal: max)
        }
        sink.append(ascii: "\r\n")
    }

    /// `CONNECT <json>\r\n`
    @inlinable
    public static func connect<S: ByteSink>(_ sink: inout S, json: UnsafeRawBufferPointer) {
        sink.append(ascii: "CONNECT ")
        sink.append(json)
        sink.append(ascii: "\r\n")
    }
}

// MARK: - Conveniences for callers off the hot path

extension Encoder {
    /// MSG with strings and bytes.
    public static func msg<S: ByteSink>(
        _ sink: inout S, subject: String, sid: String, reply: String? = nil, payload: [UInt8]
    ) {
        withUTF8View(subject) { subject in
            withUTF8View(sid) { sid in
                withUTF8View(reply ?? "") { reply in
                    payload.withUnsafeBytes { payload in
                        msg(&sink, subject: subject, sid: sid, reply: reply, payload: payload)
                    }
                }
            }
        }
    }

    /// HMSG with strings and bytes; `headers` is the whole block including its final CRLFCRLF.
    public static func hmsg<S: ByteSink>(
        _ sink: inout S, subject: String, sid: String, reply: String? = nil, headers: [UInt8], payload: [UInt8]
    ) {
        withUTF8View(subject) { subject in
            withUTF8View(sid) { sid in
                withUTF8View(reply ?? "") { reply in
                    headers.withUnsafeBytes { headers in
                        payload.withUnsafeBytes { payload in
                            hmsg(&sink, subject: subject, sid: sid, reply: reply, headers: headers, payload: payload)
                        }
                    }
                }
            }
        }
    }

    /// `INFO <json> \r\n` from a JSON string.
    public static func info<S: ByteSink>(_ sink: inout S, json: String) {
        withUTF8View(json) { info(&sink, json: $0) }
    }

    /// PUB with strings and bytes.
    public static func pub<S: ByteSink>(_ sink: inout S, subject: String, reply: String? = nil, payload: [UInt8]) {
        withUTF8View(subject) { subject in
            withUTF8View(reply ?? "") { reply in
                payload.withUnsafeBytes { payload in
                    pub(&sink, subject: subject, reply: reply, payload: payload)
                }
            }
        }
    }

    /// HPUB with strings and bytes; `headers` is the whole block including its final CRLFCRLF.
    public static func hpub<S: ByteSink>(
        _ sink: inout S, subject: String, reply: String? = nil, headers: [UInt8], payload: [UInt8]
    ) {
        withUTF8View(subject) { subject in
            withUTF8View(reply ?? "") { reply in
                headers.withUnsafeBytes { headers in
                    payload.withUnsafeBytes { payload in
                        hpub(&sink, subject: subject, reply: reply, headers: headers, payload: payload)
                    }
                }
            }
        }
    }

    /// SUB with strings.
    public static func sub<S: ByteSink>(_ sink: inout S, subject: String, queue: String? = nil, sid: String) {
        withUTF8View(subject) { subject in
            withUTF8View(queue ?? "") { queue in
                withUTF8View(sid) { sid in sub(&sink, subject: subject, queue: queue, sid: sid) }
            }
        }
    }

    /// SUB with strings and a numeric sid.
    public static func sub<S: ByteSink>(_ sink: inout S, subject: String, queue: String? = nil, sid: UInt64) {
        withUTF8View(subject) { subject in
            withUTF8View(queue ?? "") { queue in sub(&sink, subject: subject, queue: queue, sid: sid) }
        }
    }

    /// UNSUB with a string sid.
    public static func unsub<S: ByteSink>(_ sink: inout S, sid: String, max: Int? = nil) {
        withUTF8View(sid) { unsub(&sink, sid: $0, max: max) }
    }

    /// `CONNECT <json>\r\n` from a JSON string.
    public static func connect<S: ByteSink>(_ sink: inout S, json: String) {
        withUTF8View(json) { connect(&sink, json: $0) }
    }
}

/// Writes a control line into caller-provided scratch memory (sized by the caller for the worst case).
@usableFromInline
struct LineWriter {
    @usableFromInline let base: UnsafeMutableRawBufferPointer
    @usableFromInline var count = 0

    @inlinable
    init(_ base: UnsafeMutableRawBufferPointer) { self.base = base }

    /// The bytes written so far.
    @inlinable
    var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: base[0..<count]) }

    @inlinable
    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty, let target = base.baseAddress else { return }
        (target + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    @inlinable
    mutating func put(byte: UInt8) {
        base[count] = byte
        count += 1
    }

    @inlinable
    mutating func put(ascii text: StaticString) {
        put(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Writes the decimal digits of a non-negative value (negative values are written as 0; sizes
    /// are never negative).
    @inlinable
    mutating func put(decimal value: Int) {
        var rest = UInt(value < 0 ? 0 : value)
        var digits = 1
        var probe = rest
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        var index = count + digits - 1
        repeat {
            base[index] = UInt8(truncatingIfNeeded: rest % 10) &+ 48
            rest /= 10
            index -= 1
        } while rest > 0
        count += digits
    }
}
