/// The group step: partial aggregates per chunk, merged in chunk order, finished in parallel.
extension Pipeline {
    /// The kept numbers of one column in one group, in input order.
    private struct ValueStore: Sendable {
        var allInt = true
        var intSum: Int128 = 0
        var values: [Double] = []

        mutating func merge(_ other: ValueStore) {
            allInt = allInt && other.allInt
            intSum += other.intSum
            values.append(contentsOf: other.values)
        }
    }

    private struct GroupState: Sendable {
        var key: [Value]
        var records = 0
        var counts: [Int]        // per aggregate: non-null values (count with a field)
        var best: [Value]        // per aggregate: min / max so far
        var stores: [ValueStore] // per value column

        init(key: [Value], spec: GroupSpec) {
            self.key = key
            counts = Array(repeating: 0, count: spec.aggregates.count)
            best = Array(repeating: .null, count: spec.aggregates.count)
            stores = Array(repeating: ValueStore(), count: spec.valueColumns.count)
        }

        mutating func merge(_ other: GroupState, _ spec: GroupSpec) {
            records += other.records
            for a in spec.aggregates.indices {
                counts[a] += other.counts[a]
                let o = other.best[a]
                if o.isNull { continue }
                if best[a].isNull { best[a] = o; continue }
                let c = Value.compare(o, best[a])
                if (spec.aggregates[a].function == .min && c < 0) || (spec.aggregates[a].function == .max && c > 0) { best[a] = o }
            }
            for s in stores.indices { stores[s].merge(other.stores[s]) }
        }
    }

    private struct GroupChunk: Sendable {
        var groups: [GroupState] = []
        var failure: (record: Int, detail: String)?
    }

    /// Partial aggregates per chunk in parallel, merged in chunk order (groups keep the order of
    /// their first record), then finished in parallel.
    func group(_ rows: [[Value]], _ spec: GroupSpec, step: Int, _ options: ExecutionOptions) throws(TransformError) -> [[Value]] {
        let ranges = options.chunks(rows.count)
        let partials = Parallel.map(ranges.count, workers: options.workers) { c -> GroupChunk in
            // Private copies of the spec: reference counts of arrays shared by every thread would
            // bounce between cores on each record.
            let by = spec.by.map { $0 }
            let single = by.count == 1 ? by[0] : -1
            let functions = spec.aggregates.map(\.function)
            let columns = spec.aggregates.map { $0.column ?? -1 }
            let valueColumns = spec.valueColumns.map { $0 }
            var index: [[Value]: Int] = [:]
            var singleIndex: [Value: Int] = [:]   // the common one-column key, without an array per record
            var chunk = GroupChunk()
            for r in ranges[c] {
                let g: Int
                if single >= 0 {
                    let keyValue = rows[r][single]
                    if let known = singleIndex[keyValue] {
                        g = known
                    } else {
                        g = chunk.groups.count
                        singleIndex[keyValue] = g
                        chunk.groups.append(GroupState(key: [keyValue], spec: spec))
                    }
                } else {
                    let key = by.map { rows[r][$0] }
                    if let known = index[key] {
                        g = known
                    } else {
                        g = chunk.groups.count
                        index[key] = g
                        chunk.groups.append(GroupState(key: key, spec: spec))
                    }
                }
                chunk.groups[g].records += 1
                for a in columns.indices {
                    let column = columns[a]
                    if column < 0 { continue }
                    let v = rows[r][column]
                    if v.isNull { continue }
                    chunk.groups[g].counts[a] += 1
                    let function = functions[a]
                    if function == .min || function == .max {
                        let best = chunk.groups[g].best[a]
                        let cmp = best.isNull ? 0 : Value.compare(v, best)
                        if best.isNull || (function == .min && cmp < 0) || (function == .max && cmp > 0) {
                            chunk.groups[g].best[a] = v
                        }
                    }
                }
                for s in valueColumns.indices {
                    switch rows[r][valueColumns[s]] {
                    case .null: continue
                    case .int(let n):
                        chunk.groups[g].stores[s].intSum += Int128(n)
                        chunk.groups[g].stores[s].values.append(Double(n))
                    case .double(let d):
                        chunk.groups[g].stores[s].allInt = false
                        chunk.groups[g].stores[s].values.append(d)
                    case let other:
                        chunk.failure = (r, "field '\(outputFieldName(valueColumns[s], step))' must be numeric for sum, mean and percentiles, got \(other.typeName)")
                        return chunk
                    }
                }
            }
            return chunk
        }
        if let failure = partials.compactMap(\.failure).min(by: { $0.record < $1.record }) {
            throw TransformError(422, "pipeline step \(step + 1) (\(steps[step].op)): record \(failure.record): \(failure.detail)")
        }
        try options.checkBudget()
        var index: [[Value]: Int] = [:]
        var groups: [GroupState] = []
        for chunk in partials {
            for g in chunk.groups {
                if let known = index[g.key] {
                    groups[known].merge(g, spec)
                } else {
                    index[g.key] = groups.count
                    groups.append(g)
                }
            }
        }
        if spec.by.isEmpty && groups.isEmpty { groups.append(GroupState(key: [], spec: spec)) }
        try options.checkBudget()
        let finished = groups
        // Finishing sorts each group's kept values: spread the groups over the workers even
        // when there are only a few (a handful of big groups is the common case).
        let size = max(1, (finished.count + options.workers * 8 - 1) / (options.workers * 8))
        let pieces = stride(from: 0, to: finished.count, by: size).map { $0..<min(finished.count, $0 + size) }
        return Parallel.map(pieces.count, workers: options.workers) { p in
            pieces[p].map { Self.finish(finished[$0], spec) }
        }.flatMap { $0 }
    }

