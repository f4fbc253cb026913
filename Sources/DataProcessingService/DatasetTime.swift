import Formats

/// Dataset timestamps as milliseconds since the Unix epoch (UTC), parsed from the common forms
/// and written as ISO 8601 with milliseconds (`2026-11-23T17:02:14.123Z`): a thin layer over
/// Formats' ``RFC3339`` that adds epoch numbers and the year range.
///
/// Accepted inputs:
/// - ISO 8601: `yyyy-MM-dd`, `yyyy-MM-ddTHH:mm`, `yyyy-MM-ddTHH:mm:ss`, with an optional fraction
///   (`.` or `,`, any number of digits, truncated to ms) and an optional zone (`Z`, `±HH:mm`,
///   `±HHmm`, `±HH`); a space may replace the `T` (so `yyyy-MM-dd HH:mm:ss` is covered); no zone
///   means UTC;
/// - epoch numbers (JSON numbers, or strings of digits with an optional fraction and sign):
///   seconds when the magnitude is below 10^11 (until the year 5138), else milliseconds.
/// Years must be within 0001...9999; a leap second (`:60`) counts as the next minute.
public enum DatasetTime {
    /// Milliseconds per day.
    static let msPerDay: Int64 = 86_400_000

    /// Milliseconds since the epoch for `value`, or nil when it is not a timestamp.
    public static func milliseconds(_ value: Value) -> Int64? {
        switch value {
        case .int(let n): return fromEpoch(Double(n), exactInt: n)
        case .double(let d): return fromEpoch(d, exactInt: nil)
        case .string(let s): return parse(s)
        case .null, .bool: return nil
        }
    }

    /// The ISO 8601 form (ms, UTC) of `value`, or nil when it is not a timestamp.
    public static func normalized(_ value: Value) -> String? {
        milliseconds(value).flatMap(format)
    }

    static let maxMilliseconds: Int64 = 253_402_300_799_999   // 9999-12-31T23:59:59.999Z
    static let minMilliseconds: Int64 = -62_135_596_800_000   // 0001-01-01T00:00:00.000Z

    private static func fromEpoch(_ d: Double, exactInt: Int64?) -> Int64? {
        guard d.isFinite else { return nil }
        let ms: Int64
        if abs(d) < 1e11 {
            if let n = exactInt { ms = n * 1000 } else { ms = Int64((d * 1000).rounded(.down)) }
        } else {
            guard abs(d) < 1e16 else { return nil }
            ms = exactInt ?? Int64(d.rounded(.down))
        }
        return (minMilliseconds...maxMilliseconds).contains(ms) ? ms : nil
    }

    /// Parses a timestamp string (see the type's documentation).
    public static func parse(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    static func parse(bytes raw: UnsafeBufferPointer<UInt8>) -> Int64? {
        var lo = 0, hi = raw.count
        while lo < hi, raw[lo] == 0x20 || raw[lo] == 0x09 { lo += 1 }
        while hi > lo, raw[hi - 1] == 0x20 || raw[hi - 1] == 0x09 { hi -= 1 }
        let b = UnsafeBufferPointer(rebasing: raw[lo..<hi])
        guard !b.isEmpty else { return nil }
        if isEpochText(b) {
            guard let d = Double(String(decoding: b, as: UTF8.self)) else { return nil }
            let exact = b.contains(UInt8(ascii: ".")) ? nil : Int64(String(decoding: b, as: UTF8.self))
            return fromEpoch(d, exactInt: exact)
        }
        guard let time = RFC3339.parse(b, .iso8601) else { return nil }
        let ms = time.milliseconds
        return (minMilliseconds...maxMilliseconds).contains(ms) ? ms : nil
    }

    private static func isEpochText(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var k = 0
        if b[0] == UInt8(ascii: "-") || b[0] == UInt8(ascii: "+") { k = 1 }
        var digits = 0, dots = 0
        while k < b.count {
            let c = b[k]
            if c >= 0x30 && c <= 0x39 { digits += 1 } else if c == UInt8(ascii: ".") { dots += 1 } else { return false }
            k += 1
        }
        return digits > 0 && dots <= 1
    }

    /// Floor division of ms into days and the ms within the day.
    static func split(_ ms: Int64) -> (days: Int64, msOfDay: Int64) {
        var days = ms / msPerDay
        var rest = ms % msPerDay
        if rest < 0 { rest += msPerDay; days -= 1 }
        return (days, rest)
    }

    /// `yyyy-MM-ddTHH:mm:ss.SSSZ`, or nil outside years 1...9999.
    public static func format(_ ms: Int64) -> String? {
        guard (minMilliseconds...maxMilliseconds).contains(ms) else { return nil }
        return RFC3339.format(UnixTime(milliseconds: ms), fractionDigits: 3)
    }

    /// The UTC hour of day (0...23).
    public static func hourOfDay(_ ms: Int64) -> Int { Int(split(ms).msOfDay / 3_600_000) }

    /// The UTC weekday name in English, lower case (`monday` ... `sunday`).
    public static func weekday(_ ms: Int64) -> String {
        // 1970-01-01 was a Thursday.
        let names = ["thursday", "friday", "saturday", "sunday", "monday", "tuesday", "wednesday"]
        let d = split(ms).days % 7
        return names[Int(d < 0 ? d + 7 : d)]
    }

    /// The UTC date `yyyy-MM-dd`.
    public static func date(_ ms: Int64) -> String {
        String((format(ms) ?? "").prefix(10))
    }
}
