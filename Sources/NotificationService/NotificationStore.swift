import Foundation
import ServiceKit
import Synchronization

/// The durable notifications of every user, on a ServiceKit ``KeyValueStore`` (one record per
/// notification under `n/<id>`, fsynced before ``insert(_:)`` returns).
///
/// An in-memory index, rebuilt from the store on open, keeps each user's notification ids in
/// creation order and maps each source event id to its notification, so a history page costs
/// O(log n + page) and the duplicate check O(1). The check and the insert happen under one lock,
/// so the same event handled twice (redelivery, or two handlers at once) makes one notification.
///
/// Bounded: a user keeps the newest ``maxPerUser`` notifications; older ones are deleted as new
/// ones arrive, and the log is compacted once dead records outnumber live ones. Idempotency
/// covers every event whose notification is still kept.
public final class NotificationStore: Sendable {
    /// What ``insert(_:)`` did.
    public enum InsertResult: Sendable, Equatable {
        /// A new notification (durable), and how many old ones of that user were deleted for the cap.
        case created(UserNotification, evicted: Int)
        /// The source event already has this notification; nothing was written.
        case duplicate(UserNotification)
    }

    private struct Located { var user: String; var eventID: String }
    private struct State {
        var users: [String: [(sequence: UInt64, id: String)]] = [:]   // ascending sequence
        var byID: [String: Located] = [:]
        var byEvent: [String: String] = [:]                             // source event id -> notification id
        var nextSequence: UInt64 = 1
        var deadRecords = 0
        var open = true
    }
    private let kv: KeyValueStore
    private let state: Mutex<State>
    /// Notifications kept per user.
    public let maxPerUser: Int
    /// Records the store could not decode on open (skipped, left in the file).
    public let skippedRecords: Int

    private static let prefix = "n/"

    /// Opens (creating if needed) `<directory>/notifications.log` and rebuilds the index.
    /// - Throws: ``StoreError`` from opening the log (see ``KeyValueStore/init(directory:name:options:)``).
    public init(directory: String, maxPerUser: Int) throws(StoreError) {
        kv = try KeyValueStore(directory: directory, name: "notifications")
        self.maxPerUser = max(1, maxPerUser)
        var s = State()
        var skipped = 0
        var all: [UserNotification] = []
        for (key, value) in kv.scan(prefix: Self.prefix) {
            guard let n = UserNotification(stored: value), key == Self.prefix + n.id else { skipped += 1; continue }
            all.append(n)
        }
        all.sort { $0.sequence < $1.sequence }
        for n in all {
            s.users[n.userID, default: []].append((n.sequence, n.id))
            s.byID[n.id] = Located(user: n.userID, eventID: n.sourceEventID)
            s.byEvent[n.sourceEventID] = n.id
            s.nextSequence = max(s.nextSequence, n.sequence + 1)
        }
        s.deadRecords = max(0, kv.recovery.records - kv.count)
        skippedRecords = skipped
        state = Mutex(s)
        // Over the cap after a configuration change: trim now.
        state.withLock { s in
            for user in Array(s.users.keys) { _ = evictOverCap(user: user, &s) }
            compactIfWorthIt(&s)
        }
    }

    /// True until ``close()``.
    public var isOpen: Bool { state.withLock { $0.open } }

    /// Notifications kept, all users.
    public var count: Int { state.withLock { $0.byID.count } }

    /// Whether the source event already has a notification (a cheap early check; ``insert(_:)``
    /// checks again under its lock).
    public func contains(sourceEventID: String) -> Bool {
        state.withLock { $0.byEvent[sourceEventID] != nil }
    }

