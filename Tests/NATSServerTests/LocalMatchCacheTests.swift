import NATSProtocol
@testable import NATSServer
import Testing

/// The per-loop match cache: what it stores, when, and what invalidates it.
@Suite struct LocalMatchCacheTests {
    static func lookup(_ cache: LocalMatchCache, _ subject: String, generation: UInt64) -> MatchResult<Subscription>? {
        Array(subject.utf8).withUnsafeBytes { cache.lookup($0, hash: LocalMatchCache.hash($0), generation: generation) }
    }

    static func store(_ cache: inout LocalMatchCache, _ subject: String, generation: UInt64) {
        Array(subject.utf8).withUnsafeBytes {
            cache.store($0, hash: LocalMatchCache.hash($0), generation: generation, result: MatchResult())
        }
    }

    @Test func aSubjectIsStoredOnItsSecondMissAndServedUntilTheGenerationMoves() {
        var cache = LocalMatchCache(slots: 64)
        Self.store(&cache, "orders", generation: 1)
        #expect(Self.lookup(cache, "orders", generation: 1) == nil)
        Self.store(&cache, "orders", generation: 1)
        #expect(Self.lookup(cache, "orders", generation: 1) != nil)
        #expect(Self.lookup(cache, "orders", generation: 2) == nil)
        #expect(Self.lookup(cache, "orderz", generation: 1) == nil)
        // Refilled after the invalidation on its first miss: it was there before.
        Self.store(&cache, "orders", generation: 2)
        #expect(Self.lookup(cache, "orders", generation: 2) != nil)
    }

    @Test func oneOffSubjectsDoNotEvictOneThatRepeats() {
        var cache = LocalMatchCache(slots: 8)
        Self.store(&cache, "orders", generation: 1)
        Self.store(&cache, "orders", generation: 1)
        for i in 0..<500 { Self.store(&cache, "_INBOX.x.\(i)", generation: 1) }
        #expect(Self.lookup(cache, "orders", generation: 1) != nil)
        // Each inbox was seen once: none of them is served from the cache.
        for i in 0..<500 { #expect(Self.lookup(cache, "_INBOX.x.\(i)", generation: 1) == nil) }
    }
}
