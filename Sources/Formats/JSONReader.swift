#if canImport(Glibc)
import Glibc
#endif

/// A strict RFC 8259 reader: a cursor over bytes that the caller keeps alive. One pass, no
/// Foundation. ``JSON/parse(_:maxDepth:)-([UInt8],_)`` reads a whole document; the public cursor
/// and primitives let a caller read a known shape without building a tree (data-processing's
/// dataset reader, the broker's CONNECT decoding).
///
/// The reader is not incremental: it needs the whole text. Nesting is bounded by ``maxDepth``
/// because the reader recurses, so hostile input cannot exhaust the stack. The per-value
/// primitives are inlinable so that a reader built on them in another module (data-processing's
/// datasets) costs what one written there would.
public struct JSONReader {
    /// The nesting accepted unless the caller sets ``maxDepth``.
    public static let defaultMaxDepth = 64

    /// The input.
    public let bytes: UnsafeBufferPointer<UInt8>
    /// The offset of the next byte to read.
    public var index: Int
    /// Deepest nesting of arrays and objects accepted.
    public var maxDepth = JSONReader.defaultMaxDepth

    /// A reader at the start of `bytes`.
    public init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
        self.index = 0
    }

    /// An error at the cursor.
    public func error(_ message: String) -> JSONError { JSONError(message, offset: index) }

    // MARK: Structure

    /// Moves past spaces, tabs, carriage returns and line feeds.
    @inlinable
    public mutating func skipWhitespace() {
        while index < bytes.count {
            let c = bytes[index]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { index += 1 } else { return }
        }
    }

    /// The next byte after whitespace (not consumed), or nil at the end of the input.
    @inlinable
    public mutating func peek() -> UInt8? {
        skipWhitespace()
        return index < bytes.count ? bytes[index] : nil
    }

    /// Consumes `byte` after whitespace.
    /// - Throws: ``JSONError`` "expected `what`" when the next byte is another one.
    @inlinable
    public mutating func expect(_ byte: UInt8, _ what: String) throws(JSONError) {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == byte else { throw error("expected \(what)") }
        index += 1
    }

    /// Checks that only whitespace is left.
    /// - Throws: ``JSONError`` when anything else follows.
    public mutating func expectEnd() throws(JSONError) {
        skipWhitespace()
        if index != bytes.count { throw error("unexpected data after the JSON document") }
    }

    /// After a member or element: consumes a `,` (returns false: more follow) or `close` (true).
    /// - Throws: ``JSONError`` for anything else or the end of the input.
    @inlinable
    public mutating func separatorOrEnd(_ close: UInt8) throws(JSONError) -> Bool {
        guard let next = peek() else { throw error("unexpected end of input") }
        if next == close { index += 1; return true }
        guard next == UInt8(ascii: ",") else {
            throw error(close == UInt8(ascii: "}") ? "expected ',' or '}'" : "expected ',' or ']'")
        }
        index += 1
        return false
    }

    // MARK: Values

    /// The value at the cursor, `depth` levels inside arrays or objects.
    /// - Throws: ``JSONError`` for malformed JSON or nesting deeper than ``maxDepth``.
    public mutating func readValue(depth: Int = 0) throws(JSONError) -> JSON {
        guard let c = peek() else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"):
            guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth)") }
            index += 1
            var members: [JSONMember] = []
            if peek() == UInt8(ascii: "}") { index += 1; return .object(members) }
            repeat {
                let key = try readKey()
                members.append(JSONMember(key, try readValue(depth: depth + 1)))
            } while try !separatorOrEnd(UInt8(ascii: "}"))
            return .object(members)
        case UInt8(ascii: "["):
            guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth)") }
            index += 1
            var elements: [JSON] = []
            if peek() == UInt8(ascii: "]") { index += 1; return .array(elements) }
            repeat {
                elements.append(try readValue(depth: depth + 1))
            } while try !separatorOrEnd(UInt8(ascii: "]"))
            return .array(elements)
        default:
            return try readScalar()
        }
    }

    /// An object member's name and the `:` after it (whitespace before both is skipped).
    /// - Throws: ``JSONError`` when no string key is at the cursor or the `:` is missing.
    public mutating func readKey() throws(JSONError) -> String {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
        let key = try readString()
        try expect(UInt8(ascii: ":"), "':'")
        return key
    }

    /// A string, number, boolean or null at the cursor (after whitespace).
    /// - Throws: ``JSONError`` when none is there or it is malformed.
    @inlinable
    public mutating func readScalar() throws(JSONError) -> JSON {
        guard let c = peek() else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let (value, end) = try JSONNumber.scan(bytes, from: index)
            index = end
            return value
        default: throw error("unexpected character")
        }
    }

    /// Consumes `word` (`true`, `false`, `null`) at the cursor.
    /// - Throws: ``JSONError`` when the input differs from `word` or ends inside it.
    @usableFromInline
    mutating func literal(_ word: StaticString) throws(JSONError) {
        let n = word.utf8CodeUnitCount
        guard index + n <= bytes.count else { throw error("unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where bytes[index + k] != w[k] { throw error("invalid literal") }
        index += n
    }

    /// The string whose opening quote is at the cursor. Escapes are decoded; a lone or reversed
    /// surrogate becomes U+FFFD (as Go and most decoders do), and so does invalid UTF-8.
    /// - Throws: ``JSONError`` for a control character, a bad escape or a missing closing quote.
    @inlinable
    public mutating func readString() throws(JSONError) -> String {
        index += 1
        let start = index
        // Plain strings (no escapes) are decoded straight from the input.
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character in string") }
            index += 1
        }
        var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); index += 1; continue }
            guard index + 1 < bytes.count else { break }
            let e = bytes[index + 1]
            index += 2
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try readHex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                        index += 2
                        let low = try readHex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            JSONWriter.appendUTF8(0xFFFD, to: &out)
                            scalar = low
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                }
                if (0xD800..<0xE000).contains(scalar) { scalar = 0xFFFD }
                JSONWriter.appendUTF8(scalar, to: &out)
            default:
                index -= 1
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }

    /// Reads the four hex digits of a `\u` escape.
    /// - Throws: ``JSONError`` when fewer than four hex digits follow.
    @usableFromInline
    mutating func readHex4() throws(JSONError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 0x41 + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }
}

