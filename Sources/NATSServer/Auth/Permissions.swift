import Synchronization

// Per-user publish/subscribe permissions, checked as nats-server 2.9.10 does: a subject is
// allowed when the allow list is absent or has a pattern matching it, and no deny pattern
// matches it. A wildcard SUB subject is matched token by token like a literal, so its `*` and `>`
// tokens are covered only by `*`/`>` patterns (SUB `public.*` passes `allow: public.>`, SUB `>`
// does not).
//
// A subscribe entry may name a queue group after the subject (`"foo v1"`, `"foo.*  v.*"`). As in
// 2.9.10: an allow list admits a plain SUB only through its plain entries; a queue SUB passes the
// plain entries unless some queue entry matches the subject, in which case its queue must match
// one of those entries' queues. A deny list refuses a plain SUB through its plain entries only; a
// queue SUB is refused by a matching plain entry unless queue entries match the subject too, in
// which case only a matching queue refuses it. A queue pattern is matched literally, or as a
// subject pattern when it holds a `*` or `>` token (`v.*` covers `v.1`, `v*` only `v*`).

/// The allow and deny subject lists of one direction (publish or subscribe).
public struct SubjectPermission: Sendable, Equatable {
    /// Subjects (wildcards allowed) the user may use; `nil` allows everything not denied.
    public var allow: [String]?
    /// Subjects the user may not use; checked after `allow`.
    public var deny: [String]?

    /// Creates a permission from its lists.
    public init(allow: [String]? = nil, deny: [String]? = nil) {
        self.allow = allow
        self.deny = deny
    }
}

/// `allow_responses`: the user may publish to the reply subject of each request it received.
public struct ResponsePermission: Sendable, Equatable {
    /// Responses allowed per received request (1 by default).
    public var maxMessages: Int = 1
    /// How long a received reply subject stays publishable; zero means no limit.
    public var expires: Duration = .zero

    /// Creates a response permission (`allow_responses: true` gives the defaults).
    public init(maxMessages: Int = 1, expires: Duration = .zero) {
        self.maxMessages = maxMessages
        self.expires = expires
    }
}

/// The permissions of one user.
public struct Permissions: Sendable, Equatable {
    /// Publish permissions; `nil` allows every publish.
    public var publish: SubjectPermission?
    /// Subscribe permissions; `nil` allows every subscription.
    public var subscribe: SubjectPermission?
    /// Reply-subject tracking; when set and `publish.allow` is absent, only replies may be published.
    public var response: ResponsePermission?

    /// Creates permissions.
    public init(publish: SubjectPermission? = nil, subscribe: SubjectPermission? = nil,
                response: ResponsePermission? = nil) {
        self.publish = publish
        self.subscribe = subscribe
        self.response = response
    }
}

/// One entry of `authorization { users = [...] }` or of an account's `users`.
public struct User: Sendable, Equatable {
    /// The `user` in CONNECT; for an nkey user, its public nkey (`U...`).
    public var name: String
    /// The `pass` in CONNECT (plain text); empty for an nkey user.
    public var password: String
    /// The user's permissions; `nil` means everything is allowed.
    public var permissions: Permissions?
    /// The public user nkey (`U` + base32) when this user signs the INFO nonce instead of sending
    /// a password (`users [{nkey: U...}]`).
    public var nkey: String?
    /// The account the user belongs to (`accounts { A { users [...] } }`); `nil` is the global
    /// account `$G`.
    public var account: String?

    /// Creates a user.
    public init(name: String, password: String, permissions: Permissions? = nil, nkey: String? = nil,
                account: String? = nil) {
        self.name = name
        self.password = password
        self.permissions = permissions
        self.nkey = nkey
        self.account = account
    }
}

/// What CONNECT authenticated as: the account a connection's subjects live in and its checks.
struct AuthResult {
    /// The matched user; `nil` with single-user or token authentication and without authentication.
    var user: User?
    /// The account's name: `$G` unless the user belongs to a configured account.
    var account: String
    /// The user's permissions (`default_permissions` applied); `nil` allows everything.
    var permissions: Permissions?
}

