#if canImport(Glibc)
import Glibc
#endif

/// The consumer half of the JetStream engine: the `$JS.API.CONSUMER.*` calls, deliveries, acks,
/// pull requests, flow control, timers and the consumers' state on disk, as nats-server 2.9.10
/// does them. It does no I/O on the network: everything to send comes back as ``EngineAction``s.
///
/// Not thread-safe: the engine calls it from its own thread only.
public final class ConsumerManager: ConsumerHandling {
    /// Whether a subject has a subscriber now (the host answers from its subscription trie).
    let hasInterest: (String) -> Bool
    let pushBound: (String, String) -> Bool
    /// Consumers by stream name, then by consumer name.
    var consumers: [String: [String: Consumer]] = [:]
    /// How often a changed consumer state is written (2.9.10: at most every 100 ms).
    static let persistInterval: Int64 = 100_000_000

    /// - Parameters:
    ///   - hasInterest: whether a subject has any subscriber right now (a pull request is kept
    ///     only while its reply subject has one).
    ///   - pushBound: whether a push consumer's deliver subject has its subscriber, given the
    ///     subject and the deliver group: 2.9.10 binds one only to a subscription on exactly that
    ///     subject, and with a deliver group only to a queue subscription of that group. Push
    ///     consumers deliver only while bound (polled every 100 ms). Without it, any subscriber
    ///     of the subject binds.
    public init(hasInterest: @escaping (String) -> Bool, pushBound: ((String, String) -> Bool)? = nil) {
        self.hasInterest = hasInterest
        self.pushBound = pushBound ?? { subject, _ in hasInterest(subject) }
    }

    // MARK: ConsumerHandling

    public func recover(stream: StreamContext, now: Int64) throws(StreamStoreError) -> [EngineAction] {
        guard let directory = stream.directory else { return [] }
        let root = directory + "/obs"
        guard BlockIO.exists(root) else { return [] }
        var out: [EngineAction] = []
        for entry in try BlockIO.list(root).sorted() {
            let folder = root + "/" + entry
            let configPath = folder + "/" + ConsumerStateFile.configName
            guard let configBytes = try ConsumerStateFile.read(configPath) else { continue }
            let (name, created, config) = try ConsumerStateFile.decodeConfig(configBytes, path: configPath)
            let consumer = Consumer(stream: stream, name: name, config: config, created: created, now: now,
                                    hasInterest: hasInterest, pushBound: pushBound)
            let statePath = folder + "/" + ConsumerStateFile.stateName
            if let bytes = try ConsumerStateFile.read(statePath) {
                // As 2.9.10: a stored state replaces the start the deliver policy would pick.
                consumer.apply(try ConsumerStateFile.decode(bytes, path: statePath))
            } else {
                consumer.selectStart()
            }
            register(consumer)
            consumer.lastWrite = now
            consumer.start(now: now)
            consumer.deliver(now: now, into: &out)
        }
        return out
    }

    public func handle(_ message: InboundMessage, streams: [String: StreamContext], now: Int64) -> [EngineAction] {
        let subject = message.subject
        if subject.hasPrefix("$JS.ACK.") {
            guard let ack = AckSubject(subject), let consumer = consumers[ack.stream]?[ack.consumer] else { return [] }
            var out = consumer.processAck(ack, reply: message.reply, body: message.payload, now: now)
            out.append(contentsOf: reap(now: now))
            return out
        }
        if subject.hasPrefix("$JS.FC.") {
            let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
            guard tokens.count == 5, let consumer = consumers[String(tokens[2])]?[String(tokens[3])] else { return [] }
            return consumer.flowControlAnswered(subject, now: now)
        }
        if subject.hasPrefix("$JS.API.CONSUMER.") {
            return api(message, streams: streams, now: now)
        }
        return []
    }

    public func stored(stream: StreamContext, sequence: UInt64, subject: String, now: Int64) -> [EngineAction] {
        guard let group = consumers[stream.name] else { return [] }
        var out: [EngineAction] = []
        // Every publish comes through here: no sorting, the consumers are independent.
        for consumer in group.values {
            out.append(contentsOf: consumer.stored(sequence: sequence, subject: subject, now: now))
        }
        return out
    }

    public func hasInterest(stream: StreamContext, subject: String) -> Bool {
        guard let group = consumers[stream.name] else { return false }
        return group.values.contains { $0.config.selects(subject) }
    }

    public func streamChanged(stream: StreamContext, now: Int64) -> [EngineAction] {
        guard let group = consumers[stream.name] else { return [] }
        var out: [EngineAction] = []
        for name in group.keys.sorted() {
            out.append(contentsOf: group[name]!.streamChanged(now: now))
        }
        return out
    }

    public func streamDeleted(stream: StreamContext) -> [EngineAction] {
        guard let group = consumers.removeValue(forKey: stream.name) else { return [] }
        var out: [EngineAction] = []
        for name in group.keys.sorted() {
            let consumer = group[name]!
            consumer.closed = true
            out.append(contentsOf: consumer.releaseWaiting())
            removeFiles(of: consumer)
        }
        return out
    }

    public func consumerCount(stream: String) -> Int {
        consumers[stream]?.count ?? 0
    }

