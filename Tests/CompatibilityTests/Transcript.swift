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

    static func isInfo(_ frame: [UInt8]) -> Bool {
        frame.starts(with: Array("INFO ".utf8))
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

enum Normalizer {
    /// Normalizes one connection's received bytes:
    /// - INFO per-run values become placeholders;
    /// - server PINGs are dropped unless `keepServerPings` (the first one comes ~2 s after CONNECT, so
    ///   a slow run could otherwise see one anywhere);
    /// - with `unordered`, frames after the first INFO are sorted (for deliveries whose relative order
    ///   across subscriptions is an implementation detail of the sublist).
    static func normalize(_ bytes: [UInt8], keepServerPings: Bool, unordered: Bool) -> String {
        var frames = Frames.split(bytes).map { Frames.isInfo($0) ? InfoNormalizer.normalize($0) : $0 }
        if !keepServerPings { frames.removeAll { $0 == Frames.serverPing } }
        if unordered, frames.count > 1 {
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
