// libFuzzer target for the data-processing service's CSV reader and expression language: built by
// scripts/fuzz.sh (target dataproc) into the DataProcessingService module from CSV.swift,
// Expression.swift, Value.swift and DatasetTime.swift only, over the Formats module. The first
// input byte picks the mode, the rest is:
// - 0: CSV text, read with inferred types and with strings only. Both readings succeed or fail
//   alike (same error), with the same header and shape; each inferred value is what its text
//   says; the strings-only dataset written back as CSV (every field quoted) reads back the same.
// - 1: an expression over a fixed record layout, evaluated on a few fixed records.
// - 2: an expression, a NUL byte, then CSV text: the expression over the CSV's header and records.
// Oracle for expressions: parse and evaluation errors point within the text (1-based character
// positions, one past the end allowed), no result is a non-finite double (never stored), and a
// private copy of the expression evaluates every record to the same result or error.

/// Stops the run with `message` when `condition` is false (unlike `precondition`, an -O build
/// still prints the message, so the report says which property failed).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

private let fields = ["id", "name", "amount", "price", "active", "ts", "note", "a b"]
private let rows: [[Value]] = [
    [.int(1), .string("alice"), .int(3), .double(2.5), .bool(true), .string("2024-02-29T23:59:59Z"), .null, .string(" x ")],
    [.int(-9_223_372_036_854_775_808), .string(""), .int(9_223_372_036_854_775_807), .double(-0.0), .bool(false),
     .int(1_709_251_199_000), .string("ünïcödé 🎉"), .double(1e308)],
    [.null, .null, .null, .null, .null, .null, .null, .null],
    [.string("7"), .string("1.5e3"), .double(0.1), .int(0), .string("true"), .double(-1e18), .string("a,b\"c"), .int(-1)],
]

private func characters(_ text: String) -> Int { text.unicodeScalars.count }

private func checkExpression(_ source: String, fields: [String], rows: [[Value]]) {
    let expression: Expression
    do {
        expression = try Expression(source, fields: fields)
    } catch {
        require(error.position >= 1 && error.position <= characters(source) + 1,
                     "parse error position \(error.position) outside '\(source)': \(error.message)")
        return
    }
    let copy = expression.privateCopy()
    for row in rows {
        let result: Result<Value, EvaluationError> = Result { () throws(EvaluationError) in try expression.evaluate(row) }
        let again: Result<Value, EvaluationError> = Result { () throws(EvaluationError) in try copy.evaluate(row) }
        switch result {
        case .success(.double(let d)):
            require(d.isFinite, "'\(source)' gave the non-finite double \(d)")
        case .failure(let error):
            require(error.position >= 1 && error.position <= characters(source) + 1,
                         "evaluation error position \(error.position) outside '\(source)': \(error.message)")
        default: break
        }
        require(result == again, "'\(source)': the private copy gives \(again), the original \(result)")
    }
}

/// `dataset` as CSV with every field quoted (what a spreadsheet exports), CRLF line ends.
private func quotedCSV(_ dataset: Dataset) -> String {
    // Byte by byte: a quote followed by a combining mark is one Character, which replacing("\"") misses.
    func quote(_ s: String) -> String {
        var bytes: [UInt8] = [UInt8(ascii: "\"")]
        for b in s.utf8 {
            bytes.append(b)
            if b == UInt8(ascii: "\"") { bytes.append(b) }
        }
        bytes.append(UInt8(ascii: "\""))
        return String(decoding: bytes, as: UTF8.self)
    }
    func text(_ v: Value) -> String { if case .string(let s) = v { s } else { fatalError("not a string: \(v)") } }
    var out = dataset.fields.map(quote).joined(separator: ",") + "\r\n"
    for row in dataset.rows { out += row.map { quote(text($0)) }.joined(separator: ",") + "\r\n" }
    return out
}

/// True when the inferred `value` is what the field's text `s` says.
private func agrees(_ value: Value, _ s: String) -> Bool {
    switch value {
    case .null: return s.isEmpty
    case .bool(let b): return s == (b ? "true" : "false")
    case .int(let n): return Int64(s) == n
    case .double(let d): return Double(s) == d
    case .string(let t): return t == s
    }
}

private func checkCSV(_ text: String) {
    let inferred = Result { () throws(TransformError) in try CSVReader.parse(text, typing: .infer, maxRecords: 1000) }
    let strings = Result { () throws(TransformError) in try CSVReader.parse(text, typing: .strings, maxRecords: 1000) }
    switch (inferred, strings) {
    case (.failure(let a), .failure(let b)):
        require(a == b, "the typings fail differently: \(a) vs \(b)")
        require([400, 413, 422].contains(a.status), "unexpected status: \(a)")
    case (.success(let a), .success(let b)):
        require(a.fields == b.fields, "the typings read different headers: \(a.fields) vs \(b.fields)")
        require(a.rows.count == b.rows.count, "the typings read \(a.rows.count) and \(b.rows.count) records")
        for (x, y) in zip(a.rows, b.rows) {
            require(x.count == a.fields.count && y.count == a.fields.count, "a record's width differs from the header's")
            for (v, s) in zip(x, y) {
                guard case .string(let t) = s else { fatalError("strings typing gave \(s)") }
                require(agrees(v, t), "inferred \(v) from the text '\(t)'")
            }
        }
        let written = quotedCSV(b)
        do {
            let reread = try CSVReader.parse(written, typing: .strings, maxRecords: 1000)
            require(reread == b, "a dataset does not survive its own CSV: \(written)")
        } catch {
            fatalError("the quoted CSV of a dataset does not read: \(error): \(written)")
        }
    case (.success, .failure(let e)), (.failure(let e), .success):
        fatalError("one typing fails (\(e)), the other reads the text")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDataProcessing(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = UnsafeBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 3 {
    case 0:
        checkCSV(String(decoding: body, as: UTF8.self))
    case 1:
        checkExpression(String(decoding: body, as: UTF8.self), fields: fields, rows: rows)
    default:
        let nul = body.firstIndex(of: 0) ?? body.count
        let source = String(decoding: UnsafeBufferPointer(rebasing: body[..<nul]), as: UTF8.self)
        let csv = nul < body.count ? String(decoding: UnsafeBufferPointer(rebasing: body[(nul + 1)...]), as: UTF8.self) : ""
        guard let dataset = try? CSVReader.parse(csv, maxRecords: 100) else {
            checkExpression(source, fields: fields, rows: rows)
            return 0
        }
        checkExpression(source, fields: dataset.fields, rows: dataset.rows)
    }
    return 0
}
