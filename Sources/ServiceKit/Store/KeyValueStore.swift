import Synchronization

/// A durable key-value store for one service ("database per service"): an in-memory map rebuilt
/// from an ``AppendLog`` on open, last write wins.
///
/// Every `put` and `delete` is fsynced before it returns. Writes serialise on one mutex that is
/// held across the write and the fsync: the store favours simple, certain durability over
/// throughput (no group commit). Call it from a service's own tasks, not from an event loop.
public final class KeyValueStore: Sendable {
    private struct Entry { var value: [UInt8]; var sequence: UInt64 }
    private struct State {
        var log: AppendLog
        var map: [String: Entry]
    }
    private let state: Mutex<State>
    /// The log file's path.
    public let path: String
    /// What recovery did when the store was opened.
    public let recovery: RecoveryReport

    private static let opPut: UInt8 = 1
    private static let opDelete: UInt8 = 2

    /// Opens (creating if needed) the store `name` in `directory` (file `<directory>/<name>.log`),
    /// rebuilding the key-value view from the log.
    /// - Throws: ``StoreError`` (see ``AppendLog/init(path:options:onRecord:)``), including
    ///   ``StoreError/invalidRecord(path:sequence:)`` for an intact record that does not decode.
    public init(directory: String, name: String, options: StoreOptions = StoreOptions()) throws(StoreError) {
        try FileIO.makeDirectories(directory)
        let path = directory + "/" + name + ".log"
        var map: [String: Entry] = [:]
        let log: AppendLog
        do {
            log = try AppendLog(path: path, options: options) { sequence, payload in
                guard let op = KeyValueStore.decode(payload) else {
                    throw StoreError.invalidRecord(path: path, sequence: sequence)
                }
                switch op {
                case .put(let key, let value): map[key] = Entry(value: value, sequence: sequence)
                case .delete(let key): map[key] = nil
                }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.io(operation: "open", path: path, errno: 0)  // onRecord throws only StoreError
        }
        self.path = path
        self.recovery = log.recovery
        self.state = Mutex(State(log: log, map: map))
    }

    /// Stores `value` under `key`; returns the record's sequence number once it is durable.
    /// - Throws: ``StoreError/recordTooLarge(size:limit:)``, ``StoreError/io(operation:path:errno:)``,
    ///   ``StoreError/failed(path:)``, ``StoreError/closed``.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) throws(StoreError) -> UInt64 {
        let payload = KeyValueStore.encode(op: KeyValueStore.opPut, key: key, value: value)
        return try state.withLock { (s) throws(StoreError) -> UInt64 in
            let sequence = try s.log.append(payload)
            s.map[key] = Entry(value: value, sequence: sequence)
            return sequence
        }
    }

    /// Removes `key` (writing a tombstone even when the key is absent, so every call is one
    /// durable record); returns the tombstone's sequence number.
    /// - Throws: as ``put(_:_:)``.
    @discardableResult
    public func delete(_ key: String) throws(StoreError) -> UInt64 {
        let payload = KeyValueStore.encode(op: KeyValueStore.opDelete, key: key, value: [])
        return try state.withLock { (s) throws(StoreError) -> UInt64 in
            let sequence = try s.log.append(payload)
            s.map[key] = nil
            return sequence
        }
    }

    /// One change in a ``write(_:)`` batch.
    public enum Write: Sendable {
        /// Store the value under the key.
        case put(String, [UInt8])
        /// Remove the key.
        case delete(String)
    }

    /// Applies `changes` in order with one fsync (group commit): all are durable when it returns,
    /// and a failure applies none of them to the map. Returns the last record's sequence number
    /// (0 for an empty batch).
    /// - Throws: as ``put(_:_:)``.
    @discardableResult
    public func write(_ changes: [Write]) throws(StoreError) -> UInt64 {
        let payloads = changes.map { change -> [UInt8] in
            switch change {
            case .put(let key, let value): return KeyValueStore.encode(op: KeyValueStore.opPut, key: key, value: value)
            case .delete(let key): return KeyValueStore.encode(op: KeyValueStore.opDelete, key: key, value: [])
            }
        }
        return try state.withLock { (s) throws(StoreError) -> UInt64 in
            let first = try s.log.append(contentsOf: payloads)
            guard first > 0 else { return 0 }
            for (offset, change) in changes.enumerated() {
                switch change {
                case .put(let key, let value): s.map[key] = Entry(value: value, sequence: first + UInt64(offset))
                case .delete(let key): s.map[key] = nil
                }
            }
            return first + UInt64(changes.count - 1)
        }
    }

    /// The value stored under `key`, or nil.
    public func get(_ key: String) -> [UInt8]? {
        state.withLock { $0.map[key]?.value }
    }

    /// Every key starting with `prefix` and its value, sorted by key.
    public func scan(prefix: String) -> [(key: String, value: [UInt8])] {
        let matches = state.withLock { s in
            s.map.filter { $0.key.hasPrefix(prefix) }.map { (key: $0.key, value: $0.value.value) }
        }
        return matches.sorted { $0.key < $1.key }
    }

    /// Number of live keys.
    public var count: Int { state.withLock { $0.map.count } }

    /// Sequence number of the newest write (0 for a new store).
    public var lastSequence: UInt64 { state.withLock { $0.log.lastSequence } }

    /// Rewrites the log with only the live records (dropping overwritten values and tombstones),
    /// atomically (see ``AppendLog/rewrite(_:)``).
    /// - Throws: ``StoreError/io(operation:path:errno:)``, ``StoreError/failed(path:)``, ``StoreError/closed``.
    public func compact() throws(StoreError) {
        try state.withLock { (s) throws(StoreError) in
            let live = s.map.map { (sequence: $0.value.sequence, key: $0.key, value: $0.value.value) }
                .sorted { $0.sequence < $1.sequence }
                .map { (sequence: $0.sequence, payload: KeyValueStore.encode(op: KeyValueStore.opPut, key: $0.key, value: $0.value)) }
            try s.log.rewrite(live)
        }
    }

    /// Closes the file; later writes throw ``StoreError/closed`` (reads still see the map).
    public func close() {
        state.withLock { $0.log.close() }
    }

    // Record payload: op u8 | key length u32 LE | key UTF-8 | value.
    private enum Operation { case put(String, [UInt8]), delete(String) }

    private static func encode(op: UInt8, key: String, value: [UInt8]) -> [UInt8] {
        let keyBytes = Array(key.utf8)
        var out = [UInt8]()
        out.reserveCapacity(5 + keyBytes.count + value.count)
        out.append(op)
        out.appendLittleEndian(UInt32(truncatingIfNeeded: keyBytes.count))
        out.append(contentsOf: keyBytes)
        out.append(contentsOf: value)
        return out
    }

    private static func decode(_ payload: [UInt8]) -> Operation? {
        guard payload.count >= 5 else { return nil }
        let keyLength = payload.withUnsafeBytes { Int($0.littleEndian(at: 1, as: UInt32.self)) }
        guard keyLength <= payload.count - 5 else { return nil }
        let key = String(decoding: payload[5..<5 + keyLength], as: UTF8.self)
        switch payload[0] {
        case opPut: return .put(key, Array(payload[(5 + keyLength)...]))
        case opDelete: return keyLength == payload.count - 5 ? .delete(key) : nil
        default: return nil
        }
    }
}
