// RecentMisses: the admission filter of the match caches (a subject is cached on its second miss).

/// Remembers the hashes of recent cache misses in a direct-mapped table, so a cache can store a
/// key only the second time it misses. One-off keys (the reply inbox of every request) then neither
/// allocate an entry nor push out keys that repeat. A collision only forgets an older miss; memory
/// is fixed at eight bytes per slot. Not thread-safe.
public struct RecentMisses: Sendable {
    @usableFromInline var hashes: [UInt64]
    @usableFromInline let mask: Int

    /// A filter with at least `capacity` slots (rounded up to a power of two; at least one).
    public init(capacity: Int) {
        var slots = 1
        while slots < capacity { slots <<= 1 }
        hashes = Array(repeating: 0, count: slots)
        mask = slots - 1
    }

    /// Whether a key with this hash missed before (store it now); otherwise remembers the hash and
    /// returns false. `hash` should be well mixed; 0 is never admitted on a first miss.
    @inlinable @inline(__always)
    public mutating func admit(_ hash: UInt64) -> Bool {
        let index = Int(truncatingIfNeeded: hash >> 7) & mask
        return hashes.withUnsafeMutableBufferPointer { slots -> Bool in
            if slots[index] == hash && hash != 0 { return true }
            slots[index] = hash
            return false
        }
    }
}