    public func consumerInfos(stream: String, now: Int64) -> (infos: [[UInt8]], actions: [EngineAction]) {
        var infos: [[UInt8]] = []
        var actions: [EngineAction] = []
        for (_, consumer) in (consumers[stream] ?? [:]).sorted(by: { $0.key < $1.key }) {
            var w = JetStreamJSON.ObjectWriter()
            consumer.writeInfo(into: &w, now: now, actions: &actions)
            infos.append(w.finished())
        }
        return (infos, actions)
    }

    public var nextDeadline: Int64? {
        var earliest: Int64?
        for group in consumers.values {
            for consumer in group.values {
                let every = consumer.isPersisted ? ConsumerManager.persistInterval : nil
                if let t = consumer.deadline(persistEvery: every) { earliest = min(earliest ?? t, t) }
            }
        }
        return earliest
    }

    public func tick(now: Int64) -> [EngineAction] {
        var out: [EngineAction] = []
        for stream in consumers.keys.sorted() {
            guard let group = consumers[stream] else { continue }
            for name in group.keys.sorted() {
                let consumer = group[name]!
                out.append(contentsOf: consumer.tick(now: now))
                if consumer.dirty && consumer.isPersisted && now >= consumer.lastWrite.adding(ConsumerManager.persistInterval) {
                    writeState(of: consumer, now: now)
                }
            }
        }
        out.append(contentsOf: reap(now: now))
        return out
    }

    public func persist() {
        for group in consumers.values {
            for consumer in group.values where consumer.isPersisted {
                writeState(of: consumer, now: consumer.lastWrite)
            }
        }
    }

    // MARK: Bookkeeping

    func register(_ consumer: Consumer) {
        let streamName = consumer.stream.name
        consumer.siblings = { [unowned self] in Array(self.consumers[streamName]?.values ?? [:].values) }
        consumers[streamName, default: [:]][consumer.name] = consumer
    }

    /// Removes a consumer: waiting pull requests get `409 Consumer Deleted`, its files go.
    func remove(_ consumer: Consumer, now: Int64) -> [EngineAction] {
        let advisory = consumer.actionAdvisory("delete", now: now)
        consumer.closed = true
        consumers[consumer.stream.name]?[consumer.name] = nil
        if consumers[consumer.stream.name]?.isEmpty == true { consumers[consumer.stream.name] = nil }
        removeFiles(of: consumer)
        var out = [advisory] + consumer.releaseWaiting()
        // An interest stream lets go of what only this consumer still held.
        if consumer.stream.config.retention == .interest {
            out.append(contentsOf: dropUnwanted(in: consumer.stream))
        }
        return out
    }

    /// Removes the inactive ephemerals the timers marked.
    private func reap(now: Int64) -> [EngineAction] {
        var out: [EngineAction] = []
        for stream in consumers.keys.sorted() {
            for consumer in (consumers[stream] ?? [:]).values where consumer.expired {
                out.append(contentsOf: remove(consumer, now: now))
            }
        }
        return out
    }

    /// Messages of an interest stream that no consumer needs any more.
    private func dropUnwanted(in stream: StreamContext) -> [EngineAction] {
        let group = Array(consumers[stream.name]?.values ?? [:].values)
        let state = stream.store.state
        guard state.messages > 0 else { return [] }
        var seq = state.firstSequence
        while seq <= state.lastSequence {
            if let subject = stream.store.subject(at: seq), !group.contains(where: { $0.needsAck(seq, subject: subject) }) {
                try? stream.store.remove(seq)
            }
            seq += 1
        }
        return []
    }

    private func folder(of consumer: Consumer) -> String? {
        guard let directory = consumer.stream.directory else { return nil }
        return directory + "/obs/" + consumer.name
    }

    /// Writes the config file and the state (create, update): a consumer recovered before its
    /// first timed write starts where it started, as 2.9.10's SetStarting makes sure.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)`` naming the file or directory.
    func writeConfig(of consumer: Consumer) throws(StreamStoreError) {
        guard consumer.isPersisted, let folder = folder(of: consumer) else { return }
        try BlockIO.makeDirectories(folder)
        try ConsumerStateFile.write(ConsumerStateFile.encodeConfig(name: consumer.name, created: consumer.created,
                                                                   config: consumer.config),
                                    to: folder + "/" + ConsumerStateFile.configName)
        try ConsumerStateFile.write(ConsumerStateFile.encode(consumer.persistentState),
                                    to: folder + "/" + ConsumerStateFile.stateName)
    }

    private func writeState(of consumer: Consumer, now: Int64) {
        guard let folder = folder(of: consumer) else { return }
        do {
            try BlockIO.makeDirectories(folder)
            try ConsumerStateFile.write(ConsumerStateFile.encode(consumer.persistentState),
                                        to: folder + "/" + ConsumerStateFile.stateName)
            consumer.dirty = false
        } catch {
            // Kept dirty: the next tick tries again.
        }
        consumer.lastWrite = now
    }

    private func removeFiles(of consumer: Consumer) {
        guard let folder = folder(of: consumer) else { return }
        for name in [ConsumerStateFile.configName, ConsumerStateFile.stateName,
                     ConsumerStateFile.configName + ".tmp", ConsumerStateFile.stateName + ".tmp"] {
            try? BlockIO.remove(folder + "/" + name)
        }
        _ = rmdir(folder)
    }
}

extension Consumer {
    /// File streams keep their consumers' state unless the consumer asks for memory storage.
    var isPersisted: Bool { stream.directory != nil && !config.memoryStorage && !closed }
}
