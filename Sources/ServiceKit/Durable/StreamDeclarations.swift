import NATSClient

/// A stream a service owns, declared in code: created at start when missing, brought up to date
/// when the change is one JetStream can apply in place, refused otherwise.
public struct StreamSpec: Sendable {
    /// The wanted configuration.
    public var config: StreamConfig
    /// The service that owns it (in logs and in errors).
    public var owner: String

    /// A declaration of `config`, owned by `owner`.
    public init(_ config: StreamConfig, owner: String) {
        self.config = config
        self.owner = owner
    }
}

/// A durable consumer a service owns (pull, explicit acknowledgement unless said otherwise).
public struct ConsumerSpec: Sendable {
    /// The stream it reads.
    public var stream: String
    /// The wanted configuration; `durableName` is its name.
    public var config: ConsumerConfig

    /// The durable consumer `name` on `stream`, with `configure` applied to a config that has
    /// explicit acks and the server's other defaults.
    public init(stream: String, name: String, _ configure: (inout ConsumerConfig) -> Void = { _ in }) {
        self.stream = stream
        var config = ConsumerConfig(durableName: name)
        configure(&config)
        config.durableName = name
        self.config = config
    }

    /// The consumer's name.
    public var name: String { config.durableName ?? "" }
}

/// Why declaring streams and consumers failed.
public enum DurableSetupError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broker has no JetStream for this account: the service cannot promise at-least-once.
    case jetStreamUnavailable(String)
    /// A stream or consumer exists with a configuration that cannot be changed in place.
    case incompatible(what: String, field: String, existing: String, wanted: String, fix: String)
    /// The broker refused or did not answer a call; retried on the next connection.
    case failed(what: String, error: JetStreamError)

    public var description: String {
        switch self {
        case .jetStreamUnavailable(let detail):
            return "the broker has no JetStream (\(detail)). Start it with JetStream (nats-server -js, or a jetstream {} block), "
                + "or run this service with EVENT_DELIVERY=at-most-once to use core NATS only (events published while a consumer is down are lost)"
        case .incompatible(let what, let field, let existing, let wanted, let fix):
            return "\(what) exists with \(field) \(existing), this version needs \(wanted); JetStream cannot change that in place. \(fix)"
        case .failed(let what, let error):
            return "\(what): \(error)"
        }
    }

    /// True when retrying later cannot help (the service should stop with this message).
    public var isFatal: Bool {
        switch self {
        case .jetStreamUnavailable, .incompatible: return true
        case .failed: return false
        }
    }
}

/// Creates or updates declared streams and consumers.
public enum JetStreamSetup {
    /// Checks that the account has JetStream.
    /// - Throws: ``DurableSetupError/jetStreamUnavailable(_:)`` when it has none,
    ///   ``DurableSetupError/failed(what:error:)`` when the broker did not answer.
    public static func checkAvailable(_ js: JetStreamContext) async throws(DurableSetupError) {
        do {
            _ = try await js.accountInfo()
        } catch {
            switch error {
            case .noResponders: throw .jetStreamUnavailable("no responders on $JS.API.INFO")
            case .api(_, let errCode, let text) where errCode == 10039 || text.contains("not enabled"):
                throw .jetStreamUnavailable(text)
            default: throw .failed(what: "JetStream account info", error: error)
            }
        }
    }

    /// Creates the stream when missing; updates it when it differs only in what JetStream can
    /// change in place (subjects, limits, description, duplicate window, ...).
    /// - Returns: the stream's info after the call.
    /// - Throws: ``DurableSetupError/incompatible(what:field:existing:wanted:fix:)`` for a
    ///   different retention or storage; ``DurableSetupError/failed(what:error:)``.
    @discardableResult
    public static func ensure(_ spec: StreamSpec, _ js: JetStreamContext) async throws(DurableSetupError) -> StreamInfo {
        let wanted = spec.config
        let what = "stream \(wanted.name) (owned by \(spec.owner))"
        let existing: StreamInfo
        do {
            existing = try await js.streamInfo(wanted.name)
        } catch where error.errCode == 10059 {
            do { return try await js.addStream(wanted) } catch { throw .failed(what: what, error: error) }
        } catch {
            throw .failed(what: what, error: error)
        }
        if let problem = incompatibility(existing: existing.config, wanted: wanted) {
            throw .incompatible(what: what, field: problem.field, existing: problem.existing, wanted: problem.wanted,
                                fix: "Move its messages elsewhere if they matter, then delete it (nats stream rm \(wanted.name)) and restart; it is created again.")
        }
        guard differs(existing.config, wanted) else { return existing }
        do { return try await js.updateStream(wanted) } catch { throw .failed(what: what + " update", error: error) }
    }

