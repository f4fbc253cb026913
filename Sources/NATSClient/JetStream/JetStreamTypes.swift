// The JSON shapes of the JetStream API (nats-server 2.9): stream and consumer configs and infos.
// Durations travel as integer nanoseconds and times as RFC 3339 text, so the Codable code is
// written out instead of synthesized.

import Foundation

/// How a stream keeps messages.
public enum RetentionPolicy: String, Codable, Sendable {
    /// Until a limit (count, bytes, age) removes them.
    case limits
    /// While some consumer has not acknowledged them.
    case interest
    /// Until one consumer acknowledges them.
    case workqueue
}

/// What a full stream does with a new message.
public enum DiscardPolicy: String, Codable, Sendable {
    /// Removes the oldest messages.
    case old
    /// Refuses the new message.
    case new
}

/// Where a stream or consumer keeps its data.
public enum StorageType: String, Codable, Sendable {
    case file
    case memory
}

/// Where a consumer starts.
public enum DeliverPolicy: String, Codable, Sendable {
    case all
    case last
    case new
    case byStartSequence = "by_start_sequence"
    case byStartTime = "by_start_time"
    case lastPerSubject = "last_per_subject"
}

/// What a consumer expects back for each delivered message.
public enum AckPolicy: String, Codable, Sendable {
    case none
    case all
    case explicit
}

/// The pace of delivery.
public enum ReplayPolicy: String, Codable, Sendable {
    case instant
    case original
}

/// A stream's configuration (`$JS.API.STREAM.CREATE` / `UPDATE`). Limits of -1 mean unlimited.
public struct StreamConfig: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    /// Subjects the stream stores; the server uses `[name]` when empty.
    public var subjects: [String]
    public var retention: RetentionPolicy = .limits
    public var maxConsumers: Int = -1
    public var maxMsgs: Int = -1
    public var maxBytes: Int = -1
    /// The oldest a message may get; nil keeps messages forever.
    public var maxAge: Duration?
    public var maxMsgsPerSubject: Int = -1
    public var maxMsgSize: Int = -1
    public var discard: DiscardPolicy = .old
    public var discardNewPerSubject: Bool = false
    public var storage: StorageType = .file
    public var replicas: Int = 1
    public var noAck: Bool = false
    /// The `Nats-Msg-Id` de-duplication window; nil leaves the server's default (2 minutes).
    public var duplicateWindow: Duration?
    public var sealed: Bool = false
    public var denyDelete: Bool = false
    public var denyPurge: Bool = false
    public var allowRollup: Bool = false
    /// Serve reads through `$JS.API.DIRECT.GET` (any replica answers).
    public var allowDirect: Bool = false

    /// A stream named `name` on `subjects` with every other setting at its default.
    public init(name: String, subjects: [String] = []) {
        self.name = name
        self.subjects = subjects
    }

    enum CodingKeys: String, CodingKey {
        case name, description, subjects, retention, discard, storage, sealed
        case maxConsumers = "max_consumers", maxMsgs = "max_msgs", maxBytes = "max_bytes", maxAge = "max_age"
        case maxMsgsPerSubject = "max_msgs_per_subject", maxMsgSize = "max_msg_size"
        case discardNewPerSubject = "discard_new_per_subject", replicas = "num_replicas", noAck = "no_ack"
        case duplicateWindow = "duplicate_window", denyDelete = "deny_delete", denyPurge = "deny_purge"
        case allowRollup = "allow_rollup_hdrs", allowDirect = "allow_direct"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        subjects = try c.decodeIfPresent([String].self, forKey: .subjects) ?? []
        retention = try c.decodeIfPresent(RetentionPolicy.self, forKey: .retention) ?? .limits
        maxConsumers = try c.decodeIfPresent(Int.self, forKey: .maxConsumers) ?? -1
        maxMsgs = try c.decodeIfPresent(Int.self, forKey: .maxMsgs) ?? -1
        maxBytes = try c.decodeIfPresent(Int.self, forKey: .maxBytes) ?? -1
        maxAge = try c.decodeNanos(.maxAge)
        maxMsgsPerSubject = try c.decodeIfPresent(Int.self, forKey: .maxMsgsPerSubject) ?? -1
        maxMsgSize = try c.decodeIfPresent(Int.self, forKey: .maxMsgSize) ?? -1
        discard = try c.decodeIfPresent(DiscardPolicy.self, forKey: .discard) ?? .old
        discardNewPerSubject = try c.decodeIfPresent(Bool.self, forKey: .discardNewPerSubject) ?? false
        storage = try c.decodeIfPresent(StorageType.self, forKey: .storage) ?? .file
        replicas = try c.decodeIfPresent(Int.self, forKey: .replicas) ?? 1
        noAck = try c.decodeIfPresent(Bool.self, forKey: .noAck) ?? false
        duplicateWindow = try c.decodeNanos(.duplicateWindow)
        sealed = try c.decodeIfPresent(Bool.self, forKey: .sealed) ?? false
        denyDelete = try c.decodeIfPresent(Bool.self, forKey: .denyDelete) ?? false
        denyPurge = try c.decodeIfPresent(Bool.self, forKey: .denyPurge) ?? false
        allowRollup = try c.decodeIfPresent(Bool.self, forKey: .allowRollup) ?? false
        allowDirect = try c.decodeIfPresent(Bool.self, forKey: .allowDirect) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(description, forKey: .description)
        if !subjects.isEmpty { try c.encode(subjects, forKey: .subjects) }
        try c.encode(retention, forKey: .retention)
        try c.encode(maxConsumers, forKey: .maxConsumers)
        try c.encode(maxMsgs, forKey: .maxMsgs)
        try c.encode(maxBytes, forKey: .maxBytes)
        try c.encode(maxAge.map(\.nanosecondsSigned) ?? 0, forKey: .maxAge)
        try c.encode(maxMsgsPerSubject, forKey: .maxMsgsPerSubject)
        try c.encode(maxMsgSize, forKey: .maxMsgSize)
        try c.encode(discard, forKey: .discard)
        if discardNewPerSubject { try c.encode(true, forKey: .discardNewPerSubject) }
        try c.encode(storage, forKey: .storage)
        try c.encode(replicas, forKey: .replicas)
        if noAck { try c.encode(true, forKey: .noAck) }
        if let duplicateWindow { try c.encode(duplicateWindow.nanosecondsSigned, forKey: .duplicateWindow) }
        if sealed { try c.encode(true, forKey: .sealed) }
        try c.encode(denyDelete, forKey: .denyDelete)
        try c.encode(denyPurge, forKey: .denyPurge)
        try c.encode(allowRollup, forKey: .allowRollup)
        try c.encode(allowDirect, forKey: .allowDirect)
    }
}

