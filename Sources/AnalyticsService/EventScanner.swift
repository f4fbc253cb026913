// Decoding events straight from their bytes: the few fields analytics needs are located in the
// payload by a purpose-built scanner instead of building a JSON tree per event.

import Formats
import ServiceKit

/// What analytics takes from one event. Strings are byte ranges into ``bytes`` (the payload
/// itself on the fast path, so decoding copies nothing).
public struct DecodedEvent: Sendable {
    /// The payload (fast path), or the unescaped strings (slow path for escaped strings).
    var bytes: [UInt8]
    /// `event_id` (the original event's id in an `events.*` envelope).
    var eventID: Range<Int>?
    /// `user_id` (top level, or `data.user_id` in an envelope).
    var userID: Range<Int>?
    /// The domain part of `email` (after the last `@`), if any.
    var emailDomain: Range<Int>?
    /// When the event happened, Unix milliseconds: `occurred_at`, else `time`, else `data.time`.
    var timeMs: Int64?
    /// Login-to-notification latency in milliseconds: `latency_ms` (top level or in `data`),
    /// else `time - login_time`.
    var latencyMs: Double?

    /// The event id as text (for logs).
    public var eventIDText: String? { eventID.map { String(decoding: bytes[$0], as: UTF8.self) } }
    /// The user id as text (for logs).
    public var userIDText: String? { userID.map { String(decoding: bytes[$0], as: UTF8.self) } }
    /// The email domain as text.
    public var emailDomainText: String? { emailDomain.map { String(decoding: bytes[$0], as: UTF8.self) } }
    /// The event time, Unix milliseconds.
    public var time: Int64? { timeMs }
    /// The latency in milliseconds, if the event carries one.
    public var latency: Double? { latencyMs }
}

/// Finds the analytics fields of an event payload (a JSON object) in one pass over its bytes.
///
/// Keys of interest at the top level: `event_id`, `user_id`, `email`, `time`, `occurred_at`,
/// `latency_ms`, `login_time` and `data` (an envelope's original event, scanned one level down
/// for `user_id`, `email`, `time`, `latency_ms`, `login_time`). Every other value is skipped by
/// matching brackets and quotes without being decoded. Strings of interest that contain escapes
/// take a slow path (a full parse), which ordinary events never need.
///
/// It is a field finder, not a validator: a payload that is not a JSON object, or whose
/// structure breaks before the scan ends, is refused (nil); malformed content the scan does not
/// need to read may go unnoticed. It never reads out of bounds and runs in linear time.
public enum EventScanner {
    /// Decodes `payload`; nil when it is not a JSON object the scanner can follow.
    public static func decode(_ payload: [UInt8]) -> DecodedEvent? {
        let scanned: Fields? = payload.withUnsafeBufferPointer { buffer in
            var scanner = Scanner(p: buffer, i: 0)
            return scanner.scanEvent()
        }
        guard let fields = scanned else { return nil }
        if fields.escaped { return slowPath(payload) }
        return fields.event(bytes: payload)
    }

    // MARK: Scan results

    struct Fields {
        var eventID: Range<Int>?
        var userID: Range<Int>?
        var email: Range<Int>?
        var occurredAt: Int64?
        var time: Int64?
        var loginTime: Int64?
        var latency: Double?
        var data = Nested()
        var escaped = false

        struct Nested {
            var userID: Range<Int>?
            var email: Range<Int>?
            var time: Int64?
            var loginTime: Int64?
            var latency: Double?
        }

        func event(bytes: [UInt8]) -> DecodedEvent {
            let sentTime = time ?? data.time
            var latencyMs = latency ?? data.latency
            if latencyMs == nil, let sent = sentTime, let login = loginTime ?? data.loginTime {
                latencyMs = Double(sent - login)
            }
            let emailRange = email ?? data.email
            var domain: Range<Int>?
            if let emailRange, let at = bytes[emailRange].lastIndex(of: UInt8(ascii: "@")), at + 1 < emailRange.upperBound {
                domain = (at + 1)..<emailRange.upperBound
            }
            return DecodedEvent(bytes: bytes, eventID: eventID, userID: userID ?? data.userID, emailDomain: domain,
                                timeMs: occurredAt ?? sentTime, latencyMs: latencyMs)
        }
    }

    // MARK: Slow path

