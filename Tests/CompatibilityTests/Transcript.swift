// Splits a broker's byte stream into protocol frames and normalizes the per-run values, so that two
// brokers' transcripts can be compared byte for byte.

/// What one connection saw: the normalized bytes (escaped so that every byte is visible) and
/// whether the broker closed it.
struct ConnectionTranscript: Equatable, Sendable, CustomStringConvertible {
    var output: String
    var closed: Bool

    var description: String {
        "[\(closed ? "closed by server" : "open")] \(output)"
    }
}

enum Frames {
    /// Splits a server->client stream into frames: one control line each, with the payload of
    /// MSG/HMSG attached. A trailing partial frame is kept as it is.
    static func split(_ bytes: [UInt8]) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var position = 0
        while position < bytes.count {
            guard let newline = bytes[position...].firstIndex(of: UInt8(ascii: "\n")) else {
                frames.append(Array(bytes[position...]))
                break
            }
            var end = newline + 1
            let line = Array(bytes[position..<newline])
            let words = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D })
            if let verb = words.first.map({ String(decoding: $0, as: UTF8.self).uppercased() }),
               verb == "MSG" || verb == "HMSG",
               let last = words.last, let size = Int(String(decoding: last, as: UTF8.self)), size >= 0 {
                end = min(bytes.count, end + size + 2)
            }
            frames.append(Array(bytes[position..<end]))
            position = end
        }
        return frames
    }

    static let serverPing = Array("PING\r\n".utf8)
    static let pong = Array("PONG\r\n".utf8)

    static func isInfo(_ frame: [UInt8]) -> Bool {
        frame.starts(with: Array("INFO ".utf8))
    }

    /// Whether `frame` is a whole MSG or HMSG: its control line, all the payload its size announces
    /// and the CRLF after it.
    static func isMessage(_ frame: [UInt8]) -> Bool {
        guard let parts = MessageFrame(frame) else { return false }
        return frame.count == parts.lineEnd + parts.size + 2
    }
}

/// The pieces of a MSG/HMSG frame: where its control line ends (after the LF), the announced
/// sizes and the token ranges of the line.
struct MessageFrame {
    var isHeaders: Bool
    var lineEnd: Int
    /// Token ranges of the control line, in order (verb, subject, sid, [reply], [header size], size).
    var tokens: [Range<Int>]
    var size: Int
    var headerSize: Int

    init?(_ frame: [UInt8]) {
        guard let newline = frame.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        var tokens: [Range<Int>] = []
        var i = 0
        while i < newline {
            while i < newline, frame[i] == 0x20 || frame[i] == 0x09 || frame[i] == 0x0D { i += 1 }
            let start = i
            while i < newline, frame[i] != 0x20, frame[i] != 0x09, frame[i] != 0x0D { i += 1 }
            if i > start { tokens.append(start..<i) }
        }
        guard let verb = tokens.first.map({ String(decoding: frame[$0], as: UTF8.self).uppercased() }),
              verb == "MSG" || verb == "HMSG",
              let size = Int(String(decoding: frame[tokens[tokens.count - 1]], as: UTF8.self)) else { return nil }
        isHeaders = verb == "HMSG"
        let minimum = isHeaders ? 5 : 4
        guard tokens.count >= minimum, tokens.count <= minimum + 1 else { return nil }
        headerSize = isHeaders ? Int(String(decoding: frame[tokens[tokens.count - 2]], as: UTF8.self)) ?? -1 : 0
        guard headerSize >= 0, headerSize <= size else { return nil }
        lineEnd = newline + 1
        self.tokens = tokens
        self.size = size
    }

    /// The reply token's range, when the line has one.
    var reply: Range<Int>? {
        tokens.count == (isHeaders ? 6 : 5) ? tokens[3] : nil
    }
}

/// Replaces the values that differ per run or per broker build in an INFO line, keeping the field
/// order and every other byte (including 2.9.10's `} \r\n`).
enum InfoNormalizer {
    /// Keys whose value is replaced by a placeholder.
    static let placeholders: [String: String] = [
        "server_id": "\"<server_id>\"",
        "go": "\"<go>\"",
        "host": "\"<host>\"",
        "port": "<port>",
        "client_id": "<client_id>",
        "client_ip": "\"<client_ip>\"",
        "nonce": "\"<nonce>\"",
    ]

    static func normalize(_ frame: [UInt8]) -> [UInt8] {
        let prefix = Array("INFO ".utf8)
        guard frame.starts(with: prefix), let open = frame.firstIndex(of: UInt8(ascii: "{")) else { return frame }
        guard let fields = scanObject(frame, from: open) else { return frame }
        var serverID: [UInt8]?
        for field in fields where field.key == "server_id" {
            serverID = Array(frame[field.value])
        }
        var out = Array(frame[..<open])
        var cursor = open
        for field in fields {
            out += frame[cursor..<field.value.lowerBound]
            if let replacement = placeholders[field.key] {
                out += Array(replacement.utf8)
            } else if field.key == "server_name", let serverID, Array(frame[field.value]) == serverID {
                // A defaulted name equals the id.
                out += Array("\"<server_id>\"".utf8)
            } else {
                out += frame[field.value]
            }
            cursor = field.value.upperBound
        }
        out += frame[cursor...]
        return out
    }

