import Dispatch
import Synchronization

/// How a pipeline runs: how many threads, how records are cut into chunks, and the limits it
/// checks while running.
public struct ExecutionOptions: Sendable {
    /// Threads used for chunk-wise work (1 = everything on the calling thread).
    public var workers: Int
    /// Records per chunk (a dataset no larger than this is one chunk).
    public var chunkSize: Int
    /// When the time budget ends (nil: no budget).
    public var deadline: ContinuousClock.Instant?
    /// The budget in milliseconds, for the error text.
    public var timeBudgetMilliseconds: Int
    /// The most records any step may produce (a join can multiply them).
    public var maxRecords: Int
    /// The most rejected records listed per validate step (all are counted).
    public var maxReportedRejections: Int

    /// Options; the defaults run sequentially with no budget.
    public init(workers: Int = 1, chunkSize: Int = .max, deadline: ContinuousClock.Instant? = nil,
                timeBudgetMilliseconds: Int = 0, maxRecords: Int = .max, maxReportedRejections: Int = 100) {
        self.workers = max(1, workers)
        self.chunkSize = max(1, chunkSize)
        self.deadline = deadline
        self.timeBudgetMilliseconds = timeBudgetMilliseconds
        self.maxRecords = maxRecords
        self.maxReportedRejections = maxReportedRejections
    }

    /// The chunk size the service uses for `records` on `workers` threads: one chunk when
    /// sequential, else about 8 chunks per worker (load balance), within 1024...65536.
    public static func chunkSize(records: Int, workers: Int) -> Int {
        guard workers > 1 else { return max(1, records) }
        return min(65_536, max(1_024, (records + workers * 8 - 1) / (workers * 8)))
    }

    var timeout: TransformError {
        TransformError(408, "the time budget of \(timeBudgetMilliseconds) ms (TIME_BUDGET_MS) ran out")
    }

    /// True once the deadline has passed.
    @inline(__always)
    var expired: Bool {
        guard let deadline else { return false }
        return ContinuousClock.now >= deadline
    }

    func checkBudget() throws(TransformError) {
        if expired { throw timeout }
    }

    /// `0..<count` cut into chunks.
    func chunks(_ count: Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        while start < count {
            let end = count - start > chunkSize ? start + chunkSize : count
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }
}

/// What one step did.
public struct StepStats: Sendable, Equatable {
    /// The step's op.
    public var op: String
    /// Records in.
    public var recordsIn: Int
    /// Records out.
    public var recordsOut: Int
    /// validate: records rejected.
    public var rejected: Int = 0
    /// validate: the first rejected records (index in the step's input) and why.
    public var rejections: [Rejection] = []
    /// normalize: non-null values `timestamp` could not read (they became null).
    public var unparseable: Int = 0
}

/// A record a validate step rejected.
public struct Rejection: Sendable, Equatable {
    /// 0-based index of the record in the step's input.
    public var record: Int
    /// Every rule it broke.
    public var errors: [String]
}

/// A pipeline's output and per-step stats.
public struct PipelineResult: Sendable, Equatable {
    public var dataset: Dataset
    public var steps: [StepStats]
    /// Per step: its stage (consecutive record-wise steps run fused, as one stage) and the
    /// stage's wall time in milliseconds. Not part of equality (timings differ run to run).
    public var timings: [(stage: Int, milliseconds: Double)] = []

    public static func == (a: PipelineResult, b: PipelineResult) -> Bool {
        a.dataset == b.dataset && a.steps == b.steps
    }
}

/// Runs closures over `0..<count` on up to `workers` threads (GCD's concurrentPerform; the
/// calling thread takes part) and returns the results in index order.
enum Parallel {
    static func map<T: Sendable>(_ count: Int, workers: Int, _ body: @Sendable (Int) -> T) -> [T] {
        if count == 0 { return [] }
        if workers <= 1 || count == 1 { return (0..<count).map(body) }
        let results = Mutex<[T?]>(Array(repeating: nil, count: count))
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: min(workers, count)) { _ in
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                if i >= count { return }
                let value = body(i)
                results.withLock { $0[i] = value }
            }
        }
        // Every index in 0..<count was taken exactly once above, so no element is nil.
        return results.withLock { $0.compactMap { $0 } }
    }
}

/// Hands a value to exactly one taker, so a chunk's rows are uniquely owned by the thread that
/// processes them (records are then changed in place instead of copied).
final class Slot<T: Sendable>: Sendable {
    private let value: Mutex<T?>
    init(_ value: T) { self.value = Mutex(value) }
    func take() -> T? { value.withLock { v in defer { v = nil }; return v } }
}