    /// Full parse for payloads whose strings of interest contain escapes: the unescaped strings
    /// are laid out in a fresh buffer the ranges point into.
    static func slowPath(_ payload: [UInt8]) -> DecodedEvent? {
        guard case .object(let top)? = JSONValue.parse(payload) else { return nil }
        var data: [String: JSONValue] = [:]
        if case .object(let nested)? = top["data"] { data = nested }
        var bytes: [UInt8] = []
        func place(_ value: JSONValue?) -> Range<Int>? {
            guard case .string(let s)? = value else { return nil }
            let start = bytes.count
            bytes.append(contentsOf: s.utf8)
            return start..<bytes.count
        }
        func time(_ value: JSONValue?) -> Int64? {
            guard case .string(let s)? = value else { return nil }
            let utf8 = Array(s.utf8)
            return utf8.withUnsafeBufferPointer { RFC3339.parse($0)?.milliseconds }
        }
        var fields = Fields()
        fields.eventID = place(top["event_id"])
        fields.userID = place(top["user_id"])
        fields.email = place(top["email"])
        fields.occurredAt = time(top["occurred_at"])
        fields.time = time(top["time"])
        fields.loginTime = time(top["login_time"])
        fields.latency = top["latency_ms"]?.numberValue
        fields.data.userID = place(data["user_id"])
        fields.data.email = place(data["email"])
        fields.data.time = time(data["time"])
        fields.data.loginTime = time(data["login_time"])
        fields.data.latency = data["latency_ms"]?.numberValue
        return fields.event(bytes: bytes)
    }

    // MARK: The scanner

    struct Scanner {
        let p: UnsafeBufferPointer<UInt8>
        var i: Int

        static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        static let openBrace = UInt8(ascii: "{"), closeBrace = UInt8(ascii: "}")
        static let openBracket = UInt8(ascii: "["), closeBracket = UInt8(ascii: "]")
        static let comma = UInt8(ascii: ","), colon = UInt8(ascii: ":")

