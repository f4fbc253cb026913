// A binary min-heap of timers ordered by (deadline, id), with O(log n) cancel by id.

/// Identifies a scheduled timer; pass it to ``EventLoop/cancel(_:)``.
public struct TimerID: Hashable, Sendable {
    let raw: UInt64
}

/// Not thread-safe: owned by one loop.
struct TimerHeap {
    struct Entry {
        /// Absolute CLOCK_MONOTONIC deadline in nanoseconds.
        var deadline: UInt64
        /// Also the tie-breaker: equal deadlines fire in scheduling order.
        var id: UInt64
        var body: () -> Void
    }

    private(set) var entries: [Entry] = []
    /// id -> index in `entries`.
    private var positions: [UInt64: Int] = [:]

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }
    var min: Entry? { entries.first }

    @inline(__always)
    private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.deadline < b.deadline || (a.deadline == b.deadline && a.id < b.id)
    }

    mutating func insert(_ entry: Entry) {
        entries.append(entry)
        positions[entry.id] = entries.count - 1
        siftUp(entries.count - 1)
    }

    /// Removes the timer `id`; false if it already fired or was cancelled.
    mutating func remove(id: UInt64) -> Bool {
        guard let index = positions.removeValue(forKey: id) else { return false }
        let last = entries.count - 1
        if index != last {
            entries.swapAt(index, last)
            positions[entries[index].id] = index
        }
        entries.removeLast()
        if index < entries.count {
            siftDown(index)
            siftUp(index)
        }
        return true
    }

    mutating func popMin() -> Entry? {
        guard let first = entries.first else { return nil }
        _ = remove(id: first.id)
        return first
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.less(entries[child], entries[parent]) else { break }
            swapEntries(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let n = entries.count
        while true {
            let left = 2 * parent + 1
            if left >= n { break }
            var smallest = left
            let right = left + 1
            if right < n && Self.less(entries[right], entries[left]) { smallest = right }
            guard Self.less(entries[smallest], entries[parent]) else { break }
            swapEntries(smallest, parent)
            parent = smallest
        }
    }

    private mutating func swapEntries(_ i: Int, _ j: Int) {
        entries.swapAt(i, j)
        positions[entries[i].id] = i
        positions[entries[j].id] = j
    }
}
