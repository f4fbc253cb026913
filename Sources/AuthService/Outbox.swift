import Dispatch
import Foundation
import ServiceKit
import Synchronization

/// An event waiting in the outbox to be published.
public struct OutboxEvent: Sendable, Equatable, Codable {
    /// `user.registered` or `user.logged_in`.
    public var subject: String
    /// The event's id, sent as `Nats-Msg-Id` so a second copy within the stream's duplicate
    /// window is dropped.
    public var eventID: String
    /// The user it is about (its pending directory create, if any, goes first).
    public var userID: String
    /// The event JSON.
    public var payload: String
    /// The span of the request that caused it.
    public var traceparent: String

    enum CodingKeys: String, CodingKey {
        case subject, eventID = "event_id", userID = "user_id", payload, traceparent
    }

    /// An event record.
    public init(subject: String, eventID: String, userID: String, payload: String, traceparent: String) {
        self.subject = subject; self.eventID = eventID; self.userID = userID
        self.payload = payload; self.traceparent = traceparent
    }
}

/// Why the outbox failed.
public enum OutboxError: Error, Sendable, CustomStringConvertible {
    /// The durable store failed (open, write).
    case store(StoreError)
    /// A stored record does not decode (the store is not ours or is damaged).
    case corruptRecord(key: String)

    public var description: String {
        switch self {
        case .store(let error): return "outbox: \(error)"
        case .corruptRecord(let key): return "outbox: record \(key) does not decode"
        }
    }
}

/// The transactional outbox: events (and the directory creates they depend on) stored durably
/// under `DATA_DIR` before the HTTP answer, until the publisher has them acknowledged by the
/// stream. A ``KeyValueStore`` named `outbox`: `event:<20-digit sequence>` (sent in key order)
/// and `create:<user id>` (a registration whose `auth_users` entry is not created yet).
///
/// Concurrent ``record(_:creating:)`` calls share fsyncs: whoever finds no write in progress
/// writes everything queued meanwhile in one batch (group commit).
public final class Outbox: Sendable {
    private struct Queued {
        var changes: [KeyValueStore.Write]
        var events: Int
        var continuation: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var nextSequence: UInt64
        var queue: [Queued] = []
        var writing = false
        var eventCount: Int
        /// Events the stream acknowledged whose records are not removed yet (``markSent(_:)``).
        var sent: Set<String> = []
        /// Records removed since the log was last compacted.
        var removedSinceCompaction = 0
        var open = true
    }
    private let store: KeyValueStore
    private let state: Mutex<State>
    /// Runs the group-committed writes, one batch at a time, off the cooperative pool.
    private let writer = DispatchQueue(label: "auth-outbox.writer")
    private let wakeUp: AsyncStream<Void>.Continuation
    /// Yields after each recorded batch (the newest wake-up is kept while nobody waits); the
    /// publisher is its one reader.
    let wakes: AsyncStream<Void>

