import Dispatch
import Foundation
import ServiceKit
import Synchronization

/// One message of the `NOTIFICATIONS` stream, as the view applies it.
public enum ViewChange: Sendable, Equatable {
    /// `notification.sent`: the notification (its ``UserNotification/sequence`` is the stream sequence).
    case sent(UserNotification)
    /// `notification.read`: `user`'s notification `id` was read at `at`.
    case read(id: String, user: String, at: String)
}

/// What ``NotificationStore/apply(_:through:)`` changed.
public struct ViewApplied: Sendable, Equatable {
    /// Notifications listed by the batch, in stream order.
    public var created: [UserNotification] = []
    /// Notifications marked read by the batch (those created by it excepted).
    public var read: [UserNotification] = []
    /// `notification.sent` messages skipped: their source event already had a notification.
    public var duplicates = 0
    /// Old notifications deleted for the caps.
    public var evicted = 0
}

/// The durable notifications of every user, on a ServiceKit ``KeyValueStore`` (one record per
/// notification under `n/<id>`, fsynced before ``insert(_:)`` returns).
///
/// An in-memory index, rebuilt from the store on open, keeps every notification, each user's
/// notification ids in creation order and each source event id's notification, so a history page
/// costs O(log n + page) and the duplicate check O(1). Readers use only the index: they never
/// touch the key-value store, whose lock is held across each fsync.
///
/// Writes (``insert(_:)``, ``markRead(id:user:at:)``, evictions, compaction) run one at a time on
/// a dedicated serial dispatch queue, bridged with a continuation, so no cooperative-pool thread
/// waits in fsync. For an insert, the queue checks for a duplicate and reserves the next sequence
/// under the lock, writes and fsyncs with the lock released, then publishes into the index under
/// the lock. Because the writes are serial, the same event handled twice (redelivery, or two
/// handlers at once) still makes one notification, and a notification is listed (history, SSE,
/// `notification.sent`) only once it is on disk. A failed write changes nothing.
///
/// Bounded: a user keeps the newest ``maxPerUser`` notifications and the store the newest
/// ``maxTotal`` over all users; older ones are deleted as new ones arrive (oldest first), and the
/// log is compacted once dead records outnumber live ones. Idempotency covers every event whose
/// notification is still kept.
public final class NotificationStore: Sendable {
    /// What ``insert(_:)`` did.
    public enum InsertResult: Sendable, Equatable {
        /// A new notification (durable), and how many old ones were deleted for the caps.
        case created(UserNotification, evicted: Int)
        /// The source event already has this notification; nothing was written.
        case duplicate(UserNotification)
    }

    private struct State {
        var notes: [String: UserNotification] = [:]                    // by notification id
        var users: [String: [(sequence: UInt64, id: String)]] = [:]   // ascending sequence
        var byEvent: [String: String] = [:]                             // source event id -> notification id
        /// Every kept notification in creation order, for the global cap; entries already deleted
        /// for a user's cap stay until they reach the front (``staleInOrder`` counts them).
        var order: [(sequence: UInt64, id: String)] = []
        var orderStart = 0
        var staleInOrder = 0
        var nextSequence: UInt64 = 1
        var deadRecords = 0
        var open = true
        /// View mode: the last stream sequence applied (0: nothing yet).
        var applied: UInt64 = 0
    }
    private let kv: KeyValueStore
    private let state: Mutex<State>
    /// Runs every write, one at a time, off the cooperative pool.
    private let writer = DispatchQueue(label: "notification-store.writer")
    /// Notifications kept per user.
    public let maxPerUser: Int
    /// Notifications kept in all.
    public let maxTotal: Int
    /// Records the store could not decode on open (skipped, left in the file).
    public let skippedRecords: Int

    private static let prefix = "n/"
    /// View mode: the key of the last applied stream sequence (decimal).
    private static let appliedKey = "meta/applied"