/// What a CONNECT's credentials came to.
enum AuthOutcome {
    case accepted(AuthResult)
    /// Refused; `reason` is why an nkey user's signature did not pass (nil otherwise).
    case refused(reason: String?)
}

/// A list of subject patterns split into tokens once. Immutable, so any thread may read it.
struct PatternList: Sendable {
    let patterns: [[[UInt8]]]

    init(_ subjects: [String]) {
        patterns = subjects.map { subject in
            subject.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
        }
    }

    /// True when some pattern matches `subject`, whose tokens are compared literally
    /// (2.9.10's sublist `Match`).
    func matches(_ subject: UnsafeRawBufferPointer) -> Bool {
        // 2.9.10's sublist matches nothing for a subject with an empty token (`a..b`).
        guard ClientConnection.hasNoEmptyToken(subject) else { return false }
        for pattern in patterns where Self.match(pattern, subject) { return true }
        return false
    }

    private static func match(_ pattern: [[UInt8]], _ subject: UnsafeRawBufferPointer) -> Bool {
        var start = 0
        let count = subject.count
        var index = 0
        while index < pattern.count {
            if start > count { return false }
            let token = pattern[index]
            if token.count == 1 && token[0] == UInt8(ascii: ">") { return true }
            var end = start
            while end < count && subject[end] != UInt8(ascii: ".") { end += 1 }
            if !(token.count == 1 && token[0] == UInt8(ascii: "*")) {
                if end - start != token.count { return false }
                for k in 0..<token.count where subject[start + k] != token[k] { return false }
            }
            start = end + 1
            index += 1
        }
        return start == count + 1
    }

    /// True when some pattern is a subset of the (wildcard) subscription `subject`
    /// (2.9.10's `subjectIsSubsetMatch`): every subject the pattern matches, `subject` matches too.
    func anySubset(of subject: [UInt8]) -> Bool {
        let test = subject.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
        for pattern in patterns where Self.isSubset(pattern, of: test) { return true }
        return false
    }

    /// True when every subject `subject` matches, `test` matches too (both may hold wildcards).
    static func isSubset(_ subject: [UInt8], of test: [UInt8]) -> Bool {
        func split(_ bytes: [UInt8]) -> [[UInt8]] {
            bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
        }
        return isSubset(split(subject), of: split(test))
    }

    private static func isSubset(_ tokens: [[UInt8]], of test: [[UInt8]]) -> Bool {
        let star: [UInt8] = [UInt8(ascii: "*")], tail: [UInt8] = [UInt8(ascii: ">")]
        for (i, testToken) in test.enumerated() {
            // 2.9.10 fails the match on an empty token of either side it reaches.
            if i >= tokens.count || testToken.isEmpty { return false }
            let token = tokens[i]
            if testToken == tail { return true }
            if token.isEmpty { return false }
            if testToken == star {
                if token == tail { return false }
                continue
            }
            if token != testToken { return false }
        }
        return tokens.count == test.count
    }
}

/// A subscribe allow or deny list split into its plain entries and its queue entries
/// (`"subject queue"`), as 2.9.10's permission sublists hold them. Immutable.
struct SubscribeRules: Sendable {
    let plain: PatternList
    /// Each queue entry's subject pattern (as a one-entry list) with its queue pattern.
    let queued: [(subject: PatternList, queue: [UInt8])]

    init(_ entries: [String]) {
        var plainSubjects: [String] = []
        var queued: [(subject: PatternList, queue: [UInt8])] = []
        for entry in entries {
            let fields = Self.fields(entry)
            switch fields.count {
            case 1: plainSubjects.append(fields[0])
            // 2.9.10 skips an entry with more than two fields (the config check refuses those).
            case 2: queued.append((PatternList([fields[0]]), Array(fields[1].utf8)))
            default: continue
            }
        }
        plain = PatternList(plainSubjects)
        self.queued = queued
    }

