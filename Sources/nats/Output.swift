// Formatting helpers shaped after the Go `nats` tool's output.

import Foundation

enum Format {
    /// `1234567` -> `1,234,567`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return value < 0 ? "-" + out : out
    }

    /// Two decimals.
    static func fixed(_ value: Double, _ places: Int = 2) -> String {
        String(format: "%.\(places)f", value)
    }

    /// A latency in the largest unit that keeps it readable (`850µs`, `1.25ms`).
    static func latency(_ nanos: Int64) -> String {
        if nanos < 1_000 { return "\(nanos)ns" }
        if nanos < 1_000_000 { return fixed(Double(nanos) / 1e3) + "µs" }
        if nanos < 1_000_000_000 { return fixed(Double(nanos) / 1e6) + "ms" }
        return fixed(Double(nanos) / 1e9) + "s"
    }

    /// `HH:MM:SS` local time, as the Go tool prefixes its log lines.
    static func clock() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        return String(format: "%02d:%02d:%02d", parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// The printable form of a payload: text if valid UTF-8, else a byte count.
    static func body(_ payload: [UInt8]) -> String {
        if let text = String(validating: payload, as: UTF8.self) { return text }
        return "<\(payload.count) bytes of binary data>"
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
