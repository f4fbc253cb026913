// ByteTable: an open-addressing hash table keyed by byte strings, looked up by raw views without allocating.

#if canImport(Glibc)
import Glibc
#endif

/// A hash table from byte-string keys to values, with linear probing and backward-shift deletion.
///
/// Keys are copied into `[UInt8]` when inserted; lookups take an `UnsafeRawBufferPointer` and
/// allocate nothing (one hash of the key, then byte comparisons). Used for the trie's literal
/// tokens and for the match cache. Not thread-safe.
@usableFromInline
struct ByteTable<Value> {
    /// Stored hash per slot; 0 marks an empty slot (stored hashes always have the top bit set).
    @usableFromInline var hashes: [UInt64]
    @usableFromInline var keys: [[UInt8]]
    @usableFromInline var values: [Value?]
    @usableFromInline var count: Int = 0

    @inlinable
    init() {
        hashes = []
        keys = []
        values = []
    }

    @inlinable var isEmpty: Bool { count == 0 }
    @inlinable var capacity: Int { hashes.count }

    /// Hashes `key`: 8 bytes at a time with a multiply-xorshift mix. Never returns 0.
    @inlinable @inline(__always)
    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(truncatingIfNeeded: key.count)
        let n = key.count
        var i = 0
        if let base = key.baseAddress {
            while i + 8 <= n {
                let word = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                h = (h ^ word) &* 0x9E37_79B9_7F4A_7C15
                h ^= h >> 29
                i += 8
            }
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift += 8
                i += 1
            }
            h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        }
        h ^= h >> 31
        h = h &* 0x94D0_49BB_1331_11EB
        h ^= h >> 32
        return h | (1 << 63)
    }

    @inlinable @inline(__always)
    static func equal(_ stored: [UInt8], _ key: UnsafeRawBufferPointer) -> Bool {
        if stored.count != key.count { return false }
        if key.isEmpty { return true }
        return stored.withUnsafeBytes { s in
            memcmp(s.baseAddress!, key.baseAddress!, key.count) == 0
        }
    }

    /// The slot holding `key`, or nil.
    @inlinable @inline(__always)
    func slot(of key: UnsafeRawBufferPointer, hash h: UInt64) -> Int? {
        if count == 0 { return nil }
        let mask = hashes.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let stored = hashes[i]
            if stored == 0 { return nil }
            if stored == h && Self.equal(keys[i], key) { return i }
            i = (i + 1) & mask
        }
    }

    /// The value for `key`, or nil. Allocation-free.
    @inlinable @inline(__always)
    func value(for key: UnsafeRawBufferPointer) -> Value? {
        guard let i = slot(of: key, hash: Self.hash(key)) else { return nil }
        return values[i]
    }

    /// The value for `key`, or nil.
    func value(for key: [UInt8]) -> Value? {
        key.withUnsafeBytes { value(for: $0) }
    }

    /// Sets the value for `key` (copying the key if it is new).
    @inlinable
    mutating func setValue(_ value: Value, for key: UnsafeRawBufferPointer) {
        let h = Self.hash(key)
        if let i = slot(of: key, hash: h) {
            values[i] = value
            return
        }
        insertNew(key: [UInt8](key), value: value, hash: h)
    }

    /// Sets the value for `key`, storing the given array as the key (no copy) if it is new.
    mutating func setValue(_ value: Value, for key: [UInt8]) {
        key.withUnsafeBytes { raw in
            let h = Self.hash(raw)
            if let i = slot(of: raw, hash: h) {
                values[i] = value
            } else {
                insertNew(key: key, value: value, hash: h)
            }
        }
    }

    @inlinable
    mutating func insertNew(key: [UInt8], value: Value, hash h: UInt64) {
        if (count + 1) * 4 > hashes.count * 3 { grow() }
        let mask = hashes.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while hashes[i] != 0 { i = (i + 1) & mask }
        hashes[i] = h
        keys[i] = key
        values[i] = value
        count += 1
    }

    @inlinable
    mutating func grow() {
        let newCapacity = Swift.max(8, hashes.count * 2)
        let oldHashes = hashes
        let oldKeys = keys
        let oldValues = values
        hashes = [UInt64](repeating: 0, count: newCapacity)
        keys = [[UInt8]](repeating: [], count: newCapacity)
        values = [Value?](repeating: nil, count: newCapacity)
        let mask = newCapacity - 1
        for j in 0..<oldHashes.count where oldHashes[j] != 0 {
            var i = Int(truncatingIfNeeded: oldHashes[j]) & mask
            while hashes[i] != 0 { i = (i + 1) & mask }
            hashes[i] = oldHashes[j]
            keys[i] = oldKeys[j]
            values[i] = oldValues[j]
        }
    }

    /// Removes `key`; returns its value if it was present.
    @discardableResult
    mutating func removeValue(for key: UnsafeRawBufferPointer) -> Value? {
        guard let i = slot(of: key, hash: Self.hash(key)) else { return nil }
        let old = values[i]
        removeSlot(i)
        return old
    }

    /// Removes `key`; returns its value if it was present.
    @discardableResult
    mutating func removeValue(for key: [UInt8]) -> Value? {
        key.withUnsafeBytes { removeValue(for: $0) }
    }

    /// Empties slot `i` and shifts later entries of its probe run back (no tombstones).
    private mutating func removeSlot(_ slot: Int) {
        let mask = hashes.count - 1
        var hole = slot
        var j = slot
        while true {
            j = (j + 1) & mask
            let h = hashes[j]
            if h == 0 { break }
            let ideal = Int(truncatingIfNeeded: h) & mask
            // Move j into the hole if its ideal slot is not cyclically within (hole, j].
            let distanceToJ = (j &- ideal) & mask
            let distanceToHole = (hole &- ideal) & mask
            if distanceToHole < distanceToJ {
                hashes[hole] = h
                keys[hole] = keys[j]
                values[hole] = values[j]
                hole = j
            }
        }
        hashes[hole] = 0
        keys[hole] = []
        values[hole] = nil
        count -= 1
    }

    /// Removes every entry; keeps the allocated slots if asked.
    @inlinable
    mutating func removeAll(keepingCapacity: Bool = false) {
        if keepingCapacity && !hashes.isEmpty {
            for i in 0..<hashes.count {
                hashes[i] = 0
                keys[i] = []
                values[i] = nil
            }
        } else {
            hashes = []
            keys = []
            values = []
        }
        count = 0
    }

    /// Calls `body` for every entry, in slot order.
    func forEach(_ body: ([UInt8], Value) throws -> Void) rethrows {
        for i in 0..<hashes.count where hashes[i] != 0 {
            if let value = values[i] { try body(keys[i], value) }
        }
    }

    /// The keys, in slot order.
    var allKeys: [[UInt8]] {
        var result: [[UInt8]] = []
        result.reserveCapacity(count)
        for i in 0..<hashes.count where hashes[i] != 0 { result.append(keys[i]) }
        return result
    }

    /// Keeps at most `limit` entries, chosen by walking the slots from `start` (wrapping).
    @inlinable
    mutating func shrink(toAtMost limit: Int, startingAt start: Int) {
        if count <= limit { return }
        if limit <= 0 {
            removeAll(keepingCapacity: true)
            return
        }
        let capacity = hashes.count
        var kept = ByteTable<Value>()
        var index = start % capacity
        if index < 0 { index += capacity }
        var visited = 0
        while visited < capacity && kept.count < limit {
            if hashes[index] != 0, let value = values[index] {
                kept.insertNew(key: keys[index], value: value, hash: hashes[index])
            }
            index = (index + 1) % capacity
            visited += 1
        }
        self = kept
    }
}

extension ByteTable: Sendable where Value: Sendable {}