    /// Opens (creating if needed) `<directory>/<name>.log` and rebuilds the index; trims to the
    /// caps when the store holds more (after a configuration change).
    /// - Throws: ``StoreError`` from opening the log (see ``KeyValueStore/init(directory:name:options:)``).
    public init(directory: String, name: String = "notifications", maxPerUser: Int, maxTotal: Int = 1_000_000) throws(StoreError) {
        kv = try KeyValueStore(directory: directory, name: name)
        self.maxPerUser = max(1, maxPerUser)
        self.maxTotal = max(1, maxTotal)
        var s = State()
        var skipped = 0
        var all: [UserNotification] = []
        for (key, value) in kv.scan(prefix: Self.prefix) {
            guard let n = UserNotification(stored: value), key == Self.prefix + n.id else { skipped += 1; continue }
            all.append(n)
        }
        all.sort { $0.sequence < $1.sequence }
        for n in all {
            Self.publish(n, &s)
            s.nextSequence = max(s.nextSequence, n.sequence + 1)
        }
        s.deadRecords = max(0, kv.recovery.records - kv.count)
        s.applied = kv.get(Self.appliedKey).flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0
        skippedRecords = skipped
        // Over a cap after a configuration change: trim now (no other thread has the store yet).
        var victims: [String] = []
        let perUser = max(1, maxPerUser), total = max(1, maxTotal)
        for user in Array(s.users.keys) { victims += Self.overUserCap(user: user, cap: perUser, &s) }
        victims += Self.overTotalCap(cap: total, &s)
        state = Mutex(s)
        deleteAndCompact(victims)
    }

    /// True until ``close()``.
    public var isOpen: Bool { state.withLock { $0.open } }

    /// Notifications kept, all users.
    public var count: Int { state.withLock { $0.notes.count } }

    /// Whether the source event already has a notification (a cheap early check; ``insert(_:)``
    /// checks again on the writer queue).
    public func contains(sourceEventID: String) -> Bool {
        state.withLock { $0.byEvent[sourceEventID] != nil }
    }

    /// Stores a notification for `draft` unless its source event already has one; returns once
    /// it is durable and listed.
    /// - Throws: ``StoreError`` when the record cannot be made durable (nothing changed then),
    ///   ``StoreError/closed`` after ``close()``.
    public func insert(_ draft: NotificationDraft) async throws(StoreError) -> InsertResult {
        try await onWriter { () throws(StoreError) -> InsertResult in try self.insertNow(draft) }
    }

    /// Up to `limit` of `user`'s notifications, newest first, older than the cursor `before` (a
    /// ``UserNotification/sequence``) when given; and the cursor of the next page (nil on the last).
    public func page(user: String, limit: Int, before: UInt64? = nil) -> (items: [UserNotification], next: UInt64?) {
        state.withLock { s -> (items: [UserNotification], next: UInt64?) in
            guard let list = s.users[user] else { return ([], nil) }
            var end = list.count
            if let before { end = Self.firstIndex(in: list, atLeast: before) }
            let start = max(0, end - max(0, limit))
            let items = list[start..<end].reversed().compactMap { s.notes[$0.id] }
            return (items, start > 0 ? items.last?.sequence : nil)
        }
    }

    /// `user`'s notifications created after `sequence`, oldest first, at most the newest `limit`
    /// of them (the replay of an SSE stream resumed with `Last-Event-ID`).
    public func after(user: String, sequence: UInt64, limit: Int) -> [UserNotification] {
        state.withLock { s -> [UserNotification] in
            guard let list = s.users[user] else { return [] }
            let start = max(Self.firstIndex(in: list, atLeast: sequence + 1), list.count - max(0, limit))
            return list[start...].compactMap { s.notes[$0.id] }
        }
    }

    /// The notification `id` if it belongs to `user`.
    public func notification(id: String, user: String) -> UserNotification? {
        state.withLock { s in s.notes[id].flatMap { $0.userID == user ? $0 : nil } }
    }

    /// Marks `user`'s notification `id` read (once: a second call returns it unchanged).
    /// Returns nil when there is no such notification for that user.
    /// - Throws: ``StoreError`` when the change cannot be made durable, ``StoreError/closed``
    ///   after ``close()``.
    public func markRead(id: String, user: String, at time: String) async throws(StoreError) -> UserNotification? {
        try await onWriter { () throws(StoreError) -> UserNotification? in try self.markReadNow(id: id, user: user, at: time) }
    }

    // MARK: View mode

    /// The last stream sequence applied by ``apply(_:through:)`` (0 for a new view).
    public var appliedSequence: UInt64 { state.withLock { $0.applied } }

    /// Applies a batch of stream messages in stream order and records `through` (the stream
    /// sequence of the batch's last message) in the same write: one fsync for the batch. A
    /// notification whose source event (or id) is already listed is skipped, so the first in
    /// stream order wins; a read mark applies once, to its user's notification. Returns what
    /// changed, once durable and listed; a failure changes nothing.
    /// - Throws: ``StoreError`` when the batch cannot be made durable, ``StoreError/closed``.
    public func apply(_ changes: [ViewChange], through sequence: UInt64) async throws(StoreError) -> ViewApplied {
        try await onWriter { () throws(StoreError) -> ViewApplied in try self.applyNow(changes, through: sequence) }
    }

