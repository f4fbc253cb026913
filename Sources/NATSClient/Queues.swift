// Small containers: a FIFO with a moving head (no O(n) removeFirst) and a timer min-heap.

/// A FIFO queue backed by an array and a head index; compacts when half the storage is consumed.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ element: Element) { storage.append(element) }

    mutating func popFirst() -> Element? {
        guard head < storage.count else { return nil }
        let element = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.count <= 4096)
            head = 0
        } else if head >= 1024 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    mutating func removeAll() -> [Element] {
        let rest = Array(storage[head...])
        storage.removeAll()
        head = 0
        return rest
    }

    /// Keeps only elements for which `keep` is true, in order.
    mutating func filter(_ keep: (Element) -> Bool) {
        storage = storage[head...].filter(keep)
        head = 0
    }
}

/// What a timer does when it fires.
enum TimerKind: Equatable {
    case request(UInt64)
    case flush(UInt64)
}

/// A binary min-heap of deadlines (monotonic nanoseconds). Entries are removed lazily: the owner
/// checks on expiry whether the request or flush it names is still waiting.
struct TimerHeap {
    private(set) var items: [(deadline: UInt64, kind: TimerKind)] = []

    var count: Int { items.count }
    var earliest: UInt64? { items.first?.deadline }

    mutating func push(_ deadline: UInt64, _ kind: TimerKind) {
        items.append((deadline, kind))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent].deadline <= items[child].deadline { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func popExpired(now: UInt64) -> TimerKind? {
        guard let first = items.first, first.deadline <= now else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = parent * 2 + 1, right = left + 1
                var smallest = parent
                if left < items.count && items[left].deadline < items[smallest].deadline { smallest = left }
                if right < items.count && items[right].deadline < items[smallest].deadline { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first.kind
    }

    /// Rebuilds the heap with only the entries `keep` accepts (drops timers of finished waits).
    mutating func compact(_ keep: (TimerKind) -> Bool) {
        let live = items.filter { keep($0.kind) }
        items.removeAll(keepingCapacity: true)
        for item in live { push(item.deadline, item.kind) }
    }
}
