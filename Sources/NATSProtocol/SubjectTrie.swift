// SubjectTrie: subscriptions by subject, with `*`/`>` wildcards, queue groups and a bounded match cache.

/// The subscriptions that match one published subject.
public struct MatchResult<Value: AnyObject> {
    /// Every plain subscription: each gets a copy.
    public var plain: [Value]
    /// One array per queue group (grouped by queue name across all matching subjects):
    /// deliver to one member of each.
    public var queues: [[Value]]

    /// Creates a result.
    @inlinable
    public init(plain: [Value] = [], queues: [[Value]] = []) {
        self.plain = plain
        self.queues = queues
    }

    /// True when nothing matched.
    public var isEmpty: Bool { plain.isEmpty && queues.isEmpty }

    /// The fan-out as /subsz counts it: plain subscriptions plus queue groups.
    public var fanout: Int { plain.count + queues.count }
}

extension MatchResult: Sendable where Value: Sendable {}

/// The /subsz statistics of a ``SubjectTrie``.
public struct TrieStats: Sendable, Equatable {
    /// Subscriptions currently stored (`num_subscriptions`).
    public var numSubscriptions: Int
    /// Entries in the match cache (`num_cache`).
    public var numCache: Int
    /// Successful inserts since creation (`num_inserts`).
    public var numInserts: UInt64
    /// Successful removals since creation (`num_removes`).
    public var numRemoves: UInt64
    /// Calls to `match` since creation (`num_matches`).
    public var numMatches: UInt64
    /// Cache hits divided by matches, 0 when there were no matches (`cache_hit_rate`).
    public var cacheHitRate: Double
    /// Largest fan-out among cached results (`max_fanout`).
    public var maxFanout: Int
    /// Mean fan-out among cached results, 0 when the cache is empty (`avg_fanout`).
    public var avgFanout: Double
}

/// One stored subscription, as listed by ``SubjectTrie/allSubscriptions()``.
public struct TrieEntry<Value: AnyObject> {
    /// The subscription subject.
    public var subject: [UInt8]
    /// The queue group, or nil for a plain subscription.
    public var queue: [UInt8]?
    /// The stored value.
    public var value: Value
}

/// Subscriptions indexed by subject tokens, matched against literal subjects.
///
/// Each level keeps a byte-keyed hash table for literal tokens plus one slot each for `*` and `>`.
/// A bounded cache maps subject bytes to the last match result: a hit costs one hash of the
/// subject and allocates nothing. A subject is cached the second time it misses (a table of recent
/// miss hashes admits it), so a stream of one-off subjects, such as the reply inbox of every
/// request, neither allocates cache entries nor pushes out the subjects that repeat. Inserting or
/// removing a subscription drops the cached results it could change. When the cache is full it is
/// swept down to a quarter of its limit.
///
/// Not thread-safe: the broker keeps it inside one Mutex. It has value semantics (copy-on-write
/// arrays), so a copy is an independent trie.
public struct SubjectTrie<Value: AnyObject> {
    @usableFromInline
    struct Node {
        @usableFromInline var literals = ByteTable<Int32>()
        @usableFromInline var star: Int32 = -1
        @usableFromInline var full: Int32 = -1
        @usableFromInline var plain: [Value] = []
        @usableFromInline var queueNames: [[UInt8]] = []
        @usableFromInline var queueMembers: [[Value]] = []

        @inlinable init() {}

        var hasChildren: Bool { !literals.isEmpty || star >= 0 || full >= 0 }
        var hasSubscriptions: Bool { !plain.isEmpty || !queueNames.isEmpty }
    }

    // The match path is @inlinable so the broker gets a copy specialised for its subscription type:
    // unspecialised generic code looks up type metadata (Optional<MatchResult<Value>>) on every call.
    @usableFromInline var nodes: [Node] = [Node()]  // node 0 is the root (before the first token)
    private var freeNodes: [Int32] = []
    @usableFromInline var cache = ByteTable<MatchResult<Value>>()
    /// The most cache entries kept; 0 disables the cache.
    public let cacheLimit: Int
    /// Subjects that missed once: a second miss admits the subject into ``cache``.
    @usableFromInline var recentMisses: RecentMisses
    @usableFromInline var sweepSeed: UInt64 = 0x2545_F491_4F6C_DD1D

