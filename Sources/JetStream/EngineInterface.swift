// The boundary between the JetStream engine and its host (the broker), and between the engine's
// stream half and its consumer half. The engine does no network I/O: everything it wants sent or
// captured comes back as ``EngineAction``s, which the host performs in order.

/// A message the engine receives: one published on a subject it captures (the API, `$JS.ACK.>`,
/// `$JS.FC.>`, and every stream's subjects).
public struct InboundMessage: Sendable, Equatable {
    public var subject: String
    /// "" when the publisher gave none.
    public var reply: String
    /// The raw `NATS/1.0 ...\r\n\r\n` block, empty when the message has none.
    public var headers: [UInt8]
    public var payload: [UInt8]

    public init(subject: String, reply: String = "", headers: [UInt8] = [], payload: [UInt8] = []) {
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.payload = payload
    }
}

/// What the engine asks its host to do, in order.
public enum EngineAction: Sendable, Equatable {
    /// Route a message to the subscriptions matching `subject`. The MSG line shows `displaySubject`
    /// when it is set (deliveries carry the stored subject while routed to a deliver or reply
    /// subject, as 2.9.10 does), else `subject`.
    case send(subject: String, displaySubject: String?, reply: String, headers: [UInt8], payload: [UInt8])
    /// Start capturing `subject` (a subject or wildcard): what is published on it reaches
    /// ``JetStreamEngine/handle(_:now:)``. Captures are counted: two captures need two releases.
    case capture(String)
    /// Stop one capture of `subject`.
    case release(String)

    /// A plain message to `subject` (a reply, an advisory).
    public static func reply(_ subject: String, _ payload: [UInt8], headers: [UInt8] = []) -> EngineAction {
        .send(subject: subject, displaySubject: nil, reply: "", headers: headers, payload: payload)
    }
}

/// One stream as both halves of the engine see it. Owned by the engine; the consumer half reads
/// the store (and removes acknowledged messages of interest and work-queue streams).
public final class StreamContext {
    public let name: String
    /// The config in force (an update replaces it).
    public internal(set) var config: StreamConfig
    public let store: StreamStore
    /// Creation time, wall-clock nanoseconds.
    public let created: Int64
    /// The stream's directory for file storage (consumers keep their state under `<directory>/obs/<name>/`),
    /// nil for memory storage.
    public let directory: String?

    public init(name: String, config: StreamConfig, store: StreamStore, created: Int64, directory: String?) {
        self.name = name
        self.config = config
        self.store = store
        self.created = created
        self.directory = directory
    }
}

/// The consumer half of the engine. The engine calls it on its own thread only; every time is
/// wall-clock nanoseconds.
public protocol ConsumerHandling: AnyObject {
    /// Recovers the consumers stored for `stream` at start-up (after the stream itself).
    /// - Throws: ``StreamStoreError`` naming the consumer state file that cannot be read.
    func recover(stream: StreamContext, now: Int64) throws(StreamStoreError) -> [EngineAction]
    /// A `$JS.API.CONSUMER.*` request, a `$JS.ACK.*` acknowledgement or a `$JS.FC.*` flow-control
    /// answer. `streams` are the streams by name.
    func handle(_ message: InboundMessage, streams: [String: StreamContext], now: Int64) -> [EngineAction]
    /// A message was stored in `stream` under `sequence`.
    func stored(stream: StreamContext, sequence: UInt64, subject: String, now: Int64) -> [EngineAction]
    /// Whether some consumer of `stream` would deliver `subject` (an interest-retention stream
    /// stores a message only then).
    func hasInterest(stream: StreamContext, subject: String) -> Bool
    /// `stream` was purged or had messages removed: consumers move past what is gone.
    func streamChanged(stream: StreamContext, now: Int64) -> [EngineAction]
    /// `stream` is being deleted: its consumers go (their state too); pull requests waiting on
    /// them get `409 Consumer Deleted`.
    func streamDeleted(stream: StreamContext) -> [EngineAction]
    /// The number of consumers of `stream` (StreamInfo `consumer_count`, max_consumers, `$JS.API.INFO`).
    func consumerCount(stream: String) -> Int
    /// The ConsumerInfo objects of `stream`'s consumers in name order (/jsz `consumer_detail`),
    /// and what answering pull requests that expired meanwhile sends.
    func consumerInfos(stream: String, now: Int64) -> (infos: [[UInt8]], actions: [EngineAction])
    /// Timers: the earliest wall-clock time ``tick(now:)`` must run at, or nil.
    var nextDeadline: Int64? { get }
    /// Redeliveries, expiries of pull requests, heartbeats, inactive ephemerals, state persistence.
    func tick(now: Int64) -> [EngineAction]
    /// Writes every consumer's state (shutdown).
    func persist()
}
