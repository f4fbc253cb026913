import Formats
import NATSProtocol

/// `deliver_policy`: where a new consumer starts in its stream.
public enum DeliverPolicy: String, Sendable, Equatable {
    case all
    case last
    case new
    case byStartSequence = "by_start_sequence"
    case byStartTime = "by_start_time"
    case lastPerSubject = "last_per_subject"
}

/// `ack_policy`.
public enum AckPolicy: String, Sendable, Equatable {
    case none
    case all
    case explicit
}

/// `replay_policy`.
public enum ReplayPolicy: String, Sendable, Equatable {
    case instant
    case original
}

/// A consumer's configuration as 2.9.10's `ConsumerConfig` JSON carries it. A decoded value holds
/// what the request said (zeros where it said nothing); ``withDefaults()`` fills in 2.9.10's
/// defaults and ``check(stream:)`` applies its rules. Durations are nanoseconds.
public struct ConsumerConfig: Sendable, Equatable {
    public var durable: String = ""
    public var name: String = ""
    public var description: String = ""
    public var deliverPolicy: DeliverPolicy = .all
    public var optStartSequence: UInt64 = 0
    /// `opt_start_time`, nanoseconds since the epoch; nil when not given.
    public var optStartTime: Int64?
    public var ackPolicy: AckPolicy = .none
    public var ackWait: Int64 = 0
    public var maxDeliver: Int64 = 0
    public var backoff: [Int64] = []
    public var filterSubject: String = ""
    public var replayPolicy: ReplayPolicy = .instant
    public var rateLimit: UInt64 = 0
    public var sampleFrequency: String = ""
    public var maxWaiting: Int64 = 0
    public var maxAckPending: Int64 = 0
    public var heartbeat: Int64 = 0
    public var flowControl: Bool = false
    public var headersOnly: Bool = false
    public var maxRequestBatch: Int64 = 0
    public var maxRequestExpires: Int64 = 0
    public var maxRequestMaxBytes: Int64 = 0
    public var deliverSubject: String = ""
    public var deliverGroup: String = ""
    public var inactiveThreshold: Int64 = 0
    public var replicas: Int64 = 0
    public var memoryStorage: Bool = false
    public var direct: Bool = false

    /// 2.9.10's JsAckWaitDefault: 30 s.
    public static let defaultAckWait: Int64 = 30_000_000_000
    /// JsDefaultMaxAckPending.
    public static let defaultMaxAckPending: Int64 = 1000
    /// JSWaitQueueDefaultMax.
    public static let defaultMaxWaiting: Int64 = 512
    /// JsDeleteWaitTimeDefault: how long an ephemeral lives without activity.
    public static let defaultInactiveThreshold: Int64 = 5_000_000_000
    /// Longest consumer name (JSMaxNameLen).
    public static let maxNameLength = 255

    public init() {}

    /// Push consumers have a deliver subject; pull consumers answer MSG.NEXT.
    public var isPush: Bool { !deliverSubject.isEmpty }
    /// A durable consumer names itself in `durable_name`.
    public var isDurable: Bool { !durable.isEmpty }

    // MARK: Decoding

    /// Decodes a consumer create request, `{"stream_name":..,"config":{..}}`, as Go's decoder
    /// does: unknown fields ignored, keys matched without regard to ASCII case, `null` leaving a
    /// field as it was.
    /// - Throws: ``JetStreamAPIError/invalidJSON`` (10025) for a body that is not such JSON (a
    ///   field of the wrong type, a number with a fraction or out of range, an unknown enum value,
    ///   a start time that is not RFC 3339).
    public static func decodeRequest(_ body: [UInt8]) throws(JetStreamAPIError) -> (stream: String, config: ConsumerConfig) {
        let document: JSON
        do { document = try JSON.parse(body) } catch { throw .invalidJSON }
        var stream = ""
        var config = ConsumerConfig()
        if case .null = document { return (stream, config) }
        guard let members = document.members else { throw .invalidJSON }
        for member in members {
            if case .null = member.value { continue }
            switch JetStreamJSON.folded(member.key) {
            case "stream_name": stream = try JetStreamJSON.string(member.value)
            case "config": config = try decode(member.value, into: config)
            default: continue
            }
        }
        return (stream, config)
    }