        mutating func skipSpace() {
            while i < p.count {
                switch p[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        /// At a `"`: returns the content range and whether it holds escapes; `i` moves past the
        /// closing quote. Nil if unterminated.
        mutating func string() -> (Range<Int>, Bool)? {
            guard i < p.count, p[i] == Self.quote else { return nil }
            let start = i + 1
            var j = start
            var escaped = false
            while j < p.count {
                let c = p[j]
                if c == Self.quote { i = j + 1; return (start..<j, escaped) }
                if c == Self.backslash { escaped = true; j += 2 } else { j += 1 }
            }
            return nil
        }

        /// Skips any value; false if the structure breaks.
        mutating func skipValue() -> Bool {
            guard i < p.count else { return false }
            switch p[i] {
            case Self.quote:
                return string() != nil
            case Self.openBrace, Self.openBracket:
                var depth = 0
                while i < p.count {
                    let c = p[i]
                    if c == Self.quote {
                        guard string() != nil else { return false }
                        continue
                    }
                    if c == Self.openBrace || c == Self.openBracket { depth += 1 }
                    else if c == Self.closeBrace || c == Self.closeBracket {
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    }
                    i += 1
                }
                return false
            default:
                let start = i
                while i < p.count {
                    switch p[i] {
                    case Self.comma, Self.closeBrace, Self.closeBracket, 0x20, 0x09, 0x0A, 0x0D:
                        return i > start
                    default: i += 1
                    }
                }
                return i > start
            }
        }

        /// A string value of interest (nil for any other type, which is skipped).
        mutating func stringValue(_ escaped: inout Bool) -> Range<Int>?? {
            guard i < p.count else { return .none }
            if p[i] == Self.quote {
                guard let (range, hasEscape) = string() else { return .none }
                if hasEscape { escaped = true }
                return .some(range)
            }
            return skipValue() ? .some(nil) : .none
        }

        /// A time string of interest; `.some(nil)` when present but not a valid time.
        mutating func timeValue(_ escaped: inout Bool) -> Int64?? {
            guard let value = stringValue(&escaped) else { return .none }
            guard let range = value else { return .some(nil) }
            return .some(RFC3339.parse(UnsafeBufferPointer(rebasing: p[range]))?.milliseconds)
        }

        /// A number of interest; `.some(nil)` when present but not a number.
        mutating func numberValue() -> Double?? {
            let start = i
            guard skipValue() else { return .none }
            return .some(JSONNumber.double(UnsafeBufferPointer(rebasing: p[start..<i])))
        }

        /// Which key of interest `range` is (0 when none).
        func key(_ range: Range<Int>) -> Key {
            let n = range.count
            func equals(_ literal: StaticString) -> Bool {
                guard literal.utf8CodeUnitCount == n else { return false }
                let l = literal.utf8Start
                for k in 0..<n where p[range.lowerBound + k] != l[k] { return false }
                return true
            }
            switch n {
            case 4: return equals("time") ? .time : equals("data") ? .data : .other
            case 5: return equals("email") ? .email : .other
            case 7: return equals("user_id") ? .userID : .other
            case 8: return equals("event_id") ? .eventID : .other
            case 10: return equals("latency_ms") ? .latency : equals("login_time") ? .loginTime : .other
            case 11: return equals("occurred_at") ? .occurredAt : .other
            default: return .other
            }
        }

        enum Key { case other, eventID, userID, email, time, occurredAt, loginTime, latency, data }

        /// Walks one object, calling `member` for each key with `i` at its value; `member`
        /// consumes the value. False if the structure breaks.
        mutating func object(_ member: (inout Scanner, Key) -> Bool) -> Bool {
            skipSpace()
            guard i < p.count, p[i] == Self.openBrace else { return false }
            i += 1
            skipSpace()
            if i < p.count, p[i] == Self.closeBrace { i += 1; return true }
            while true {
                skipSpace()
                guard let (keyRange, _) = string() else { return false }
                skipSpace()
                guard i < p.count, p[i] == Self.colon else { return false }
                i += 1
                skipSpace()
                guard member(&self, key(keyRange)) else { return false }
                skipSpace()
                guard i < p.count else { return false }
                if p[i] == Self.comma { i += 1; continue }
                if p[i] == Self.closeBrace { i += 1; return true }
                return false
            }
        }

        mutating func scanEvent() -> Fields? {
            var f = Fields()
            let ok = object { s, key in
                switch key {
                case .eventID: guard let v = s.stringValue(&f.escaped) else { return false }; f.eventID = v
                case .userID: guard let v = s.stringValue(&f.escaped) else { return false }; f.userID = v
                case .email: guard let v = s.stringValue(&f.escaped) else { return false }; f.email = v
                case .time: guard let v = s.timeValue(&f.escaped) else { return false }; f.time = v
                case .occurredAt: guard let v = s.timeValue(&f.escaped) else { return false }; f.occurredAt = v
                case .loginTime: guard let v = s.timeValue(&f.escaped) else { return false }; f.loginTime = v
                case .latency: guard let v = s.numberValue() else { return false }; f.latency = v
                case .data:
                    guard s.i < s.p.count else { return false }
                    if s.p[s.i] != Self.openBrace { return s.skipValue() }
                    var nested = Fields.Nested()
                    let inner = s.object { s2, key2 in
                        switch key2 {
                        case .userID: guard let v = s2.stringValue(&f.escaped) else { return false }; nested.userID = v
                        case .email: guard let v = s2.stringValue(&f.escaped) else { return false }; nested.email = v
                        case .time: guard let v = s2.timeValue(&f.escaped) else { return false }; nested.time = v
                        case .loginTime: guard let v = s2.timeValue(&f.escaped) else { return false }; nested.loginTime = v
                        case .latency: guard let v = s2.numberValue() else { return false }; nested.latency = v
                        default: return s2.skipValue()
                        }
                        return true
                    }
                    guard inner else { return false }
                    f.data = nested
                case .other: return s.skipValue()
                }
                return true
            }
            return ok ? f : nil
        }
    }
}

/// A 64-bit hash of byte strings (FNV-1a over the bytes, then a SplitMix64 finaliser so every
/// output bit depends on every input bit; the finaliser is a bijection, so distinct FNV states
/// stay distinct). Good enough for HyperLogLog, deduplication and the top-N keys; not a
/// cryptographic hash.
enum ByteHash {
    static let offset: UInt64 = 0xCBF2_9CE4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// The hash of `bytes[range]`; `lowercaseASCII` folds A-Z first (email domains).
    static func hash(_ bytes: [UInt8], _ range: Range<Int>, seed: UInt64 = 0, lowercaseASCII: Bool = false) -> UInt64 {
        bytes.withUnsafeBufferPointer { p in
            var h = offset ^ seed
            if lowercaseASCII {
                for k in range {
                    var c = p[k]
                    if c &- 0x41 < 26 { c |= 0x20 }
                    h = (h ^ UInt64(c)) &* prime
                }
            } else {
                for k in range { h = (h ^ UInt64(p[k])) &* prime }
            }
            return finalise(h ^ UInt64(range.count))
        }
    }

    /// SplitMix64's output function.
    @inline(__always)
    static func finalise(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