    struct Field {
        var key: String
        var value: Range<Int>
    }

    /// Top-level fields of the JSON object starting at `start`, with each raw value's byte range.
    static func scanObject(_ b: [UInt8], from start: Int) -> [Field]? {
        var i = start + 1
        var fields: [Field] = []
        func skipSpace() { while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 } }
        func scanString() -> Range<Int>? {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            let begin = i
            i += 1
            while i < b.count {
                if b[i] == UInt8(ascii: "\\") { i += 2; continue }
                if b[i] == UInt8(ascii: "\"") { i += 1; return begin..<i }
                i += 1
            }
            return nil
        }
        func scanValue() -> Range<Int>? {
            guard i < b.count else { return nil }
            if b[i] == UInt8(ascii: "\"") { return scanString() }
            let begin = i
            if b[i] == UInt8(ascii: "[") || b[i] == UInt8(ascii: "{") {
                var depth = 0
                while i < b.count {
                    if b[i] == UInt8(ascii: "\"") { guard scanString() != nil else { return nil }; continue }
                    if b[i] == UInt8(ascii: "[") || b[i] == UInt8(ascii: "{") { depth += 1 }
                    if b[i] == UInt8(ascii: "]") || b[i] == UInt8(ascii: "}") {
                        depth -= 1
                        if depth == 0 { i += 1; return begin..<i }
                    }
                    i += 1
                }
                return nil
            }
            while i < b.count, b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}") { i += 1 }
            return begin..<i
        }
        while true {
            skipSpace()
            guard i < b.count else { return nil }
            if b[i] == UInt8(ascii: "}") { return fields }
            guard let keyRange = scanString() else { return nil }
            let key = String(decoding: b[(keyRange.lowerBound + 1)..<(keyRange.upperBound - 1)], as: UTF8.self)
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            skipSpace()
            guard let value = scanValue() else { return nil }
            fields.append(Field(key: key, value: value))
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: ",") { i += 1 }
        }
    }
}

/// What a scenario's transcripts are normalized for.
struct Normalization: Sendable {
    var keepServerPings = false
    var unordered = false
    /// Take JetStream's per-run values out of messages (see `JetStreamNormalizer`).
    var jetstream = false
    /// Broker-generated consumer names become `<name>`.
    var generatedNames = false
}

enum Normalizer {
    static func normalize(_ bytes: [UInt8], keepServerPings: Bool, unordered: Bool) -> String {
        normalize(bytes, Normalization(keepServerPings: keepServerPings, unordered: unordered))
    }

    /// Normalizes one connection's received bytes:
    /// - INFO per-run values become placeholders;
    /// - server PINGs are dropped unless `keepServerPings` (the first one comes ~2 s after CONNECT, so
    ///   a slow run could otherwise see one anywhere);
    /// - with `jetstream`, PONGs are dropped (2.9.10 answers JetStream requests from another goroutine,
    ///   so an answer and the PONG of the barrier after it come in either order), and the times,
    ///   ack-subject timestamps and generated names in MSG/HMSG frames become placeholders, with the
    ///   sizes on the control line following;
    /// - with `unordered`, frames after the first INFO are sorted (for deliveries whose relative order
    ///   across subscriptions is an implementation detail of the sublist).
    static func normalize(_ bytes: [UInt8], _ options: Normalization) -> String {
        var frames = Frames.split(bytes).map { Frames.isInfo($0) ? InfoNormalizer.normalize($0) : $0 }
        if !options.keepServerPings { frames.removeAll { $0 == Frames.serverPing } }
        if options.jetstream {
            frames.removeAll { $0 == Frames.pong }
            frames = frames.map { JetStreamNormalizer.normalize($0, generatedNames: options.generatedNames) }
        }
        if options.unordered, frames.count > 1 {
            let head = Frames.isInfo(frames[0]) ? [frames[0]] : []
            let tail = frames[head.count...].sorted { $0.lexicographicallyPrecedes($1) }
            frames = head + tail
        }
        return escape(frames.flatMap { $0 })
    }