extension Pipeline {
    /// Runs the pipeline on `input`. Chunk-wise steps run on `options.workers` threads; the
    /// result, the stats and any error are the same for every worker count and chunk size.
    /// - Throws: ``TransformError`` 422 for a record error (expression type error, validation
    ///   in fail mode, non-numeric value in an aggregate) naming the step and the record; 413
    ///   when a step would produce more than `maxRecords` records; 408 when the budget runs out.
    public func run(_ input: consuming Dataset, options: ExecutionOptions) throws(TransformError) -> PipelineResult {
        var rows = input.rows
        input.rows = []   // when the caller gave its dataset away, the records are now uniquely ours
        var stats: [StepStats] = []
        var timings: [(stage: Int, milliseconds: Double)] = []
        var stage = 0
        var s = 0
        while s < steps.count {
            try options.checkBudget()
            if case .row = steps[s].kind {
                var ops: [RowOperation] = []
                var e = s
                while e < steps.count, case .row(let op) = steps[e].kind {
                    ops.append(op)
                    e += 1
                }
                let started = ContinuousClock.now
                stats += try runStage(&rows, ops, firstStep: s, options)
                let ms = Self.milliseconds(ContinuousClock.now - started)
                timings += Array(repeating: (stage, ms), count: ops.count)
                stage += 1
                s = e
                continue
            }
            let before = rows.count
            let started = ContinuousClock.now
            switch steps[s].kind {
            case .dedup(let keys): rows = dedup(rows, keys, options)
            case .sort(let keys): rows = sort(rows, keys, options)
            case .group(let spec):
                let grouped = try group(rows, spec, step: s, options)
                Self.release(&rows, options)
                rows = grouped
            case .limit(let n): if rows.count > n { rows.removeLast(rows.count - n) }
            case .row: break
            }
            stats.append(StepStats(op: steps[s].op, recordsIn: before, recordsOut: rows.count))
            timings.append((stage, Self.milliseconds(ContinuousClock.now - started)))
            stage += 1
            s += 1
        }
        try options.checkBudget()
        return PipelineResult(dataset: Dataset(fields: outputFields, rows: rows), steps: stats, timings: timings)
    }

    /// Frees records on the workers instead of one by one on this thread (a group-by drops
    /// every input record at once).
    private static func release(_ rows: inout [[Value]], _ options: ExecutionOptions) {
        guard options.workers > 1, rows.count > 4096 else { rows = []; return }
        let slots = options.chunks(rows.count).map { Slot(Array(rows[$0])) }
        rows = []
        _ = Parallel.map(slots.count, workers: options.workers) { c in slots[c].take()?.count ?? 0 }
    }

    static func milliseconds(_ d: Duration) -> Double {
        let v = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return (v * 1000).rounded() / 1000
    }

    // MARK: Row-local stages

    private struct OpChunkStats: Sendable {
        var recordsIn = 0
        var rejected = 0
        var rejections: [Rejection] = []
        var unparseable = 0
    }

    private struct ChunkFailure: Sendable {
        var op: Int
        var record: Int
        var status: Int
        var detail: String
        var names: Bool   // whether the message names the record
    }

    private struct ChunkOutcome: Sendable {
        var rows: [[Value]] = []
        var ops: [OpChunkStats]
        var failure: ChunkFailure?
        var timedOut = false
    }

