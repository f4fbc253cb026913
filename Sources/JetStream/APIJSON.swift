import Formats

/// JSON helpers that write and read the way 2.9.10's Go encoder and decoder do.
public enum JetStreamJSON {
    /// Appends `s` quoted as Go's encoder does: `<`, `>` and `&` escaped too (so `foo.>` is
    /// written `"foo.\u003e"`).
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        JSONWriter.appendQuoted(s, to: &out, escapingHTML: true)
    }

    /// `s` with ASCII letters lower-cased: Go matches JSON keys to fields without regard to case.
    static func folded(_ s: String) -> String {
        String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    /// `s` in double quotes, as Go's `%q` writes a printable string.
    static func goQuoted(_ s: String) -> String {
        var out = "\""
        for c in s {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }

    static func string(_ v: JSON) throws(JetStreamAPIError) -> String {
        guard let s = v.stringValue else { throw .invalidJSON }
        return s
    }

    static func bool(_ v: JSON) throws(JetStreamAPIError) -> Bool {
        guard let b = v.boolValue else { throw .invalidJSON }
        return b
    }

    /// An integer written without fraction or exponent (Go refuses `1.0` and `1e3` for an int).
    static func int(_ v: JSON) throws(JetStreamAPIError) -> Int64 {
        guard case .int(let i) = v else { throw .invalidJSON }
        return i
    }

    /// Nanoseconds since the epoch as Go writes a `time.Time` in UTC: RFC 3339 with the fraction's
    /// trailing zeros dropped; 0 is Go's zero time, `0001-01-01T00:00:00Z`.
    public static func appendTime(_ nanoseconds: Int64, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        if nanoseconds == 0 {
            out.append(contentsOf: "0001-01-01T00:00:00Z".utf8)
        } else {
            var seconds = nanoseconds / 1_000_000_000
            var fraction = nanoseconds % 1_000_000_000
            if fraction < 0 { fraction += 1_000_000_000; seconds -= 1 }
            var digits = 9
            while digits > 0 && fraction % 10 == 0 && fraction != 0 { fraction /= 10; digits -= 1 }
            if fraction == 0 { digits = 0 }
            var text: [UInt8] = []
            RFC3339.append(UnixTime(seconds: seconds), fractionDigits: 0, to: &text)
            text.removeLast()   // the "Z"
            out.append(contentsOf: text)
            if digits > 0 {
                out.append(UInt8(ascii: "."))
                JSONWriter.appendPadded(fraction, width: digits, to: &out)
            }
            out.append(UInt8(ascii: "Z"))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Writes one JSON object's members in the order they are added.
    struct ObjectWriter {
        private var bytes: [UInt8] = [UInt8(ascii: "{")]

        mutating func key(_ key: String) {
            if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
            JetStreamJSON.appendString(key, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
        }
        mutating func string(_ k: String, _ v: String) { key(k); JetStreamJSON.appendString(v, to: &bytes) }
        mutating func int(_ k: String, _ v: Int64) { key(k); JSONWriter.appendDecimal(v, to: &bytes) }
        mutating func uint(_ k: String, _ v: UInt64) { key(k); bytes.append(contentsOf: String(v).utf8) }
        mutating func bool(_ k: String, _ v: Bool) { key(k); bytes.append(contentsOf: (v ? "true" : "false").utf8) }
        mutating func time(_ k: String, _ v: Int64) { key(k); JetStreamJSON.appendTime(v, to: &bytes) }
        mutating func raw(_ k: String, _ v: [UInt8]) { key(k); bytes.append(contentsOf: v) }
        /// A byte string as Go encodes `[]byte`: standard base64 with padding, quoted.
        mutating func appendBase64(_ data: [UInt8]) {
            let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
            bytes.append(UInt8(ascii: "\""))
            var i = 0
            while i + 3 <= data.count {
                let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
                bytes.append(alphabet[Int(n >> 18 & 63)])
                bytes.append(alphabet[Int(n >> 12 & 63)])
                bytes.append(alphabet[Int(n >> 6 & 63)])
                bytes.append(alphabet[Int(n & 63)])
                i += 3
            }
            let rest = data.count - i
            if rest > 0 {
                let n = UInt32(data[i]) << 16 | (rest == 2 ? UInt32(data[i + 1]) << 8 : 0)
                bytes.append(alphabet[Int(n >> 18 & 63)])
                bytes.append(alphabet[Int(n >> 12 & 63)])
                bytes.append(rest == 2 ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
                bytes.append(UInt8(ascii: "="))
            }
            bytes.append(UInt8(ascii: "\""))
        }
        /// The members written so far between their braces.
        func finished() -> [UInt8] { bytes + [UInt8(ascii: "}")] }
    }
}

/// The `state` of a StreamInfo, from a store's figures and the stream's consumer count.
public struct StreamInfoState: Sendable, Equatable {
    public var state: StreamState
    public var consumers: Int
    /// `subjects`: messages per subject, in the order to write them (INFO's subjects_filter; 2.9.10
    /// writes its map sorted by subject); nil leaves the field out.
    public var subjectDetails: [(String, UInt64)]?
    /// `deleted`: the removed sequences (INFO's deleted_details); nil leaves the field out.
    public var deletedDetails: [UInt64]?

    public init(_ state: StreamState, consumers: Int = 0) {
        self.state = state
        self.consumers = consumers
    }

    public static func == (a: StreamInfoState, b: StreamInfoState) -> Bool {
        a.state == b.state && a.consumers == b.consumers && a.deletedDetails == b.deletedDetails
            && a.subjectDetails?.map(\.0) == b.subjectDetails?.map(\.0)
            && a.subjectDetails?.map(\.1) == b.subjectDetails?.map(\.1)
    }

    /// Appends the `state` object as 2.9.10 writes it (`num_subjects`, `subjects`, `num_deleted`
    /// and `deleted` only when not zero or empty).
    public func write(to out: inout [UInt8]) {
        var w = JetStreamJSON.ObjectWriter()
        w.uint("messages", state.messages)
        w.uint("bytes", state.bytes)
        w.uint("first_seq", state.firstSequence)
        w.time("first_ts", state.firstTime)
        w.uint("last_seq", state.lastSequence)
        w.time("last_ts", state.lastTime)
        if state.subjects != 0 { w.int("num_subjects", Int64(state.subjects)) }
        if let subjectDetails, !subjectDetails.isEmpty {
            var map = JetStreamJSON.ObjectWriter()
            for (subject, count) in subjectDetails { map.uint(subject, count) }
            w.raw("subjects", map.finished())
        }
        if state.deleted != 0 { w.uint("num_deleted", state.deleted) }
        if let deletedDetails, !deletedDetails.isEmpty {
            w.raw("deleted", Array(("[" + deletedDetails.map(String.init).joined(separator: ",") + "]").utf8))
        }
        w.int("consumer_count", Int64(consumers))
        out.append(contentsOf: w.finished())
    }
}

/// `total`, `offset` and `limit` of a paged (or, for INFO, possibly paged) response.
public struct APIPaging: Sendable, Equatable {
    public var total: Int
    public var offset: Int
    public var limit: Int

    public init(total: Int = 0, offset: Int = 0, limit: Int = 0) {
        self.total = total
        self.offset = offset
        self.limit = limit
    }
}

/// The JSON of the JetStream API's replies, byte for byte as 2.9.10 writes them.
public enum JetStreamAPIResponse {
    /// `io.nats.jetstream.api.v1.<kind>`.
    public static func type(_ kind: String) -> String { "io.nats.jetstream.api.v1." + kind }

    /// `{"type":"io.nats.jetstream.api.v1.<kind>","error":{...}}`: a failed call.
    public static func error(_ kind: String, _ error: JetStreamAPIError) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", type(kind))
        var e: [UInt8] = []
        error.write(to: &e)
        w.raw("error", e)
        return w.finished()
    }

    /// `{"type":"io.nats.jetstream.api.v1.<kind>","success":true}`: a stream or consumer DELETE, a
    /// MSG.DELETE.
    public static func success(_ kind: String) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", type(kind))
        w.bool("success", true)
        return w.finished()
    }

    /// A PURGE's answer: `{"type":..,"success":true,"purged":n}`, or on failure
    /// `{"type":..,"error":{...},"purged":0}` (2.9.10 always writes `purged`).
    public static func purge(purged: UInt64) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", type("stream_purge_response"))
        w.bool("success", true)
        w.uint("purged", purged)
        return w.finished()
    }

    /// A PURGE that failed (see ``purge(purged:)``).
    public static func purgeError(_ error: JetStreamAPIError) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", type("stream_purge_response"))
        var e: [UInt8] = []
        error.write(to: &e)
        w.raw("error", e)
        w.int("purged", 0)
        return w.finished()
    }

    /// A stream info response (`stream_create_response`, `stream_update_response`,
    /// `stream_info_response`): type, `total`/`offset`/`limit` when `paging` is given (2.9.10's
    /// INFO carries them, zeros unless a subjects filter was asked for), config, created, state,
    /// then `domain` when set and `did_create` for a create.
    public static func streamInfo(_ kind: String, config: StreamConfig, created: Int64, state: StreamInfoState,
                                  paging: APIPaging? = nil, domain: String = "", didCreate: Bool = false) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", type(kind))
        if let paging {
            w.int("total", Int64(paging.total))
            w.int("offset", Int64(paging.offset))
            w.int("limit", Int64(paging.limit))
        }
        var c: [UInt8] = []
        config.write(to: &c)
        w.raw("config", c)
        w.time("created", created)
        var s: [UInt8] = []
        state.write(to: &s)
        w.raw("state", s)
        if !domain.isEmpty { w.string("domain", domain) }
        if didCreate { w.bool("did_create", true) }
        return w.finished()
    }

    /// The PubAck of a stored (or de-duplicated) message, as 2.9.10's template writes it:
    /// `{"stream":"S", "seq":N}` (a space after the comma), `{"stream":"S", "domain":"D", "seq":N}`
    /// with a domain, and `,"duplicate": true` before the brace for a duplicate.
    public static func pubAck(stream: String, sequence: UInt64, domain: String = "", duplicate: Bool = false) -> [UInt8] {
        var text = #"{"stream":"# + JetStreamJSON.goQuoted(stream) + ", "
        if !domain.isEmpty { text += #""domain":"# + JetStreamJSON.goQuoted(domain) + ", " }
        text += #""seq":"# + String(sequence)
        if duplicate { text += #","duplicate": true"# }
        return Array((text + "}").utf8)
    }

    /// The PubAck of a refused message: `{"error":{...},"stream":"S","seq":0}`.
    public static func pubAckError(stream: String, _ error: JetStreamAPIError) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        var e: [UInt8] = []
        error.write(to: &e)
        w.raw("error", e)
        w.string("stream", stream)
        w.int("seq", 0)
        return w.finished()
    }
}
