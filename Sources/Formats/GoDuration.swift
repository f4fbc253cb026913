// GoDuration: durations written and read the way Go's `time.Duration` does.

/// Go's `Duration.String()` and `ParseDuration`: nats-server 2.9.10 writes durations that way in
/// log lines, /connz `rtt`, config errors and JetStream status texts (`Exceeded MaxRequestExpires
/// of 2s`), and reads them in nats.conf and as a NAK delay (`-NAK 5s`).
public enum GoDuration {
    /// `nanoseconds` as Go's `Duration.String()` writes it: `0s`, `500ns`, `1.5µs`, `100ms`, `2s`, `1m30s`, `1h0m0s`.
    public static func string(_ nanoseconds: Int64) -> String {
        if nanoseconds == 0 { return "0s" }
        let negative = nanoseconds < 0
        let magnitude = nanoseconds.magnitude
        var text: String
        if magnitude < 1_000_000_000 {
            if magnitude < 1_000 {
                text = "\(magnitude)ns"
            } else if magnitude < 1_000_000 {
                text = fraction(magnitude, digits: 3) + "µs"
            } else {
                text = fraction(magnitude, digits: 6) + "ms"
            }
        } else {
            let seconds = magnitude / 1_000_000_000
            let rest = magnitude % 1_000_000_000
            var secondsText = String(seconds % 60)
            if rest != 0 {
                var digits = String(rest)
                digits = String(repeating: "0", count: 9 - digits.count) + digits
                while digits.hasSuffix("0") { digits.removeLast() }
                secondsText += "." + digits
            }
            text = secondsText + "s"
            let minutes = seconds / 60
            if minutes > 0 {
                text = "\(minutes % 60)m" + text
                let hours = minutes / 60
                if hours > 0 { text = "\(hours)h" + text }
            }
        }
        return negative ? "-" + text : text
    }

    /// `value` / 10^digits with the fraction's trailing zeros (and a bare point) left out.
    private static func fraction(_ value: UInt64, digits: Int) -> String {
        var scale: UInt64 = 1
        for _ in 0..<digits { scale *= 10 }
        let whole = value / scale
        let rest = value % scale
        guard rest != 0 else { return String(whole) }
        var text = String(rest)
        text = String(repeating: "0", count: digits - text.count) + text
        while text.hasSuffix("0") { text.removeLast() }
        return "\(whole).\(text)"
    }

    /// Parses Go duration text (`300ms`, `-1.5h`, `2h45m`, `0`), or nil when Go's `ParseDuration` refuses it.
    public static func parse(_ text: String) -> Int64? {
        var bytes = Array(text.utf8)[...]
        var negative = false
        if let first = bytes.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        if bytes.elementsEqual("0".utf8) { return 0 }
        if bytes.isEmpty { return nil }
        var total: Double = 0
        while !bytes.isEmpty {
            var whole: Double = 0
            var sawDigit = false
            while let b = bytes.first, b >= 0x30 && b <= 0x39 {
                whole = whole * 10 + Double(b - 0x30); sawDigit = true; bytes = bytes.dropFirst()
            }
            if bytes.first == UInt8(ascii: ".") {
                bytes = bytes.dropFirst()
                var scale: Double = 0.1
                while let b = bytes.first, b >= 0x30 && b <= 0x39 {
                    whole += Double(b - 0x30) * scale; scale /= 10; sawDigit = true; bytes = bytes.dropFirst()
                }
            }
            guard sawDigit else { return nil }
            var unit: [UInt8] = []
            while let b = bytes.first, b != UInt8(ascii: ".") && !(b >= 0x30 && b <= 0x39) {
                unit.append(b); bytes = bytes.dropFirst()
            }
            let multiplier: Double
            switch String(decoding: unit, as: UTF8.self) {
            case "ns": multiplier = 1
            case "us", "µs", "μs": multiplier = 1_000
            case "ms": multiplier = 1_000_000
            case "s": multiplier = 1_000_000_000
            case "m": multiplier = 60_000_000_000
            case "h": multiplier = 3_600_000_000_000
            default: return nil
            }
            total += whole * multiplier
            if total > Double(Int64.max) { return nil }
        }
        let value = Int64(total)
        return negative ? -value : value
    }
}
