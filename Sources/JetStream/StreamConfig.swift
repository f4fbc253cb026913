import Formats
import NATSProtocol

/// `retention`: when a stream lets go of its messages.
public enum RetentionPolicy: String, Sendable, Equatable {
    case limits
    case interest
    case workqueue
}

/// `storage`: where a stream keeps its messages.
public enum StorageType: String, Sendable, Equatable {
    case file
    case memory
}

/// `republish`: messages stored under `source` are published again to `destination`.
public struct RePublish: Sendable, Equatable {
    /// `src`; empty means every subject of the stream (validation turns it into `>`, as 2.9.10 does).
    public var source: String
    /// `dest`.
    public var destination: String
    /// `headers_only`.
    public var headersOnly: Bool

    public init(source: String = "", destination: String = "", headersOnly: Bool = false) {
        self.source = source
        self.destination = destination
        self.headersOnly = headersOnly
    }
}

/// A stream's configuration as 2.9.10's `StreamConfig` JSON carries it. A decoded value holds
/// what the request said (zeros where it said nothing); ``validated()`` applies 2.9.10's defaults
/// and checks. Mirrors, sources and placement are not supported: a request naming a mirror or
/// sources is refused by ``decode(_:)``, placement is ignored.
public struct StreamConfig: Sendable, Equatable {
    public var name: String = ""
    public var description: String = ""
    public var subjects: [String] = []
    public var retention: RetentionPolicy = .limits
    public var maxConsumers: Int64 = 0
    public var maxMessages: Int64 = 0
    public var maxBytes: Int64 = 0
    /// `max_age` in nanoseconds; 0 = forever.
    public var maxAge: Int64 = 0
    public var maxMessagesPerSubject: Int64 = 0
    public var maxMessageSize: Int32 = 0
    public var discard: DiscardPolicy = .old
    public var storage: StorageType = .file
    public var replicas: Int64 = 0
    public var noAck: Bool = false
    public var templateOwner: String = ""
    /// `duplicate_window` in nanoseconds.
    public var duplicateWindow: Int64 = 0
    public var republish: RePublish?
    public var allowDirect: Bool = false
    public var mirrorDirect: Bool = false
    public var discardNewPerSubject: Bool = false
    public var sealed: Bool = false
    public var denyDelete: Bool = false
    public var denyPurge: Bool = false
    public var allowRollup: Bool = false

    /// 2.9.10's default `duplicate_window`: two minutes.
    public static let defaultDuplicateWindow: Int64 = 120_000_000_000
    /// Longest stream name (JSMaxNameLen).
    public static let maxNameLength = 255
    /// Longest description (JSMaxDescriptionLen).
    public static let maxDescriptionLength = 4096
    /// Most replicas a configuration may ask for (StreamMaxReplicas).
    public static let maxReplicas: Int64 = 5

    public init(name: String = "") { self.name = name }

    /// The limits the store enforces for this configuration.
    public var limits: StreamLimits {
        StreamLimits(maxMessages: maxMessages, maxBytes: maxBytes, maxAge: maxAge, maxMessageSize: maxMessageSize,
                     maxMessagesPerSubject: maxMessagesPerSubject, discard: discard,
                     discardNewPerSubject: discardNewPerSubject)
    }

    // MARK: Decoding

    /// Decodes a request body as 2.9.10 does: unknown fields are ignored, keys match without
    /// regard to ASCII case, a repeated key takes its last value, `null` leaves a field as it
    /// was, and a top-level `null` is an empty configuration.
    /// - Throws: ``JetStreamAPIError/invalidJSON`` (10025) when the body is empty or not JSON, is
    ///   not an object, or a field has the wrong type, a number out of its range or a fraction, or
    ///   an enum value 2.9.10 does not know; ``JetStreamAPIError/streamInvalidConfig(_:)`` (10052)
    ///   when it asks for a mirror or sources, which this broker does not support.
    public static func decode(_ body: [UInt8]) throws(JetStreamAPIError) -> StreamConfig {
        let document: JSON
        do { document = try JSON.parse(body) } catch { throw .invalidJSON }
        return try decode(document)
    }