    /// Opens (creating) the store `outbox` in `directory`.
    /// - Throws: ``OutboxError``.
    public init(directory: String) throws(OutboxError) {
        do {
            store = try KeyValueStore(directory: directory, name: "outbox")
        } catch {
            throw .store(error)
        }
        var last: UInt64 = 0
        var events = 0
        for (key, value) in store.scan(prefix: "") {
            let valid: Bool
            if key.hasPrefix(Self.eventPrefix), let sequence = UInt64(key.dropFirst(Self.eventPrefix.count)) {
                valid = (try? JSONDecoder().decode(OutboxEvent.self, from: Data(value))) != nil
                last = max(last, sequence)
                events += 1
            } else if key.hasPrefix(Self.createPrefix) {
                valid = (try? JSONDecoder().decode(User.self, from: Data(value))).map { Self.createPrefix + $0.id == key } ?? false
            } else {
                valid = false
            }
            if !valid {
                store.close()
                throw .corruptRecord(key: key)
            }
        }
        state = Mutex(State(nextSequence: last + 1, eventCount: events))
        (wakes, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    static let eventPrefix = "event:"
    static let createPrefix = "create:"

    static func eventKey(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return eventPrefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// Stores `events` (in order, after every event recorded before) and, with `creating`, the
    /// pending directory create of that user, all durable when it returns (one fsync, shared
    /// with concurrent calls); then wakes the publisher.
    /// - Throws: ``OutboxError/store(_:)`` (nothing of this call was stored).
    public func record(_ events: [OutboxEvent], creating user: User? = nil) async throws(OutboxError) {
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let lead = state.withLock { s -> Bool in
                    var changes: [KeyValueStore.Write] = []
                    if let user { changes.append(.put(Self.createPrefix + user.id, JSONCoding.encode(user))) }
                    for event in events {
                        changes.append(.put(Self.eventKey(s.nextSequence), JSONCoding.encode(event)))
                        s.nextSequence += 1
                    }
                    s.queue.append(Queued(changes: changes, events: events.count, continuation: continuation))
                    if s.writing { return false }
                    s.writing = true
                    return true
                }
                // The writes and their fsyncs run on the outbox's own thread: a caller of the
                // cooperative pool must not block in fsync, nor keep writing other callers'
                // batches while its own is already durable.
                if lead { writer.async { self.writeQueued() } }
            }
        } catch let error as StoreError {
            throw .store(error)
        } catch {
            throw .store(.closed)
        }
    }

    /// Writes what is queued, batch after batch, until the queue is empty.
    private func writeQueued() {
        while true {
            let batch = state.withLock { s -> [Queued] in
                if s.queue.isEmpty { s.writing = false }
                defer { s.queue = [] }
                return s.queue
            }
            if batch.isEmpty { return }
            do {
                try store.write(batch.flatMap(\.changes))
                let added = batch.reduce(0) { $0 + $1.events }
                state.withLock { $0.eventCount += added }
                for queued in batch { queued.continuation.resume() }
                wakeUp.yield()
            } catch {
                for queued in batch { queued.continuation.resume(throwing: error) }
            }
        }
    }

    /// Wakes the publisher.
    func wake() { wakeUp.yield() }

    /// The oldest `limit` pending events (not marked sent) with their keys, in the order they
    /// were recorded.
    public func pendingEvents(limit: Int) -> [(key: String, event: OutboxEvent)] {
        let sent = state.withLock { $0.sent }
        return store.scan(prefix: Self.eventPrefix).lazy.filter { !sent.contains($0.key) }.prefix(limit).compactMap { key, value in
            (try? JSONDecoder().decode(OutboxEvent.self, from: Data(value))).map { (key, $0) }
        }
    }

    /// Marks events the stream acknowledged: they are no longer pending, and their records go
    /// with the next ``removeSent()``. Until then a crash leaves them to be sent again, which the
    /// stream drops as duplicates (same `Nats-Msg-Id`) within its duplicate window; removing
    /// them in batches keeps a second fsync per event off the logins' path.
    public func markSent(_ keys: [String]) {
        // A record removed meanwhile (a refused registration's event) is not pending any more:
        // counting it again would leave the pending count too low.
        let stored = keys.filter { store.get($0) != nil }
        state.withLock { s in
            for key in stored where s.sent.insert(key).inserted { s.eventCount -= 1 }
        }
    }

    /// The stored bytes under `key`, or nil once removed.
    func record(_ key: String) -> [UInt8]? { store.get(key) }

    /// Events marked sent and not removed yet.
    public var sentCount: Int { state.withLock { $0.sent.count } }

    /// Removes the records of the events marked sent (one fsync), and compacts the log once
    /// many records were removed and few are left.
    /// - Throws: ``OutboxError/store(_:)`` (they stay marked).
    public func removeSent() throws(OutboxError) {
        let sent = state.withLock { $0.sent }
        if sent.isEmpty { return }
        do {
            try store.write(sent.sorted().map { .delete($0) })
        } catch {
            throw .store(error)
        }
        let removed = state.withLock { s -> Int in
            s.sent.subtract(sent)
            s.removedSinceCompaction += sent.count
            return s.removedSinceCompaction
        }
        if removed >= 16_384 && store.count < 1_024 {
            // A failed compaction leaves the log as it was; the next removal tries again.
            if (try? store.compact()) != nil { state.withLock { $0.removedSinceCompaction = 0 } }
        }
    }

    /// Every user whose directory create is pending.
    public func pendingCreates() -> [User] {
        store.scan(prefix: Self.createPrefix).compactMap { try? JSONDecoder().decode(User.self, from: Data($0.value)) }
    }

    /// The pending directory create of user `id`, or nil.
    public func pendingCreate(id: String) -> User? {
        store.get(Self.createPrefix + id).flatMap { try? JSONDecoder().decode(User.self, from: Data($0)) }
    }

    /// Removes the records under `keys` (sent events, done creates) with one fsync.
    /// - Throws: ``OutboxError/store(_:)`` (none removed).
    public func remove(_ keys: [String]) throws(OutboxError) {
        let present = keys.filter { store.get($0) != nil }
        if present.isEmpty { return }
        do {
            try store.write(present.map { .delete($0) })
        } catch {
            throw .store(error)
        }
        state.withLock { s in
            for key in present where key.hasPrefix(Self.eventPrefix) {
                if s.sent.remove(key) == nil { s.eventCount -= 1 }
            }
            s.removedSinceCompaction += present.count
        }
    }

    /// Removes user `id`'s pending create and every pending event about that user (one fsync);
    /// returns how many events were dropped.
    /// - Throws: ``OutboxError/store(_:)``.
    @discardableResult
    public func drop(userID id: String) throws(OutboxError) -> Int {
        let events = store.scan(prefix: Self.eventPrefix).filter { _, value in
            (try? JSONDecoder().decode(OutboxEvent.self, from: Data(value)))?.userID == id
        }.map(\.key)
        try remove([Self.createPrefix + id] + events)
        return events.count
    }

    /// Events waiting to be published (recorded, not acknowledged by the stream).
    public var pendingCount: Int { state.withLock { $0.eventCount } }

    /// True until ``close()``.
    public var isOpen: Bool { state.withLock { $0.open } }

    /// Closes the store (later writes throw).
    public func close() {
        state.withLock { $0.open = false }
        store.close()
        wakeUp.finish()
    }
}