    /// Decodes a configuration object over `base` (see ``decodeRequest(_:)``).
    /// - Throws: as ``decodeRequest(_:)``.
    public static func decode(_ value: JSON, into base: ConsumerConfig = ConsumerConfig()) throws(JetStreamAPIError) -> ConsumerConfig {
        var c = base
        guard let members = value.members else { throw .invalidJSON }
        func uint(_ v: JSON) throws(JetStreamAPIError) -> UInt64 {
            let i = try JetStreamJSON.int(v)
            guard i >= 0 else { throw .invalidJSON }
            return UInt64(i)
        }
        for member in members {
            let v = member.value
            let key = JetStreamJSON.folded(member.key)
            if case .null = v {
                switch key {
                case "opt_start_time": c.optStartTime = nil
                case "backoff": c.backoff = []
                case "deliver_policy", "ack_policy", "replay_policy": throw .invalidJSON
                default: break
                }
                continue
            }
            switch key {
            case "durable_name": c.durable = try JetStreamJSON.string(v)
            case "name": c.name = try JetStreamJSON.string(v)
            case "description": c.description = try JetStreamJSON.string(v)
            case "deliver_policy":
                let text = try JetStreamJSON.string(v)
                if text == "undefined" { c.deliverPolicy = .all; continue }
                guard let p = DeliverPolicy(rawValue: text) else { throw .invalidJSON }
                c.deliverPolicy = p
            case "opt_start_seq": c.optStartSequence = try uint(v)
            case "opt_start_time":
                guard let text = v.stringValue, let t = RFC3339.parse(text) else { throw .invalidJSON }
                // Int64 nanoseconds reach the years 1678-2262: later saturates, earlier is Go's zero
                // time (0 here), which is what clients send for "none"; 2.9.10 keeps any year.
                let (scaled, overflow) = t.seconds.multipliedReportingOverflow(by: 1_000_000_000)
                c.optStartTime = overflow ? (t.seconds < 0 ? 0 : .max)
                    : scaled.addingReportingOverflow(Int64(t.nanoseconds)).overflow ? .max : scaled + Int64(t.nanoseconds)
            case "ack_policy":
                guard let p = AckPolicy(rawValue: try JetStreamJSON.string(v)) else { throw .invalidJSON }
                c.ackPolicy = p
            case "ack_wait": c.ackWait = try JetStreamJSON.int(v)
            case "max_deliver": c.maxDeliver = try JetStreamJSON.int(v)
            case "backoff":
                guard let elements = v.elements else { throw .invalidJSON }
                var list: [Int64] = []
                for e in elements {
                    if case .null = e { list.append(0); continue }
                    list.append(try JetStreamJSON.int(e))
                }
                c.backoff = list
            case "filter_subject": c.filterSubject = try JetStreamJSON.string(v)
            case "replay_policy":
                guard let p = ReplayPolicy(rawValue: try JetStreamJSON.string(v)) else { throw .invalidJSON }
                c.replayPolicy = p
            case "rate_limit_bps": c.rateLimit = try uint(v)
            case "sample_freq": c.sampleFrequency = try JetStreamJSON.string(v)
            case "max_waiting": c.maxWaiting = try JetStreamJSON.int(v)
            case "max_ack_pending": c.maxAckPending = try JetStreamJSON.int(v)
            case "idle_heartbeat": c.heartbeat = try JetStreamJSON.int(v)
            case "flow_control": c.flowControl = try JetStreamJSON.bool(v)
            case "headers_only": c.headersOnly = try JetStreamJSON.bool(v)
            case "max_batch": c.maxRequestBatch = try JetStreamJSON.int(v)
            case "max_expires": c.maxRequestExpires = try JetStreamJSON.int(v)
            case "max_bytes": c.maxRequestMaxBytes = try JetStreamJSON.int(v)
            case "deliver_subject": c.deliverSubject = try JetStreamJSON.string(v)
            case "deliver_group": c.deliverGroup = try JetStreamJSON.string(v)
            case "inactive_threshold": c.inactiveThreshold = try JetStreamJSON.int(v)
            case "num_replicas": c.replicas = try JetStreamJSON.int(v)
            case "mem_storage": c.memoryStorage = try JetStreamJSON.bool(v)
            case "direct": c.direct = try JetStreamJSON.bool(v)
            default: continue
            }
        }
        return c
    }