    /// Stores a notification for `draft` unless its source event already has one.
    /// - Throws: ``StoreError`` when the record cannot be made durable (nothing changed then).
    public func insert(_ draft: NotificationDraft) throws(StoreError) -> InsertResult {
        try state.withLock { (s) throws(StoreError) -> InsertResult in
            guard s.open else { throw StoreError.closed }
            if let existingID = s.byEvent[draft.sourceEventID], let existing = read(existingID) {
                return .duplicate(existing)
            }
            let n = UserNotification(id: UUID().uuidString.lowercased(), userID: draft.userID, sourceEventID: draft.sourceEventID,
                                 kind: draft.kind, message: draft.message, personalized: draft.personalized,
                                 fallbackReason: draft.fallbackReason, loginTime: draft.loginTime, createdAt: draft.createdAt,
                                 readAt: nil, sequence: s.nextSequence)
            try kv.put(Self.prefix + n.id, n.stored)
            s.nextSequence += 1
            s.users[n.userID, default: []].append((n.sequence, n.id))
            s.byID[n.id] = Located(user: n.userID, eventID: n.sourceEventID)
            s.byEvent[n.sourceEventID] = n.id
            let evicted = evictOverCap(user: n.userID, &s)
            compactIfWorthIt(&s)
            return .created(n, evicted: evicted)
        }
    }

    /// Up to `limit` of `user`'s notifications, newest first, older than the cursor `before` (a
    /// ``UserNotification/sequence``) when given; and the cursor of the next page (nil on the last).
    public func page(user: String, limit: Int, before: UInt64? = nil) -> (items: [UserNotification], next: UInt64?) {
        let (ids, more) = state.withLock { s -> ([String], Bool) in
            guard let list = s.users[user] else { return ([], false) }
            var end = list.count
            if let before { end = Self.firstIndex(in: list, atLeast: before) }
            let start = max(0, end - max(0, limit))
            return (list[start..<end].reversed().map(\.id), start > 0)
        }
        let items = ids.compactMap(read)
        return (items, more ? items.last?.sequence : nil)
    }

    /// `user`'s notifications created after `sequence`, oldest first, at most the newest `limit`
    /// of them (the replay of an SSE stream resumed with `Last-Event-ID`).
    public func after(user: String, sequence: UInt64, limit: Int) -> [UserNotification] {
        let ids = state.withLock { s -> [String] in
            guard let list = s.users[user] else { return [] }
            let start = max(Self.firstIndex(in: list, atLeast: sequence + 1), list.count - max(0, limit))
            return list[start...].map(\.id)
        }
        return ids.compactMap(read)
    }

    /// The notification `id` if it belongs to `user`.
    public func notification(id: String, user: String) -> UserNotification? {
        let owned = state.withLock { $0.byID[id]?.user == user }
        guard owned, let n = read(id), n.userID == user else { return nil }
        return n
    }

    /// Marks `user`'s notification `id` read (once: a second call returns it unchanged).
    /// Returns nil when there is no such notification for that user.
    /// - Throws: ``StoreError`` when the change cannot be made durable.
    public func markRead(id: String, user: String, at time: String) throws(StoreError) -> UserNotification? {
        try state.withLock { (s) throws(StoreError) -> UserNotification? in
            guard s.byID[id]?.user == user, var n = read(id) else { return nil }
            if n.readAt != nil { return n }
            guard s.open else { throw StoreError.closed }
            n.readAt = time
            try kv.put(Self.prefix + id, n.stored)
            s.deadRecords += 1
            compactIfWorthIt(&s)
            return n
        }
    }

    /// Closes the store; later writes throw ``StoreError/closed``.
    public func close() {
        state.withLock { $0.open = false }
        kv.close()
    }

    // MARK: Internals

    private func read(_ id: String) -> UserNotification? {
        kv.get(Self.prefix + id).flatMap(UserNotification.init(stored:))
    }

    /// Deletes `user`'s oldest notifications over the cap. Stops at the first failed delete (the
    /// next insert retries). Lock held.
    private func evictOverCap(user: String, _ s: inout State) -> Int {
        guard var list = s.users[user], list.count > maxPerUser else { return 0 }
        var evicted = 0
        while list.count > maxPerUser {
            let oldest = list[0]
            do { try kv.delete(Self.prefix + oldest.id) } catch { break }
            list.removeFirst()
            if let location = s.byID.removeValue(forKey: oldest.id), s.byEvent[location.eventID] == oldest.id {
                s.byEvent[location.eventID] = nil
            }
            evicted += 1
            s.deadRecords += 2   // the put and its tombstone
        }
        s.users[user] = list
        return evicted
    }

    /// Rewrites the log when dead records outnumber live ones (and are many). Lock held.
    private func compactIfWorthIt(_ s: inout State) {
        guard s.deadRecords > max(4096, s.byID.count) else { return }
        do {
            try kv.compact()
            s.deadRecords = 0
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