    /// Decodes a parsed body (see ``decode(_:)-([UInt8])``).
    /// - Throws: as ``decode(_:)-([UInt8])``.
    public static func decode(_ document: JSON) throws(JetStreamAPIError) -> StreamConfig {
        var config = StreamConfig()
        if case .null = document { return config }
        guard let members = document.members else { throw .invalidJSON }
        for member in members {
            let value = member.value
            if case .null = value {
                if JetStreamJSON.folded(member.key) == "subjects" { config.subjects = [] }
                if JetStreamJSON.folded(member.key) == "republish" { config.republish = nil }
                continue
            }
            switch JetStreamJSON.folded(member.key) {
            case "name": config.name = try JetStreamJSON.string(value)
            case "description": config.description = try JetStreamJSON.string(value)
            case "subjects":
                guard let elements = value.elements else { throw .invalidJSON }
                var subjects: [String] = []
                for element in elements {
                    if case .null = element { subjects.append(""); continue }
                    subjects.append(try JetStreamJSON.string(element))
                }
                config.subjects = subjects
            case "retention":
                guard let policy = RetentionPolicy(rawValue: try JetStreamJSON.string(value)) else { throw .invalidJSON }
                config.retention = policy
            case "max_consumers": config.maxConsumers = try JetStreamJSON.int(value)
            case "max_msgs": config.maxMessages = try JetStreamJSON.int(value)
            case "max_bytes": config.maxBytes = try JetStreamJSON.int(value)
            case "max_age": config.maxAge = try JetStreamJSON.int(value)
            case "max_msgs_per_subject": config.maxMessagesPerSubject = try JetStreamJSON.int(value)
            case "max_msg_size":
                let size = try JetStreamJSON.int(value)
                guard let narrow = Int32(exactly: size) else { throw .invalidJSON }
                config.maxMessageSize = narrow
            case "discard":
                // 2.9.10 compares the discard policy without regard to case, the other enums exactly.
                switch JetStreamJSON.folded(try JetStreamJSON.string(value)) {
                case "old": config.discard = .old
                case "new": config.discard = .new
                default: throw .invalidJSON
                }
            case "storage":
                guard let storage = StorageType(rawValue: try JetStreamJSON.string(value)) else { throw .invalidJSON }
                config.storage = storage
            case "num_replicas": config.replicas = try JetStreamJSON.int(value)
            case "no_ack": config.noAck = try JetStreamJSON.bool(value)
            case "template_owner": config.templateOwner = try JetStreamJSON.string(value)
            case "duplicate_window": config.duplicateWindow = try JetStreamJSON.int(value)
            case "republish":
                guard let fields = value.members else { throw .invalidJSON }
                var republish = config.republish ?? RePublish()
                for field in fields {
                    if case .null = field.value { continue }
                    switch JetStreamJSON.folded(field.key) {
                    case "src": republish.source = try JetStreamJSON.string(field.value)
                    case "dest": republish.destination = try JetStreamJSON.string(field.value)
                    case "headers_only": republish.headersOnly = try JetStreamJSON.bool(field.value)
                    default: break
                    }
                }
                config.republish = republish
            case "allow_direct": config.allowDirect = try JetStreamJSON.bool(value)
            case "mirror_direct": config.mirrorDirect = try JetStreamJSON.bool(value)
            case "discard_new_per_subject": config.discardNewPerSubject = try JetStreamJSON.bool(value)
            case "sealed": config.sealed = try JetStreamJSON.bool(value)
            case "deny_delete": config.denyDelete = try JetStreamJSON.bool(value)
            case "deny_purge": config.denyPurge = try JetStreamJSON.bool(value)
            case "allow_rollup_hdrs": config.allowRollup = try JetStreamJSON.bool(value)
            case "mirror":
                throw .streamInvalidConfig("stream mirrors are not supported")
            case "sources":
                if let elements = value.elements, elements.isEmpty { continue }
                throw .streamInvalidConfig("stream sources are not supported")
            default:
                continue
            }
        }
        return config
    }

    // MARK: Validation