    // MARK: Defaults and rules

    /// 2.9.10's setConsumerConfigDefaults: max_waiting 512 for pull, ack_wait 30 s and
    /// max_ack_pending 1000 with acks, max_deliver -1, ack_wait = backoff[0] with a backoff.
    public func withDefaults() -> ConsumerConfig {
        var c = self
        if c.deliverSubject.isEmpty && c.maxWaiting == 0 { c.maxWaiting = ConsumerConfig.defaultMaxWaiting }
        if c.ackWait == 0 && (c.ackPolicy == .explicit || c.ackPolicy == .all) { c.ackWait = ConsumerConfig.defaultAckWait }
        if c.maxDeliver == 0 { c.maxDeliver = -1 }
        if let first = c.backoff.first { c.ackWait = first }
        if (c.ackPolicy == .explicit || c.ackPolicy == .all) && c.maxAckPending == 0 {
            c.maxAckPending = ConsumerConfig.defaultMaxAckPending
        }
        return c
    }

    /// 2.9.10's checkConsumerCfg, in its order, against the stream's configuration.
    /// - Throws: the ``JetStreamAPIError`` 2.9.10 answers for the first broken rule (10126,
    ///   10133, 10116, 10107, 10079, 10112, 10081, 10080, 10082, 10083, 10084, 10086, 10087,
    ///   10088, 10089, 10114, 10115, 10090, 10091, 10093, 10094, 10095, 10108, 10132).
    public func check(stream: StreamConfig) throws(JetStreamAPIError) {
        if replicas > 0 && replicas > stream.replicas { throw .consumerReplicasExceedsStream }
        if replicas < 0 { throw .replicasCountNegative }
        if !backoff.isEmpty && maxDeliver <= Int64(backoff.count) { throw .consumerMaxDeliverBackoff }
        if description.utf8.count > StreamConfig.maxDescriptionLength {
            throw .consumerDescriptionTooLong(StreamConfig.maxDescriptionLength)
        }
        if !deliverSubject.isEmpty {
            if ConsumerConfig.hasWildcardToken(deliverSubject) { throw .consumerDeliverToWildcards }
            if !Subject.isValid(deliverSubject) { throw .consumerInvalidDeliverSubject }
            if stream.subjects.contains(where: { ConsumerConfig.isSubsetMatch(deliverSubject, $0) }) {
                throw .consumerDeliverCycle
            }
            if maxWaiting != 0 { throw .consumerPushMaxWaiting }
            if maxAckPending > 0 && ackPolicy == .none { throw .consumerMaxPendingAckPolicyRequired }
            if heartbeat > 0 && heartbeat < 100_000_000 { throw .consumerSmallHeartbeat }
        } else {
            if ackPolicy == .none && stream.retention == .workqueue { throw .consumerPullRequiresAck }
            if rateLimit > 0 { throw .consumerPullWithRateLimit }
            if maxWaiting < 0 { throw .consumerMaxWaitingNegative }
            if heartbeat > 0 { throw .consumerHeartbeatRequiresPush }
            if flowControl { throw .consumerFlowControlRequiresPush }
            if maxRequestBatch < 0 { throw .consumerMaxRequestBatchNegative }
            if maxRequestExpires != 0 && maxRequestExpires < 1_000_000 { throw .consumerMaxRequestExpiresTooSmall }
        }
        if direct {
            if deliverSubject.isEmpty { throw .consumerDirectRequiresPush }
            if isDurable { throw .consumerDirectRequiresEphemeral }
        }
        if !filterSubject.isEmpty && !ConsumerConfig.isValidFilter(filterSubject, of: stream.subjects) {
            throw .consumerFilterNotSubset
        }
        func badStart(_ policy: String, _ start: String) -> JetStreamAPIError {
            .consumerInvalidPolicy("consumer delivery policy is deliver \(policy), but optional start \(start) is also set")
        }
        func notSet(_ policy: String, _ what: String) -> JetStreamAPIError {
            .consumerInvalidPolicy("consumer delivery policy is deliver \(policy), but optional \(what) is not set")
        }
        switch deliverPolicy {
        case .all, .last, .new, .lastPerSubject:
            let policy = deliverPolicy == .lastPerSubject ? "last per subject" : deliverPolicy.rawValue
            if optStartSequence > 0 { throw badStart(policy, "sequence") }
            if optStartTime != nil { throw badStart(policy, "time") }
            if deliverPolicy == .lastPerSubject && filterSubject.isEmpty { throw notSet(policy, "filter subject") }
        case .byStartSequence:
            if optStartSequence == 0 { throw notSet("by start sequence", "start sequence") }
            if optStartTime != nil { throw badStart("by start sequence", "time") }
        case .byStartTime:
            if optStartTime == nil { throw notSet("by start time", "start time") }
            if optStartSequence != 0 { throw badStart("by start time", "start sequence") }
        }
        if !sampleFrequency.isEmpty {
            var text = sampleFrequency
            if text.hasSuffix("%") { text.removeLast() }
            if let n = ConsumerConfig.goAtoi(text) {
                if n < 0 { throw .consumerInvalidSampling("<nil>") }
            } else {
                throw .consumerInvalidSampling("strconv.Atoi: parsing \(JetStreamJSON.goQuoted(text)): invalid syntax")
            }
        }
        if flowControl && heartbeat == 0 { throw .consumerFlowControlNeedsHeartbeats }
        if !durable.isEmpty && !name.isEmpty && name != durable { throw .consumerDurableAndNameMismatch }
    }

