/// A W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/): the trace a piece
/// of work belongs to and the span (operation) that caused it.
public struct TraceContext: Sendable, Equatable, CustomStringConvertible {
    /// 32 lower-case hex digits, not all zero.
    public let traceID: String
    /// 16 lower-case hex digits, not all zero: the span that sent this context (the parent).
    public let spanID: String
    /// Trace flags (bit 0: sampled).
    public let flags: UInt8

    /// The header name, in HTTP and in NATS headers.
    public static let headerName = "traceparent"

    /// Parses a `traceparent` value. Version 00 must be exactly `00-<trace>-<span>-<flags>`; a
    /// later version may append `-...` fields, which are ignored. Returns nil for anything invalid
    /// (upper-case hex, all-zero ids, version ff, wrong lengths), in which case a new trace starts.
    public init?(traceparent: String) {
        let bytes = Array(traceparent.utf8)
        guard bytes.count >= 55, bytes[2] == 0x2d, bytes[35] == 0x2d, bytes[52] == 0x2d else { return nil }
        func isHex(_ slice: ArraySlice<UInt8>) -> Bool {
            slice.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        }
        let version = bytes[0..<2], trace = bytes[3..<35], span = bytes[36..<52], flagBytes = bytes[53..<55]
        guard isHex(version), isHex(trace), isHex(span), isHex(flagBytes) else { return nil }
        let versionText = String(decoding: version, as: UTF8.self)
        guard versionText != "ff" else { return nil }
        if versionText == "00" {
            guard bytes.count == 55 else { return nil }
        } else if bytes.count > 55 {
            guard bytes[55] == 0x2d else { return nil }
        }
        guard trace.contains(where: { $0 != 0x30 }), span.contains(where: { $0 != 0x30 }) else { return nil }
        traceID = String(decoding: trace, as: UTF8.self)
        spanID = String(decoding: span, as: UTF8.self)
        flags = UInt8(String(decoding: flagBytes, as: UTF8.self), radix: 16) ?? 0
    }

    /// A context with the given ids (lower-case hex; not validated beyond what `traceparent` needs).
    init(traceID: String, spanID: String, flags: UInt8) {
        self.traceID = traceID; self.spanID = spanID; self.flags = flags
    }

    /// A new trace (random trace and span ids, sampled).
    public static func newTrace() -> TraceContext {
        TraceContext(traceID: randomHex(16), spanID: randomHex(8), flags: 0x01)
    }

    /// The context to send downstream: same trace and flags, a new span id.
    public func child() -> TraceContext {
        TraceContext(traceID: traceID, spanID: TraceContext.randomHex(8), flags: flags)
    }

    /// The context from a `traceparent` value when valid, else a new trace.
    public static func continuing(_ traceparent: String?) -> TraceContext {
        traceparent.flatMap(TraceContext.init(traceparent:)) ?? newTrace()
    }

    /// The `traceparent` header value (version 00).
    public var traceparent: String {
        let hex = Array("0123456789abcdef".utf8)
        return "00-\(traceID)-\(spanID)-" + String(decoding: [hex[Int(flags >> 4)], hex[Int(flags & 15)]], as: UTF8.self)
    }

    public var description: String { traceparent }

    /// Random non-zero ids from the system generator (getrandom(2), no descriptor per call: every
    /// consumed message gets a span id, so this is on each service's message path).
    static func randomHex(_ count: Int) -> String {
        let digits: StaticString = "0123456789abcdef"
        var generator = SystemRandomNumberGenerator()
        return String(unsafeUninitializedCapacity: count * 2) { out in
            var written = 0
            var allZero = true
            while written < count * 2 {
                var word = generator.next()
                for _ in 0..<8 where written < count * 2 {
                    let byte = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    if byte != 0 { allZero = false }
                    out[written] = digits.utf8Start[Int(byte >> 4)]
                    out[written + 1] = digits.utf8Start[Int(byte & 15)]
                    written += 2
                }
            }
            // All-zero ids are invalid in W3C trace context.
            if allZero { out[written - 1] = UInt8(ascii: "1") }
            return written
        }
    }
}
