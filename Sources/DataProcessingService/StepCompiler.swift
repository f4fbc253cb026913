import Formats

/// The operations a pipeline step may name (its `"op"`), in the order the "unknown op" error lists
/// them. ``StepCompiler/compile(_:)`` switches over every case, so an operation cannot be listed
/// without a compiler nor compiled without being listed.
enum Operation: String, CaseIterable, Sendable {
    case validate, filter, project, rename, derive, normalize, dedup, sort, group, join, limit
}

/// Compiles one step against the fields at its input; ``schema`` ends as the fields at its output.
/// One function per operation.
struct StepCompiler {
    /// The step's JSON object.
    let node: JSON
    /// The fields at the step's input; the compile functions change it to the step's output fields.
    var schema: [String]
    /// The request's `join_with` dataset, if any.
    let joinWith: Dataset?

    typealias StepError = Pipeline.StepError

    /// Compiles the step as `operation`.
    /// - Throws: ``Pipeline/StepError`` naming the missing or bad option, the unknown field, or the
    ///   bad expression with its position.
    mutating func compile(_ operation: Operation) throws(StepError) -> Pipeline.Kind {
        switch operation {
        case .validate: try validate()
        case .filter: try filter()
        case .project: try project()
        case .rename: try rename()
        case .derive: try derive()
        case .normalize: try normalize()
        case .dedup: try dedup()
        case .sort: try sort()
        case .group: try group()
        case .join: try join()
        case .limit: try limit()
        }
    }

    // MARK: Shared option readers

    /// The column of `name` in the input fields.
    private func index(_ name: String) throws(StepError) -> Int {
        guard let i = schema.firstIndex(of: name) else {
            let known = schema.prefix(20).joined(separator: ", ") + (schema.count > 20 ? ", ..." : "")
            throw StepError("unknown field '\(name)' (fields: \(known))")
        }
        return i
    }

    /// The field names under `key`: one string or an array of strings.
    private func names(_ key: String, allowEmpty: Bool = false) throws(StepError) -> [String] {
        guard let v = node[key] else {
            if allowEmpty { return [] }
            throw StepError("missing \"\(key)\" (an array of field names)")
        }
        if let s = v.stringValue { return [s] }
        guard let a = v.elements else { throw StepError("\"\(key)\" must be an array of field names") }
        var out: [String] = []
        for e in a {
            guard let s = e.stringValue else { throw StepError("\"\(key)\" must be an array of field names") }
            out.append(s)
        }
        if out.isEmpty && !allowEmpty { throw StepError("\"\(key)\" must not be empty") }
        return out
    }

    /// `text` parsed against the input fields; errors are prefixed with `label`.
    private func expression(_ text: String, _ label: String) throws(StepError) -> Expression {
        do throws(ExpressionError) {
            return try Expression(text, fields: schema)
        } catch {
            throw StepError("\(label): \(error.description)")
        }
    }

    // MARK: One function per operation

    private func validate() throws(StepError) -> Pipeline.Kind {
        guard let rules = node["schema"]?.members else { throw StepError("missing \"schema\" (an object of field rules)") }
        let mode = node["mode"]?.stringValue ?? "reject"
        guard mode == "reject" || mode == "fail" else { throw StepError("\"mode\" must be \"reject\" or \"fail\"") }
        var compiled: [FieldRule] = []
        for member in rules {
            compiled.append(try FieldRule.compile(member.key, member.value, column: schema.firstIndex(of: member.key)))
        }
        return .row(.validate(ValidateSpec(rules: compiled, failFast: mode == "fail")))
    }

    private func filter() throws(StepError) -> Pipeline.Kind {
        guard let text = (node["where"] ?? node["expr"])?.stringValue else { throw StepError("missing \"where\" (an expression string)") }
        return .row(.filter(try expression(text, "where")))
    }