    /// 2.9.10's checkNewConsumerConfig: what a create of an existing consumer may change.
    /// `deliverInterest` tells whether the current deliver subject has subscribers.
    /// - Throws: 10012 naming the field that can not change, 10013 when a push consumer's bound
    ///   deliver subject would change, 10116 for a backoff longer than max_deliver allows.
    func checkUpdate(to new: ConsumerConfig, deliverInterest: Bool) throws(JetStreamAPIError) {
        if self == new { return }
        func fixed(_ what: String) -> JetStreamAPIError { .consumerCreate(what + " can not be updated") }
        if deliverPolicy != new.deliverPolicy { throw fixed("deliver policy") }
        if optStartSequence != new.optStartSequence { throw fixed("start sequence") }
        if optStartTime != new.optStartTime { throw fixed("start time") }
        if ackPolicy != new.ackPolicy { throw fixed("ack policy") }
        if replayPolicy != new.replayPolicy { throw fixed("replay policy") }
        if heartbeat != new.heartbeat { throw fixed("heart beats") }
        if flowControl != new.flowControl { throw fixed("flow control") }
        if maxWaiting != new.maxWaiting { throw fixed("max waiting") }
        if deliverSubject != new.deliverSubject {
            if deliverSubject.isEmpty { throw .consumerCreate("can not update pull consumer to push based") }
            if new.deliverSubject.isEmpty { throw .consumerCreate("can not update push consumer to pull based") }
            if deliverInterest { throw .consumerNameExists }
        }
        if !new.backoff.isEmpty && new.maxDeliver <= Int64(new.backoff.count) { throw .consumerMaxDeliverBackoff }
    }

    /// Go's strconv.Atoi for what a sample frequency can hold.
    private static func goAtoi(_ text: String) -> Int64? {
        var body = Substring(text)
        var negative = false
        if body.first == "-" || body.first == "+" { negative = body.first == "-"; body = body.dropFirst() }
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int64(body) else { return nil }
        return negative ? -n : n
    }

    // MARK: Subject rules

    /// Whether `subject` has a `*` or `>` token.
    static func hasWildcardToken(_ subject: String) -> Bool {
        subject.split(separator: ".", omittingEmptySubsequences: false).contains { $0 == "*" || $0 == ">" }
    }