    private var subscriptionCount = 0
    private var inserts: UInt64 = 0
    private var removes: UInt64 = 0
    @usableFromInline var matches: UInt64 = 0
    @usableFromInline var cacheHits: UInt64 = 0

    /// Creates an empty trie whose match cache holds at most `cacheLimit` subjects (0 disables it).
    public init(cacheLimit: Int = 1024) {
        self.cacheLimit = Swift.max(0, cacheLimit)
        recentMisses = RecentMisses(capacity: self.cacheLimit)
    }

    /// Live trie nodes, root included (for tests of pruning).
    var liveNodeCount: Int { nodes.count - freeNodes.count }

    /// The number of stored subscriptions.
    public var count: Int { subscriptionCount }

    // MARK: insert / remove

    /// Adds a subscription. Duplicates (the same object twice) are stored twice.
    ///
    /// - Returns: false, storing nothing, when `subject` is not a valid SUB subject
    ///   (``Subject/isValid(_:)-(UnsafeRawBufferPointer)``) or `queue` is present and invalid.
    @discardableResult
    public mutating func insert(subject: [UInt8], queue: [UInt8]?, value: Value) -> Bool {
        guard Subject.isValid(subject) else { return false }
        if let queue, !Subject.isValidQueue(queue) { return false }
        var node: Int32 = 0
        subject.withUnsafeBytes { raw in
            for token in Subject.tokens(raw) {
                node = child(of: node, token: token, create: true)
            }
        }
        let index = Int(node)
        if let queue {
            if let group = nodes[index].queueNames.firstIndex(of: queue) {
                nodes[index].queueMembers[group].append(value)
            } else {
                nodes[index].queueNames.append(queue)
                nodes[index].queueMembers.append([value])
            }
        } else {
            nodes[index].plain.append(value)
        }
        subscriptionCount += 1
        inserts += 1
        invalidateCache(for: subject)
        return true
    }

    /// Removes the subscription stored under `subject`/`queue` whose value is `value` (by identity),
    /// pruning nodes left empty.
    ///
    /// - Returns: false when no such subscription exists.
    @discardableResult
    public mutating func remove(subject: [UInt8], queue: [UInt8]?, value: Value) -> Bool {
        guard Subject.isValid(subject) else { return false }
        // The path from the root, for pruning: (parent, token kind, token).
        var path: [(parent: Int32, token: [UInt8])] = []
        var node: Int32 = 0
        var found = true
        subject.withUnsafeBytes { raw in
            for token in Subject.tokens(raw) {
                let next = child(of: node, token: token, create: false)
                if next < 0 {
                    found = false
                    return
                }
                path.append((node, [UInt8](token)))
                node = next
            }
        }
        guard found else { return false }
        let index = Int(node)
        if let queue {
            guard let group = nodes[index].queueNames.firstIndex(of: queue),
                  let member = nodes[index].queueMembers[group].firstIndex(where: { $0 === value })
            else { return false }
            nodes[index].queueMembers[group].remove(at: member)
            if nodes[index].queueMembers[group].isEmpty {
                nodes[index].queueMembers.remove(at: group)
                nodes[index].queueNames.remove(at: group)
            }
        } else {
            guard let member = nodes[index].plain.firstIndex(where: { $0 === value }) else { return false }
            nodes[index].plain.remove(at: member)
        }
        subscriptionCount -= 1
        removes += 1
        // Prune empty nodes bottom-up.
        var current = node
        while let step = path.popLast() {
            let n = nodes[Int(current)]
            if n.hasChildren || n.hasSubscriptions { break }
            detach(child: current, from: step.parent, token: step.token)
            current = step.parent
        }
        invalidateCache(for: subject)
        return true
    }

    private mutating func child(of node: Int32, token: UnsafeRawBufferPointer, create: Bool) -> Int32 {
        let index = Int(node)
        if token.count == 1 && token[0] == Subject.partialWildcard {
            if nodes[index].star < 0 && create { nodes[index].star = newNode() }
            return nodes[index].star
        }
        if token.count == 1 && token[0] == Subject.fullWildcard {
            if nodes[index].full < 0 && create { nodes[index].full = newNode() }
            return nodes[index].full
        }
        if let existing = nodes[index].literals.value(for: token) { return existing }
        if !create { return -1 }
        let fresh = newNode()
        nodes[index].literals.setValue(fresh, for: token)
        return fresh
    }

    private mutating func newNode() -> Int32 {
        if let reused = freeNodes.popLast() {
            nodes[Int(reused)] = Node()
            return reused
        }
        nodes.append(Node())
        return Int32(nodes.count - 1)
    }

