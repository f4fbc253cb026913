import POSIXFiles

/// How the host runs JetStream (from `-js`, `-sd` and the `jetstream {}` block).
public struct JetStreamOptions: Sendable, Equatable {
    /// The `<store_dir>/jetstream` directory; streams live under `<storeDirectory>/$G/streams/<name>/`.
    public var storeDirectory: String
    /// `max_memory_store` in bytes (the host computes 2.9.10's default).
    public var maxMemory: Int64
    /// `max_file_store` in bytes.
    public var maxStore: Int64
    /// The JetStream domain; "" for none.
    public var domain: String
    /// How often written blocks are fsynced, in nanoseconds (2.9.10: two minutes).
    public var syncInterval: Int64
    /// fsync before every PubAck (a documented option beyond 2.9.10).
    public var syncEveryWrite: Bool
    /// The account whose streams these are: they live under `<storeDirectory>/<account>/streams/`.
    public var account: String = "$G"

    public init(storeDirectory: String, maxMemory: Int64, maxStore: Int64, domain: String = "",
                syncInterval: Int64 = 120_000_000_000, syncEveryWrite: Bool = false) {
        self.storeDirectory = storeDirectory
        self.maxMemory = maxMemory
        self.maxStore = maxStore
        self.domain = domain
        self.syncInterval = syncInterval
        self.syncEveryWrite = syncEveryWrite
    }
}

/// Why JetStream could not start: the file or directory and what is wrong with it. The host
/// prints it and exits.
public struct JetStreamStartError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file or directory at fault.
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "JetStream cannot start: \(path): \(reason)" }
}

/// One stream's figures for monitoring.
public struct JetStreamStreamStatistics: Sendable, Equatable {
    public var name: String
    /// Creation time, wall-clock nanoseconds.
    public var created: Int64
    public var state: StreamState
    public var consumerCount: Int
    public var config: StreamConfig

    public init(name: String, created: Int64, state: StreamState, consumerCount: Int, config: StreamConfig) {
        self.name = name
        self.created = created
        self.state = state
        self.consumerCount = consumerCount
        self.config = config
    }
}

/// What `/varz` (jetstream), `/jsz` and `/metrics` report.
public struct JetStreamStatistics: Sendable, Equatable {
    /// Bytes stored in memory streams.
    public var memory: UInt64 = 0
    /// Bytes stored in file streams.
    public var storage: UInt64 = 0
    /// Sum of the max_bytes of memory streams that set one.
    public var reservedMemory: UInt64 = 0
    /// Sum of the max_bytes of file streams that set one.
    public var reservedStorage: UInt64 = 0
    public var streams: Int = 0
    public var consumers: Int = 0
    public var messages: UInt64 = 0
    public var bytes: UInt64 = 0
    /// API requests answered (`api.total`).
    public var apiTotal: UInt64 = 0
    /// API requests answered with an error (`api.errors`).
    public var apiErrors: UInt64 = 0
    /// Per stream, by name.
    public var streamDetails: [JetStreamStreamStatistics] = []

    public init() {}
}

/// A stream as the engine keeps it: the shared context plus what only the publish path needs.
final class EngineStream {
    let context: StreamContext
    /// The stream's catalogue directory (`meta.json`, and `msgs/` for file storage).
    let directory: String
    var dedupe = Dedupe()
    /// The `Nats-Msg-Id` of the last message (Nats-Expected-Last-Msg-Id compares with it).
    var lastMessageID = ""
    var filters: [SubjectFilter]
    var republish: SubjectTransform?
    /// The PubAck up to its sequence (`{"stream":"S", "seq":`, with the domain when set): built
    /// once, so a PubAck costs one copy and the digits.
    let ackPrefix: [UInt8]

    init(context: StreamContext, directory: String, domain: String) {
        self.context = context
        self.directory = directory
        self.filters = []
        // The template's bytes for sequence 0 without the closing "0}".
        self.ackPrefix = Array(JetStreamAPIResponse.pubAck(stream: context.name, sequence: 0, domain: domain).dropLast(2))
        configure()
    }