    /// 2.9.10's subjectIsSubsetMatch: every subject `subject` matches is matched by `test`.
    static func isSubsetMatch(_ subject: String, _ test: String) -> Bool {
        let s = subject.split(separator: ".", omittingEmptySubsequences: false)
        let t = test.split(separator: ".", omittingEmptySubsequences: false)
        var i = 0
        while i < t.count {
            let tt = t[i]
            if tt == ">" { return i < s.count }
            guard i < s.count else { return false }
            let st = s[i]
            if tt == "*" {
                if st == ">" { return false }
            } else if st != tt {
                return false
            }
            i += 1
        }
        return s.count == t.count
    }

    /// 2.9.10's validFilteredSubject: a valid subject inside one of the stream's subjects, or a
    /// wildcard wider than one of them.
    static func isValidFilter(_ filter: String, of subjects: [String]) -> Bool {
        guard Subject.isValid(filter) else { return false }
        let wildcard = hasWildcardToken(filter)
        for subject in subjects {
            if isSubsetMatch(filter, subject) { return true }
            if wildcard && isSubsetMatch(subject, filter) { return true }
        }
        return false
    }

    /// Whether the stored `subject` is one this configuration's filter selects.
    func selects(_ subject: String) -> Bool {
        if filterSubject.isEmpty { return true }
        if !ConsumerConfig.hasWildcardToken(filterSubject) { return subject == filterSubject }
        return Subject.matches(pattern: filterSubject, subject: subject)
    }

    // MARK: Encoding

    /// Appends the configuration as 2.9.10 writes it (its field order; zero values of the
    /// `omitempty` fields left out).
    public func write(to out: inout [UInt8]) {
        var w = JetStreamJSON.ObjectWriter()
        if !durable.isEmpty { w.string("durable_name", durable) }
        if !name.isEmpty { w.string("name", name) }
        if !description.isEmpty { w.string("description", description) }
        w.string("deliver_policy", deliverPolicy.rawValue)
        if optStartSequence != 0 { w.uint("opt_start_seq", optStartSequence) }
        if let optStartTime { w.time("opt_start_time", optStartTime) }
        w.string("ack_policy", ackPolicy.rawValue)
        if ackWait != 0 { w.int("ack_wait", ackWait) }
        if maxDeliver != 0 { w.int("max_deliver", maxDeliver) }
        if !backoff.isEmpty {
            var list: [UInt8] = [UInt8(ascii: "[")]
            for (k, d) in backoff.enumerated() {
                if k > 0 { list.append(UInt8(ascii: ",")) }
                JSONWriter.appendDecimal(d, to: &list)
            }
            list.append(UInt8(ascii: "]"))
            w.raw("backoff", list)
        }
        if !filterSubject.isEmpty { w.string("filter_subject", filterSubject) }
        w.string("replay_policy", replayPolicy.rawValue)
        if rateLimit != 0 { w.uint("rate_limit_bps", rateLimit) }
        if !sampleFrequency.isEmpty { w.string("sample_freq", sampleFrequency) }
        if maxWaiting != 0 { w.int("max_waiting", maxWaiting) }
        if maxAckPending != 0 { w.int("max_ack_pending", maxAckPending) }
        if heartbeat != 0 { w.int("idle_heartbeat", heartbeat) }
        if flowControl { w.bool("flow_control", true) }
        if headersOnly { w.bool("headers_only", true) }
        if maxRequestBatch != 0 { w.int("max_batch", maxRequestBatch) }
        if maxRequestExpires != 0 { w.int("max_expires", maxRequestExpires) }
        if maxRequestMaxBytes != 0 { w.int("max_bytes", maxRequestMaxBytes) }
        if !deliverSubject.isEmpty { w.string("deliver_subject", deliverSubject) }
        if !deliverGroup.isEmpty { w.string("deliver_group", deliverGroup) }
        if inactiveThreshold != 0 { w.int("inactive_threshold", inactiveThreshold) }
        w.int("num_replicas", replicas)
        if memoryStorage { w.bool("mem_storage", true) }
        if direct { w.bool("direct", true) }
        out.append(contentsOf: w.finished())
    }
}