    /// Every byte visible: CR as `\r`, LF as `\n` (followed by a real line break for reading), other
    /// non-printables as `\xNN`.
    static func escape(_ bytes: [UInt8]) -> String {
        var s = ""
        for byte in bytes {
            switch byte {
            case 0x0D: s += "\\r"
            case 0x0A: s += "\\n\n"
            case 0x09: s += "\\t"
            case 0x5C: s += "\\\\"
            case 0x20...0x7E: s.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16)
                s += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return s
    }
}

/// How many complete frames equal to `frame` `bytes` holds.
func frameCount(_ bytes: [UInt8], _ frame: [UInt8]) -> Int {
    Frames.split(bytes).reduce(0) { $0 + ($1 == frame ? 1 : 0) }
}

/// JetStream's per-run values in a MSG/HMSG frame, replaced so that two runs (and two brokers) compare:
/// - JSON string members named `created`, `ts`, `first_ts`, `last_ts`, `last_active` or `time` become
///   `"<time>"`, except the zero time `0001-01-01T00:00:00Z`, which is deterministic and kept;
/// - the `Nats-Time-Stamp` header's value becomes `<time>`;
/// - the timestamp token of a 9-token `$JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<cseq>.<ts>.<pending>`
///   reply becomes `<ts>`;
/// - with `generatedNames`, 8-character consumer names made of letters and digits (2.9.10's generated
///   ephemeral names) become `<name>`, in JSON `"name"` members and in ack subjects.
/// The control line's sizes are recomputed for the new payload, so every other byte still counts.
enum JetStreamNormalizer {
    static let timeKeys: Set<String> = ["created", "ts", "first_ts", "last_ts", "last_active", "time"]
    static let zeroTime = Array("0001-01-01T00:00:00Z".utf8)

    static func normalize(_ frame: [UInt8], generatedNames: Bool) -> [UInt8] {
        guard Frames.isMessage(frame), let parts = MessageFrame(frame) else { return frame }
        let payloadStart = parts.lineEnd
        let headerEnd = payloadStart + parts.headerSize
        let bodyEnd = payloadStart + parts.size
        var headers = Array(frame[payloadStart..<headerEnd])
        var body = Array(frame[headerEnd..<bodyEnd])
        if parts.isHeaders { headers = normalizeHeaders(headers) }
        body = normalizeJSON(body, generatedNames: generatedNames)

        var line = Array(frame[..<parts.lineEnd])
        // Rewrite tokens from the end of the line so that earlier ranges stay valid.
        let sizeToken = parts.tokens[parts.tokens.count - 1]
        line.replaceSubrange(sizeToken, with: Array(String(headers.count + body.count).utf8))
        if parts.isHeaders {
            line.replaceSubrange(parts.tokens[parts.tokens.count - 2], with: Array(String(headers.count).utf8))
        }
        if let reply = parts.reply {
            line.replaceSubrange(reply, with: normalizeAckSubject(Array(frame[reply]), generatedNames: generatedNames))
        }
        return line + headers + body + Array(frame[bodyEnd...])
    }

    static func isGeneratedName(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.count == 8 && bytes.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) }
    }

    static func normalizeAckSubject(_ subject: [UInt8], generatedNames: Bool) -> [UInt8] {
        guard subject.starts(with: Array("$JS.ACK.".utf8)) else { return subject }
        var tokens = subject.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard tokens.count == 9 else { return subject }
        tokens[7] = ArraySlice("<ts>".utf8)
        if generatedNames, isGeneratedName(tokens[3]) { tokens[3] = ArraySlice("<name>".utf8) }
        return Array(tokens.joined(separator: [UInt8(ascii: ".")]))
    }

    static func normalizeHeaders(_ block: [UInt8]) -> [UInt8] {
        let key = Array("Nats-Time-Stamp: ".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < block.count {
            let lineEnd = block[i...].firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? block.count
            let line = block[i..<lineEnd]
            if line.starts(with: key) {
                out += key + Array("<time>".utf8)
                out += line.hasSuffix([0x0D, 0x0A]) ? [0x0D, 0x0A] : []
            } else {
                out += line
            }
            i = lineEnd
        }
        return out
    }

    /// Replaces the string values of the time members (and generated names) wherever they occur,
    /// by scanning for `"key":"`; JSON written by both brokers has no space there.
    static func normalizeJSON(_ body: [UInt8], generatedNames: Bool) -> [UInt8] {
        guard body.first == UInt8(ascii: "{") else { return body }
        var out: [UInt8] = []
        out.reserveCapacity(body.count)
        var i = 0
        while i < body.count {
            guard body[i] == UInt8(ascii: "\""),
                  let keyEnd = body[(i + 1)...].firstIndex(of: UInt8(ascii: "\"")),
                  keyEnd + 2 < body.count, body[keyEnd + 1] == UInt8(ascii: ":"), body[keyEnd + 2] == UInt8(ascii: "\"")
            else {
                out.append(body[i])
                i += 1
                continue
            }
            let key = String(decoding: body[(i + 1)..<keyEnd], as: UTF8.self)
            let valueStart = keyEnd + 3
            guard let valueEnd = body[valueStart...].firstIndex(of: UInt8(ascii: "\"")) else {
                out += body[i...]
                break
            }
            let value = body[valueStart..<valueEnd]
            out += body[i..<valueStart]
            if timeKeys.contains(key), !value.elementsEqual(zeroTime) {
                out += Array("<time>".utf8)
            } else if generatedNames, key == "name", isGeneratedName(value) {
                out += Array("<name>".utf8)
            } else {
                out += value
            }
            out.append(UInt8(ascii: "\""))
            i = valueEnd + 1
        }
        return out
    }
}

extension ArraySlice where Element == UInt8 {
    fileprivate func hasSuffix(_ suffix: [UInt8]) -> Bool {
        count >= suffix.count && self.suffix(suffix.count).elementsEqual(suffix)
    }
}