    /// Checks that a stream another service owns exists, without creating or changing it: the
    /// reader's identity has no right to (nats-server/permissions.conf gives a stream's CREATE and
    /// UPDATE to its owner only), so a reader started first waits for the owner.
    /// - Returns: the stream's info.
    /// - Throws: ``DurableSetupError/failed(what:error:)``, not fatal, when the stream does not
    ///   exist yet (error 10059: the setup retries until its owner has created it) or the broker
    ///   refused or did not answer.
    @discardableResult
    public static func require(_ spec: StreamSpec, _ js: JetStreamContext) async throws(DurableSetupError) -> StreamInfo {
        let name = spec.config.name
        do {
            return try await js.streamInfo(name)
        } catch where error.errCode == 10059 {
            throw .failed(what: "stream \(name) does not exist yet; waiting for its owner (\(spec.owner)) to create it", error: error)
        } catch {
            throw .failed(what: "stream \(name) (owned by \(spec.owner))", error: error)
        }
    }

    /// Creates the durable consumer when missing; updates it when it differs only in what
    /// JetStream can change in place (ack wait, max deliver, backoff, max ack pending, ...).
    /// - Throws: ``DurableSetupError/incompatible(what:field:existing:wanted:fix:)`` for a
    ///   different filter subject, deliver policy, ack policy or push/pull kind;
    ///   ``DurableSetupError/failed(what:error:)``.
    @discardableResult
    public static func ensure(_ spec: ConsumerSpec, _ js: JetStreamContext) async throws(DurableSetupError) -> ConsumerInfo {
        let what = "consumer \(spec.name) on stream \(spec.stream)"
        let existing: ConsumerInfo
        do {
            existing = try await js.consumerInfo(spec.stream, name: spec.name)
        } catch where error.errCode == 10014 {
            do { return try await js.addConsumer(spec.stream, config: spec.config) } catch { throw .failed(what: what, error: error) }
        } catch {
            throw .failed(what: what, error: error)
        }
        let have = existing.config, want = spec.config
        func text<T>(_ v: T?) -> String { v.map { "\($0)" } ?? "(none)" }
        var problem: (String, String, String)?
        if (have.filterSubject ?? "") != (want.filterSubject ?? "") {
            problem = ("filter_subject", text(have.filterSubject), text(want.filterSubject))
        } else if have.deliverPolicy != want.deliverPolicy {
            problem = ("deliver_policy", have.deliverPolicy.rawValue, want.deliverPolicy.rawValue)
        } else if have.ackPolicy != want.ackPolicy {
            problem = ("ack_policy", have.ackPolicy.rawValue, want.ackPolicy.rawValue)
        } else if (have.deliverSubject == nil) != (want.deliverSubject == nil) {
            problem = ("deliver_subject", text(have.deliverSubject), text(want.deliverSubject))
        }
        if let (field, old, new) = problem {
            throw .incompatible(what: what, field: field, existing: old, wanted: new,
                                fix: "Delete it (nats consumer rm \(spec.stream) \(spec.name)) and restart: it is created again and starts from the stream's first message; the service's handlers are idempotent by event id.")
        }
        guard consumerDiffers(have, want) else { return existing }
        do { return try await js.updateConsumer(spec.stream, config: want) } catch { throw .failed(what: what + " update", error: error) }
    }

    /// Creates the bucket when missing (its stream is checked like any declared stream).
    /// - Throws: as ``ensure(_:_:)-(StreamSpec,_)``.
    @discardableResult
    public static func ensure(_ config: KeyValueConfig, owner: String, _ js: JetStreamContext) async throws(DurableSetupError) -> KeyValue {
        do {
            return try await js.keyValue(config.bucket)
        } catch where error.errCode == 10059 {
            do { return try await js.createKeyValue(config) } catch { throw .failed(what: "bucket \(config.bucket) (owned by \(owner))", error: error) }
        } catch {
            throw .failed(what: "bucket \(config.bucket) (owned by \(owner))", error: error)
        }
    }

    /// The first field JetStream cannot change in place, or nil.
    static func incompatibility(existing: StreamConfig, wanted: StreamConfig) -> (field: String, existing: String, wanted: String)? {
        if existing.retention != wanted.retention { return ("retention", existing.retention.rawValue, wanted.retention.rawValue) }
        if existing.storage != wanted.storage { return ("storage", existing.storage.rawValue, wanted.storage.rawValue) }
        return nil
    }

    /// Whether the declared fields differ (the server fills others in; those are not compared).
    static func differs(_ have: StreamConfig, _ want: StreamConfig) -> Bool {
        Set(have.subjects) != Set(want.subjects) || have.maxMsgs != want.maxMsgs || have.maxBytes != want.maxBytes
            || (have.maxAge ?? .zero) != (want.maxAge ?? .zero)
            || have.maxMsgsPerSubject != want.maxMsgsPerSubject || have.maxMsgSize != want.maxMsgSize
            || have.discard != want.discard || (want.description != nil && have.description != want.description)
            || (want.duplicateWindow != nil && have.duplicateWindow != want.duplicateWindow)
            || have.allowDirect != want.allowDirect
    }

    static func consumerDiffers(_ have: ConsumerConfig, _ want: ConsumerConfig) -> Bool {
        func changed<T: Equatable>(_ a: T?, _ b: T?) -> Bool { b != nil && a != b }
        return changed(have.ackWait, want.ackWait) || changed(have.maxDeliver, want.maxDeliver)
            || changed(have.backoff, want.backoff) || changed(have.maxAckPending, want.maxAckPending)
            || changed(have.maxWaiting, want.maxWaiting) || changed(have.description, want.description)
    }
}