    private mutating func project() throws(StepError) -> Pipeline.Kind {
        let selected = try names("fields")
        var indices: [Int] = []
        var seen = Set<String>()
        for name in selected {
            guard seen.insert(name).inserted else { throw StepError("field '\(name)' listed twice") }
            indices.append(try index(name))
        }
        schema = selected
        return .row(.project(indices))
    }

    private mutating func rename() throws(StepError) -> Pipeline.Kind {
        guard let mapping = node["fields"]?.members, !mapping.isEmpty else {
            throw StepError("missing \"fields\" (an object {\"old\": \"new\"})")
        }
        var renamed = schema
        for m in mapping {
            guard let to = m.value.stringValue, !to.isEmpty else { throw StepError("new name for '\(m.key)' must be a non-empty string") }
            renamed[try index(m.key)] = to
        }
        if Set(renamed).count != renamed.count { throw StepError("renaming would give two fields the same name") }
        schema = renamed
        return .row(.project(Array(schema.indices)))
    }

    private mutating func derive() throws(StepError) -> Pipeline.Kind {
        var pairs: [(String, String)] = []
        if let target = node["field"]?.stringValue {
            guard let text = (node["expr"] ?? node["expression"])?.stringValue else { throw StepError("missing \"expr\" (an expression string)") }
            pairs.append((target, text))
        } else if let members = node["fields"]?.members, !members.isEmpty {
            for m in members {
                guard let text = m.value.stringValue else { throw StepError("expression for '\(m.key)' must be a string") }
                pairs.append((m.key, text))
            }
        } else {
            throw StepError("needs \"field\" and \"expr\", or \"fields\": {\"name\": \"expression\", ...}")
        }
        var derivations: [Derivation] = []
        for (target, text) in pairs {
            guard !target.isEmpty else { throw StepError("derived field names must not be empty") }
            let expr = try expression(text, "'\(target)'")
            if let existing = schema.firstIndex(of: target) {
                derivations.append(Derivation(name: target, column: existing, appends: false, expression: expr))
            } else {
                derivations.append(Derivation(name: target, column: schema.count, appends: true, expression: expr))
                schema.append(target)
            }
        }
        return .row(.derive(derivations))
    }