/// JSON numbers from bytes: exact integers when they fit 64 bits, else correctly rounded doubles.
public enum JSONNumber {
    /// Scans the number starting at `start` (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
    /// Returns ``JSON/int(_:)`` when there is no fraction or exponent and the value fits `Int64`,
    /// else ``JSON/double(_:)`` (beyond the double range: ±infinity or 0, as strtod gives), and
    /// the offset just past the number.
    /// - Throws: ``JSONError`` for a missing digit or a leading zero.
    @inlinable
    public static func scan(_ p: UnsafeBufferPointer<UInt8>, from start: Int) throws(JSONError) -> (value: JSON, end: Int) {
        var i = start
        var negative = false
        if i < p.count, p[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        guard i < p.count, p[i] &- 0x30 < 10 else { throw JSONError("invalid number", offset: i) }
        var mantissa: UInt64 = 0
        var digits = 0     // significant digits kept in the mantissa (at most 19)
        var dropped = 0    // integer digits beyond those (scale by 10^dropped)
        if p[i] == 0x30 {
            i += 1
            if i < p.count, p[i] &- 0x30 < 10 { throw JSONError("leading zero in number", offset: i) }
        } else {
            while i < p.count, p[i] &- 0x30 < 10 {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(p[i] - 0x30); digits += 1 } else { dropped += 1 }
                i += 1
            }
        }
        var isInteger = true
        var exponent = dropped
        if i < p.count, p[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < p.count, p[i] &- 0x30 < 10 else { throw JSONError("digit expected after '.'", offset: i) }
            while i < p.count, p[i] &- 0x30 < 10 {
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(p[i] - 0x30)
                    exponent -= 1
                    if mantissa != 0 { digits += 1 }
                }
                i += 1
            }
        }
        if i < p.count, p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            var expNegative = false
            if i < p.count, p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-") {
                expNegative = p[i] == UInt8(ascii: "-")
                i += 1
            }
            guard i < p.count, p[i] &- 0x30 < 10 else { throw JSONError("digit expected in exponent", offset: i) }
            var e = 0
            while i < p.count, p[i] &- 0x30 < 10 {
                if e < 100_000 { e = e * 10 + Int(p[i] - 0x30) }
                i += 1
            }
            exponent += expNegative ? -e : e
        }
        if isInteger && dropped == 0 {
            if negative {
                if mantissa <= UInt64(Int64.max) { return (.int(-Int64(mantissa)), i) }
                if mantissa == UInt64(Int64.max) + 1 { return (.int(Int64.min), i) }
            } else if mantissa <= UInt64(Int64.max) {
                return (.int(Int64(mantissa)), i)
            }
        }
        // Exact fast path (Clinger): the mantissa and the power of ten are both exact doubles.
        if mantissa < (1 << 53) && exponent >= -22 && exponent <= 22 {
            var d = Double(mantissa)
            if exponent < 0 { d /= powersOfTen[-exponent] } else { d *= powersOfTen[exponent] }
            return (.double(negative ? -d : d), i)
        }
        return (.double(strtod(UnsafeBufferPointer(rebasing: p[start..<i]))), i)
    }

    /// The number that is exactly `text` (nothing before or after it) as a double; nil when
    /// `text` is not a JSON number.
    public static func double(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        guard let (value, end) = try? scan(text, from: 0), end == text.count else { return nil }
        return value.doubleValue
    }

    @usableFromInline
    static let powersOfTen: [Double] = (0...22).map { e in
        var d = 1.0
        for _ in 0..<e { d *= 10 }
        return d
    }

    /// The C library's correctly rounded conversion, for numbers off the fast path.
    @usableFromInline
    static func strtod(_ bytes: UnsafeBufferPointer<UInt8>) -> Double {
        var text = Array(bytes)
        text.append(0)
        return text.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { return .nan }   // never: the array holds at least the NUL
            return base.withMemoryRebound(to: CChar.self, capacity: b.count) { Glibc.strtod($0, nil) }
        }
    }
}
