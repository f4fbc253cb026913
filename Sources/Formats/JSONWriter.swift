/// Compact JSON output into a byte array, no Foundation. Strings are escaped per RFC 8259: `"`,
/// `\` and the control characters U+0000...U+001F (as `\n`, `\r`, `\t` or `\u00XX`); other
/// bytes, non-ASCII UTF-8 included, are copied as they are.
public struct JSONWriter {
    /// The text written so far.
    public var bytes: [UInt8] = []

    /// An empty writer with room for `capacity` bytes.
    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// Appends `text` as it is (pre-encoded JSON or punctuation).
    @inlinable
    public mutating func raw(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends `s` quoted and escaped.
    public mutating func string(_ s: String) { JSONWriter.appendQuoted(s, to: &bytes) }

    /// Appends `v` in decimal.
    public mutating func int(_ v: Int64) { JSONWriter.appendDecimal(v, to: &bytes) }

    /// Appends `d` in Swift's shortest text that reads back as the same double (`1.5`, `3.0`,
    /// `1e-07`), so a double stays a double through a round trip; NaN and infinities, which JSON
    /// cannot express, as `null`.
    public mutating func double(_ d: Double) {
        guard d.isFinite else { raw("null"); return }
        bytes.append(contentsOf: d.description.utf8)
    }

    /// Appends `v` (object members in their order).
    public mutating func value(_ v: JSON) {
        switch v {
        case .null: raw("null")
        case .bool(let b): if b { raw("true") } else { raw("false") }
        case .int(let i): int(i)
        case .double(let d): double(d)
        case .string(let s): string(s)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (k, e) in elements.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                value(e)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (k, m) in members.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                string(m.key)
                bytes.append(UInt8(ascii: ":"))
                value(m.value)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    // MARK: Primitives

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Appends `s` as a JSON string. With `escapingHTML`, `<`, `>` and `&` become `\u003c`,
    /// `\u003e` and `\u0026` too, so the text can sit inside HTML (Go's encoding/json default).
    public static func appendQuoted(_ s: String, to out: inout [UInt8], escapingHTML: Bool = false) {
        var s = s
        s.withUTF8 { u in
            out.append(0x22)
            var plainStart = 0
            for k in 0..<u.count {
                let c = u[k]
                if c >= 0x20 && c != 0x22 && c != 0x5C
                    && !(escapingHTML && (c == UInt8(ascii: "<") || c == UInt8(ascii: ">") || c == UInt8(ascii: "&"))) {
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: u[plainStart..<k]))
                plainStart = k + 1
                switch c {
                case 0x22: out.append(0x5C); out.append(0x22)
                case 0x5C: out.append(0x5C); out.append(0x5C)
                case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
                case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
                default:
                    out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    out.append(hexDigits.utf8Start[Int(c >> 4)])
                    out.append(hexDigits.utf8Start[Int(c & 0xF)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[plainStart..<u.count]))
            out.append(0x22)
        }
    }

    /// Appends `v` in decimal without going through `String`.
    public static func appendDecimal(_ v: Int64, to out: inout [UInt8]) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        appendDigits(v.magnitude, width: 1, to: &out)
    }

    /// Appends `v` in decimal with at least `width` digits (zeros in front of the digits).
    public static func appendPadded(_ v: Int64, width: Int, to out: inout [UInt8]) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        appendDigits(v.magnitude, width: width, to: &out)
    }

    private static func appendDigits(_ magnitude: UInt64, width: Int, to out: inout [UInt8]) {
        if magnitude < 10 && width <= 1 { out.append(0x30 + UInt8(magnitude)); return }
        var rest = magnitude
        var buffer: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes of scratch: enough for 20 digits
        withUnsafeMutableBytes(of: &buffer) { scratch in
            var n = scratch.count
            repeat {
                n -= 1
                scratch[n] = 0x30 + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            let digits = scratch.count - n
            if digits < width { out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - digits)) }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[n...]))
        }
    }

    /// Appends the UTF-8 encoding of `scalar` (which must not be a surrogate).
    @usableFromInline
    static func appendUTF8(_ scalar: UInt32, to bytes: inout [UInt8]) {
        switch scalar {
        case 0..<0x80: bytes.append(UInt8(scalar))
        case 0x80..<0x800:
            bytes.append(UInt8(0xC0 | (scalar >> 6)))
            bytes.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            bytes.append(UInt8(0xE0 | (scalar >> 12)))
            bytes.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            bytes.append(UInt8(0xF0 | (scalar >> 18)))
            bytes.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }
}