    /// `entry` split at runs of Unicode white space (Go's `strings.Fields`).
    static func fields(_ entry: String) -> [String] {
        var fields: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in entry.unicodeScalars {
            if scalar.properties.isWhitespace {
                if !current.isEmpty { fields.append(String(current)); current = String.UnicodeScalarView() }
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { fields.append(String(current)) }
        return fields
    }

    /// Whether a plain entry matches `subject`, and the queues of the queue entries that match it.
    func match(_ subject: UnsafeRawBufferPointer) -> (plain: Bool, queues: [[UInt8]]) {
        var queues: [[UInt8]] = []
        for entry in queued where entry.subject.matches(subject) { queues.append(entry.queue) }
        return (plain.matches(subject), queues)
    }

    /// 2.9.10's `queueMatches`: `queue` equals one of `queues`, or is covered by one that is a
    /// wildcard pattern.
    static func queueMatches(_ queue: UnsafeRawBufferPointer, _ queues: [[UInt8]]) -> Bool {
        for pattern in queues {
            if queue.elementsEqual(pattern) { return true }
            let hasWildcard = pattern.withUnsafeBytes { ConnectionPermissions.hasWildcard($0) }
            if hasWildcard && PatternList.isSubset(Array(queue), of: pattern) { return true }
        }
        return false
    }
}

/// Subject checks of one connection. Loop thread only (the publish cache is not locked).
final class ConnectionPermissions {
    private let publishAllow: PatternList?
    private let publishDeny: PatternList?
    private let subscribeAllow: SubscribeRules?
    private let subscribeDeny: SubscribeRules?
    /// The deny entries as written, queue entries included: 2.9.10 tests a wildcard SUB against
    /// these and loads them, unsplit, as the delivery filter.
    private let subscribeDenyWritten: PatternList?
    /// Shared with this connection's subscriptions when deliveries need checks; `nil` otherwise.
    let delivery: DeliveryGuard?
    /// Whether PUB needs any check at all.
    let checksPublish: Bool

    /// Direct-mapped publish-result cache: bounded, no allocation on a hit.
    private static let cacheSlots = 128
    private var cacheHashes = [UInt64](repeating: 0, count: cacheSlots)
    private var cacheSubjects = [[UInt8]](repeating: [], count: cacheSlots)
    private var cacheResults = [Bool](repeating: false, count: cacheSlots)

    init(_ permissions: Permissions) {
        var publish = permissions.publish
        if permissions.response != nil && publish?.allow == nil {
            // 2.9.10 turns the blanket publish allow off once replies are tracked.
            var p = publish ?? SubjectPermission()
            p.allow = []
            publish = p
        }
        publishAllow = publish?.allow.map(PatternList.init)
        publishDeny = publish?.deny.map(PatternList.init)
        subscribeAllow = permissions.subscribe?.allow.map(SubscribeRules.init)
        subscribeDeny = permissions.subscribe?.deny.map(SubscribeRules.init)
        subscribeDenyWritten = permissions.subscribe?.deny.map(PatternList.init)
        checksPublish = publishAllow != nil || publishDeny != nil
        if subscribeDenyWritten != nil || permissions.response != nil {
            delivery = DeliveryGuard(deny: subscribeDenyWritten, response: permissions.response)
        } else {
            delivery = nil
        }
    }

    /// 2.9.10's `pubAllowedFullCheck`: cached allow/deny result, then the tracked replies
    /// (never cached).
    func canPublish(_ subject: UnsafeRawBufferPointer) -> Bool {
        let hash = Self.hash(subject)
        let slot = Int(truncatingIfNeeded: hash) & (Self.cacheSlots - 1)
        var allowed: Bool
        if cacheHashes[slot] == hash && cacheSubjects[slot].elementsEqual(subject) {
            allowed = cacheResults[slot]
        } else {
            allowed = publishAllow?.matches(subject) ?? true
            if allowed, let publishDeny { allowed = !publishDeny.matches(subject) }
            cacheHashes[slot] = hash
            cacheSubjects[slot] = Array(subject)
            cacheResults[slot] = allowed
        }
        if !allowed, let delivery, delivery.response != nil {
            allowed = delivery.consumeReply(subject)
        }
        return allowed
    }

    /// 2.9.10's `canSubscribe` for a plain SUB (`queue` empty) or a queue SUB; loads the delivery
    /// deny filter when a wildcard subscription covers a denied subject.
    func canSubscribe(_ subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer) -> Bool {
        var allowed = true
        if let subscribeAllow {
            let found = subscribeAllow.match(subject)
            allowed = found.plain
            if !queue.isEmpty && !found.queues.isEmpty { allowed = SubscribeRules.queueMatches(queue, found.queues) }
        }
        if allowed, let subscribeDeny {
            let found = subscribeDeny.match(subject)
            allowed = !found.plain
            if !queue.isEmpty && !found.queues.isEmpty { allowed = !SubscribeRules.queueMatches(queue, found.queues) }
            if allowed, let delivery, !delivery.filtering, Self.hasWildcard(subject),
               let subscribeDenyWritten, subscribeDenyWritten.anySubset(of: Array(subject)) {
                delivery.startFiltering()
            }
        }
        return allowed
    }

    static func hasWildcard(_ subject: UnsafeRawBufferPointer) -> Bool {
        var start = 0
        for i in 0...subject.count where i == subject.count || subject[i] == UInt8(ascii: ".") {
            if i - start == 1 && (subject[start] == UInt8(ascii: "*") || subject[start] == UInt8(ascii: ">")) {
                return true
            }
            start = i + 1
        }
        return false
    }

    @inline(__always)
    private static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

/// Checks made while delivering to a user with subscribe deny rules or `allow_responses`:
/// the deny filter (once a wildcard subscription overlaps a deny pattern, as 2.9.10's `mperms`)
/// and the record of reply subjects the user may answer. Any publisher's thread.
final class DeliveryGuard: Sendable {
    private let deny: PatternList?
    let response: ResponsePermission?
    private let filterOn = Atomic<Bool>(false)
    private let replies = Mutex<[[UInt8]: Reply]>([:])
    /// 2.9.10's `replyPermLimit`: above this many tracked replies, used and expired ones are pruned.
    private static let replyLimit = 4096

    struct Reply {
        var received: ContinuousClock.Instant
        var used: Int
    }

    init(deny: PatternList?, response: ResponsePermission?) {
        self.deny = deny
        self.response = response
    }

    var filtering: Bool { filterOn.load(ordering: .relaxed) }
    func startFiltering() { filterOn.store(true, ordering: .relaxed) }

    /// Whether a message on `subject` may be delivered; records `reply` for `allow_responses`.
    func admit(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer) -> Bool {
        if let deny, filtering, deny.matches(subject) { return false }
        if let response, !reply.isEmpty {
            let key = Array(reply)
            let now = ContinuousClock.now
            replies.withLock { table in
                table[key] = Reply(received: now, used: 0)
                if table.count > Self.replyLimit {
                    table = table.filter { !Self.spent($0.value, response, now) }
                    // Still over: drop everything rather than grow without bound.
                    if table.count > Self.replyLimit { table = [key: Reply(received: now, used: 0)] }
                }
            }
        }
        return true
    }

    /// Counts one response to `subject` if it is a tracked reply still usable.
    func consumeReply(_ subject: UnsafeRawBufferPointer) -> Bool {
        guard let response else { return false }
        let key = Array(subject)
        let now = ContinuousClock.now
        return replies.withLock { table -> Bool in
            guard var entry = table[key] else { return false }
            entry.used += 1
            if (response.maxMessages > 0 && entry.used > response.maxMessages)
                || (response.expires > .zero && now - entry.received > response.expires)
            {
                table[key] = nil
                return false
            }
            table[key] = entry
            return true
        }
    }

    private static func spent(_ entry: Reply, _ response: ResponsePermission, _ now: ContinuousClock.Instant) -> Bool {
        (response.maxMessages > 0 && entry.used >= response.maxMessages)
            || (response.expires > .zero && now - entry.received > response.expires)
    }
}