    /// Forgets every notification and the applied sequence (the view starts over from the stream).
    /// - Throws: ``StoreError``.
    public func resetView() async throws(StoreError) {
        try await onWriter { () throws(StoreError) in
            let keys = self.kv.scan(prefix: Self.prefix).map(\.key)
            try self.kv.write(keys.map { .delete($0) } + [.delete(Self.appliedKey)])
            self.state.withLock { s in
                let open = s.open
                s = State()
                s.open = open
            }
            try? self.kv.compact()
        }
    }

    private func applyNow(_ changes: [ViewChange], through sequence: UInt64) throws(StoreError) -> ViewApplied {
        var result = ViewApplied()
        let writes = try state.withLock { (s) throws(StoreError) -> [KeyValueStore.Write] in
            guard s.open else { throw StoreError.closed }
            var createdAt: [String: Int] = [:]          // id -> index in result.created
            var events = Set<String>()
            var reads: [String: UserNotification] = [:]
            for change in changes {
                switch change {
                case .sent(let n):
                    if s.byEvent[n.sourceEventID] != nil || s.notes[n.id] != nil || events.contains(n.sourceEventID) || createdAt[n.id] != nil {
                        result.duplicates += 1
                        continue
                    }
                    events.insert(n.sourceEventID)
                    createdAt[n.id] = result.created.count
                    result.created.append(n)
                case .read(let id, let user, let time):
                    if let index = createdAt[id] {
                        if result.created[index].userID == user && result.created[index].readAt == nil { result.created[index].readAt = time }
                    } else if var n = reads[id] ?? s.notes[id], n.userID == user, n.readAt == nil {
                        n.readAt = time
                        reads[id] = n
                    }
                }
            }
            result.read = Array(reads.values)
            return result.created.map { .put(Self.prefix + $0.id, $0.stored) } + result.read.map { .put(Self.prefix + $0.id, $0.stored) }
                + [.put(Self.appliedKey, Array(String(sequence).utf8))]
        }
        try kv.write(writes)   // the lock is free: readers go on meanwhile
        let victims = state.withLock { s -> [String] in
            for n in result.created {
                Self.publish(n, &s)
                s.nextSequence = max(s.nextSequence, n.sequence + 1)
            }
            for n in result.read where s.notes[n.id] != nil { s.notes[n.id] = n }
            s.deadRecords += result.read.count + 1   // the replaced records and the previous position
            s.applied = max(s.applied, sequence)
            var victims: [String] = []
            for user in Set(result.created.map(\.userID)) { victims += Self.overUserCap(user: user, cap: maxPerUser, &s) }
            return victims + Self.overTotalCap(cap: maxTotal, &s)
        }
        deleteAndCompact(victims)
        result.evicted = victims.count
        return result
    }

    /// Closes the store: later writes throw ``StoreError/closed``; waits for the write in
    /// progress, if any (at most one fsync and its evictions).
    public func close() {
        state.withLock { $0.open = false }
        writer.sync { kv.close() }
    }

    // MARK: Internals