/// A stream's message counts and sequence range.
public struct StreamState: Decodable, Sendable, Equatable {
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var firstTime: Date?
    public var lastSequence: UInt64
    public var lastTime: Date?
    public var subjectCount: Int
    public var deletedCount: Int
    public var consumerCount: Int
    /// Messages per subject, when the INFO request asked for a subjects filter.
    public var subjects: [String: UInt64]?

    enum CodingKeys: String, CodingKey {
        case messages, bytes, subjects
        case firstSequence = "first_seq", firstTime = "first_ts", lastSequence = "last_seq", lastTime = "last_ts"
        case subjectCount = "num_subjects", deletedCount = "num_deleted", consumerCount = "consumer_count"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messages = try c.decodeIfPresent(UInt64.self, forKey: .messages) ?? 0
        bytes = try c.decodeIfPresent(UInt64.self, forKey: .bytes) ?? 0
        firstSequence = try c.decodeIfPresent(UInt64.self, forKey: .firstSequence) ?? 0
        firstTime = try c.decodeTime(.firstTime)
        lastSequence = try c.decodeIfPresent(UInt64.self, forKey: .lastSequence) ?? 0
        lastTime = try c.decodeTime(.lastTime)
        subjectCount = try c.decodeIfPresent(Int.self, forKey: .subjectCount) ?? 0
        deletedCount = try c.decodeIfPresent(Int.self, forKey: .deletedCount) ?? 0
        consumerCount = try c.decodeIfPresent(Int.self, forKey: .consumerCount) ?? 0
        subjects = try c.decodeIfPresent([String: UInt64].self, forKey: .subjects)
    }
}

/// A stream's configuration and state (`STREAM.INFO`, `CREATE`, `UPDATE`, `LIST`).
public struct StreamInfo: Decodable, Sendable {
    public var config: StreamConfig
    public var created: Date?
    public var state: StreamState
    /// True in a `CREATE` answer (2.9 sets it even when the stream already existed unchanged).
    public var didCreate: Bool

    enum CodingKeys: String, CodingKey {
        case config, created, state
        case didCreate = "did_create"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        config = try c.decode(StreamConfig.self, forKey: .config)
        created = try c.decodeTime(.created)
        state = try c.decode(StreamState.self, forKey: .state)
        didCreate = try c.decodeIfPresent(Bool.self, forKey: .didCreate) ?? false
    }
}