    private mutating func detach(child: Int32, from parent: Int32, token: [UInt8]) {
        let p = Int(parent)
        if nodes[p].star == child {
            nodes[p].star = -1
        } else if nodes[p].full == child {
            nodes[p].full = -1
        } else {
            nodes[p].literals.removeValue(for: token)
        }
        nodes[Int(child)] = Node()
        freeNodes.append(child)
    }

    /// Drops every cached result whose subject `pattern` matches.
    private mutating func invalidateCache(for pattern: [UInt8]) {
        if cache.isEmpty { return }
        pattern.withUnsafeBytes { raw in
            if !Subject.hasWildcard(raw) {
                cache.removeValue(for: raw)
                return
            }
            var stale: [[UInt8]] = []
            cache.forEach { key, _ in
                let hit = key.withUnsafeBytes { Subject.matches(pattern: raw, subject: $0) }
                if hit { stale.append(key) }
            }
            for key in stale { cache.removeValue(for: key) }
        }
    }

    // MARK: match

    /// The subscriptions matching the literal `subject`. Allocation-free on a cache hit.
    ///
    /// A `*` or `>` token in `subject` is matched as a literal token (it reaches `*` and `>`
    /// subscriptions, not `foo.bar`), as 2.9.10 does for non-pedantic publishes. A subject with an
    /// empty token (`""`, `foo.`, `.foo`, `foo..bar`) matches nothing and is not cached.
    @inlinable
    public mutating func match(_ subject: UnsafeRawBufferPointer) -> MatchResult<Value> {
        matches &+= 1
        let hash = cacheLimit > 0 ? ByteTable<MatchResult<Value>>.hash(subject) : 0
        if cacheLimit > 0, let slot = cache.slot(of: subject, hash: hash), let cached = cache.values[slot] {
            cacheHits &+= 1
            return cached
        }
        // Like 2.9.10's sublist, a subject with an empty token matches nothing (not even `>`) and
        // is not cached.
        if Self.hasEmptyToken(subject) { return MatchResult() }
        var collector = Collector()
        nodes.withUnsafeBufferPointer { nodes in
            Self.collect(nodes, from: 0, subject: subject, position: 0, into: &collector)
        }
        let result = MatchResult(plain: collector.plain, queues: collector.queues)
        if cacheLimit > 0 && recentMisses.admit(hash) {
            if cache.count >= cacheLimit {
                sweepSeed ^= sweepSeed << 13
                sweepSeed ^= sweepSeed >> 7
                sweepSeed ^= sweepSeed << 17
                cache.shrink(toAtMost: cacheLimit / 4, startingAt: Int(truncatingIfNeeded: sweepSeed >> 1))
            }
            cache.insertNew(key: [UInt8](subject), value: result, hash: hash)
        }
        return result
    }

    @inlinable
    static func hasEmptyToken(_ subject: UnsafeRawBufferPointer) -> Bool {
        let count = subject.count
        if count == 0 || subject[0] == Subject.separator || subject[count - 1] == Subject.separator { return true }
        var previousWasSeparator = false
        for byte in subject {
            let isSeparator = byte == Subject.separator
            if isSeparator && previousWasSeparator { return true }
            previousWasSeparator = isSeparator
        }
        return false
    }

    /// ``match(_:)-(UnsafeRawBufferPointer)`` for bytes.
    public mutating func match(_ subject: [UInt8]) -> MatchResult<Value> {
        subject.withUnsafeBytes { match($0) }
    }

    /// ``match(_:)-(UnsafeRawBufferPointer)`` for a `String`.
    public mutating func match(_ subject: String) -> MatchResult<Value> {
        withUTF8View(subject) { match($0) }
    }

    @usableFromInline
    struct Collector {
        @usableFromInline var plain: [Value] = []
        @usableFromInline var queueNames: [[UInt8]] = []
        @usableFromInline var queues: [[Value]] = []

        @inlinable init() {}
    }