    /// The configuration with 2.9.10's defaults filled in (file storage, one replica, -1 for the
    /// unset `max_*` limits, `duplicate_window` two minutes or `max_age` when that is shorter,
    /// subjects `[name]`, an empty republish source `>`), after 2.9.10's checks, in its order.
    /// - Throws: ``JetStreamAPIError/streamInvalidConfig(_:)`` (10052) with 2.9.10's text for the
    ///   broken rule; ``JetStreamAPIError/replicasCountNegative`` (10133) for negative replicas.
    public func validated() throws(JetStreamAPIError) -> StreamConfig {
        func invalid(_ text: String) -> JetStreamAPIError { .streamInvalidConfig(text) }
        if !StreamConfig.isValidName(name) {
            throw invalid("stream name is required and can not contain '.', '*', '>'")
        }
        if name.utf8.count > StreamConfig.maxNameLength {
            throw invalid("stream name is too long, maximum allowed is \(StreamConfig.maxNameLength)")
        }
        if description.utf8.count > StreamConfig.maxDescriptionLength {
            throw invalid("stream description is too long, maximum allowed is \(StreamConfig.maxDescriptionLength)")
        }
        var cfg = self
        if cfg.replicas == 0 { cfg.replicas = 1 }
        if cfg.replicas > StreamConfig.maxReplicas { throw invalid("maximum replicas is \(StreamConfig.maxReplicas)") }
        if cfg.replicas < 0 { throw .replicasCountNegative }
        if cfg.maxMessages == 0 { cfg.maxMessages = -1 }
        if cfg.maxMessagesPerSubject == 0 { cfg.maxMessagesPerSubject = -1 }
        if cfg.maxBytes == 0 { cfg.maxBytes = -1 }
        if cfg.maxMessageSize == 0 { cfg.maxMessageSize = -1 }
        if cfg.maxConsumers == 0 { cfg.maxConsumers = -1 }
        if cfg.duplicateWindow == 0 {
            let window = StreamConfig.defaultDuplicateWindow
            cfg.duplicateWindow = cfg.maxAge != 0 && cfg.maxAge < window ? cfg.maxAge : window
        }
        let minimum: Int64 = 100_000_000
        if cfg.maxAge > 0 && cfg.maxAge < minimum { throw invalid("max age needs to be >= 100ms") }
        if cfg.duplicateWindow < 0 { throw invalid("duplicates window can not be negative") }
        if cfg.maxAge != 0 && cfg.duplicateWindow > cfg.maxAge {
            throw invalid("duplicates window can not be larger then max age")
        }
        if cfg.duplicateWindow > 0 && cfg.duplicateWindow < minimum {
            throw invalid("duplicates window needs to be >= 100ms")
        }
        if cfg.denyPurge && cfg.allowRollup { throw invalid("roll-ups require the purge permission") }
        if cfg.discardNewPerSubject {
            if cfg.discard != .new { throw invalid("discard new per subject requires discard new policy to be set") }
            if cfg.maxMessagesPerSubject <= 0 {
                throw invalid("discard new per subject requires max msgs per subject > 0")
            }
        }
        if cfg.subjects.isEmpty {
            cfg.subjects = [cfg.name]
        } else {
            var seen = Set<String>()
            for subject in cfg.subjects {
                if seen.contains(subject) { throw invalid("duplicate subjects detected") }
                if StreamConfig.isUnderAPI(subject) { throw invalid("subjects overlap with jetstream api") }
                if !Subject.isValid(subject) { throw invalid("invalid subject") }
                seen.insert(subject)
            }
        }
        if cfg.subjects.count > 1 {
            for subject in cfg.subjects {
                for other in cfg.subjects where other != subject && StreamConfig.subjectsCollide(other, subject) {
                    throw invalid("subject \(JetStreamJSON.goQuoted(subject)) overlaps with \(JetStreamJSON.goQuoted(other))")
                }
            }
        }
        if var republish = cfg.republish {
            if republish.source.isEmpty { republish.source = ">" }
            if !cfg.subjects.contains(where: { StreamConfig.subjectsCollide(republish.source, $0) }) {
                throw invalid("stream configuration for republish source is not valid subset of subjects")
            }
            if cfg.subjects.contains(where: { StreamConfig.subjectsCollide(republish.destination, $0) }) {
                throw invalid("stream configuration for republish destination forms a cycle")
            }
            if !StreamConfig.isValidRepublish(source: republish.source, destination: republish.destination) {
                throw invalid("stream configuration for republish not valid")
            }
            cfg.republish = republish
        }
        return cfg
    }

    /// Checks a `$JS.API.STREAM.CREATE.<subjectName>` request against the account's `existing`
    /// streams (their validated configurations), in 2.9.10's order, and returns the validated
    /// configuration; `existed` is true when a stream of that name has exactly this configuration
    /// (an idempotent create, which 2.9.10 answers like a new one).
    /// - Throws: 10025 for a body that does not decode; 10056 when the body's name is not
    ///   `subjectName`; 10128 for a name with `/` or `\`; 10052 for a sealed create, mirror_direct
    ///   without a mirror, or any rule of ``validated()``; 10133 for negative replicas; 10074 for
    ///   more than one replica; 10058 when the name is taken with another configuration; 10065
    ///   when a subject overlaps another stream's.
    public static func checkCreate(subjectName: String, body: [UInt8],
                                   existing: [StreamConfig]) throws(JetStreamAPIError) -> (config: StreamConfig, existed: Bool) {
        let request = try decode(body)
        if request.name != subjectName { throw .streamMismatch }
        if subjectName.contains(where: { $0 == "/" || $0 == "\\" }) { throw .streamNameContainsPathSeparators }
        if request.sealed { throw .streamInvalidConfig("stream configuration for create can not be sealed") }
        if request.mirrorDirect { throw .streamInvalidConfig("stream has no mirror but does have mirror direct") }
        let config = try request.validated()
        if config.replicas > 1 { throw .replicasNotSupported }
        if let current = existing.first(where: { $0.name == config.name }) {
            if current == config { return (config, true) }
            throw .streamNameExists
        }
        for other in existing {
            for mine in config.subjects where other.subjects.contains(where: { subjectsCollide($0, mine) }) {
                throw .streamSubjectOverlap
            }
        }
        return (config, false)
    }