/// A consumer's configuration. Optional fields left nil take the server's defaults.
public struct ConsumerConfig: Codable, Sendable, Equatable {
    /// The consumer's name (ephemeral unless ``durableName`` is set too).
    public var name: String?
    /// A durable consumer survives without subscribers.
    public var durableName: String?
    public var description: String?
    public var deliverPolicy: DeliverPolicy = .all
    public var optStartSeq: UInt64?
    public var optStartTime: Date?
    public var ackPolicy: AckPolicy = .explicit
    /// How long the server waits for an ack before redelivering (server default 30 s).
    public var ackWait: Duration?
    /// Deliveries per message at most (-1 unlimited).
    public var maxDeliver: Int?
    /// Redelivery delays, one per delivery attempt.
    public var backoff: [Duration]?
    public var filterSubject: String?
    public var replayPolicy: ReplayPolicy = .instant
    public var rateLimit: UInt64?
    public var sampleFrequency: String?
    /// Pull requests waiting at most (pull consumers, server default 512).
    public var maxWaiting: Int?
    /// Unacknowledged messages at most before delivery pauses (server default 1000).
    public var maxAckPending: Int?
    /// Push consumers: the subject messages are delivered to.
    public var deliverSubject: String?
    /// Push consumers: the queue group sharing the deliveries.
    public var deliverGroup: String?
    public var flowControl: Bool = false
    public var idleHeartbeat: Duration?
    public var headersOnly: Bool = false
    public var maxRequestBatch: Int?
    public var maxRequestExpires: Duration?
    public var maxRequestMaxBytes: Int?
    /// An ephemeral consumer is removed after being inactive this long.
    public var inactiveThreshold: Duration?
    public var replicas: Int?
    public var memoryStorage: Bool = false

    /// A consumer config with the server's defaults (deliver all, explicit ack, instant replay).
    public init(name: String? = nil, durableName: String? = nil) {
        self.name = name
        self.durableName = durableName
    }