    /// Runs consecutive row-local ops over chunks of `rows` in parallel and merges the results
    /// in chunk order, so the outcome is the sequential one.
    private func runStage(_ rows: inout [[Value]], _ ops: [RowOperation], firstStep: Int,
                          _ options: ExecutionOptions) throws(TransformError) -> [StepStats] {
        let ranges = options.chunks(rows.count)
        let slots = ranges.map { Slot(Array(rows[$0])) }
        rows = []   // the chunks now own the records
        let outcomes = Parallel.map(slots.count, workers: options.workers) { c in
            var local = slots[c].take() ?? []
            return Self.process(&local, ops, options)
        }
        if outcomes.contains(where: \.timedOut) { throw options.timeout }
        // The sequential run applies each op to every record before the next op, so its first
        // error is the one of the earliest op, then of the earliest record.
        if let op = outcomes.compactMap(\.failure?.op).min(),
           let c = outcomes.firstIndex(where: { $0.failure?.op == op }), let failure = outcomes[c].failure {
            let offset = outcomes[..<c].reduce(0) { $0 + $1.ops[op].recordsIn }
            let step = firstStep + op
            let where_ = failure.names ? "record \(offset + failure.record): " : ""
            throw TransformError(failure.status, "pipeline step \(step + 1) (\(steps[step].op)): \(where_)\(failure.detail)")
        }
        var stats: [StepStats] = []
        for k in ops.indices {
            var s = StepStats(op: steps[firstStep + k].op, recordsIn: 0, recordsOut: 0)
            var offset = 0
            for o in outcomes {
                let c = o.ops[k]
                s.recordsIn += c.recordsIn
                s.recordsOut += k + 1 < ops.count ? o.ops[k + 1].recordsIn : o.rows.count
                s.rejected += c.rejected
                s.unparseable += c.unparseable
                for r in c.rejections where s.rejections.count < options.maxReportedRejections {
                    s.rejections.append(Rejection(record: offset + r.record, errors: r.errors))
                }
                offset += c.recordsIn
            }
            stats.append(s)
        }
        let total = outcomes.reduce(0) { $0 + $1.rows.count }
        if total > options.maxRecords, let k = ops.indices.last {
            throw TransformError(413, "pipeline step \(firstStep + k + 1) (\(steps[firstStep + k].op)): more than \(options.maxRecords) records (limit MAX_RECORDS)")
        }
        rows.reserveCapacity(total)
        for o in outcomes { rows.append(contentsOf: o.rows) }
        return stats
    }

    /// Applies `ops` to one chunk, op by op.
    private static func process(_ rows: inout [[Value]], _ ops: [RowOperation], _ options: ExecutionOptions) -> ChunkOutcome {
        var outcome = ChunkOutcome(ops: Array(repeating: OpChunkStats(), count: ops.count))
        func fail(_ k: Int, _ r: Int, _ status: Int, _ detail: String, names: Bool = true) -> ChunkOutcome {
            var o = outcome
            o.failure = ChunkFailure(op: k, record: r, status: status, detail: detail, names: names)
            return o
        }
        if options.expired { outcome.timedOut = true; return outcome }
        for (k, op) in ops.enumerated() {
            outcome.ops[k].recordsIn = rows.count
            switch op {
            case .validate(let spec):
                var kept = 0
                var problems: [String] = []
                let rules = spec.rules.map { $0 }   // this thread's own array (see group)
                for r in rows.indices {
                    if r & 1023 == 1023, options.expired { outcome.timedOut = true; return outcome }
                    problems.removeAll(keepingCapacity: true)
                    for i in rules.indices { rules[i].check(rules[i].column.map { rows[r][$0] } ?? .null, into: &problems) }
                    if problems.isEmpty {
                        if kept != r { rows.swapAt(kept, r) }
                        kept += 1
                    } else if spec.failFast {
                        return fail(k, r, 422, "validation failed: " + problems.joined(separator: "; "))
                    } else {
                        outcome.ops[k].rejected += 1
                        if outcome.ops[k].rejections.count < options.maxReportedRejections {
                            outcome.ops[k].rejections.append(Rejection(record: r, errors: problems))
                        }
                    }
                }
                rows.removeLast(rows.count - kept)

            case .filter(let shared):
                let expression = shared.privateCopy()
                var kept = 0
                for r in rows.indices {
                    if r & 1023 == 1023, options.expired { outcome.timedOut = true; return outcome }
                    let keep: Bool
                    do throws(EvaluationError) {
                        switch try expression.evaluate(rows[r]) {
                        case .bool(let b): keep = b
                        case .null: keep = false
                        case let other:
                            return fail(k, r, 422, "where: the filter gave \(other.typeName), not a boolean")
                        }
                    } catch {
                        return fail(k, r, 422, "where: \(error.description)")
                    }
                    if keep {
                        if kept != r { rows.swapAt(kept, r) }
                        kept += 1
                    }
                }
                rows.removeLast(rows.count - kept)

            case .project(let columns):
                let identity = columns.count == (rows.first?.count ?? columns.count) && columns.enumerated().allSatisfy { $0 == $1 }
                if identity { break }
                for r in rows.indices {
                    if r & 1023 == 1023, options.expired { outcome.timedOut = true; return outcome }
                    let old = rows[r]
                    rows[r] = columns.map { old[$0] }
                }

            case .derive(let derivations):
                let expressions = derivations.map { $0.expression.privateCopy() }
                let columns = derivations.map(\.column)
                let appended = derivations.filter(\.appends).count
                for r in rows.indices {
                    if r & 1023 == 1023, options.expired { outcome.timedOut = true; return outcome }
                    if appended > 0 { rows[r].reserveCapacity(rows[r].count + appended) }
                    for i in expressions.indices {
                        let v: Value
                        do throws(EvaluationError) {
                            v = try expressions[i].evaluate(rows[r])
                        } catch {
                            return fail(k, r, 422, "'\(derivations[i].name)': \(error.description)")
                        }
                        if columns[i] == rows[r].count { rows[r].append(v) } else { rows[r][columns[i]] = v }
                    }
                }

            case .normalize(let shared):
                let columns = shared.map(\.column)
                let plans = shared.map { $0.ops.map { $0 } }   // this thread's own arrays (see group)
                for r in rows.indices {
                    if r & 1023 == 1023, options.expired { outcome.timedOut = true; return outcome }
                    for p in plans.indices {
                        let (v, failed) = normalized(rows[r][columns[p]], plans[p])
                        rows[r][columns[p]] = v
                        if failed { outcome.ops[k].unparseable += 1 }
                    }
                }

            case .join(let spec):
                var out: [[Value]] = []
                out.reserveCapacity(rows.count)
                let table = spec.table
                let carried = table.carried.map { $0 }, leftColumns = spec.leftColumns.map { $0 }   // see group
                let width = carried.count
                var key: [Value] = []
                for r in rows.indices {
                    if r & 1023 == 1023, options.expired { outcome.timedOut = true; return outcome }
                    key.removeAll(keepingCapacity: true)
                    var hasNull = false
                    for c in leftColumns {
                        let v = rows[r][c]
                        if v.isNull { hasNull = true }
                        key.append(v)
                    }
                    let matches = hasNull ? nil : table.buckets[key]
                    if let matches {
                        for m in matches {
                            var row = rows[r]
                            row.reserveCapacity(row.count + width)
                            for c in carried { row.append(table.rows[m][c]) }
                            out.append(row)
                        }
                    } else if spec.keepUnmatched {
                        var row = rows[r]
                        row.append(contentsOf: repeatElement(Value.null, count: width))
                        out.append(row)
                    }
                    if out.count > options.maxRecords {
                        return fail(k, r, 413, "more than \(options.maxRecords) records (limit MAX_RECORDS)", names: false)
                    }
                }
                rows = out
            }
        }
        outcome.rows = rows
        return outcome
    }