    /// Runs `work` on the writer queue and waits for it without blocking a pool thread.
    private func onWriter<T: Sendable>(_ work: @escaping @Sendable () throws(StoreError) -> T) async throws(StoreError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, StoreError>, Never>) in
            writer.async {
                do throws(StoreError) { continuation.resume(returning: .success(try work())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// The insert, on the writer queue.
    private func insertNow(_ draft: NotificationDraft) throws(StoreError) -> InsertResult {
        enum Step { case duplicate(UserNotification), write(UserNotification) }
        let step = try state.withLock { (s) throws(StoreError) -> Step in
            guard s.open else { throw StoreError.closed }
            if let id = s.byEvent[draft.sourceEventID], let existing = s.notes[id] { return .duplicate(existing) }
            return .write(UserNotification(
                id: UUID().uuidString.lowercased(), userID: draft.userID, sourceEventID: draft.sourceEventID,
                kind: draft.kind, message: draft.message, personalized: draft.personalized,
                fallbackReason: draft.fallbackReason, loginTime: draft.loginTime, createdAt: draft.createdAt,
                readAt: nil, sequence: s.nextSequence))
        }
        let n: UserNotification
        switch step {
        case .duplicate(let existing): return .duplicate(existing)
        case .write(let fresh): n = fresh
        }
        try kv.put(Self.prefix + n.id, n.stored)   // the lock is free: readers go on meanwhile
        let victims = state.withLock { s -> [String] in
            s.nextSequence = max(s.nextSequence, n.sequence + 1)
            Self.publish(n, &s)
            return Self.overUserCap(user: n.userID, cap: maxPerUser, &s) + Self.overTotalCap(cap: maxTotal, &s)
        }
        deleteAndCompact(victims)
        return .created(n, evicted: victims.count)
    }

    /// The read mark, on the writer queue.
    private func markReadNow(id: String, user: String, at time: String) throws(StoreError) -> UserNotification? {
        let current = try state.withLock { (s) throws(StoreError) -> UserNotification? in
            guard let n = s.notes[id], n.userID == user else { return nil }
            if n.readAt != nil { return n }
            guard s.open else { throw StoreError.closed }
            return n
        }
        guard var n = current else { return nil }
        if n.readAt != nil { return n }
        n.readAt = time
        try kv.put(Self.prefix + id, n.stored)
        state.withLock { s in
            if s.notes[id] != nil { s.notes[id] = n }   // (only this queue deletes, so it is still there)
            s.deadRecords += 1
        }
        deleteAndCompact([])
        return n
    }

    /// Adds `n` to the index (its sequence is the newest). Lock held.
    private static func publish(_ n: UserNotification, _ s: inout State) {
        s.notes[n.id] = n
        s.users[n.userID, default: []].append((n.sequence, n.id))
        s.byEvent[n.sourceEventID] = n.id
        s.order.append((n.sequence, n.id))
    }

    /// Removes notification `id` from the index. Lock held.
    private static func unlist(_ id: String, _ s: inout State) {
        guard let n = s.notes.removeValue(forKey: id) else { return }
        if s.byEvent[n.sourceEventID] == id { s.byEvent[n.sourceEventID] = nil }
    }

    /// Unlists `user`'s oldest notifications over the cap and returns their ids. Lock held.
    private static func overUserCap(user: String, cap: Int, _ s: inout State) -> [String] {
        guard let list = s.users[user], list.count > cap else { return [] }
        let victims = list.prefix(list.count - cap).map(\.id)
        s.users[user] = Array(list.dropFirst(list.count - cap))
        for id in victims { unlist(id, &s) }
        s.staleInOrder += victims.count
        compactOrder(&s)
        return victims
    }

    /// Unlists the oldest notifications (all users) over the cap and returns their ids. Lock held.
    private static func overTotalCap(cap: Int, _ s: inout State) -> [String] {
        var victims: [String] = []
        while s.notes.count > cap, s.orderStart < s.order.count {
            let oldest = s.order[s.orderStart]
            s.orderStart += 1
            guard let n = s.notes[oldest.id] else { s.staleInOrder -= 1; continue }   // already gone (user cap)
            if var list = s.users[n.userID] {
                // A user's list is in creation order, so the globally oldest is its first entry.
                if list.first?.id == oldest.id { list.removeFirst() } else { list.removeAll { $0.id == oldest.id } }
                s.users[n.userID] = list.isEmpty ? nil : list
            }
            unlist(oldest.id, &s)
            victims.append(oldest.id)
        }
        compactOrder(&s)
        return victims
    }

    /// Drops the consumed front and the stale entries of `order` once they outnumber the live ones.
    private static func compactOrder(_ s: inout State) {
        guard s.orderStart + s.staleInOrder > max(1024, s.notes.count) else { return }
        s.order = s.order[s.orderStart...].filter { s.notes[$0.id] != nil }
        s.orderStart = 0
        s.staleInOrder = 0
    }

    /// Deletes the unlisted `victims` from the log, then compacts it when dead records outnumber
    /// live ones (and are many). Writer queue (or init). A failed delete leaves the record in the
    /// file; it is unlisted now and trimmed again at the next open.
    private func deleteAndCompact(_ victims: [String]) {
        var deleted = 0
        if !victims.isEmpty {
            // One batch, one fsync, however many go.
            do { try kv.write(victims.map { .delete(Self.prefix + $0) }); deleted = victims.count } catch {}
        }
        let compact = state.withLock { s -> Bool in
            s.deadRecords += 2 * deleted   // the put and its tombstone
            return s.deadRecords > max(4096, s.notes.count)
        }
        guard compact else { return }
        do {
            try kv.compact()
            state.withLock { $0.deadRecords = 0 }
        } catch {
            // Retried after the next write; the log is only larger than it needs to be.
        }
    }

    /// Index of the first entry whose sequence is >= `sequence` (binary search).
    private static func firstIndex(in list: [(sequence: UInt64, id: String)], atLeast sequence: UInt64) -> Int {
        var low = 0, high = list.count
        while low < high {
            let mid = (low + high) / 2
            if list[mid].sequence < sequence { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