    /// The name a column has at the input of step `step` (for error texts).
    private func outputFieldName(_ column: Int, _ step: Int) -> String {
        let fields = steps[step].fields
        return column < fields.count ? fields[column] : "#\(column)"
    }

    private static func finish(_ g: GroupState, _ spec: GroupSpec) -> [Value] {
        var row = g.key
        var selected: [[Double: Double]?] = Array(repeating: nil, count: spec.valueColumns.count)
        for (a, agg) in spec.aggregates.enumerated() {
            switch agg.function {
            case .count:
                row.append(.int(Int64(agg.column == nil ? g.records : g.counts[a])))
            case .min, .max:
                row.append(g.best[a])
            case .sum, .mean:
                guard let s = spec.valueSlot[a] else { row.append(.null); continue }
                let store = g.stores[s]
                guard !store.values.isEmpty else { row.append(.null); continue }
                if store.allInt {
                    if agg.function == .sum {
                        row.append(Int64(exactly: store.intSum).map(Value.int) ?? .number(Double(store.intSum)))
                    } else {
                        row.append(.number(Double(store.intSum) / Double(store.values.count)))
                    }
                } else {
                    var total = 0.0
                    for v in store.values { total += v }
                    row.append(.number(agg.function == .sum ? total : total / Double(store.values.count)))
                }
            case .percentile(let p):
                guard let s = spec.valueSlot[a], !g.stores[s].values.isEmpty else { row.append(.null); continue }
                if selected[s] == nil { selected[s] = percentiles(g.stores[s].values, slot: s, spec) }
                let v = selected[s]?[p] ?? 0
                row.append(g.stores[s].allInt && abs(v) < 9.007_199_254_740_992e15 ? .int(Int64(v)) : .number(v))
            }
        }
        return row
    }

    /// The nearest-rank rank (1-based) of percentile `p` among `n` values: ceil(p/100 * n), at least 1.
    static func rank(_ p: Double, _ n: Int) -> Int {
        max(1, min(n, Int((p * Double(n) / 100).rounded(.up))))
    }

    /// Every percentile slot `slot` needs, by p: the values at their ranks, found by selection
    /// (expected linear time) instead of a full sort.
    private static func percentiles(_ values: [Double], slot: Int, _ spec: GroupSpec) -> [Double: Double] {
        var ps: [Double] = []
        for (a, agg) in spec.aggregates.enumerated() {
            if case .percentile(let p) = agg.function, spec.valueSlot[a] == slot { ps.append(p) }
        }
        var work = values
        let n = work.count
        // Ascending ranks: each selection leaves smaller values to its left, so the next one
        // searches only to the right.
        let ranks = Set(ps.map { rank($0, n) - 1 }).sorted()
        var byRank: [Int: Double] = [:]
        var lo = 0
        work.withUnsafeMutableBufferPointer { a in
            for k in ranks {
                select(a, k, lo, n)
                byRank[k] = a[k]
                lo = k + 1
            }
        }
        var out: [Double: Double] = [:]
        for p in ps { out[p] = byRank[rank(p, n) - 1] ?? 0 }
        return out
    }

    /// Rearranges `a[lo..<hi]` so that `a[k]` holds the value sorting would put there, with
    /// nothing larger before it and nothing smaller after it (Hoare's selection, median-of-three).
    static func select(_ a: UnsafeMutableBufferPointer<Double>, _ k: Int, _ lo: Int, _ hi: Int) {
        var lo = lo, hi = hi - 1
        while hi > lo {
            if hi - lo < 16 {
                // Insertion sort of a small range.
                var i = lo + 1
                while i <= hi {
                    let x = a[i]
                    var j = i - 1
                    while j >= lo && a[j] > x { a[j + 1] = a[j]; j -= 1 }
                    a[j + 1] = x
                    i += 1
                }
                return
            }
            let mid = lo + (hi - lo) / 2
            if a[mid] < a[lo] { a.swapAt(mid, lo) }
            if a[hi] < a[lo] { a.swapAt(hi, lo) }
            if a[hi] < a[mid] { a.swapAt(hi, mid) }
            let pivot = a[mid]
            var i = lo, j = hi
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j {
                    a.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if k <= j { hi = j } else if k >= i { lo = i } else { return }
        }
    }

    /// Nearest-rank percentile of sorted values: the value at rank ceil(p/100 * n) (at least 1).
    static func percentileValue(_ sorted: [Double], _ p: Double, asInt: Bool) -> Value {
        let v = sorted[rank(p, sorted.count) - 1]
        if asInt, abs(v) < 9.007_199_254_740_992e15 { return .int(Int64(v)) }
        return .number(v)
    }
}
