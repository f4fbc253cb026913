#if canImport(Glibc)
import Glibc
#endif

/// A point in time as Unix seconds and the nanoseconds within that second (always 0...999 999 999,
/// also before 1970), on the proleptic Gregorian calendar in UTC, without leap seconds.
public struct UnixTime: Sendable, Hashable, Comparable {
    /// Whole seconds since 1970-01-01T00:00:00Z (floor).
    public var seconds: Int64
    /// Nanoseconds after ``seconds`` (0...999 999 999).
    public var nanoseconds: Int32

    /// `seconds` plus `nanoseconds` (clamped to 0...999 999 999).
    public init(seconds: Int64, nanoseconds: Int32 = 0) {
        self.seconds = seconds
        self.nanoseconds = max(0, min(999_999_999, nanoseconds))
    }

    /// The time `milliseconds` after the epoch.
    public init(milliseconds: Int64) {
        var s = milliseconds / 1000
        var ms = milliseconds % 1000
        if ms < 0 { ms += 1000; s -= 1 }
        self.init(seconds: s, nanoseconds: Int32(ms) * 1_000_000)
    }

    /// The wall clock (CLOCK_REALTIME).
    public static func now() -> UnixTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UnixTime(seconds: Int64(ts.tv_sec), nanoseconds: Int32(ts.tv_nsec))
    }

    /// Milliseconds since the epoch (the sub-millisecond part dropped, towards the past).
    public var milliseconds: Int64 { seconds * 1000 + Int64(nanoseconds / 1_000_000) }

    public static func < (a: UnixTime, b: UnixTime) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// RFC 3339 / ISO 8601 timestamps from and to bytes, without Foundation or locales.
///
/// The strict form is RFC 3339's `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, where `t`, `z` and a
/// space (RFC 3339 §5.6's note) are accepted for `T` and `Z`, the fraction has any number of digits
/// (kept to the nanosecond, the rest dropped) and a leap second `:60` counts as the next minute's
/// `:00`. ``Leniency`` widens it to the ISO 8601 forms people type.
public enum RFC3339 {
    /// ISO 8601 forms accepted beyond RFC 3339.
    public struct Leniency: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        /// A date alone (`2026-11-23`, midnight UTC).
        public static let dateOnly = Leniency(rawValue: 1)
        /// No seconds (`2026-11-23T17:02`).
        public static let optionalSeconds = Leniency(rawValue: 2)
        /// No zone: the time is UTC.
        public static let optionalZone = Leniency(rawValue: 4)
        /// Offsets without a colon or minutes (`+0100`, `+01`).
        public static let compactOffsets = Leniency(rawValue: 8)
        /// A comma before the fraction (`17:02:14,5`).
        public static let commaFraction = Leniency(rawValue: 16)
        /// Every form above.
        public static let iso8601: Leniency = [.dateOnly, .optionalSeconds, .optionalZone, .compactOffsets, .commaFraction]
    }

    /// Parses the timestamp that is exactly `text` (no surrounding spaces); nil when malformed, a
    /// field is out of range (month 13, February 30 in a common year, hour 24, offset ±24:00), or
    /// the year is not four digits.
    public static func parse(_ text: UnsafeBufferPointer<UInt8>, _ leniency: Leniency = []) -> UnixTime? {
        let end = text.count
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= end else { return nil }
            var v: Int64 = 0
            for k in 0..<n {
                let d = text[i + k] &- 0x30
                guard d < 10 else { return nil }
                v = v * 10 + Int64(d)
            }
            i += n
            return v
        }
        func take(_ c: UInt8) -> Bool {
            guard i < end, text[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), take(UInt8(ascii: "-")), let month = digits(2), take(UInt8(ascii: "-")),
              let day = digits(2), (1...12).contains(month), day >= 1,
              day <= CivilDate.daysInMonth(year: year, month: month) else { return nil }
        let days = CivilDate.days(year: year, month: month, day: day)
        if i == end && leniency.contains(.dateOnly) { return UnixTime(seconds: days * 86_400) }
        guard i < end, text[i] == UInt8(ascii: "T") || text[i] == UInt8(ascii: "t") || text[i] == 0x20 else { return nil }
        i += 1
        guard let hour = digits(2), take(UInt8(ascii: ":")), let minute = digits(2) else { return nil }
        var second: Int64 = 0
        var nanos: Int64 = 0
        if take(UInt8(ascii: ":")) {
            guard let s = digits(2) else { return nil }
            second = s
            if i < end, text[i] == UInt8(ascii: ".") || (text[i] == UInt8(ascii: ",") && leniency.contains(.commaFraction)) {
                i += 1
                var count = 0
                while i < end, text[i] &- 0x30 < 10 {
                    if count < 9 { nanos = nanos * 10 + Int64(text[i] &- 0x30) }
                    count += 1
                    i += 1
                }
                guard count > 0 else { return nil }
                for _ in min(count, 9)..<9 { nanos *= 10 }
            }
        } else if !leniency.contains(.optionalSeconds) {
            return nil
        }
        guard hour < 24, minute < 60, second <= 60 else { return nil }
        var offset: Int64 = 0
        if i == end {
            guard leniency.contains(.optionalZone) else { return nil }
        } else if text[i] == UInt8(ascii: "Z") || text[i] == UInt8(ascii: "z") {
            i += 1
        } else if text[i] == UInt8(ascii: "+") || text[i] == UInt8(ascii: "-") {
            let sign: Int64 = text[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2) else { return nil }
            var om: Int64 = 0
            if take(UInt8(ascii: ":")) {
                guard let m = digits(2) else { return nil }
                om = m
            } else {
                guard leniency.contains(.compactOffsets) else { return nil }
                if i < end {
                    guard let m = digits(2) else { return nil }
                    om = m
                }
            }
            guard oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == end else { return nil }
        return UnixTime(seconds: days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanoseconds: Int32(nanos))
    }

    /// Parses the UTF-8 of `text` (see ``parse(_:_:)-(UnsafeBufferPointer<UInt8>,_)``).
    public static func parse(_ text: String, _ leniency: Leniency = []) -> UnixTime? {
        var text = text
        return text.withUTF8 { parse($0, leniency) }
    }

    /// Appends `time` as `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in UTC with `fractionDigits` (0...9)
    /// digits of the second, truncated. Years outside 0...9999, which RFC 3339 cannot express,
    /// are written with their sign and all their digits.
    public static func append(_ time: UnixTime, fractionDigits: Int, to out: inout [UInt8]) {
        var days = time.seconds / 86_400
        var rest = time.seconds % 86_400
        if rest < 0 { rest += 86_400; days -= 1 }
        let (year, month, day) = CivilDate.date(days: days)
        JSONWriter.appendPadded(year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        JSONWriter.appendPadded(month, width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        JSONWriter.appendPadded(day, width: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        JSONWriter.appendPadded(rest / 3600, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        JSONWriter.appendPadded(rest / 60 % 60, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        JSONWriter.appendPadded(rest % 60, width: 2, to: &out)
        let digits = max(0, min(9, fractionDigits))
        if digits > 0 {
            var fraction = Int64(time.nanoseconds)
            for _ in digits..<9 { fraction /= 10 }
            out.append(UInt8(ascii: "."))
            JSONWriter.appendPadded(fraction, width: digits, to: &out)
        }
        out.append(UInt8(ascii: "Z"))
    }

    /// `time` as `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (see ``append(_:fractionDigits:to:)``).
    public static func format(_ time: UnixTime, fractionDigits: Int) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        append(time, fractionDigits: fractionDigits, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