    /// Collects the subscriptions under `start` matching the tokens of `subject` from `position`.
    /// A position past the end means every token has been consumed.
    @inlinable
    static func collect(_ nodes: UnsafeBufferPointer<Node>, from start: Int32,
                                subject: UnsafeRawBufferPointer, position: Int, into collector: inout Collector) {
        var node = start
        var position = position
        let count = subject.count
        while true {
            if position > count {
                add(nodes, node, to: &collector)
                return
            }
            var end = position
            while end < count && subject[end] != Subject.separator { end += 1 }
            let index = Int(node)
            let full = nodes[index].full
            if full >= 0 { add(nodes, full, to: &collector) }
            let star = nodes[index].star
            if star >= 0 { collect(nodes, from: star, subject: subject, position: end + 1, into: &collector) }
            let token = UnsafeRawBufferPointer(rebasing: subject[position..<end])
            guard let next = nodes[index].literals.value(for: token) else { return }
            node = next
            position = end + 1
        }
    }

    @inlinable
    static func add(_ nodes: UnsafeBufferPointer<Node>, _ node: Int32, to collector: inout Collector) {
        let index = Int(node)
        if !nodes[index].plain.isEmpty { collector.plain.append(contentsOf: nodes[index].plain) }
        let groups = nodes[index].queueNames.count
        if groups == 0 { return }
        for group in 0..<groups {
            if let existing = collector.queueNames.firstIndex(of: nodes[index].queueNames[group]) {
                collector.queues[existing].append(contentsOf: nodes[index].queueMembers[group])
            } else {
                collector.queueNames.append(nodes[index].queueNames[group])
                collector.queues.append(nodes[index].queueMembers[group])
            }
        }
    }

    // MARK: introspection

    /// The /subsz statistics.
    public var stats: TrieStats {
        var maxFanout = 0
        var totalFanout = 0
        cache.forEach { _, result in
            let fanout = result.fanout
            totalFanout += fanout
            if fanout > maxFanout { maxFanout = fanout }
        }
        return TrieStats(
            numSubscriptions: subscriptionCount,
            numCache: cache.count,
            numInserts: inserts,
            numRemoves: removes,
            numMatches: matches,
            cacheHitRate: matches == 0 ? 0 : Double(cacheHits) / Double(matches),
            maxFanout: maxFanout,
            avgFanout: cache.isEmpty ? 0 : Double(totalFanout) / Double(cache.count)
        )
    }

    /// Every stored subscription with its subject and queue (for /subsz?subs=1 and /connz).
    /// Order: depth-first; within a node, plain subscriptions first, then queue groups.
    public func allSubscriptions() -> [TrieEntry<Value>] {
        var out: [TrieEntry<Value>] = []
        out.reserveCapacity(subscriptionCount)
        var tokens: [[UInt8]] = []
        walk(0, tokens: &tokens, into: &out)
        return out
    }

    private func walk(_ node: Int32, tokens: inout [[UInt8]], into out: inout [TrieEntry<Value>]) {
        let n = nodes[Int(node)]
        if n.hasSubscriptions {
            var subject: [UInt8] = []
            for (i, token) in tokens.enumerated() {
                if i > 0 { subject.append(Subject.separator) }
                subject.append(contentsOf: token)
            }
            for value in n.plain { out.append(TrieEntry(subject: subject, queue: nil, value: value)) }
            for group in 0..<n.queueNames.count {
                for value in n.queueMembers[group] {
                    out.append(TrieEntry(subject: subject, queue: n.queueNames[group], value: value))
                }
            }
        }
        n.literals.forEach { token, child in
            tokens.append(token)
            walk(child, tokens: &tokens, into: &out)
            tokens.removeLast()
        }
        if n.star >= 0 {
            tokens.append([Subject.partialWildcard])
            walk(n.star, tokens: &tokens, into: &out)
            tokens.removeLast()
        }
        if n.full >= 0 {
            tokens.append([Subject.fullWildcard])
            walk(n.full, tokens: &tokens, into: &out)
            tokens.removeLast()
        }
    }
}

extension SubjectTrie: Sendable where Value: Sendable {}

extension SubjectTrie {
    /// ``insert(subject:queue:value:)`` with strings.
    @discardableResult
    public mutating func insert(subject: String, queue: String? = nil, value: Value) -> Bool {
        insert(subject: Array(subject.utf8), queue: queue.map { Array($0.utf8) }, value: value)
    }

    /// ``remove(subject:queue:value:)`` with strings.
    @discardableResult
    public mutating func remove(subject: String, queue: String? = nil, value: Value) -> Bool {
        remove(subject: Array(subject.utf8), queue: queue.map { Array($0.utf8) }, value: value)
    }
}

extension SubjectTrie.Node: Sendable where Value: Sendable {}
