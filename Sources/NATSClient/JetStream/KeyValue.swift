// Key-value buckets on JetStream streams, with nats.go's and nats.py's conventions: stream
// `KV_<bucket>` on `$KV.<bucket>.>`, one message per revision, `KV-Operation` markers for deletes
// and purges, and ordered consumers for keys, history and watch.

import Foundation

/// What a KV entry records.
public enum KeyValueOperation: String, Sendable, Equatable {
    case put
    /// A delete marker (`KV-Operation: DEL`).
    case delete
    /// A purge marker (`KV-Operation: PURGE`): earlier revisions of the key were removed.
    case purge
}

/// One revision of a key.
public struct KeyValueEntry: Sendable, Equatable {
    public var bucket: String
    public var key: String
    public var value: [UInt8]
    /// The stream sequence of this revision.
    public var revision: UInt64
    public var created: Date?
    /// Entries after this one still to come from the watcher that delivered it (0 when got directly).
    public var delta: UInt64
    public var operation: KeyValueOperation

    /// The value as UTF-8 text.
    public var string: String { String(decoding: value, as: UTF8.self) }
}

/// One element of a watch: an entry, or the mark that every entry existing when the watch began
/// has been delivered (nats.go's nil entry).
public enum KeyValueWatchUpdate: Sendable, Equatable {
    case entry(KeyValueEntry)
    case initialValuesDone
}

/// A bucket's settings for ``JetStreamContext/createKeyValue(_:)``.
public struct KeyValueConfig: Sendable {
    public var bucket: String
    public var description: String?
    /// Revisions kept per key (1...64).
    public var history: Int = 1
    /// How long a value lives; nil forever.
    public var ttl: Duration?
    public var maxBytes: Int = -1
    public var maxValueSize: Int = -1
    public var storage: StorageType = .file
    public var replicas: Int = 1
    /// Reads through the Direct Get API (as nats.go creates buckets).
    public var allowDirect: Bool = false

    public init(bucket: String, history: Int = 1, ttl: Duration? = nil, maxBytes: Int = -1,
                storage: StorageType = .file, allowDirect: Bool = false) {
        self.bucket = bucket
        self.history = history
        self.ttl = ttl
        self.maxBytes = maxBytes
        self.storage = storage
        self.allowDirect = allowDirect
    }
}