    enum CodingKeys: String, CodingKey {
        case name, description, backoff
        case durableName = "durable_name", deliverPolicy = "deliver_policy", optStartSeq = "opt_start_seq"
        case optStartTime = "opt_start_time", ackPolicy = "ack_policy", ackWait = "ack_wait", maxDeliver = "max_deliver"
        case filterSubject = "filter_subject", replayPolicy = "replay_policy", rateLimit = "rate_limit_bps"
        case sampleFrequency = "sample_freq", maxWaiting = "max_waiting", maxAckPending = "max_ack_pending"
        case deliverSubject = "deliver_subject", deliverGroup = "deliver_group", flowControl = "flow_control"
        case idleHeartbeat = "idle_heartbeat", headersOnly = "headers_only", maxRequestBatch = "max_batch"
        case maxRequestExpires = "max_expires", maxRequestMaxBytes = "max_bytes"
        case inactiveThreshold = "inactive_threshold", replicas = "num_replicas", memoryStorage = "mem_storage"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        durableName = try c.decodeIfPresent(String.self, forKey: .durableName)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        deliverPolicy = try c.decodeIfPresent(DeliverPolicy.self, forKey: .deliverPolicy) ?? .all
        optStartSeq = try c.decodeIfPresent(UInt64.self, forKey: .optStartSeq)
        optStartTime = try c.decodeTime(.optStartTime)
        ackPolicy = try c.decodeIfPresent(AckPolicy.self, forKey: .ackPolicy) ?? .explicit
        ackWait = try c.decodeNanos(.ackWait)
        maxDeliver = try c.decodeIfPresent(Int.self, forKey: .maxDeliver)
        backoff = try c.decodeIfPresent([Int64].self, forKey: .backoff)?.map { .nanoseconds($0) }
        filterSubject = try c.decodeIfPresent(String.self, forKey: .filterSubject)
        replayPolicy = try c.decodeIfPresent(ReplayPolicy.self, forKey: .replayPolicy) ?? .instant
        rateLimit = try c.decodeIfPresent(UInt64.self, forKey: .rateLimit)
        sampleFrequency = try c.decodeIfPresent(String.self, forKey: .sampleFrequency)
        maxWaiting = try c.decodeIfPresent(Int.self, forKey: .maxWaiting)
        maxAckPending = try c.decodeIfPresent(Int.self, forKey: .maxAckPending)
        deliverSubject = try c.decodeIfPresent(String.self, forKey: .deliverSubject)
        deliverGroup = try c.decodeIfPresent(String.self, forKey: .deliverGroup)
        flowControl = try c.decodeIfPresent(Bool.self, forKey: .flowControl) ?? false
        idleHeartbeat = try c.decodeNanos(.idleHeartbeat)
        headersOnly = try c.decodeIfPresent(Bool.self, forKey: .headersOnly) ?? false
        maxRequestBatch = try c.decodeIfPresent(Int.self, forKey: .maxRequestBatch)
        maxRequestExpires = try c.decodeNanos(.maxRequestExpires)
        maxRequestMaxBytes = try c.decodeIfPresent(Int.self, forKey: .maxRequestMaxBytes)
        inactiveThreshold = try c.decodeNanos(.inactiveThreshold)
        replicas = try c.decodeIfPresent(Int.self, forKey: .replicas)
        memoryStorage = try c.decodeIfPresent(Bool.self, forKey: .memoryStorage) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(name, forKey: .name)
        try c.encodeIfPresent(durableName, forKey: .durableName)
        try c.encodeIfPresent(description, forKey: .description)
        try c.encode(deliverPolicy, forKey: .deliverPolicy)
        try c.encodeIfPresent(optStartSeq, forKey: .optStartSeq)
        if let optStartTime { try c.encode(RFC3339Nano.format(optStartTime), forKey: .optStartTime) }
        try c.encode(ackPolicy, forKey: .ackPolicy)
        if let ackWait { try c.encode(ackWait.nanosecondsSigned, forKey: .ackWait) }
        try c.encodeIfPresent(maxDeliver, forKey: .maxDeliver)
        if let backoff { try c.encode(backoff.map(\.nanosecondsSigned), forKey: .backoff) }
        try c.encodeIfPresent(filterSubject, forKey: .filterSubject)
        try c.encode(replayPolicy, forKey: .replayPolicy)
        try c.encodeIfPresent(rateLimit, forKey: .rateLimit)
        try c.encodeIfPresent(sampleFrequency, forKey: .sampleFrequency)
        try c.encodeIfPresent(maxWaiting, forKey: .maxWaiting)
        try c.encodeIfPresent(maxAckPending, forKey: .maxAckPending)
        try c.encodeIfPresent(deliverSubject, forKey: .deliverSubject)
        try c.encodeIfPresent(deliverGroup, forKey: .deliverGroup)
        if flowControl { try c.encode(true, forKey: .flowControl) }
        if let idleHeartbeat { try c.encode(idleHeartbeat.nanosecondsSigned, forKey: .idleHeartbeat) }
        if headersOnly { try c.encode(true, forKey: .headersOnly) }
        try c.encodeIfPresent(maxRequestBatch, forKey: .maxRequestBatch)
        if let maxRequestExpires { try c.encode(maxRequestExpires.nanosecondsSigned, forKey: .maxRequestExpires) }
        try c.encodeIfPresent(maxRequestMaxBytes, forKey: .maxRequestMaxBytes)
        if let inactiveThreshold { try c.encode(inactiveThreshold.nanosecondsSigned, forKey: .inactiveThreshold) }
        try c.encodeIfPresent(replicas, forKey: .replicas)
        if memoryStorage { try c.encode(true, forKey: .memoryStorage) }
    }
}

/// A consumer's and the stream's sequence of the last delivered (or acknowledged) message.
public struct SequenceInfo: Decodable, Sendable, Equatable {
    public var consumerSequence: UInt64
    public var streamSequence: UInt64
    public var lastActive: Date?

    enum CodingKeys: String, CodingKey {
        case consumerSequence = "consumer_seq", streamSequence = "stream_seq", lastActive = "last_active"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        consumerSequence = try c.decodeIfPresent(UInt64.self, forKey: .consumerSequence) ?? 0
        streamSequence = try c.decodeIfPresent(UInt64.self, forKey: .streamSequence) ?? 0
        lastActive = try c.decodeTime(.lastActive)
    }
}

/// A consumer's configuration and counters (`CONSUMER.INFO`, `CREATE`, `LIST`).
public struct ConsumerInfo: Decodable, Sendable {
    public var stream: String
    public var name: String
    public var created: Date?
    public var config: ConsumerConfig
    public var delivered: SequenceInfo
    public var ackFloor: SequenceInfo
    public var numAckPending: Int
    public var numRedelivered: Int
    public var numWaiting: Int
    public var numPending: UInt64
    public var pushBound: Bool

