import Foundation
import ServiceKit
import Synchronization

/// A registered user as stored.
public struct User: Sendable, Equatable, Codable {
    /// Random UUID (lower-case).
    public var id: String
    /// Normalized (trimmed, lower-case) email address.
    public var email: String
    /// Display name.
    public var name: String
    /// RFC 3339 UTC time of registration.
    public var createdAt: String
    /// The password hash; never leaves the service.
    public var password: PasswordRecord

    enum CodingKeys: String, CodingKey {
        case id, email, name, createdAt = "created_at", password
    }

    /// What the API shows of a user: everything but the password record.
    public var publicView: PublicUser { PublicUser(id: id, email: email, name: name, createdAt: createdAt) }
}

/// The user as the HTTP API and `auth.user.get` show it (no hash, no salt).
public struct PublicUser: Sendable, Equatable, Codable {
    /// See ``User/id``.
    public var id: String
    /// See ``User/email``.
    public var email: String
    /// See ``User/name``.
    public var name: String
    /// See ``User/createdAt``.
    public var createdAt: String

    enum CodingKeys: String, CodingKey {
        case id, email, name, createdAt = "created_at"
    }

    /// Compact JSON with sorted keys.
    public var json: [UInt8] { JSONCoding.encode(self) }
}

/// Why the user directory failed.
public enum UserDirectoryError: Error, Sendable, CustomStringConvertible {
    /// The durable store failed (open, write).
    case store(StoreError)
    /// A stored record does not decode as a user (the store is not ours or is damaged).
    case corruptRecord(key: String)

    public var description: String {
        switch self {
        case .store(let error): return "user store: \(error)"
        case .corruptRecord(let key): return "user store: record \(key) is not a valid user"
        }
    }
}

/// The users, kept durably in a ServiceKit ``KeyValueStore`` (one record per user, key
/// `user:<id>`, JSON value) with an in-memory index by id and by email rebuilt on open.
///
/// Registration is two-phase so a slow password hash never runs under a lock:
/// ``reserve(email:)`` claims the address, ``insert(_:)`` makes the user durable and releases
/// the claim, ``release(email:)`` gives it up on failure.
///
/// In at-least-once mode the store is this instance's replica of the shared `auth_users` bucket
/// (``apply(_:)`` writes what the bucket's watch delivers), and a user registered here whose
/// bucket entry is not created yet is *provisional*: indexed in memory (its durable record is in
/// the outbox) until ``confirm(_:)`` stores it or ``removeProvisional(id:)`` drops it.
public final class UserDirectory: Sendable {
    private struct State {
        var byID: [String: User] = [:]
        var idByEmail: [String: String] = [:]
        var reserved: Set<String> = []
        /// Users indexed from the outbox, not (yet) in the shared bucket.
        var provisional: Set<String> = []
        var open = true
    }
    private let store: KeyValueStore
    private let state: Mutex<State>

    /// Opens (creating) the store `users` in `directory`.
    /// - Throws: ``UserDirectoryError``.
    public init(directory: String) throws(UserDirectoryError) {
        do {
            store = try KeyValueStore(directory: directory, name: "users")
        } catch {
            throw .store(error)
        }
        var s = State()
        for (key, value) in store.scan(prefix: "user:") {
            guard let user = try? JSONDecoder().decode(User.self, from: Data(value)), "user:" + user.id == key else {
                store.close()
                throw .corruptRecord(key: key)
            }
            s.byID[user.id] = user
            s.idByEmail[user.email] = user.id
        }
        state = Mutex(s)
    }

    /// Number of users.
    public var count: Int { state.withLock { $0.byID.count } }

    /// True until ``close()``.
    public var isOpen: Bool { state.withLock { $0.open } }

    /// Claims `email` (normalized) for a registration in progress. False when a user has it or
    /// another registration holds it.
    public func reserve(email: String) -> Bool {
        state.withLock { s in
            guard s.idByEmail[email] == nil, !s.reserved.contains(email) else { return false }
            s.reserved.insert(email)
            return true
        }
    }

    /// Gives up a claim made with ``reserve(email:)``.
    public func release(email: String) {
        _ = state.withLock { $0.reserved.remove(email) }
    }