extension JetStreamContext {
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` unless the name is letters, digits, `_` and `-`.
    static func validateBucket(_ bucket: String) throws(JetStreamError) {
        let valid = !bucket.isEmpty && bucket.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == 0x5F || byte == 0x2D
        }
        if !valid { throw .invalidArgument("bucket name \"\(bucket)\" must be letters, digits, '_' and '-'") }
    }

    /// Creates a bucket (an identical existing one is accepted).
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a bad name or a history outside 1...64,
    ///   and the errors of ``addStream(_:)``.
    public func createKeyValue(_ config: KeyValueConfig) async throws(JetStreamError) -> KeyValue {
        try Self.validateBucket(config.bucket)
        guard (1...64).contains(config.history) else {
            throw .invalidArgument("history must be in 1...64, got \(config.history)")
        }
        var stream = StreamConfig(name: "KV_\(config.bucket)", subjects: ["$KV.\(config.bucket).>"])
        stream.description = config.description
        stream.maxMsgsPerSubject = config.history
        stream.maxBytes = config.maxBytes
        stream.maxAge = config.ttl
        stream.maxMsgSize = config.maxValueSize
        stream.storage = config.storage
        stream.replicas = config.replicas
        stream.allowRollup = true
        stream.denyDelete = true
        stream.discard = .new
        stream.allowDirect = config.allowDirect
        var window = Duration.seconds(120)
        if let ttl = config.ttl, ttl < window { window = ttl }
        stream.duplicateWindow = window
        let info = try await addStream(stream)
        return KeyValue(context: self, bucket: config.bucket, allowDirect: info.config.allowDirect)
    }

    /// Creates a bucket with the common settings.
    ///
    /// - Throws: as ``createKeyValue(_:)``.
    public func createKeyValue(bucket: String, history: Int = 1, ttl: Duration? = nil, maxBytes: Int = -1,
                               storage: StorageType = .file) async throws(JetStreamError) -> KeyValue {
        try await createKeyValue(KeyValueConfig(bucket: bucket, history: history, ttl: ttl, maxBytes: maxBytes, storage: storage))
    }

    /// An existing bucket.
    ///
    /// - Throws: ``JetStreamError/api(code:errCode:description:)`` with 10059 when there is no such
    ///   bucket, and the errors of ``streamInfo(_:subjectsFilter:)``.
    public func keyValue(_ bucket: String) async throws(JetStreamError) -> KeyValue {
        try Self.validateBucket(bucket)
        let info = try await streamInfo("KV_\(bucket)")
        return KeyValue(context: self, bucket: bucket, allowDirect: info.config.allowDirect)
    }

    /// Deletes a bucket and all its keys.
    ///
    /// - Throws: as ``deleteStream(_:)``.
    public func deleteKeyValue(_ bucket: String) async throws(JetStreamError) {
        try Self.validateBucket(bucket)
        try await deleteStream("KV_\(bucket)")
    }

    /// The names of every bucket.
    ///
    /// - Throws: as ``streamNames(subject:)``.
    public func keyValueBuckets() async throws(JetStreamError) -> [String] {
        try await streamNames().filter { $0.hasPrefix("KV_") }.map { String($0.dropFirst(3)) }
    }
}

/// A key-value bucket.
public struct KeyValue: Sendable {
    public let context: JetStreamContext
    public let bucket: String
    /// Whether reads use the Direct Get API.
    public let allowDirect: Bool

    /// The backing stream's name.
    public var streamName: String { "KV_\(bucket)" }
    var prefix: String { "$KV.\(bucket)." }

    /// Keys: `-`, `/`, `_`, `=`, `.`, letters and digits, not starting or ending with `.`; `*` and
    /// `>` only where `wildcards` allows (watch).
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)``.
    static func validateKey(_ key: String, wildcards: Bool = false) throws(JetStreamError) {
        let valid = !key.isEmpty && !key.hasPrefix(".") && !key.hasSuffix(".") && key.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == 0x2D || byte == 0x2F || byte == 0x5F || byte == 0x3D || byte == 0x2E
                || (wildcards && (byte == 0x2A || byte == 0x3E))
        }
        if !valid { throw .invalidArgument("key \"\(key)\" is not a valid key") }
    }

    func entry(subject: String, headers: Headers?, payload: [UInt8], revision: UInt64, created: Date?, delta: UInt64) -> KeyValueEntry {
        var operation = KeyValueOperation.put
        switch headers?["KV-Operation"] {
        case "DEL": operation = .delete
        case "PURGE": operation = .purge
        default: break
        }
        let key = subject.hasPrefix(prefix) ? String(subject.dropFirst(prefix.count)) : subject
        return KeyValueEntry(bucket: bucket, key: key, value: payload, revision: revision, created: created,
                             delta: delta, operation: operation)
    }

    /// The latest value of `key`.
    ///
    /// - Throws: ``JetStreamError/keyNotFound(key:)`` when it has none or was deleted or purged;
    ///   ``JetStreamError/invalidArgument(_:)`` for a bad key; the errors of every API call.
    public func get(_ key: String) async throws(JetStreamError) -> KeyValueEntry {
        try Self.validateKey(key)
        let stored: StoredMessage
        if allowDirect {
            guard let found = try await context.directGet(streamName, subject: prefix + key) else {
                throw .keyNotFound(key: key)
            }
            stored = found
        } else {
            do {
                stored = try await context.getLastMessage(streamName, subject: prefix + key)
            } catch .api(_, 10037, _) {
                throw .keyNotFound(key: key)
            }
        }
        let entry = entry(subject: stored.subject, headers: stored.headers, payload: stored.payload,
                          revision: stored.sequence, created: stored.time, delta: 0)
        if entry.operation != .put { throw .keyNotFound(key: key) }
        return entry
    }

    /// The revision `revision` of `key`.
    ///
    /// - Throws: ``JetStreamError/keyNotFound(key:)`` when that revision is not `key`'s or is gone,
    ///   and the errors of ``get(_:)``.
    public func get(_ key: String, revision: UInt64) async throws(JetStreamError) -> KeyValueEntry {
        try Self.validateKey(key)
        let stored: StoredMessage
        do {
            stored = try await context.getMessage(streamName, sequence: revision)
        } catch .api(_, 10037, _) {
            throw .keyNotFound(key: key)
        }
        guard stored.subject == prefix + key else { throw .keyNotFound(key: key) }
        let entry = entry(subject: stored.subject, headers: stored.headers, payload: stored.payload,
                          revision: stored.sequence, created: stored.time, delta: 0)
        if entry.operation != .put { throw .keyNotFound(key: key) }
        return entry
    }

    /// Stores `value` as the new revision of `key`.
    ///
    /// - Returns: the new revision.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a bad key, and the errors of
    ///   ``JetStreamContext/publish(_:payload:headers:options:timeout:)``.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) async throws(JetStreamError) -> UInt64 {
        try Self.validateKey(key)
        return try await context.publish(prefix + key, payload: value).sequence
    }

    /// Stores the UTF-8 bytes of `value`.
    ///
    /// - Throws: as ``put(_:_:)-([UInt8])``.
    @discardableResult
    public func put(_ key: String, _ value: String) async throws(JetStreamError) -> UInt64 {
        try await put(key, Array(value.utf8))
    }

    /// Stores `value` only if `key` has no value (never written, or deleted/purged last).
    ///
    /// - Returns: the new revision.
    /// - Throws: ``JetStreamError/wrongLastRevision(key:description:)`` when it has one, and the
    ///   errors of ``put(_:_:)-([UInt8])``.
    @discardableResult
    public func create(_ key: String, _ value: [UInt8]) async throws(JetStreamError) -> UInt64 {
        do {
            return try await update(key, value, revision: 0)
        } catch .wrongLastRevision(let failedKey, let text) {
            // A delete or purge marker is no value: replace it (as nats.go does).
            let last: StoredMessage
            do {
                last = try await context.getLastMessage(streamName, subject: prefix + key)
            } catch {
                throw .wrongLastRevision(key: failedKey, description: text)
            }
            let marker = entry(subject: last.subject, headers: last.headers, payload: last.payload,
                               revision: last.sequence, created: last.time, delta: 0)
            guard marker.operation != .put else { throw .wrongLastRevision(key: failedKey, description: text) }
            return try await update(key, value, revision: last.sequence)
        }
    }

    /// Stores `value` only if `revision` is still `key`'s latest revision (0: no revision yet).
    ///
    /// - Returns: the new revision.
    /// - Throws: ``JetStreamError/wrongLastRevision(key:description:)`` when it is not, and the
    ///   errors of ``put(_:_:)-([UInt8])``.
    @discardableResult
    public func update(_ key: String, _ value: [UInt8], revision: UInt64) async throws(JetStreamError) -> UInt64 {
        try Self.validateKey(key)
        do {
            return try await context.publish(prefix + key, payload: value,
                                             options: PublishOptions(expectedLastSubjectSequence: revision)).sequence
        } catch .api(_, 10071, let text) {
            throw .wrongLastRevision(key: key, description: text)
        }
    }

    /// Marks `key` deleted (earlier revisions stay in the history).
    ///
    /// - Throws: as ``put(_:_:)-([UInt8])``.
    public func delete(_ key: String) async throws(JetStreamError) {
        try Self.validateKey(key)
        var headers = Headers()
        try? headers.append(name: "KV-Operation", value: "DEL")
        _ = try await context.publish(prefix + key, payload: [], headers: headers)
    }

    /// Marks `key` purged and removes its earlier revisions (`Nats-Rollup: sub`).
    ///
    /// - Throws: as ``put(_:_:)-([UInt8])``.
    public func purge(_ key: String) async throws(JetStreamError) {
        try Self.validateKey(key)
        var headers = Headers()
        try? headers.append(name: "KV-Operation", value: "PURGE")
        try? headers.append(name: "Nats-Rollup", value: "sub")
        _ = try await context.publish(prefix + key, payload: [], headers: headers)
    }

    /// Every key that has a value.
    ///
    /// - Throws: the errors of ``watch(_:includeHistory:ignoreDeletes:metaOnly:)`` and its iteration.
    public func keys() async throws(JetStreamError) -> [String] {
        var keys: [String] = []
        let watcher = try watch(ignoreDeletes: true, metaOnly: true)
        do {
            for try await update in watcher {
                guard case .entry(let entry) = update else { break }
                keys.append(entry.key)
            }
        } catch {
            throw JetStreamError.from(error)
        }
        return keys
    }

    /// Every stored revision of `key`, oldest first, delete and purge markers included.
    ///
    /// - Throws: ``JetStreamError/keyNotFound(key:)`` when there is none, and the errors of
    ///   ``watch(_:includeHistory:ignoreDeletes:metaOnly:)``.
    public func history(_ key: String) async throws(JetStreamError) -> [KeyValueEntry] {
        try Self.validateKey(key)
        var entries: [KeyValueEntry] = []
        let watcher = try watch(key, includeHistory: true)
        do {
            for try await update in watcher {
                guard case .entry(let entry) = update else { break }
                entries.append(entry)
            }
        } catch {
            throw JetStreamError.from(error)
        }
        if entries.isEmpty { throw .keyNotFound(key: key) }
        return entries
    }

    /// Watches `keys` (wildcards allowed): first the latest entry of each matching key (every
    /// revision with `includeHistory`), then ``KeyValueWatchUpdate/initialValuesDone``, then each
    /// change as it happens. Ends when the iterating task is cancelled or stops iterating.
    ///
    /// - Parameters:
    ///   - ignoreDeletes: skip delete and purge markers.
    ///   - metaOnly: entries without values.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a bad key pattern.
    public func watch(_ keys: String = ">", includeHistory: Bool = false, ignoreDeletes: Bool = false,
                      metaOnly: Bool = false) throws(JetStreamError) -> KeyValueWatcher {
        try Self.validateKey(keys, wildcards: true)
        let ordered = try context.orderedConsumer(stream: streamName, filterSubject: prefix + keys,
                                                  deliverPolicy: includeHistory ? .all : .lastPerSubject,
                                                  headersOnly: metaOnly)
        return KeyValueWatcher(bucket: self, consumer: ordered, ignoreDeletes: ignoreDeletes)
    }
}

/// The updates of a watch (see ``KeyValue/watch(_:includeHistory:ignoreDeletes:metaOnly:)``).
public struct KeyValueWatcher: AsyncSequence, Sendable {
    public typealias Element = KeyValueWatchUpdate
    let bucket: KeyValue
    let consumer: OrderedConsumer
    let ignoreDeletes: Bool

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(bucket: bucket, ignoreDeletes: ignoreDeletes,
                      state: OrderedState(context: consumer.context, stream: consumer.stream, config: consumer.config))
    }

    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        let bucket: KeyValue
        let ignoreDeletes: Bool
        let state: OrderedState
        var initialDone = false
        var markPending = false

        /// The next update.
        ///
        /// - Throws: the errors of an ordered consumer's iteration.
        public mutating func next() async throws -> KeyValueWatchUpdate? {
            if state.creations == 0 {
                try await state.create()
                if state.initialPending == 0 { markPending = true }
            }
            while true {
                if markPending && !initialDone {
                    markPending = false
                    initialDone = true
                    return .initialValuesDone
                }
                guard let message = try await state.next() else { return nil }
                let metadata = message.metadata
                let entry = bucket.entry(subject: message.subject, headers: message.headers, payload: message.payload,
                                         revision: metadata.streamSequence, created: metadata.timestamp,
                                         delta: metadata.pending)
                if !initialDone && metadata.pending == 0 { markPending = true }
                if ignoreDeletes && entry.operation != .put { continue }
                return .entry(entry)
            }
        }
    }
}
