/// One entry of a top-N answer.
public struct TopEntry: Sendable, Equatable {
    /// The item (user id, email domain ...), at most ``SpaceSaving/labelLimit`` bytes.
    public var key: String
    /// The counted frequency: never below the true one.
    public var count: UInt64
    /// Over-estimation bound: the true frequency is in `count - error ... count`.
    public var error: UInt64
}

/// The heavy hitters of a stream in bounded memory: the Space-Saving algorithm (Metwally,
/// Agrawal, El Abbadi, 2005) with `capacity` counters.
///
/// An item already monitored gets its counter incremented; a new item takes over the counter
/// with the smallest count `min`, starting at `min + 1` with error `min`.
///
/// Guarantees, for a stream of `N` items: every counted frequency is at least the true one and
/// exceeds it by at most its `error`, and `error <= min <= N / capacity`; so every item whose true
/// frequency is above `N / capacity` is monitored, and the reported top-N is exact whenever the
/// N-th count minus its error is larger than the largest unmonitored possibility (`min`).
///
/// Items are keyed by a 64-bit hash of their bytes (a collision between two live items is
/// vanishingly unlikely at these sizes); the label bytes are copied into a preallocated arena,
/// so counting allocates nothing. Counters sit in a min-heap: an update costs O(log capacity).
struct SpaceSaving: Sendable {
    /// Longest label kept (longer labels are cut; the key still hashes every byte).
    static let labelLimit = 64