    /// Stores `user` durably (fsynced) and indexes it; releases its email claim either way.
    /// - Throws: ``UserDirectoryError/store(_:)``.
    public func insert(_ user: User) throws(UserDirectoryError) {
        defer { release(email: user.email) }
        do {
            try store.put("user:" + user.id, JSONCoding.encode(user))
        } catch {
            throw .store(error)
        }
        state.withLock { s in
            s.byID[user.id] = user
            s.idByEmail[user.email] = user.id
        }
    }

    /// Indexes `user` as provisional (in memory: its durable record is the outbox's pending
    /// create) and releases its email claim. A user already stored here stays as it is.
    public func addProvisional(_ user: User) {
        state.withLock { s in
            s.reserved.remove(user.email)
            guard s.byID[user.id] == nil else { return }
            s.byID[user.id] = user
            s.provisional.insert(user.id)
            if s.idByEmail[user.email] == nil { s.idByEmail[user.email] = user.id }
        }
    }

    /// Whether `id` is provisional (registered here, not yet in the shared bucket).
    public func isProvisional(id: String) -> Bool { state.withLock { $0.provisional.contains(id) } }

    /// Stores `user` (now in the shared bucket) durably; no write when it is stored unchanged.
    /// - Throws: ``UserDirectoryError/store(_:)``.
    public func confirm(_ user: User) throws(UserDirectoryError) {
        try apply([.put(user)])
    }

    /// Drops a provisional user (its registration lost to another user's with the same email).
    public func removeProvisional(id: String) {
        state.withLock { s in
            guard s.provisional.remove(id) != nil, let user = s.byID.removeValue(forKey: id) else { return }
            if s.idByEmail[user.email] == id { s.idByEmail[user.email] = nil }
        }
    }

    /// A change of the shared bucket, for ``apply(_:)``.
    public enum Change: Sendable {
        /// The user as the bucket has it.
        case put(User)
        /// The bucket's entry for this (normalized) email was deleted.
        case deleteEmail(String)
    }

    /// Applies changes of the shared bucket to the replica with one fsync; a user stored
    /// unchanged costs no write. A stored user takes its email over from a provisional user with
    /// another id (the bucket decides who owns an email; the provisional one is dropped when its
    /// create finds the conflict).
    /// - Throws: ``UserDirectoryError/store(_:)`` (nothing applied).
    public func apply(_ changes: [Change]) throws(UserDirectoryError) {
        var writes: [KeyValueStore.Write] = []
        var puts: [User] = []
        var deletedIDs: [String] = []
        state.withLock { s in
            for change in changes {
                switch change {
                case .put(let user):
                    if s.byID[user.id] == user && !s.provisional.contains(user.id) { continue }
                    writes.append(.put("user:" + user.id, JSONCoding.encode(user)))
                    puts.append(user)
                case .deleteEmail(let email):
                    guard let id = s.idByEmail[email], !s.provisional.contains(id) else { continue }
                    writes.append(.delete("user:" + id))
                    deletedIDs.append(id)
                }
            }
        }
        if writes.isEmpty { return }
        do {
            try store.write(writes)
        } catch {
            throw .store(error)
        }
        state.withLock { s in
            for id in deletedIDs {
                if let user = s.byID.removeValue(forKey: id), s.idByEmail[user.email] == id { s.idByEmail[user.email] = nil }
            }
            for user in puts {
                if let old = s.byID[user.id], old.email != user.email, s.idByEmail[old.email] == user.id {
                    s.idByEmail[old.email] = nil
                }
                s.byID[user.id] = user
                s.provisional.remove(user.id)
                s.idByEmail[user.email] = user.id
            }
        }
    }

    /// The user with `id`, or nil.
    public func user(id: String) -> User? { state.withLock { $0.byID[id] } }

    /// The user with the normalized `email`, or nil.
    public func user(email: String) -> User? {
        state.withLock { s in s.idByEmail[email].flatMap { s.byID[$0] } }
    }

    /// Closes the store (reads keep working from memory; writes fail).
    public func close() {
        state.withLock { $0.open = false }
        store.close()
    }
}

/// JSON with sorted keys and no escaped slashes, for stable bytes.
enum JSONCoding {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Our value types hold only strings and integers: encoding cannot fail.
        return (try? encoder.encode(value)).map { Array($0) } ?? Array("null".utf8)
    }
}