    /// One value through a list of normalizations; `failed` when `timestamp` could not read a non-null value.
    static func normalized(_ value: Value, _ ops: [NormalizeOp]) -> (Value, failed: Bool) {
        var v = value
        for op in ops {
            switch op {
            case .timestamp:
                if v.isNull { continue }
                guard let ms = Timestamp.milliseconds(v), let text = Timestamp.format(ms) else { return (.null, true) }
                v = .string(text)
            case .trim, .lower, .upper, .collapse_spaces:
                guard case .string(let s) = v else { continue }
                switch op {
                case .trim: v = .string(trimmed(s))
                case .lower: v = .string(s.lowercased())
                case .upper: v = .string(s.uppercased())
                default:
                    v = .string(s.split(whereSeparator: { $0.isWhitespace }).joined(separator: " "))
                }
            }
        }
        return (v, false)
    }

    // MARK: Barrier steps

    /// Keeps the first record of each key: each chunk drops its own repeats in parallel, then
    /// one pass over the chunks in order keeps the first occurrence overall.
    private func dedup(_ rows: [[Value]], _ keys: [Int], _ options: ExecutionOptions) -> [[Value]] {
        let ranges = options.chunks(rows.count)
        let firsts = Parallel.map(ranges.count, workers: options.workers) { c in
            var seen = Set<[Value]>()
            var kept: [(Int, [Value])] = []
            for r in ranges[c] {
                let key = keys.map { rows[r][$0] }
                if seen.insert(key).inserted { kept.append((r, key)) }
            }
            return kept
        }
        var seen = Set<[Value]>()
        var out: [[Value]] = []
        for chunk in firsts {
            for (r, key) in chunk where seen.insert(key).inserted { out.append(rows[r]) }
        }
        return out
    }

    /// Stable sort: chunks sorted in parallel, then merged pairwise (in parallel per level).
    /// Ties are broken by input position, so the order is total and equals the sequential one.
    /// The keys are first copied into flat buffers (``SortKeys``), so comparisons touch no
    /// reference counts (which threads would otherwise fight over).
    private func sort(_ rows: [[Value]], _ keys: [SortKey], _ options: ExecutionOptions) -> [[Value]] {
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

    // MARK: Group-by

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
    private func group(_ rows: [[Value]], _ spec: GroupSpec, step: Int, _ options: ExecutionOptions) throws(TransformError) -> [[Value]] {
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