    // MARK: Name and subject rules

    /// A stream or consumer name: not empty, no `.`, `*`, `>` or whitespace (2.9.10's isValidName).
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && !name.utf8.contains { " \t\r\n\u{0C}.*>".utf8.contains($0) }
    }

    /// Whether some literal subject matches both `a` and `b` (2.9.10's SubjectsCollide).
    public static func subjectsCollide(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        let left = a.split(separator: ".", omittingEmptySubsequences: false)
        let right = b.split(separator: ".", omittingEmptySubsequences: false)
        var index = 0
        while index < left.count && index < right.count {
            let l = left[index], r = right[index]
            if l == ">" || r == ">" { return true }
            if l != r && l != "*" && r != "*" { return false }
            index += 1
        }
        return left.count == right.count
    }

    /// Whether every subject `subject` matches lies under `$JS.API.>`.
    static func isUnderAPI(_ subject: String) -> Bool {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        return tokens.count >= 3 && tokens[0] == "$JS" && tokens[1] == "API"
            && !tokens[2...].contains(where: { $0.isEmpty })
    }

    /// The mapping rules 2.9.10 applies to a republish source and destination: both valid subjects,
    /// the destination without `>` unless the source ends in it, and every `{{wildcard(n)}}` in the
    /// destination naming one of the source's `*` tokens.
    static func isValidRepublish(source: String, destination: String) -> Bool {
        guard Subject.isValid(source), !destination.isEmpty else { return false }
        let sourceTokens = source.split(separator: ".", omittingEmptySubsequences: false)
        let wildcards = sourceTokens.filter { $0 == "*" }.count
        let destinationTokens = destination.split(separator: ".", omittingEmptySubsequences: false)
        for (k, token) in destinationTokens.enumerated() {
            if token.isEmpty { return false }
            if token == ">" {
                if k != destinationTokens.count - 1 || sourceTokens.last != ">" { return false }
                continue
            }
            if token == "*" { return false }
            if token.hasPrefix("{{") && token.hasSuffix("}}") {
                let inner = token.dropFirst(2).dropLast(2).filter { $0 != " " }
                guard inner.lowercased().hasPrefix("wildcard("), inner.hasSuffix(")"),
                      let n = Int(inner.dropFirst("wildcard(".count).dropLast()), n >= 1, n <= wildcards else { return false }
            }
        }
        return true
    }

    // MARK: Encoding

    /// Appends the configuration as 2.9.10 writes it: its field order, `description`,
    /// `subjects`, `max_msg_size`, `no_ack`, `template_owner`, `duplicate_window`, `republish`
    /// and `discard_new_per_subject` left out when zero or empty.
    public func write(to out: inout [UInt8]) {
        var w = JetStreamJSON.ObjectWriter()
        w.string("name", name)
        if !description.isEmpty { w.string("description", description) }
        if !subjects.isEmpty {
            var list: [UInt8] = [UInt8(ascii: "[")]
            for (k, subject) in subjects.enumerated() {
                if k > 0 { list.append(UInt8(ascii: ",")) }
                JetStreamJSON.appendString(subject, to: &list)
            }
            list.append(UInt8(ascii: "]"))
            w.raw("subjects", list)
        }
        w.string("retention", retention.rawValue)
        w.int("max_consumers", maxConsumers)
        w.int("max_msgs", maxMessages)
        w.int("max_bytes", maxBytes)
        w.int("max_age", maxAge)
        w.int("max_msgs_per_subject", maxMessagesPerSubject)
        if maxMessageSize != 0 { w.int("max_msg_size", Int64(maxMessageSize)) }
        w.string("discard", discard == .new ? "new" : "old")
        w.string("storage", storage.rawValue)
        w.int("num_replicas", replicas)
        if noAck { w.bool("no_ack", true) }
        if !templateOwner.isEmpty { w.string("template_owner", templateOwner) }
        if duplicateWindow != 0 { w.int("duplicate_window", duplicateWindow) }
        if let republish {
            var r = JetStreamJSON.ObjectWriter()
            if !republish.source.isEmpty { r.string("src", republish.source) }
            r.string("dest", republish.destination)
            if republish.headersOnly { r.bool("headers_only", true) }
            w.raw("republish", r.finished())
        }
        w.bool("allow_direct", allowDirect)
        w.bool("mirror_direct", mirrorDirect)
        if discardNewPerSubject { w.bool("discard_new_per_subject", true) }
        w.bool("sealed", sealed)
        w.bool("deny_delete", denyDelete)
        w.bool("deny_purge", denyPurge)
        w.bool("allow_rollup_hdrs", allowRollup)
        out.append(contentsOf: w.finished())
    }
}