    let capacity: Int
    /// Items counted so far (N).
    private(set) var total: UInt64 = 0
    private var keys: [UInt64]
    private var counts: [UInt64]
    private var errors: [UInt64]
    private var labels: [UInt8]
    private var labelLengths: [UInt8]
    /// Heap of slot numbers ordered by count (smallest first).
    private var heap: [Int32]
    /// Slot -> its position in `heap`.
    private var position: [Int32]
    private var index: [UInt64: Int32]

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        keys = []; counts = []; errors = []; heap = []; position = []
        keys.reserveCapacity(self.capacity); counts.reserveCapacity(self.capacity)
        errors.reserveCapacity(self.capacity); heap.reserveCapacity(self.capacity); position.reserveCapacity(self.capacity)
        labels = [UInt8](repeating: 0, count: self.capacity * SpaceSaving.labelLimit)
        labelLengths = []
        labelLengths.reserveCapacity(self.capacity)
        index = [:]
        index.reserveCapacity(self.capacity)
    }

    /// Items monitored.
    var monitored: Int { keys.count }
    /// The smallest monitored count (0 while not full): the bound on any unmonitored item.
    var minimum: UInt64 { keys.count < capacity ? 0 : counts[Int(heap[0])] }

    /// Counts one occurrence (or `weight`) of the item `bytes[range]` whose hash is `key`.
    mutating func add(key: UInt64, label bytes: [UInt8], _ range: Range<Int>, weight: UInt64 = 1) {
        total &+= weight
        if let slot = index[key] {
            counts[Int(slot)] &+= weight
            siftDown(Int(position[Int(slot)]))
            return
        }
        if keys.count < capacity {
            let slot = keys.count
            keys.append(key); counts.append(weight); errors.append(0); labelLengths.append(0)
            setLabel(slot, bytes, range)
            position.append(Int32(heap.count))
            heap.append(Int32(slot))
            index[key] = Int32(slot)
            siftUp(heap.count - 1)
            return
        }
        let slot = Int(heap[0])
        index[keys[slot]] = nil
        let floor = counts[slot]
        keys[slot] = key
        errors[slot] = floor
        counts[slot] = floor &+ weight
        setLabel(slot, bytes, range)
        index[key] = Int32(slot)
        siftDown(0)
    }

    private mutating func setLabel(_ slot: Int, _ bytes: [UInt8], _ range: Range<Int>) {
        let n = min(range.count, SpaceSaving.labelLimit)
        let base = slot * SpaceSaving.labelLimit
        labels.withUnsafeMutableBufferPointer { out in
            bytes.withUnsafeBufferPointer { src in
                for k in 0..<n { out[base + k] = src[range.lowerBound + k] }
            }
        }
        labelLengths[slot] = UInt8(n)
    }

    private func label(_ slot: Int) -> [UInt8] {
        let base = slot * SpaceSaving.labelLimit
        return Array(labels[base..<base + Int(labelLengths[slot])])
    }

    /// The `n` largest counters, largest first (ties by key text).
    ///
    /// A selection, not a sort of every counter: one pass keeps the best `n` slots in a small
    /// heap whose root is the worst of them (O(capacity log n)), then those are sorted. Labels are
    /// compared in place in the arena (no allocation per comparison). Callers holding a lock on
    /// the summary take a copy-on-write copy and call this outside it.
    func top(_ n: Int) -> [TopEntry] {
        let n = min(max(0, n), keys.count)
        guard n > 0 else { return [] }
        // a ranks before b: larger count, then smaller label.
        func before(_ a: Int32, _ b: Int32) -> Bool {
            let ca = counts[Int(a)], cb = counts[Int(b)]
            if ca != cb { return ca > cb }
            let la = Int(a) * SpaceSaving.labelLimit, lb = Int(b) * SpaceSaving.labelLimit
            return labels[la..<la + Int(labelLengths[Int(a)])].lexicographicallyPrecedes(labels[lb..<lb + Int(labelLengths[Int(b)])])
        }
        // Heap of the best n so far, the one ranking last at the root.
        var best: [Int32] = []
        best.reserveCapacity(n)
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let left = 2 * i + 1, right = left + 1
                var last = i
                if left < best.count, before(best[last], best[left]) { last = left }
                if right < best.count, before(best[last], best[right]) { last = right }
                if last == i { return }
                best.swapAt(i, last)
                i = last
            }
        }
        for slot in 0..<Int32(keys.count) {
            if best.count < n {
                best.append(slot)
                var i = best.count - 1
                while i > 0, before(best[(i - 1) / 2], best[i]) {
                    best.swapAt(i, (i - 1) / 2)
                    i = (i - 1) / 2
                }
            } else if before(slot, best[0]) {
                best[0] = slot
                siftDown(0)
            }
        }
        best.sort(by: before)
        return best.map {
            TopEntry(key: String(decoding: label(Int($0)), as: UTF8.self), count: counts[Int($0)], error: errors[Int($0)])
        }
    }

    // MARK: Heap

    private func less(_ a: Int, _ b: Int) -> Bool { counts[Int(heap[a])] < counts[Int(heap[b])] }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        position[Int(heap[a])] = Int32(a)
        position[Int(heap[b])] = Int32(b)
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { return }
            swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = heap.count
        while true {
            let left = 2 * i + 1, right = left + 1
            var smallest = i
            if left < n, less(left, smallest) { smallest = left }
            if right < n, less(right, smallest) { smallest = right }
            if smallest == i { return }
            swapAt(i, smallest)
            i = smallest
        }
    }

    // MARK: Snapshot

    func write(to w: inout ByteWriter) {
        w.u32(UInt32(capacity))
        w.u64(total)
        w.u32(UInt32(keys.count))
        for slot in 0..<keys.count {
            w.u64(keys[slot]); w.u64(counts[slot]); w.u64(errors[slot])
            w.bytes(label(slot))
        }
    }

    /// Reads a summary written by ``write(to:)`` into one of `capacity` counters (keeping the
    /// largest counters when the saved summary had more, which keeps the guarantees: the
    /// dropped counts are at most the new minimum).
    /// - Throws: ``SnapshotError``.
    static func read(from r: inout ByteReader, capacity: Int) throws(SnapshotError) -> SpaceSaving {
        _ = try r.u32()
        let total = try r.u64()
        let n = Int(try r.u32())
        guard n <= 10_000_000 else { throw .corrupt("top-N size \(n)") }
        var entries: [(key: UInt64, count: UInt64, error: UInt64, label: [UInt8])] = []
        for _ in 0..<n {
            let key = try r.u64(), count = try r.u64(), error = try r.u64()
            let label = try r.bytes(limit: SpaceSaving.labelLimit)
            guard error <= count else { throw .corrupt("top-N error above count") }
            entries.append((key, count, error, label))
        }
        // The order of top(): largest count first, ties by label, so a smaller capacity keeps what top() lists first.
        entries.sort { $0.count != $1.count ? $0.count > $1.count : $0.label.lexicographicallyPrecedes($1.label) }
        var summary = SpaceSaving(capacity: capacity)
        for e in entries.prefix(summary.capacity) where summary.index[e.key] == nil {
            summary.add(key: e.key, label: e.label, 0..<e.label.count, weight: e.count)
            if let slot = summary.index[e.key] { summary.errors[Int(slot)] = e.error }
        }
        summary.total = max(total, summary.total)
        return summary
    }
}