    /// The PubAck of a stored message, byte for byte as ``JetStreamAPIResponse/pubAck(stream:sequence:domain:duplicate:)``.
    func pubAck(_ sequence: UInt64) -> [UInt8] {
        var out = ackPrefix
        out.reserveCapacity(ackPrefix.count + 21)
        if sequence == 0 {
            out.append(UInt8(ascii: "0"))
        } else {
            var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                         UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            var n = sequence
            var count = 0
            withUnsafeMutableBytes(of: &digits) { buffer in
                while n > 0 {
                    buffer[19 - count] = UInt8(ascii: "0") + UInt8(n % 10)
                    n /= 10
                    count += 1
                }
                out.append(contentsOf: buffer[(20 - count)...])
            }
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    var name: String { context.name }
    var config: StreamConfig { context.config }
    var store: StreamStore { context.store }

    /// `duplicate_window`, kept out of the config for the timer paths.
    private(set) var duplicateWindow: Int64 = 0
    /// When this stream next needs a tick (max_age expiry or the end of a de-duplication entry's
    /// window), on the 50 ms grid; see ``refreshDeadline()``.
    private(set) var deadline: Int64?

    /// Recomputes what depends on the config (after an update).
    func configure() {
        filters = context.config.subjects.map { SubjectFilter($0) }
        republish = context.config.republish.flatMap { SubjectTransform(source: $0.source, destination: $0.destination) }
        duplicateWindow = context.config.duplicateWindow
        refreshDeadline()
    }

    /// Recomputes ``deadline``; called after everything the engine does to the stream. The
    /// consumer half's removals only move the expiry later, so a deadline it leaves stale is early
    /// and costs one idle tick.
    func refreshDeadline() {
        var t = store.nextExpiry
        if let d = dedupe.nextExpiry(window: duplicateWindow) { t = min(t ?? d, d) }
        deadline = t.map(Self.coarse)
    }

    /// `t` rounded up to the timer grid: each message expires at its own time, and rounding keeps
    /// a busy stream from asking for a tick per message (2.9.10's de-duplication timer fires no
    /// more often either).
    static func coarse(_ t: Int64) -> Int64 {
        let step = JetStreamEngine.timerGranularity
        let (rounded, overflow) = t.addingReportingOverflow(step - 1)
        return overflow ? t : rounded - ((rounded % step) + step) % step
    }

    func captures(_ subject: String) -> Bool { filters.contains { $0.matches(subject) } }
}

/// The JetStream engine's stream half: the `$JS.API` stream calls, the publish path into streams,
/// Direct Get, persistence of stream configs, expiry and syncing, all without I/O to the network:
/// what must be sent comes back as ``EngineAction``s. Consumer work goes to the ``ConsumerHandling``
/// given at init. Confined to one thread (the host's JetStream thread); every time is wall-clock
/// nanoseconds.
public final class JetStreamEngine {
    public let options: JetStreamOptions
    let consumers: any ConsumerHandling
    /// Streams by name.
    var streams: [String: EngineStream] = [:]
    /// The same streams' contexts, as the consumer half takes them.
    var contexts: [String: StreamContext] = [:]
    /// Literal subject -> the stream capturing it (nil when none); cleared when streams change.
    var routes: [String: EngineStream?] = [:]
    var apiTotal: UInt64 = 0
    var apiErrors: UInt64 = 0
    var nextSync: Int64 = .max
    /// Bytes that left file streams through a purge with a subject filter: 2.9.10's file store
    /// does not report those to the account, whose `storage` keeps counting them (clients see it
    /// in account info and /jsz), so ours does too.
    var unreleasedStorage: UInt64 = 0

    static let routeCacheLimit = 8192
    /// Expiry deadlines are rounded up to this many nanoseconds.
    static let timerGranularity: Int64 = 50_000_000

    public init(options: JetStreamOptions, consumers: any ConsumerHandling) {
        self.options = options
        self.consumers = consumers
    }

    var streamsDirectory: String { StreamCatalog.streamsDirectory(options.storeDirectory, account: options.account) }

    var fileOptions: FileStoreOptions {
        FileStoreOptions(syncInterval: options.syncInterval, syncEveryWrite: options.syncEveryWrite)
    }

    // MARK: Lifecycle

    /// Recovers every stream under `<storeDirectory>/$G/streams/<name>/` (its `meta.json`, then its
    /// store), then their consumers, removes what max_age no longer allows, rebuilds the
    /// de-duplication windows, and returns the captures: `$JS.API.>`, `$JS.ACK.>`, `$JS.FC.>` and
    /// every stream subject.
    /// - Throws: ``JetStreamStartError`` naming the directory that cannot be created or read, the
    ///   `meta.json` that cannot be read or decoded, or the store or consumer file that is damaged.
    public func start(now: Int64) throws(JetStreamStartError) -> [EngineAction] {
        let root = streamsDirectory
        do {
            try BlockIO.makeDirectories(root)
        } catch {
            throw JetStreamStartError(path: root, reason: error.description)
        }
        try checkWritable(root)
        let names: [String]
        do { names = try BlockIO.list(root).sorted() } catch {
            throw JetStreamStartError(path: root, reason: error.description)
        }
        var actions: [EngineAction] = [.capture("$JS.API.>"), .capture("$JS.ACK.>"), .capture("$JS.FC.>")]
        for name in names {
            let directory = root + "/" + name
            guard StreamCatalog.isDirectory(directory) else { continue }
            let metaPath = directory + "/" + StreamCatalog.metaFile
            // A directory without meta.json is a create that did not finish (meta.json is written first).
            guard POSIXFile<StreamStoreError>.exists(metaPath) else { continue }
            let meta: (config: StreamConfig, created: Int64)
            do {
                meta = try StreamCatalog.decode(try StreamCatalog.readFile(metaPath))
            } catch let error as StreamStoreError {
                throw JetStreamStartError(path: metaPath, reason: error.description)
            } catch let error as StreamCatalog.CatalogError {
                throw JetStreamStartError(path: metaPath, reason: error.text)
            } catch {
                throw JetStreamStartError(path: metaPath, reason: "\(error)")
            }
            guard meta.config.name == name else {
                throw JetStreamStartError(path: metaPath, reason: "names stream \(meta.config.name), not \(name)")
            }
            let stream: EngineStream
            do {
                stream = try openStream(config: meta.config, created: meta.created, directory: directory, now: now)
            } catch {
                throw JetStreamStartError(path: directory, reason: error.description)
            }
            register(stream)
            rebuildDedupe(stream, now: now)
            stream.refreshDeadline()
            for subject in stream.config.subjects { actions.append(.capture(subject)) }
        }
        for name in streams.keys.sorted() {
            guard let stream = streams[name] else { continue }
            do {
                actions += try consumers.recover(stream: stream.context, now: now)
            } catch {
                throw JetStreamStartError(path: stream.directory, reason: error.description)
            }
        }
        nextSync = now + options.syncInterval
        return actions
    }

    /// Fails when `directory` does not take a new file.
    private func checkWritable(_ directory: String) throws(JetStreamStartError) {
        let probe = directory + "/.write-check"
        do {
            try StreamCatalog.writeAtomically([], to: probe, directory: directory)
            try BlockIO.remove(probe)
        } catch {
            throw JetStreamStartError(path: directory, reason: "not writable: \(error.description)")
        }
    }

    /// Opens the store of a stream whose catalogue directory exists.
    func openStream(config: StreamConfig, created: Int64, directory: String, now: Int64) throws(StreamStoreError) -> EngineStream {
        let store: StreamStore
        let storeDirectory: String?
        switch config.storage {
        case .memory:
            store = StreamStore(memory: config.limits)
            storeDirectory = nil
        case .file:
            store = try StreamStore(directory: directory + "/msgs", limits: config.limits, options: fileOptions, now: now)
            storeDirectory = directory
        }
        let context = StreamContext(name: config.name, config: config, store: store, created: created, directory: storeDirectory)
        return EngineStream(context: context, directory: directory, domain: options.domain)
    }

    func register(_ stream: EngineStream) {
        streams[stream.name] = stream
        contexts[stream.name] = stream.context
        routes.removeAll()
    }

    func unregister(_ stream: EngineStream) {
        streams[stream.name] = nil
        contexts[stream.name] = nil
        routes.removeAll()
    }

    /// Syncs and closes every store and has the consumers write their state. The engine is not
    /// used afterwards.
    public func shutdown() {
        consumers.persist()
        for stream in streams.values {
            try? stream.store.sync()
            stream.store.close()
        }
    }

    // MARK: Messages

    /// A message on a captured subject: an API call, an acknowledgement or flow-control answer
    /// (the consumer half's), or a publish into the stream capturing its subject.
    public func handle(_ message: InboundMessage, now: Int64) -> [EngineAction] {
        let subject = message.subject
        if subject.utf8.first == UInt8(ascii: "$") {
            if subject.hasPrefix("$JS.API.") { return api(message, now: now) }
            if subject.hasPrefix("$JS.ACK.") || subject.hasPrefix("$JS.FC.") {
                return consumers.handle(message, streams: contexts, now: now)
            }
        }
        guard let stream = route(subject) else { return [] }
        return publish(message, to: stream, now: now)
    }

    /// The stream whose subjects match `subject` (at most one: overlapping streams are refused).
    func route(_ subject: String) -> EngineStream? {
        if let known = routes[subject] { return known }
        var found: EngineStream?
        for stream in streams.values where stream.captures(subject) {
            found = stream
            break
        }
        if routes.count >= JetStreamEngine.routeCacheLimit { routes.removeAll(keepingCapacity: true) }
        routes[subject] = found
        return found
    }

    // MARK: Timers

    /// The earliest time ``tick(now:)`` must run: the next max_age expiry, de-duplication window
    /// expiry, periodic sync, or consumer timer.
    public var nextDeadline: Int64? {
        var deadline: Int64? = nextSync == .max ? nil : nextSync
        func consider(_ t: Int64?) {
            guard let t else { return }
            deadline = min(deadline ?? t, t)
        }
        for stream in streams.values { consider(stream.deadline) }
        consider(consumers.nextDeadline)
        return deadline
    }

    /// Runs what is due at `now`: expiry by max_age (consumers are told), de-duplication windows,
    /// the periodic sync, and the consumers' timers.
    public func tick(now: Int64) -> [EngineAction] {
        var actions: [EngineAction] = []
        for name in streams.keys.sorted() {
            guard let stream = streams[name] else { continue }
            if let expiry = stream.store.nextExpiry, expiry <= now {
                if let removed = try? stream.store.expire(now: now), removed > 0 {
                    actions += consumers.streamChanged(stream: stream.context, now: now)
                }
            }
            stream.dedupe.expire(now: now, window: stream.duplicateWindow)
            stream.refreshDeadline()
        }
        if now >= nextSync {
            for stream in streams.values { try? stream.store.syncIfDue() }
            nextSync = now + options.syncInterval
        }
        actions += consumers.tick(now: now)
        return actions
    }

    // MARK: Statistics

    /// The figures for `/varz`, `/jsz` and `/metrics`.
    public func statistics() -> JetStreamStatistics {
        var s = JetStreamStatistics()
        s.apiTotal = apiTotal
        s.apiErrors = apiErrors
        s.storage = unreleasedStorage
        for name in streams.keys.sorted() {
            guard let stream = streams[name] else { continue }
            let state = stream.store.state
            let count = consumers.consumerCount(stream: name)
            s.streams += 1
            s.consumers += count
            s.messages += state.messages
            s.bytes += state.bytes
            let reserved = stream.config.maxBytes > 0 ? UInt64(stream.config.maxBytes) : 0
            switch stream.config.storage {
            case .memory:
                s.memory += state.bytes
                s.reservedMemory += reserved
            case .file:
                s.storage += state.bytes
                s.reservedStorage += reserved
            }
            s.streamDetails.append(JetStreamStreamStatistics(name: name, created: stream.context.created, state: state,
                                                             consumerCount: count, config: stream.config))
        }
        return s
    }

    /// A purge; one with a subject filter on a file stream leaves its bytes in the account's usage
    /// (see ``unreleasedStorage``).
    /// - Throws: what ``StreamStore/purge(subject:upTo:keep:)`` throws.
    func filteredPurge(_ stream: EngineStream, subject: String, upTo sequence: UInt64 = 0,
                       keep: UInt64 = 0) throws(StreamStoreError) -> UInt64 {
        let before = stream.store.state.bytes
        let purged = try stream.store.purge(subject: subject, upTo: sequence, keep: keep)
        if stream.config.storage == .file && !subject.isEmpty && subject != ">" {
            unreleasedStorage += before - min(before, stream.store.state.bytes)
        }
        return purged
    }

    /// The ConsumerInfo objects of a stream's consumers, for /jsz; see
    /// ``ConsumerHandling/consumerInfos(stream:now:)``.
    public func consumerInfos(stream: String, now: Int64) -> (infos: [[UInt8]], actions: [EngineAction]) {
        consumers.consumerInfos(stream: stream, now: now)
    }

    /// Bytes in use and reserved (max_bytes of streams that set one) for a storage type.
    func usage(_ storage: StorageType) -> (used: Int64, reserved: Int64) {
        var used: Int64 = storage == .file ? Int64(unreleasedStorage) : 0
        var reserved: Int64 = 0
        for stream in streams.values where stream.config.storage == storage {
            used += Int64(stream.store.state.bytes)
            if stream.config.maxBytes > 0 { reserved += stream.config.maxBytes }
        }
        return (used, reserved)
    }

    // MARK: De-duplication

    /// Refills a recovered stream's de-duplication window from the stored headers of the messages
    /// within duplicate_window of `now` (2.9.10's rebuildDedupe).
    func rebuildDedupe(_ stream: EngineStream, now: Int64) {
        let store = stream.store
        guard let first = store.firstSequence(storedSince: now - stream.config.duplicateWindow) else { return }
        let last = store.state.lastSequence
        var seq = first
        while seq <= last {
            if let message = try? store.load(seq) {
                var id = ""
                if !message.headers.isEmpty, let found = HeaderBlock.string("Nats-Msg-Id", in: message.headers) {
                    id = found
                    stream.dedupe.record(found, sequence: seq, timestamp: message.timestamp)
                }
                if seq == last { stream.lastMessageID = id }
            }
            seq += 1
        }
    }
}
