/// The sort step: parallel chunk sorts and pairwise merges, identical to a sequential stable sort.
extension Pipeline {
    /// Stable sort: chunks sorted in parallel, then merged pairwise (in parallel per level).
    /// Ties are broken by input position, so the order is total and equals the sequential one.
    /// The keys are first copied into flat buffers (``SortKeys``), so comparisons touch no
    /// reference counts (which threads would otherwise fight over).
    func sort(_ rows: [[Value]], _ keys: [SortKey], _ options: ExecutionOptions) -> [[Value]] {
        let ranges = options.chunks(rows.count)
        if keys.count <= NumericEntry.maxKeys, keys.allSatisfy({ key in rows.allSatisfy { NumericEntry.fits($0[key.column]) } }) {
            return sortNumeric(rows, keys, ranges, options)
        }
        let storage = SortKeys(rows, keys, ranges: ranges, workers: options.workers)
        let view = storage.view
        let less: @Sendable (Int, Int) -> Bool = { a, b in view.less(a, b) }
        var runs = Parallel.map(ranges.count, workers: options.workers) { c in
            var order = Array(ranges[c])
            order.sort(by: less)
            return order
        }
        while runs.count > 1 {
            let current = runs
            var merged = Parallel.map(current.count / 2, workers: options.workers) { p in
                Self.merge(current[2 * p], current[2 * p + 1], less)
            }
            if current.count % 2 == 1, let last = current.last { merged.append(last) }
            runs = merged
        }
        withExtendedLifetime(storage) {}
        return (runs.first ?? []).map { rows[$0] }
    }

    /// The sort of up to three keys that are all numbers (or null): (keys, position) entries are
    /// sorted by value, so comparisons read memory in order instead of chasing row indices.
    private func sortNumeric(_ rows: [[Value]], _ keys: [SortKey], _ ranges: [Range<Int>],
                             _ options: ExecutionOptions) -> [[Value]] {
        var runs = Parallel.map(ranges.count, workers: options.workers) { c -> [NumericEntry] in
            let keys = keys.map { $0 }   // a private copy (see group)
            var entries = ranges[c].map { r in NumericEntry(rows[r], keys, position: r) }
            entries.sort(by: NumericEntry.less)
            return entries
        }
        while runs.count > 1 {
            let current = runs
            var merged = Parallel.map(current.count / 2, workers: options.workers) { p in
                Self.merge(current[2 * p], current[2 * p + 1], NumericEntry.less)
            }
            if current.count % 2 == 1, let last = current.last { merged.append(last) }
            runs = merged
        }
        return (runs.first ?? []).map { rows[$0.position] }
    }

    private static func merge<T>(_ a: [T], _ b: [T], _ less: (T, T) -> Bool) -> [T] {
        var out: [T] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count && j < b.count {
            if less(b[j], a[i]) { out.append(b[j]); j += 1 } else { out.append(a[i]); i += 1 }
        }
        out.append(contentsOf: a[i...])
        out.append(contentsOf: b[j...])
        return out
    }

    /// A record's numeric sort keys (descending keys negated, null as -infinity so it sorts
    /// first ascending and last descending, as ``Value/compare(_:_:)`` orders it) and its position.
    private struct NumericEntry: Sendable {
        static let maxKeys = 3
        var k0 = 0.0, k1 = 0.0, k2 = 0.0
        var position: Int

        /// Null, a double, or an int a double holds exactly.
        static func fits(_ v: Value) -> Bool {
            switch v {
            case .null, .double: return true
            case .int(let n): return n.magnitude <= 1 << 53
            default: return false
            }
        }

        init(_ row: [Value], _ keys: [SortKey], position: Int) {
            self.position = position
            for (i, key) in keys.enumerated() {
                var d: Double
                switch row[key.column] {
                case .double(let x): d = x
                case .int(let n): d = Double(n)
                default: d = -.infinity
                }
                if key.descending { d = -d }
                if d == 0 { d = 0 }   // -0.0 and 0.0 are one key
                switch i {
                case 0: k0 = d
                case 1: k1 = d
                default: k2 = d
                }
            }
        }

        @inline(__always)
        static func less(_ a: NumericEntry, _ b: NumericEntry) -> Bool {
            if a.k0 != b.k0 { return a.k0 < b.k0 }
            if a.k1 != b.k1 { return a.k1 < b.k1 }
            if a.k2 != b.k2 { return a.k2 < b.k2 }
            return a.position < b.position
        }
    }