    enum CodingKeys: String, CodingKey {
        case name, created, config, delivered
        case stream = "stream_name", ackFloor = "ack_floor", numAckPending = "num_ack_pending"
        case numRedelivered = "num_redelivered", numWaiting = "num_waiting", numPending = "num_pending"
        case pushBound = "push_bound"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stream = try c.decode(String.self, forKey: .stream)
        name = try c.decode(String.self, forKey: .name)
        created = try c.decodeTime(.created)
        config = try c.decode(ConsumerConfig.self, forKey: .config)
        delivered = try c.decode(SequenceInfo.self, forKey: .delivered)
        ackFloor = try c.decode(SequenceInfo.self, forKey: .ackFloor)
        numAckPending = try c.decodeIfPresent(Int.self, forKey: .numAckPending) ?? 0
        numRedelivered = try c.decodeIfPresent(Int.self, forKey: .numRedelivered) ?? 0
        numWaiting = try c.decodeIfPresent(Int.self, forKey: .numWaiting) ?? 0
        numPending = try c.decodeIfPresent(UInt64.self, forKey: .numPending) ?? 0
        pushBound = try c.decodeIfPresent(Bool.self, forKey: .pushBound) ?? false
    }
}

/// The server's answer to a publish on a stream subject.
public struct PubAck: Decodable, Sendable, Equatable {
    /// The stream that stored the message.
    public var stream: String
    /// The message's stream sequence (the original one for a duplicate).
    public var sequence: UInt64
    /// The message was a duplicate (same `Nats-Msg-Id` within the window) and was not stored again.
    public var duplicate: Bool
    /// The JetStream domain, if the server has one.
    public var domain: String?

    enum CodingKeys: String, CodingKey {
        case stream, duplicate, domain
        case sequence = "seq"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stream = try c.decode(String.self, forKey: .stream)
        sequence = try c.decode(UInt64.self, forKey: .sequence)
        duplicate = try c.decodeIfPresent(Bool.self, forKey: .duplicate) ?? false
        domain = try c.decodeIfPresent(String.self, forKey: .domain)
    }
}

/// A stored message read by sequence or subject (`STREAM.MSG.GET` or Direct Get).
public struct StoredMessage: Sendable {
    public var subject: String
    public var sequence: UInt64
    public var headers: Headers?
    public var payload: [UInt8]
    public var time: Date?
}

extension KeyedDecodingContainer {
    /// An integer-nanoseconds duration; nil when absent or zero (the server's "not set").
    func decodeNanos(_ key: Key) throws -> Duration? {
        guard let value = try decodeIfPresent(Int64.self, forKey: key), value != 0 else { return nil }
        return .nanoseconds(value)
    }

    /// An RFC 3339 time; nil when absent, unparseable or the zero time.
    func decodeTime(_ key: Key) throws -> Date? {
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return nil }
        return RFC3339Nano.parse(text)
    }
}

extension Duration {
    /// The duration in whole nanoseconds, signed (JSON durations).
    var nanosecondsSigned: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// RFC 3339 times with up to nanosecond fractions, as the server writes them (always UTC).
enum RFC3339Nano {
    /// `2026-12-07T18:40:49.123456789Z` (or with a `+hh:mm` offset) as a Date; nil if malformed or
    /// the Go zero time (year 1).
    static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count else { return nil }
            var value = 0
            for index in range {
                let digit = Int(bytes[index]) - 48
                guard (0...9).contains(digit) else { return nil }
                value = value * 10 + digit
            }
            return value
        }
        guard bytes.count >= 20, let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              bytes[4] == 0x2D, bytes[7] == 0x2D, bytes[10] == 0x54 || bytes[10] == 0x74,
              bytes[13] == 0x3A, bytes[16] == 0x3A else { return nil }
        if year <= 1 { return nil }
        var index = 19
        var fraction = 0.0
        if index < bytes.count && bytes[index] == 0x2E {
            index += 1
            var scale = 0.1
            while index < bytes.count, (48...57).contains(bytes[index]) {
                fraction += Double(bytes[index] - 48) * scale
                scale /= 10
                index += 1
            }
        }
        guard index < bytes.count else { return nil }
        var offset = 0
        if bytes[index] == 0x2B || bytes[index] == 0x2D {
            guard let hours = number(index + 1..<index + 3), let minutes = number(index + 4..<index + 6) else { return nil }
            offset = (hours * 3600 + minutes * 60) * (bytes[index] == 0x2D ? -1 : 1)
        } else if bytes[index] != 0x5A && bytes[index] != 0x7A {
            return nil
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts) - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// `date` as `yyyy-MM-ddTHH:mm:ss.nnnnnnnnnZ` in UTC.
    static func format(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let nanos = Int(((interval - Double(seconds)) * 1e9).rounded())
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), min(nanos, 999_999_999))
    }

    /// A Date from Unix nanoseconds (the ack subject's timestamp).
    static func date(unixNanos: Int64) -> Date {
        Date(timeIntervalSince1970: Double(unixNanos / 1_000_000_000) + Double(unixNanos % 1_000_000_000) / 1e9)
    }
}