    private func normalize() throws(StepError) -> Pipeline.Kind {
        guard let members = node["fields"]?.members, !members.isEmpty else {
            throw StepError("missing \"fields\" (an object {\"field\": [\"trim\", \"lower\", ...]})")
        }
        var plan: [NormalizePlan] = []
        for m in members {
            var ops: [NormalizeOp] = []
            let list = m.value.stringValue.map { [JSON.string($0)] } ?? m.value.elements ?? []
            guard !list.isEmpty else { throw StepError("normalizations for '\(m.key)' must be a name or a list of names") }
            for e in list {
                guard let name = e.stringValue, let op = NormalizeOp(rawValue: name) else {
                    throw StepError("unknown normalization for '\(m.key)' (known: \(NormalizeOp.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                ops.append(op)
            }
            plan.append(NormalizePlan(column: try index(m.key), ops: ops))
        }
        return .row(.normalize(plan))
    }

    private func dedup() throws(StepError) -> Pipeline.Kind {
        let keys = try names("keys", allowEmpty: true)
        var indices: [Int] = []
        for k in keys { indices.append(try index(k)) }
        return .dedup(keys: keys.isEmpty ? Array(schema.indices) : indices)
    }

    private func sort() throws(StepError) -> Pipeline.Kind {
        guard let by = node["by"] else { throw StepError("missing \"by\" (field names or {\"field\", \"order\"} objects)") }
        let list = by.elements ?? [by]
        guard !list.isEmpty else { throw StepError("\"by\" must not be empty") }
        var keys: [SortKey] = []
        for e in list {
            if let name = e.stringValue {
                keys.append(SortKey(column: try index(name), descending: false))
            } else if let name = e["field"]?.stringValue {
                let order = e["order"]?.stringValue ?? "asc"
                guard order == "asc" || order == "desc" else { throw StepError("\"order\" must be \"asc\" or \"desc\"") }
                keys.append(SortKey(column: try index(name), descending: order == "desc"))
            } else {
                throw StepError("each sort key must be a field name or {\"field\": ..., \"order\": \"asc\"|\"desc\"}")
            }
        }
        return .sort(keys: keys)
    }

    private mutating func group() throws(StepError) -> Pipeline.Kind {
        let by = try names("by", allowEmpty: true)
        var byColumns: [Int] = []
        for b in by { byColumns.append(try index(b)) }
        guard let list = node["aggregates"]?.elements, !list.isEmpty else {
            throw StepError("missing \"aggregates\" (a list of {\"fn\", \"field\", \"as\"})")
        }
        var aggregates: [AggregateSpec] = []
        var output = by
        for a in list {
            guard let fnName = a["fn"]?.stringValue, let fn = AggregateFunction(fnName) else {
                throw StepError("each aggregate needs \"fn\": count, sum, min, max, mean or a percentile p0...p100 (p50, p90, p99.9)")
            }
            let fieldName = a["field"]?.stringValue
            if fn != .count && fieldName == nil { throw StepError("aggregate \(fnName) needs a \"field\"") }
            var column: Int? = nil
            if let fieldName { column = try index(fieldName) }
            let name = a["as"]?.stringValue ?? (fieldName.map { "\(fnName)_\($0)" } ?? fnName)
            guard !output.contains(name) else { throw StepError("two output fields named '\(name)' (use \"as\")") }
            output.append(name)
            aggregates.append(AggregateSpec(function: fn, column: column, name: name))
        }
        schema = output
        return .group(GroupSpec(by: byColumns, aggregates: aggregates))
    }

    private mutating func join() throws(StepError) -> Pipeline.Kind {
        guard let right = joinWith else { throw StepError("a join needs the request's \"join_with\" dataset") }
        let type = node["type"]?.stringValue ?? "inner"
        guard type == "inner" || type == "left" else { throw StepError("\"type\" must be \"inner\" or \"left\"") }
        let leftKeys: [String], rightKeys: [String]
        if let on = node["on"], on.members != nil {
            guard let l = on["left"], let r = on["right"] else { throw StepError("\"on\" needs \"left\" and \"right\" field lists") }
            leftKeys = try JoinSpec.list(l)
            rightKeys = try JoinSpec.list(r)
        } else {
            leftKeys = try names("on")
            rightKeys = leftKeys
        }
        guard leftKeys.count == rightKeys.count, !leftKeys.isEmpty else { throw StepError("\"on\" needs as many left as right keys") }
        var leftColumns: [Int] = [], rightColumns: [Int] = []
        for k in leftKeys { leftColumns.append(try index(k)) }
        for k in rightKeys {
            guard let i = right.fields.firstIndex(of: k) else {
                throw StepError("unknown field '\(k)' in join_with (fields: \(right.fields.prefix(20).joined(separator: ", ")))")
            }
            rightColumns.append(i)
        }
        let prefix = node["prefix"]?.stringValue ?? "right_"
        // Right columns: all but the keys that have the same name on both sides.
        var carried: [Int] = []
        var added: [String] = []
        for (i, name) in right.fields.enumerated() {
            if let pos = rightColumns.firstIndex(of: i), leftKeys[pos] == name { continue }
            var outName = name
            if schema.contains(outName) || added.contains(outName) { outName = prefix + name }
            guard !schema.contains(outName) && !added.contains(outName) else {
                throw StepError("join_with field '\(name)' clashes with '\(outName)'; choose another \"prefix\"")
            }
            carried.append(i)
            added.append(outName)
        }
        schema += added
        let table = JoinTable(right, keyColumns: rightColumns, carried: carried)
        return .row(.join(JoinSpec(leftColumns: leftColumns, table: table, keepUnmatched: type == "left")))
    }

    private func limit() throws(StepError) -> Pipeline.Kind {
        guard let n = node["count"]?.intValue, n >= 0 else { throw StepError("\"count\" must be a non-negative integer") }
        return .limit(Int(clamping: n))
    }
}
