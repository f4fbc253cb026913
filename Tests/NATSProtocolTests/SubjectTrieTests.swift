import Testing
@testable import NATSProtocol
import TestSupport

/// A stand-in subscription: identity matters, `id` is for readable expectations.
final class TestSub: Sendable, CustomStringConvertible {
    let id: Int
    init(_ id: Int) { self.id = id }
    var description: String { "sub\(id)" }
}

/// Sorted ids of the plain subscriptions and, per queue group, its sorted ids (groups sorted too).
struct MatchView: Equatable, CustomStringConvertible {
    var plain: [Int]
    var queues: [[Int]]

    init(_ result: MatchResult<TestSub>) {
        plain = result.plain.map(\.id).sorted()
        queues = result.queues.map { $0.map(\.id).sorted() }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    init(plain: [Int], queues: [[Int]] = []) {
        self.plain = plain.sorted()
        self.queues = queues.map { $0.sorted() }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    var description: String { "plain=\(plain) queues=\(queues)" }
}

/// Reference wrapper so that `#expect(trie.match(...))` can call the mutating `match`.
final class TrieBox {
    var trie: SubjectTrie<TestSub>
    init(cacheLimit: Int = 1024) { trie = SubjectTrie(cacheLimit: cacheLimit) }
    @discardableResult
    func insert(subject: String, queue: String? = nil, value: TestSub) -> Bool {
        trie.insert(subject: subject, queue: queue, value: value)
    }
    @discardableResult
    func remove(subject: String, queue: String? = nil, value: TestSub) -> Bool {
        trie.remove(subject: subject, queue: queue, value: value)
    }
    func match(_ subject: String) -> MatchResult<TestSub> { trie.match(subject) }
    var stats: TrieStats { trie.stats }
    var count: Int { trie.count }
    var liveNodeCount: Int { trie.liveNodeCount }
    func allSubscriptions() -> [TrieEntry<TestSub>] { trie.allSubscriptions() }
}

/// Every trie test runs with the cache on (default limit) and off.
let cacheModes = [1024, 0]

@Suite struct SubjectTrieTests {
    @Test(arguments: cacheModes)
    func literalSubscriptionMatchesOnlyTheSameSubject(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        let a = TestSub(1)
        #expect(trie.insert(subject: "foo.bar", value: a))
        for _ in 0..<2 {  // second round exercises the cache when it is on
            #expect(MatchView(trie.match("foo.bar")) == MatchView(plain: [1]))
            #expect(trie.match("foo").isEmpty)
            #expect(trie.match("foo.bar.baz").isEmpty)
            #expect(trie.match("foo.ba").isEmpty)
            #expect(trie.match("Foo.bar").isEmpty)
            #expect(trie.match("bar").isEmpty)
        }
    }

    @Test(arguments: cacheModes)
    func partialWildcardMatchesExactlyOneTokenAtEachPosition(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        trie.insert(subject: "*.b.c", value: TestSub(1))
        trie.insert(subject: "a.*.c", value: TestSub(2))
        trie.insert(subject: "a.b.*", value: TestSub(3))
        trie.insert(subject: "*.*.*", value: TestSub(4))
        trie.insert(subject: "*", value: TestSub(5))
        for _ in 0..<2 {
            #expect(MatchView(trie.match("a.b.c")) == MatchView(plain: [1, 2, 3, 4]))
            #expect(MatchView(trie.match("x.b.c")) == MatchView(plain: [1, 4]))
            #expect(MatchView(trie.match("a.x.c")) == MatchView(plain: [2, 4]))
            #expect(MatchView(trie.match("a.b.x")) == MatchView(plain: [3, 4]))
            #expect(MatchView(trie.match("x.y.z")) == MatchView(plain: [4]))
            #expect(MatchView(trie.match("a")) == MatchView(plain: [5]))
            #expect(trie.match("a.b").isEmpty)
            #expect(trie.match("a.b.c.d").isEmpty)
        }
    }

    @Test(arguments: cacheModes)
    func fullWildcardMatchesOneOrMoreTrailingTokens(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        trie.insert(subject: ">", value: TestSub(1))
        trie.insert(subject: "a.>", value: TestSub(2))
        trie.insert(subject: "a.b.>", value: TestSub(3))
        trie.insert(subject: "*.b.>", value: TestSub(4))
        for _ in 0..<2 {
            #expect(MatchView(trie.match("a")) == MatchView(plain: [1]))
            #expect(MatchView(trie.match("a.b")) == MatchView(plain: [1, 2]))
            #expect(MatchView(trie.match("a.b.c")) == MatchView(plain: [1, 2, 3, 4]))
            #expect(MatchView(trie.match("a.b.c.d.e")) == MatchView(plain: [1, 2, 3, 4]))
            #expect(MatchView(trie.match("x.b.c")) == MatchView(plain: [1, 4]))
            #expect(MatchView(trie.match("x.y")) == MatchView(plain: [1]))
        }
    }

    @Test(arguments: cacheModes)
    func wildcardTokensInAPublishedSubjectAreMatchedAsLiterals(cacheLimit: Int) {
        // 2.9.10, non-pedantic `PUB foo.*`: reaches foo.* and foo.>, not foo.bar.
        let trie = TrieBox(cacheLimit: cacheLimit)
        trie.insert(subject: "foo.*", value: TestSub(1))
        trie.insert(subject: "foo.>", value: TestSub(2))
        trie.insert(subject: "foo.bar", value: TestSub(3))
        #expect(MatchView(trie.match("foo.*")) == MatchView(plain: [1, 2]))
        // A later literal insert must not be served from a stale entry for "foo.*".
        trie.insert(subject: "foo.baz", value: TestSub(4))
        #expect(MatchView(trie.match("foo.*")) == MatchView(plain: [1, 2]))
    }

    @Test(arguments: cacheModes)
    func subjectsWithEmptyTokensMatchNothingAndAreNotCached(cacheLimit: Int) {
        // 2.9.10 silently drops `PUB foo..x`, even for a `>` subscriber.
        let trie = TrieBox(cacheLimit: cacheLimit)
        trie.insert(subject: ">", value: TestSub(1))
        trie.insert(subject: "foo.>", value: TestSub(2))
        trie.insert(subject: "foo.*.x", value: TestSub(3))
        for subject in ["", ".", "foo..x", "foo.", ".foo", "foo.x.", "..", "foo...x"] {
            #expect(trie.match(subject).isEmpty, "\(subject.debugDescription)")
        }
        #expect(trie.stats.numCache == 0)
        #expect(MatchView(trie.match("foo.y.x")) == MatchView(plain: [1, 2, 3]))
    }

    @Test(arguments: cacheModes)
    func queueSubscriptionsAreGroupedByNameAcrossSubjects(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        trie.insert(subject: "orders.new", queue: "workers", value: TestSub(1))
        trie.insert(subject: "orders.new", queue: "workers", value: TestSub(2))
        trie.insert(subject: "orders.*", queue: "workers", value: TestSub(3))
        trie.insert(subject: "orders.>", queue: "audit", value: TestSub(4))
        trie.insert(subject: "orders.new", value: TestSub(5))
        for _ in 0..<2 {
            let result = trie.match("orders.new")
            #expect(MatchView(result) == MatchView(plain: [5], queues: [[1, 2, 3], [4]]))
            #expect(result.fanout == 3)
            #expect(MatchView(trie.match("orders.old")) == MatchView(plain: [], queues: [[3], [4]]))
        }
    }

    @Test(arguments: cacheModes)
    func removalIsByIdentityAndReportsWhetherSomethingWasRemoved(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        let first = TestSub(7)
        let twin = TestSub(7)  // same id, different object
        let queued = TestSub(8)
        trie.insert(subject: "a.b", value: first)
        trie.insert(subject: "a.b", value: twin)
        trie.insert(subject: "a.b", queue: "q", value: queued)
        #expect(trie.match("a.b").plain.count == 2)

        #expect(trie.remove(subject: "a.b", value: first))
        let after = trie.match("a.b")
        #expect(after.plain.count == 1)
        #expect(after.plain.first === twin)
        #expect(!trie.remove(subject: "a.b", value: first))       // already gone
        #expect(!trie.remove(subject: "a.c", value: twin))        // wrong subject
        #expect(!trie.remove(subject: "a.b", queue: "q", value: twin))  // plain sub, not in q
        #expect(!trie.remove(subject: "a.b", queue: "r", value: queued)) // wrong group
        #expect(!trie.remove(subject: "a.b", value: queued))      // it is a queue sub
        #expect(trie.remove(subject: "a.b", queue: "q", value: queued))
        #expect(MatchView(trie.match("a.b")) == MatchView(plain: [7]))
        #expect(trie.count == 1)
    }

    @Test(arguments: cacheModes)
    func removingEverythingPrunesAllNodes(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        let subs = (0..<6).map(TestSub.init)
        let subjects = ["a.b.c", "a.b", "a.*.c", "a.>", ">", "x.y.z.w"]
        for (sub, subject) in zip(subs, subjects) { trie.insert(subject: subject, value: sub) }
        #expect(trie.liveNodeCount > 1)
        // Remove in an order that leaves interior nodes with children for a while.
        for index in [1, 3, 0, 5, 2, 4] {
            #expect(trie.remove(subject: subjects[index], value: subs[index]))
            #expect(trie.match(subjects[index]).plain.allSatisfy { $0 !== subs[index] })
        }
        #expect(trie.count == 0)
        #expect(trie.liveNodeCount == 1)
        // Freed nodes are reused and the trie still works.
        trie.insert(subject: "a.b.c", value: subs[0])
        #expect(MatchView(trie.match("a.b.c")) == MatchView(plain: [0]))
    }

    @Test(arguments: cacheModes)
    func insertAndRemoveUpdateCachedResults(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        let literal = TestSub(1)
        trie.insert(subject: "foo.bar", value: literal)
        #expect(MatchView(trie.match("foo.bar")) == MatchView(plain: [1]))
        #expect(trie.match("foo.baz").isEmpty)

        let wildcard = TestSub(2)
        trie.insert(subject: "foo.*", value: wildcard)
        #expect(MatchView(trie.match("foo.bar")) == MatchView(plain: [1, 2]))
        #expect(MatchView(trie.match("foo.baz")) == MatchView(plain: [2]))

        let sameSubject = TestSub(3)
        trie.insert(subject: "foo.bar", queue: "q", value: sameSubject)
        #expect(MatchView(trie.match("foo.bar")) == MatchView(plain: [1, 2], queues: [[3]]))

        trie.remove(subject: "foo.*", value: wildcard)
        #expect(MatchView(trie.match("foo.bar")) == MatchView(plain: [1], queues: [[3]]))
        #expect(trie.match("foo.baz").isEmpty)

        trie.remove(subject: "foo.bar", value: literal)
        trie.remove(subject: "foo.bar", queue: "q", value: sameSubject)
        #expect(trie.match("foo.bar").isEmpty)
    }

    @Test func cacheServesRepeatedMatchesAndCountsHits() {
        let trie = TrieBox()
        trie.insert(subject: "a.*", value: TestSub(1))
        trie.insert(subject: "a.b", queue: "q", value: TestSub(2))
        // A subject is cached on its second miss: a.b misses twice, then hits twice; a.c once.
        _ = trie.match("a.b")
        _ = trie.match("a.b")
        _ = trie.match("a.c")
        _ = trie.match("a.c")
        _ = trie.match("a.b")
        _ = trie.match("a.b")
        #expect(MatchView(trie.match("a.b")) == MatchView(plain: [1], queues: [[2]]))
        #expect(MatchView(trie.match("a.c")) == MatchView(plain: [1]))
        let stats = trie.stats
        #expect(stats.numMatches == 8)
        #expect(stats.numCache == 2)
        #expect(stats.cacheHitRate == 0.5)
        #expect(stats.maxFanout == 2)
        #expect(stats.avgFanout == 1.5)
        #expect(stats.numSubscriptions == 2)
        #expect(stats.numInserts == 2)
        #expect(stats.numRemoves == 0)
    }

    @Test func oneOffSubjectsAreNotCachedAndDoNotEvictRepeatedOnes() {
        let trie = TrieBox(cacheLimit: 4)
        trie.insert(subject: "_INBOX.abc.*", value: TestSub(1))
        trie.insert(subject: "orders", value: TestSub(2))
        _ = trie.match("orders")
        _ = trie.match("orders")
        #expect(trie.stats.numCache == 1)
        // A thousand request inboxes, each seen once: none is stored, "orders" stays.
        for i in 0..<1000 { #expect(MatchView(trie.match("_INBOX.abc.\(i)")) == MatchView(plain: [1])) }
        #expect(trie.stats.numCache == 1)
        func hits() -> Int { Int((trie.stats.cacheHitRate * Double(trie.stats.numMatches)).rounded()) }
        let hitsBefore = hits()
        #expect(MatchView(trie.match("orders")) == MatchView(plain: [2]))
        #expect(hits() == hitsBefore + 1)
    }

    @Test func aSubjectCachedBeforeAnInvalidationIsStoredAgainOnItsFirstMiss() {
        let trie = TrieBox()
        trie.insert(subject: "a.b", value: TestSub(1))
        _ = trie.match("a.b")
        _ = trie.match("a.b")
        #expect(trie.stats.numCache == 1)
        trie.insert(subject: "a.*", value: TestSub(2))
        #expect(trie.stats.numCache == 0)
        #expect(MatchView(trie.match("a.b")) == MatchView(plain: [1, 2]))
        #expect(trie.stats.numCache == 1)
    }

    @Test func disabledCacheStoresNothingAndNeverHits() {
        let trie = TrieBox(cacheLimit: 0)
        trie.insert(subject: "a.b", value: TestSub(1))
        for _ in 0..<5 { #expect(trie.match("a.b").plain.count == 1) }
        let stats = trie.stats
        #expect(stats.numCache == 0)
        #expect(stats.cacheHitRate == 0)
        #expect(stats.numMatches == 5)
    }

    @Test(arguments: [1, 4, 16, 1024])
    func cacheNeverExceedsItsLimit(limit: Int) {
        let trie = TrieBox(cacheLimit: limit)
        trie.insert(subject: "load.>", value: TestSub(1))
        for i in 0..<(limit * 3 + 50) {
            // Twice each: a subject is cached on its second miss.
            for _ in 0..<2 {
                let result = trie.match("load.\(i)")
                #expect(result.plain.count == 1)
                #expect(trie.stats.numCache <= limit)
            }
        }
        #expect(trie.stats.numCache >= 1)
        // Evicted and re-matched subjects still give correct results.
        #expect(trie.match("load.0").plain.count == 1)
        #expect(trie.match("other").isEmpty)
    }

    @Test(arguments: cacheModes)
    func invalidSubjectsAndQueuesAreRefused(cacheLimit: Int) {
        let trie = TrieBox(cacheLimit: cacheLimit)
        let sub = TestSub(1)
        for bad in ["", "foo.", ".foo", "foo..bar", "foo.>.bar", "foo bar", "a.\tb", ">.a"] {
            #expect(!trie.insert(subject: bad, value: sub), "accepted \(bad.debugDescription)")
        }
        #expect(!trie.insert(subject: "ok", queue: "", value: sub))
        #expect(!trie.insert(subject: "ok", queue: "two words", value: sub))
        #expect(trie.count == 0)
        #expect(trie.stats.numInserts == 0)
        #expect(!trie.remove(subject: "foo..bar", value: sub))
    }

    @Test func allSubscriptionsListsEveryEntryWithSubjectAndQueue() {
        let trie = TrieBox()
        trie.insert(subject: "a.b", value: TestSub(1))
        trie.insert(subject: "a.*", queue: "g", value: TestSub(2))
        trie.insert(subject: ">", value: TestSub(3))
        trie.insert(subject: "a.b", queue: "g", value: TestSub(4))
        let listed = trie.allSubscriptions().map {
            "\($0.value.id) \(String(decoding: $0.subject, as: UTF8.self)) \($0.queue.map { String(decoding: $0, as: UTF8.self) } ?? "-")"
        }.sorted()
        #expect(listed == ["1 a.b -", "2 a.* g", "3 > -", "4 a.b g"])
    }

    @Test func copiesAreIndependent() {
        var original = SubjectTrie<TestSub>()
        original.insert(subject: "a", value: TestSub(1))
        _ = original.match("a")
        var copy = original
        copy.insert(subject: "a", value: TestSub(2))
        let fromOriginal = MatchView(original.match("a"))
        let fromCopy = MatchView(copy.match("a"))
        #expect(fromOriginal == MatchView(plain: [1]))
        #expect(fromCopy == MatchView(plain: [1, 2]))
    }

    @Test(arguments: cacheModes)
    func manySubscriptionsOnOneLevelAreAllFound(cacheLimit: Int) {
        // Forces the literal tables to grow and to shift entries back on removal.
        let trie = TrieBox(cacheLimit: cacheLimit)
        let subs = (0..<2000).map(TestSub.init)
        for sub in subs { trie.insert(subject: "svc.\(sub.id)", value: sub) }
        for sub in subs where sub.id % 3 == 0 { #expect(trie.remove(subject: "svc.\(sub.id)", value: sub)) }
        for sub in subs {
            let result = trie.match("svc.\(sub.id)")
            #expect(MatchView(result) == MatchView(plain: sub.id % 3 == 0 ? [] : [sub.id]))
        }
        #expect(trie.count == 2000 - 667)
    }
}

// MARK: - Randomised comparison with a naive matcher


/// Reference semantics written independently of the trie: split on ".", compare token lists.
func naiveMatches(pattern: String, subject: String) -> Bool {
    let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
    let s = subject.split(separator: ".", omittingEmptySubsequences: false)
    var i = 0
    while i < p.count {
        if p[i] == ">" { return s.count > i }
        if i >= s.count { return false }
        if p[i] != "*" && p[i] != s[i] { return false }
        i += 1
    }
    return i == s.count
}

@Suite struct SubjectTrieRandomizedTests {
    struct Stored {
        let subject: String
        let queue: String?
        let sub: TestSub
    }

    static func expected(_ stored: [Stored], subject: String) -> MatchView {
        var plain: [Int] = []
        var groups: [String: [Int]] = [:]
        for entry in stored where naiveMatches(pattern: entry.subject, subject: subject) {
            if let queue = entry.queue { groups[queue, default: []].append(entry.sub.id) } else { plain.append(entry.sub.id) }
        }
        return MatchView(plain: plain, queues: Array(groups.values))
    }

    @Test(arguments: [(UInt64(1), 1024), (UInt64(2), 0), (UInt64(3), 8), (UInt64(4), 1024), (UInt64(5), 0)])
    func trieAgreesWithNaiveMatcherOverRandomOperations(seed: UInt64, cacheLimit: Int) {
        var rng = SeededGenerator(seed: seed)
        let literals = ["a", "b", "c", "dd", "ef"]
        func randomSubject(wildcards: Bool) -> String {
            let length = Int.random(in: 1...4, using: &rng)
            var tokens: [String] = []
            for position in 0..<length {
                let roll = Int.random(in: 0..<10, using: &rng)
                if wildcards && roll == 0 && position == length - 1 {
                    tokens.append(">")
                } else if wildcards && roll <= 2 {
                    tokens.append("*")
                } else {
                    tokens.append(literals.randomElement(using: &rng)!)
                }
            }
            return tokens.joined(separator: ".")
        }

        let trie = TrieBox(cacheLimit: cacheLimit)
        var stored: [Stored] = []
        var nextID = 0
        var checks = 0
        for _ in 0..<4000 {
            let roll = Int.random(in: 0..<10, using: &rng)
            if roll < 3 {
                let queue: String? = Int.random(in: 0..<4, using: &rng) == 0 ? ["q1", "q2"].randomElement(using: &rng)! : nil
                let entry = Stored(subject: randomSubject(wildcards: true), queue: queue, sub: TestSub(nextID))
                nextID += 1
                #expect(trie.insert(subject: entry.subject, queue: entry.queue, value: entry.sub))
                stored.append(entry)
            } else if roll < 5, !stored.isEmpty {
                let index = Int.random(in: 0..<stored.count, using: &rng)
                let entry = stored.remove(at: index)
                #expect(trie.remove(subject: entry.subject, queue: entry.queue, value: entry.sub))
            } else {
                let subject = randomSubject(wildcards: false)
                let got = MatchView(trie.match(subject))
                let want = Self.expected(stored, subject: subject)
                #expect(got == want, "subject \(subject)")
                checks += 1
            }
        }
        #expect(checks > 1000)
        #expect(trie.count == stored.count)
        #expect(trie.stats.numCache <= cacheLimit)
        // Drain everything: the trie must end empty and pruned.
        for entry in stored { #expect(trie.remove(subject: entry.subject, queue: entry.queue, value: entry.sub)) }
        #expect(trie.liveNodeCount == 1)
    }
}

@Suite struct MatchCacheStorageTests {
    @Test func cacheHitReturnsTheStoredArraysWithoutRebuildingThem() {
        var trie = SubjectTrie<TestSub>()
        trie.insert(subject: "a.*", value: TestSub(1))
        trie.insert(subject: "a.b", queue: "q", value: TestSub(2))
        _ = trie.match("a.b")   // the first miss only marks the subject as seen
        let first = trie.match("a.b")
        let second = trie.match("a.b")
        let firstPlain = first.plain.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let secondPlain = second.plain.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let firstQueues = first.queues.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let secondQueues = second.queues.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(firstPlain == secondPlain)
        #expect(firstQueues == secondQueues)
        // Without the cache every match builds new arrays.
        var uncached = SubjectTrie<TestSub>(cacheLimit: 0)
        uncached.insert(subject: "a.*", value: TestSub(1))
        let x = uncached.match("a.b")
        let y = uncached.match("a.b")
        let xPlain = x.plain.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let yPlain = y.plain.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(xPlain != yPlain)
    }
}

@Suite struct ByteTableTests {
    @Test(arguments: [UInt64(11), 12, 13])
    func byteTableAgreesWithDictionaryOverRandomOperations(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var table = ByteTable<Int>()
        var reference: [[UInt8]: Int] = [:]
        for step in 0..<20_000 {
            // Short keys from a small alphabet collide often, exercising probe runs and back-shifts.
            let length = Int.random(in: 0...3, using: &rng)
            let key = (0..<length).map { _ in UInt8.random(in: 97...100, using: &rng) }
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                table.setValue(step, for: key)
                reference[key] = step
            case 1:
                let removed = table.removeValue(for: key)
                #expect(removed == reference.removeValue(forKey: key))
            default:
                let found = key.withUnsafeBytes { table.value(for: $0) }
                #expect(found == reference[key])
            }
            #expect(table.count == reference.count)
        }
        var listed: [[UInt8]: Int] = [:]
        table.forEach { key, value in listed[key] = value }
        #expect(listed == reference)
    }

    @Test func shrinkKeepsAtMostTheLimitAndOnlyRealEntries() {
        var table = ByteTable<Int>()
        for i in 0..<100 { table.setValue(i, for: Array("k\(i)".utf8)) }
        table.shrink(toAtMost: 25, startingAt: 37)
        #expect(table.count == 25)
        table.forEach { key, value in #expect(key == Array("k\(value)".utf8)) }
        for i in 0..<100 {
            if let value = table.value(for: Array("k\(i)".utf8)) { #expect(value == i) }
        }
        table.shrink(toAtMost: 0, startingAt: 0)
        #expect(table.isEmpty)
        #expect(table.value(for: Array("k1".utf8)) == nil)
    }
}

@Suite struct RecentMissesTests {
    @Test func aHashIsAdmittedOnItsSecondMissAndAForgottenOneStartsOver() {
        var filter = RecentMisses(capacity: 4)
        let a: UInt64 = 0x1234_5678_9ABC_DEF1
        // Another hash in the same slot (same bits above the lowest seven) replaces it; 0 is never admitted.
        let b = a ^ 1
        let answers = [a, a, b, a, a, 0, 0].map { filter.admit($0) }
        #expect(answers == [false, true, false, false, true, false, false])
    }
}
