import ServiceKit

/// Timestamps as milliseconds since the Unix epoch (UTC), parsed from the common forms and
/// written as ISO 8601 with milliseconds (`2026-11-23T17:02:14.123Z`). No Foundation, no locale:
/// the civil-date arithmetic is the proleptic Gregorian calendar.
///
/// Accepted inputs:
/// - ISO 8601: `yyyy-MM-dd`, `yyyy-MM-ddTHH:mm`, `yyyy-MM-ddTHH:mm:ss`, with an optional fraction
///   (`.` or `,`, any number of digits, truncated to ms) and an optional zone (`Z`, `±HH:mm`,
///   `±HHmm`, `±HH`); a space may replace the `T` (so `yyyy-MM-dd HH:mm:ss` is covered); no zone
///   means UTC;
/// - epoch numbers (JSON numbers, or strings of digits with an optional fraction and sign):
///   seconds when the magnitude is below 10^11 (until the year 5138), else milliseconds.
/// Years must be within 0001...9999.
public enum Timestamp {
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
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            i += n
            return v
        }
        func take(_ c: UInt8) -> Bool {
            if i < b.count, b[i] == c { i += 1; return true }
            return false
        }
        guard let year = digits(4), take(UInt8(ascii: "-")), let month = digits(2), take(UInt8(ascii: "-")),
              let day = digits(2) else { return nil }
        guard year >= 1, (1...12).contains(month), day >= 1, day <= daysInMonth(year, month) else { return nil }
        var hour = 0, minute = 0, second = 0, millis = 0, offsetMinutes = 0
        if i < b.count {
            guard b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") || b[i] == 0x20 else { return nil }
            i += 1
            guard let h = digits(2), take(UInt8(ascii: ":")), let m = digits(2) else { return nil }
            hour = h; minute = m
            if take(UInt8(ascii: ":")) {
                guard let s = digits(2) else { return nil }
                second = s
                if i < b.count, b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",") {
                    i += 1
                    var count = 0
                    while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                        if count < 3 { millis = millis * 10 + Int(b[i] - 0x30) }
                        count += 1
                        i += 1
                    }
                    guard count > 0 else { return nil }
                    for _ in count..<max(count, 3) { millis *= 10 }
                }
            }
            guard hour <= 23, minute <= 59, second <= 59 else { return nil }
            if i < b.count {
                if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                    i += 1
                } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                    let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                    i += 1
                    guard let oh = digits(2) else { return nil }
                    var om = 0
                    if take(UInt8(ascii: ":")) {
                        guard let m = digits(2) else { return nil }
                        om = m
                    } else if i < b.count {
                        guard let m = digits(2) else { return nil }
                        om = m
                    }
                    guard oh <= 23, om <= 59 else { return nil }
                    offsetMinutes = sign * (oh * 60 + om)
                } else {
                    return nil
                }
            }
            guard i == b.count else { return nil }
        }
        let days = daysFromCivil(year, month, day)
        let ms = days * msPerDay + Int64(hour * 3_600_000 + minute * 60_000 + second * 1000 + millis)
            - Int64(offsetMinutes) * 60_000
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

    static func daysInMonth(_ y: Int, _ m: Int) -> Int { Int(CivilDate.daysInMonth(year: Int64(y), month: Int64(m))) }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int64 {
        CivilDate.days(year: Int64(year), month: Int64(month), day: Int64(day))
    }

    /// The civil date of a day count since 1970-01-01.
    static func civilFromDays(_ days: Int64) -> (year: Int, month: Int, day: Int) {
        let (y, m, d) = CivilDate.date(days: days)
        return (Int(y), Int(m), Int(d))
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
        let (days, rest) = split(ms)
        let (y, mo, d) = civilFromDays(days)
        let h = Int(rest / 3_600_000), mi = Int(rest / 60_000 % 60), s = Int(rest / 1000 % 60), f = Int(rest % 1000)
        var out = [UInt8]()
        out.reserveCapacity(24)
        func put(_ v: Int, _ width: Int) {
            var div = 1
            for _ in 1..<width { div *= 10 }
            var v = v
            while div > 0 { out.append(0x30 + UInt8(v / div)); v %= div; div /= 10 }
        }
        put(y, 4); out.append(UInt8(ascii: "-")); put(mo, 2); out.append(UInt8(ascii: "-")); put(d, 2)
        out.append(UInt8(ascii: "T")); put(h, 2); out.append(UInt8(ascii: ":")); put(mi, 2); out.append(UInt8(ascii: ":")); put(s, 2)
        out.append(UInt8(ascii: ".")); put(f, 3); out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
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
