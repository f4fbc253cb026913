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
            case .dedup(let keys):
                let kept = dedup(rows, keys, options)
                Self.discard(consume rows)
                rows = kept
            case .sort(let keys): rows = sort(rows, keys, options)
            case .group(let spec):
                let grouped = try group(rows, spec, step: s, options)
                Self.discard(consume rows)
                rows = grouped
            case .limit(let n):
                if rows.count > n {
                    let tail = Array(rows[n...])
                    rows.removeLast(rows.count - n)
                    Self.discard(tail)
                }
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

    /// Frees records a step dropped (a group-by's or dedup's input, a limit's tail) on a
    /// background queue, off the request's path: freeing a million records costs 100 to 350 ms
    /// (more when a sort scattered them in memory), and done by several threads at once it is
    /// slower still, since they contend for the allocator's arenas.
    static func discard(_ rows: consuming [[Value]]) {
        guard rows.count > 4096 else { return }
        let garbage = Slot(rows)
        DispatchQueue.global(qos: .utility).async { _ = garbage.take() }
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

    /// How one row operation ended on a chunk.
    private enum RowOpEnd {
        case completed
        /// The time budget ran out.
        case timedOut
        /// Record `record` (chunk index) failed: the request fails with `status`.
        case failed(record: Int, status: Int, detail: String, names: Bool = true)
    }

    /// Applies `ops` to one chunk, op by op.
    private static func process(_ rows: inout [[Value]], _ ops: [RowOperation], _ options: ExecutionOptions) -> ChunkOutcome {
        var outcome = ChunkOutcome(ops: Array(repeating: OpChunkStats(), count: ops.count))
        if options.expired { outcome.timedOut = true; return outcome }
        for (k, op) in ops.enumerated() {
            outcome.ops[k].recordsIn = rows.count
            let end: RowOpEnd
            switch op {
            case .validate(let spec): end = validate(&rows, spec, &outcome.ops[k], options)
            case .filter(let expression): end = filter(&rows, expression, options)
            case .project(let columns): end = project(&rows, columns, options)
            case .derive(let derivations): end = derive(&rows, derivations, options)
            case .normalize(let plans): end = normalize(&rows, plans, &outcome.ops[k], options)
            case .join(let spec): end = join(&rows, spec, options)
            }
            switch end {
            case .completed:
                continue
            case .timedOut:
                outcome.timedOut = true
                return outcome
            case .failed(let record, let status, let detail, let names):
                outcome.failure = ChunkFailure(op: k, record: record, status: status, detail: detail, names: names)
                return outcome
            }
        }
        outcome.rows = rows
        return outcome
    }

    // Each row operation checks the time budget every 1024 records.

    private static func validate(_ rows: inout [[Value]], _ spec: ValidateSpec, _ stats: inout OpChunkStats,
                                 _ options: ExecutionOptions) -> RowOpEnd {
        var kept = 0
        var problems: [String] = []
        let rules = spec.rules.map { $0 }   // this thread's own array (see group)
        for r in rows.indices {
            if r & 1023 == 1023, options.expired { return .timedOut }
            problems.removeAll(keepingCapacity: true)
            for i in rules.indices { rules[i].check(rules[i].column.map { rows[r][$0] } ?? .null, into: &problems) }
            if problems.isEmpty {
                if kept != r { rows.swapAt(kept, r) }
                kept += 1
            } else if spec.failFast {
                return .failed(record: r, status: 422, detail: "validation failed: " + problems.joined(separator: "; "))
            } else {
                stats.rejected += 1
                if stats.rejections.count < options.maxReportedRejections {
                    stats.rejections.append(Rejection(record: r, errors: problems))
                }
            }
        }
        rows.removeLast(rows.count - kept)
        return .completed
    }

    private static func filter(_ rows: inout [[Value]], _ shared: Expression, _ options: ExecutionOptions) -> RowOpEnd {
        let expression = shared.privateCopy()
        var kept = 0
        for r in rows.indices {
            if r & 1023 == 1023, options.expired { return .timedOut }
            let keep: Bool
            do throws(EvaluationError) {
                switch try expression.evaluate(rows[r]) {
                case .bool(let b): keep = b
                case .null: keep = false
                case let other:
                    return .failed(record: r, status: 422, detail: "where: the filter gave \(other.typeName), not a boolean")
                }
            } catch {
                return .failed(record: r, status: 422, detail: "where: \(error.description)")
            }
            if keep {
                if kept != r { rows.swapAt(kept, r) }
                kept += 1
            }
        }
        rows.removeLast(rows.count - kept)
        return .completed
    }

    private static func project(_ rows: inout [[Value]], _ columns: [Int], _ options: ExecutionOptions) -> RowOpEnd {
        let identity = columns.count == (rows.first?.count ?? columns.count) && columns.enumerated().allSatisfy { $0 == $1 }
        if identity { return .completed }
        for r in rows.indices {
            if r & 1023 == 1023, options.expired { return .timedOut }
            let old = rows[r]
            rows[r] = columns.map { old[$0] }
        }
        return .completed
    }

    private static func derive(_ rows: inout [[Value]], _ derivations: [Derivation], _ options: ExecutionOptions) -> RowOpEnd {
        let expressions = derivations.map { $0.expression.privateCopy() }
        let columns = derivations.map(\.column)
        let appended = derivations.filter(\.appends).count
        for r in rows.indices {
            if r & 1023 == 1023, options.expired { return .timedOut }
            if appended > 0 { rows[r].reserveCapacity(rows[r].count + appended) }
            for i in expressions.indices {
                let v: Value
                do throws(EvaluationError) {
                    v = try expressions[i].evaluate(rows[r])
                } catch {
                    return .failed(record: r, status: 422, detail: "'\(derivations[i].name)': \(error.description)")
                }
                if columns[i] == rows[r].count { rows[r].append(v) } else { rows[r][columns[i]] = v }
            }
        }
        return .completed
    }

    private static func normalize(_ rows: inout [[Value]], _ shared: [NormalizePlan], _ stats: inout OpChunkStats,
                                  _ options: ExecutionOptions) -> RowOpEnd {
        let columns = shared.map(\.column)
        let plans = shared.map { $0.ops.map { $0 } }   // this thread's own arrays (see group)
        for r in rows.indices {
            if r & 1023 == 1023, options.expired { return .timedOut }
            for p in plans.indices {
                let (v, failed) = normalized(rows[r][columns[p]], plans[p])
                rows[r][columns[p]] = v
                if failed { stats.unparseable += 1 }
            }
        }
        return .completed
    }

    private static func join(_ rows: inout [[Value]], _ spec: JoinSpec, _ options: ExecutionOptions) -> RowOpEnd {
        var out: [[Value]] = []
        out.reserveCapacity(rows.count)
        let table = spec.table
        let carried = table.carried.map { $0 }, leftColumns = spec.leftColumns.map { $0 }   // see group
        let width = carried.count
        var key: [Value] = []
        for r in rows.indices {
            if r & 1023 == 1023, options.expired { return .timedOut }
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
                return .failed(record: r, status: 413, detail: "more than \(options.maxRecords) records (limit MAX_RECORDS)", names: false)
            }
        }
        rows = out
        return .completed
    }

    /// One value through a list of normalizations; `failed` when `timestamp` could not read a non-null value.
    static func normalized(_ value: Value, _ ops: [NormalizeOp]) -> (Value, failed: Bool) {
        var v = value
        for op in ops {
            switch op {
            case .timestamp:
                if v.isNull { continue }
                guard let ms = DatasetTime.milliseconds(v), let text = DatasetTime.format(ms) else { return (.null, true) }
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
}
