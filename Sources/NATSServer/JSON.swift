// Go's encoding/json output for the broker's control plane (INFO, /varz, /connz): members in
// nats-server's order, `<`, `>` and `&` escaped as `\u003c`..., integral doubles without a
// fraction. Reading (CONNECT, INFO from clients) uses Formats' reader directly; not on the
// message path.

import Formats
import NATSProtocol

/// Builds a JSON object with members in insertion order (INFO and /varz field order matters to
/// anyone diffing against nats-server).
struct GoJSONObject {
    private(set) var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var first = true

    init() {}

    private mutating func key(_ name: String) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        GoJSONObject.appendQuoted(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func add(_ name: String, _ value: String) {
        key(name)
        GoJSONObject.appendQuoted(value, to: &bytes)
    }

    mutating func add(_ name: String, _ value: Int) {
        key(name)
        bytes.append(decimal: value)
    }

    mutating func add(_ name: String, _ value: Int64) {
        key(name)
        bytes.append(decimal: Int(value))
    }

    mutating func add(_ name: String, _ value: Double) {
        key(name)
        if value.isFinite {
            if value == value.rounded(), abs(value) < 1e15 {
                bytes.append(decimal: Int(value))
            } else {
                bytes.append(utf8: "\(value)")
            }
        } else {
            bytes.append(decimal: 0)
        }
    }

    mutating func add(_ name: String, _ value: Bool) {
        key(name)
        bytes.append(utf8: value ? "true" : "false")
    }

    mutating func add(_ name: String, strings: [String]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (i, s) in strings.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            GoJSONObject.appendQuoted(s, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func add(_ name: String, object: GoJSONObject) {
        key(name)
        bytes.append(contentsOf: object.finished())
    }

    /// Appends pre-encoded JSON for a member's value.
    mutating func add(_ name: String, raw: String) {
        key(name)
        bytes.append(utf8: raw)
    }

    /// The object with its closing brace.
    func finished() -> [UInt8] { bytes + [UInt8(ascii: "}")] }

    /// The object as a string.
    func string() -> String { String(decoding: finished(), as: UTF8.self) }

    /// Quotes `text` the way Go's encoding/json does (HTML-sensitive characters escaped too).
    static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        JSONWriter.appendQuoted(text, to: &out, escapingHTML: true)
    }
}
