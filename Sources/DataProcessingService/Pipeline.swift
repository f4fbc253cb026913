import Formats

/// A pipeline compiled against the input's fields: every field reference resolved to a column,
/// every expression parsed once. Build it with ``compile(_:fields:joinWith:maxSteps:)`` and run it
/// with ``run(_:options:)`` (see Executor.swift).
public struct Pipeline: Sendable {
    /// The compiled steps, in order.
    let steps: [Step]
    /// The fields of the result.
    public let outputFields: [String]
    /// The fields of the input.
    public let inputFields: [String]

    /// One compiled step with its name (the `op`) for stats and errors.
    struct Step: Sendable {
        var op: String
        var kind: Kind
        /// The fields at the step's input.
        var fields: [String]
    }

    enum Kind: Sendable {
        /// Runs record by record, chunk-wise in parallel.
        case row(RowOperation)
        /// Keeps the first record of each key (input order).
        case dedup(keys: [Int])
        /// Stable multi-key sort.
        case sort(keys: [SortKey])
        /// Group-by with aggregates.
        case group(GroupSpec)
        /// The first n records.
        case limit(Int)
    }

    /// Compiles `spec` (the JSON array of operations) for a dataset with `fields`.
    /// - Parameters:
    ///   - joinWith: the second dataset `join` steps use.
    ///   - maxSteps: the most steps accepted (MAX_PIPELINE_STEPS).
    /// - Throws: ``TransformError`` 422 naming the step (1-based), its op and what is wrong
    ///   (unknown op or field, bad expression with its position, bad option); 422 when there are
    ///   more than `maxSteps` steps.
    public static func compile(_ spec: [JSON], fields: [String], joinWith: Dataset? = nil,
                               maxSteps: Int = 64) throws(TransformError) -> Pipeline {
        guard spec.count <= maxSteps else {
            throw TransformError(422, "pipeline has \(spec.count) steps; the limit is \(maxSteps) (MAX_PIPELINE_STEPS)")
        }
        var schema = fields
        var steps: [Step] = []
        for (n, node) in spec.enumerated() {
            let opName = node["op"]?.stringValue ?? "?"
            do throws(StepError) {
                guard node.members != nil else { throw StepError("each step must be a JSON object with an \"op\"") }
                guard let op = node["op"]?.stringValue else { throw StepError("missing \"op\" (a string)") }
                let before = schema
                guard let operation = Operation(rawValue: op) else {
                    throw StepError("unknown op '\(op)' (known: \(Operation.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                var compiler = StepCompiler(node: node, schema: schema, joinWith: joinWith)
                let kind = try compiler.compile(operation)
                schema = compiler.schema
                steps.append(Step(op: op, kind: kind, fields: before))
            } catch {
                throw TransformError(422, "pipeline step \(n + 1) (\(opName)): \(error.message)")
            }
        }
        return Pipeline(steps: steps, outputFields: schema, inputFields: fields)
    }

    /// A compile error inside one step (wrapped with the step number by `compile`).
    struct StepError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

// MARK: Step specifications

/// Operations that run record by record.
enum RowOperation: Sendable {
    case validate(ValidateSpec)
    case filter(Expression)
    /// The new row is these columns of the old one (project, rename).
    case project([Int])
    case derive([Derivation])
    case normalize([NormalizePlan])
    case join(JoinSpec)
}

struct Derivation: Sendable {
    var name: String
    var column: Int
    var appends: Bool
    var expression: Expression
}

enum NormalizeOp: String, Sendable, CaseIterable {
    case trim, lower, upper, timestamp
    /// Whitespace runs to one space, and trimmed.
    case collapse_spaces
}

struct NormalizePlan: Sendable {
    var column: Int
    var ops: [NormalizeOp]
}

struct SortKey: Sendable {
    var column: Int
    var descending: Bool
}

/// One validation rule set for a field.
struct FieldRule: Sendable {
    enum Kind: String, Sendable { case int, double, number, string, bool, timestamp, any }
    var field: String
    var column: Int?
    var kind: Kind
    var required: Bool
    var min: Double?
    var max: Double?
    var minLength: Int?
    var maxLength: Int?
    var oneOf: [Value]?

    static func compile(_ field: String, _ node: JSON, column: Int?) throws(Pipeline.StepError) -> FieldRule {
        // Shorthand: "age": "int".
        if let t = node.stringValue {
            guard let kind = Kind(rawValue: t) else { throw Pipeline.StepError("unknown type '\(t)' for '\(field)'") }
            return FieldRule(field: field, column: column, kind: kind, required: false)
        }
        guard node.members != nil else { throw Pipeline.StepError("the rule for '\(field)' must be an object or a type name") }
        let typeName = node["type"]?.stringValue ?? "any"
        guard let kind = Kind(rawValue: typeName) else {
            throw Pipeline.StepError("unknown type '\(typeName)' for '\(field)' (int, double, number, string, bool, timestamp, any)")
        }
        var rule = FieldRule(field: field, column: column, kind: kind, required: false)
        if let r = node["required"] {
            guard case .bool(let b) = r else { throw Pipeline.StepError("\"required\" for '\(field)' must be true or false") }
            rule.required = b
        }
        func number(_ key: String) throws(Pipeline.StepError) -> Double? {
            guard let v = node[key] else { return nil }
            guard let d = v.doubleValue else { throw Pipeline.StepError("\"\(key)\" for '\(field)' must be a number") }
            return d
        }
        rule.min = try number("min")
        rule.max = try number("max")
        func length(_ key: String) throws(Pipeline.StepError) -> Int? {
            guard let v = node[key] else { return nil }
            guard let n = v.intValue, n >= 0 else { throw Pipeline.StepError("\"\(key)\" for '\(field)' must be a non-negative integer") }
            return Int(clamping: n)
        }
        rule.minLength = try length("min_length")
        rule.maxLength = try length("max_length")
        if let list = node["one_of"] {
            guard let elements = list.elements else { throw Pipeline.StepError("\"one_of\" for '\(field)' must be an array") }
            var values: [Value] = []
            for e in elements {
                guard let v = e.scalar else { throw Pipeline.StepError("\"one_of\" for '\(field)' must hold scalars") }
                values.append(v)
            }
            rule.oneOf = values
        }
        return rule
    }

    /// A bound as written in a schema: integral values without a fraction.
    static func label(_ d: Double) -> String {
        d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : d.description
    }

    /// The problems of `value` against this rule (empty when valid).
    func check(_ value: Value, into problems: inout [String]) {
        if value.isNull {
            if required { problems.append("\(field): required") }
            return
        }
        switch kind {
        case .any: break
        case .int: if case .int = value {} else { problems.append("\(field): expected int, got \(value.typeName)"); return }
        case .double, .number:
            if value.numeric == nil { problems.append("\(field): expected \(kind.rawValue), got \(value.typeName)"); return }
        case .string: if case .string = value {} else { problems.append("\(field): expected string, got \(value.typeName)"); return }
        case .bool: if case .bool = value {} else { problems.append("\(field): expected bool, got \(value.typeName)"); return }
        case .timestamp:
            if DatasetTime.milliseconds(value) == nil { problems.append("\(field): not a timestamp"); return }
        }
        if let d = value.numeric {
            if let min, d < min { problems.append("\(field): \(value.text) is below the minimum \(Self.label(min))") }
            if let max, d > max { problems.append("\(field): \(value.text) is above the maximum \(Self.label(max))") }
        }
        if case .string(let s) = value, minLength != nil || maxLength != nil {
            let n = s.unicodeScalars.count
            if let minLength, n < minLength { problems.append("\(field): shorter than \(minLength)") }
            if let maxLength, n > maxLength { problems.append("\(field): longer than \(maxLength)") }
        }
        if let oneOf, !oneOf.contains(where: { Value.compare($0, value) == 0 && $0.typeName == value.typeName }) {
            problems.append("\(field): not one of the allowed values")
        }
    }
}

struct ValidateSpec: Sendable {
    var rules: [FieldRule]
    var failFast: Bool
}

/// Aggregate functions of `group`.
enum AggregateFunction: Sendable, Equatable {
    case count, sum, min, max, mean
    /// Exact percentile (nearest rank), 0...100.
    case percentile(Double)

    init?(_ name: String) {
        switch name {
        case "count": self = .count
        case "sum": self = .sum
        case "min": self = .min
        case "max": self = .max
        case "mean", "avg": self = .mean
        default:
            guard name.hasPrefix("p"), let p = Double(name.dropFirst()), p >= 0, p <= 100,
                  name.dropFirst().allSatisfy({ $0.isNumber || $0 == "." }) else { return nil }
            self = .percentile(p)
        }
    }

    /// True when the function needs every value (sum and mean keep them to add in input order,
    /// percentiles to sort).
    var keepsValues: Bool {
        switch self {
        case .sum, .mean, .percentile: return true
        case .count, .min, .max: return false
        }
    }
}

struct AggregateSpec: Sendable {
    var function: AggregateFunction
    var column: Int?
    var name: String
}

struct GroupSpec: Sendable {
    var by: [Int]
    var aggregates: [AggregateSpec]
    /// Distinct columns whose numeric values are kept (sum, mean, percentiles share them).
    var valueColumns: [Int]
    /// For each aggregate, its index in `valueColumns` (nil for count, min, max).
    var valueSlot: [Int?]

    init(by: [Int], aggregates: [AggregateSpec]) {
        self.by = by
        self.aggregates = aggregates
        var columns: [Int] = []
        var slots: [Int?] = []
        for a in aggregates {
            guard a.function.keepsValues, let c = a.column else { slots.append(nil); continue }
            if let i = columns.firstIndex(of: c) { slots.append(i) } else { columns.append(c); slots.append(columns.count - 1) }
        }
        valueColumns = columns
        valueSlot = slots
    }
}

/// The hash table of the right side of a join, built once and shared read-only by every chunk.
final class JoinTable: Sendable {
    /// Right rows by key, each list in the right dataset's order.
    let buckets: [[Value]: [Int]]
    let rows: [[Value]]
    /// Right columns appended to each output row.
    let carried: [Int]

    init(_ right: Dataset, keyColumns: [Int], carried: [Int]) {
        var buckets: [[Value]: [Int]] = [:]
        for (i, row) in right.rows.enumerated() {
            let key = keyColumns.map { row[$0] }
            if key.contains(where: \.isNull) { continue }   // null keys never match
            buckets[key, default: []].append(i)
        }
        self.buckets = buckets
        self.rows = right.rows
        self.carried = carried
    }
}

struct JoinSpec: Sendable {
    var leftColumns: [Int]
    var table: JoinTable
    var keepUnmatched: Bool

    static func list(_ node: JSON) throws(Pipeline.StepError) -> [String] {
        if let s = node.stringValue { return [s] }
        guard let a = node.elements else { throw Pipeline.StepError("join keys must be field names") }
        var out: [String] = []
        for e in a {
            guard let s = e.stringValue else { throw Pipeline.StepError("join keys must be field names") }
            out.append(s)
        }
        return out
    }
}