    /// The sort keys of every record in flat row-major buffers: a key column whose values are
    /// all null or numbers a double holds exactly is stored as doubles (null as -infinity, which
    /// no stored value is), any other column as values.
    private final class SortKeys: Sendable {
        let view: SortKeyView
        private let valueSlots: Int

        init(_ rows: [[Value]], _ keys: [SortKey], ranges: [Range<Int>], workers: Int) {
            let k = keys.count, n = rows.count
            let total = n * k
            let numericFlags = Parallel.map(keys.count, workers: 1) { i -> Bool in
                rows.allSatisfy { row in
                    switch row[keys[i].column] {
                    case .null, .double: return true
                    case .int(let v): return v.magnitude <= 1 << 53
                    default: return false
                    }
                }
            }
            let numbers = UnsafeMutablePointer<Double>.allocate(capacity: max(1, total))
            numbers.initialize(repeating: 0, count: max(1, total))
            // Value slots only when some key is not numeric.
            let slots = numericFlags.allSatisfy { $0 } ? 1 : max(1, total)
            valueSlots = slots
            let values = UnsafeMutablePointer<Value>.allocate(capacity: slots)
            values.initialize(repeating: .null, count: slots)
            let numeric = UnsafeMutablePointer<Bool>.allocate(capacity: max(1, k))
            let descending = UnsafeMutablePointer<Bool>.allocate(capacity: max(1, k))
            for i in 0..<k {
                numeric[i] = numericFlags[i]
                descending[i] = keys[i].descending
            }
            view = SortKeyView(numbers: numbers, values: values, numeric: numeric, descending: descending, count: k)
            let target = view
            // Each chunk fills its own rows' slots.
            _ = Parallel.map(ranges.count, workers: workers) { c in
                for r in ranges[c] {
                    for i in 0..<k {
                        let v = rows[r][keys[i].column]
                        if target.numeric[i] {
                            switch v {
                            case .double(let d): target.mutableNumbers[r * k + i] = d
                            case .int(let x): target.mutableNumbers[r * k + i] = Double(x)
                            default: target.mutableNumbers[r * k + i] = -.infinity
                            }
                        } else {
                            target.mutableValues[r * k + i] = v
                        }
                    }
                }
                return 0
            }
        }

        deinit {
            view.mutableValues.deinitialize(count: valueSlots)
            view.mutableValues.deallocate()
            view.mutableNumbers.deallocate()
            UnsafeMutablePointer(mutating: view.numeric).deallocate()
            UnsafeMutablePointer(mutating: view.descending).deallocate()
        }
    }

    /// Pointers into ``SortKeys``. `@unchecked Sendable`: the buffers are written only while
    /// ``SortKeys`` is built (each thread its own rows' slots, joined before use), then only
    /// read by the sorting threads, and freed by the owner after every sort and merge returned.
    private struct SortKeyView: @unchecked Sendable {
        let mutableNumbers: UnsafeMutablePointer<Double>
        let mutableValues: UnsafeMutablePointer<Value>
        let numeric: UnsafePointer<Bool>
        let descending: UnsafePointer<Bool>
        let count: Int

        init(numbers: UnsafeMutablePointer<Double>, values: UnsafeMutablePointer<Value>,
             numeric: UnsafeMutablePointer<Bool>, descending: UnsafeMutablePointer<Bool>, count: Int) {
            mutableNumbers = numbers
            mutableValues = values
            self.numeric = UnsafePointer(numeric)
            self.descending = UnsafePointer(descending)
            self.count = count
        }

        /// Record `a` before record `b`: by each key in turn, then by position.
        @inline(__always)
        func less(_ a: Int, _ b: Int) -> Bool {
            let ba = a * count, bb = b * count
            for i in 0..<count {
                let c: Int
                if numeric[i] {
                    let x = mutableNumbers[ba + i], y = mutableNumbers[bb + i]
                    c = x < y ? -1 : (x == y ? 0 : 1)
                } else {
                    c = Value.compare(mutableValues[ba + i], mutableValues[bb + i])
                }
                if c != 0 { return descending[i] ? c > 0 : c < 0 }
            }
            return a < b
        }
    }
}
