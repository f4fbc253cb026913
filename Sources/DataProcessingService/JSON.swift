#if canImport(Glibc)
import Glibc
#endif
import Formats

// Pipelines and request bodies are read with Formats' JSON reader into ``Formats/JSON`` trees
// (members in document order: the order of `derive` fields matters). Datasets, the large part
// of a request, are read here straight into ``Dataset`` rows on the same cursor and primitives
// (strings, numbers), with what a tree would cost removed: no node per value, a predicted key
// compared as bytes, and large arrays cut into pieces read in parallel.

extension JSON {
    /// A scalar as a dataset value (nil for arrays and objects).
    var scalar: Value? {
        switch self {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .number(d)
        case .string(let s): return .string(s)
        case .array, .object: return nil
        }
    }
}

/// Reads request bodies and datasets. Errors are ``TransformError`` 400 naming the byte offset,
/// 413 when a dataset exceeds its record limit, 422 for a dataset whose shape is not an array of
/// flat objects.
struct DatasetReader {
    /// The shared reader: its cursor is this reader's cursor.
    var json: JSONReader
    /// Pieces the last ``readRecordsParallel(maxRecords:what:workers:spare:minimumBytes:)`` read
    /// in parallel (0 when it read sequentially).
    var parallelPieces = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { json = JSONReader(bytes) }

    /// The input.
    var p: UnsafeBufferPointer<UInt8> { json.bytes }
    /// The offset of the next byte to read.
    var i: Int {
        get { json.index }
        set { json.index = newValue }
    }

    /// Parses `bytes` as one JSON document.
    /// - Throws: ``TransformError`` 400 for invalid JSON.
    static func parse(_ bytes: [UInt8]) throws(TransformError) -> JSON {
        do {
            return try JSON.parse(bytes)
        } catch {
            throw TransformError(400, error.description)
        }
    }

    // MARK: Basics

    func fail(_ what: String) -> TransformError {
        TransformError(400, JSONError(what, offset: i).description)
    }

    @inline(__always)
    mutating func skipWhitespace() { json.skipWhitespace() }

    /// The next non-whitespace byte (not consumed), or nil at the end.
    @inline(__always)
    mutating func peek() -> UInt8? { json.peek() }

    mutating func expect(_ c: UInt8, _ what: String) throws(TransformError) {
        skipWhitespace()
        guard i < p.count, p[i] == c else { throw fail("expected \(what)") }
        i += 1
    }

    mutating func expectEnd() throws(TransformError) {
        skipWhitespace()
        if i != p.count { throw fail("unexpected data after the JSON document") }
    }

    // MARK: Values

    /// The value at the cursor as a tree, `depth` levels inside the document.
    /// - Throws: ``TransformError`` 400 for invalid JSON.
    mutating func readValue(depth: Int) throws(TransformError) -> JSON {
        do {
            return try json.readValue(depth: depth)
        } catch {
            throw TransformError(400, error.description)
        }
    }

    /// A string, number, boolean or null at the cursor (after whitespace).
    /// - Throws: ``TransformError`` 400 when none is there or it is malformed.
    @inline(__always)
    mutating func readScalar() throws(TransformError) -> Value {
        do {
            switch try json.readScalar() {
            case .string(let s): return .string(s)
            case .int(let n): return .int(n)
            case .double(let d): return .number(d)
            case .bool(let b): return .bool(b)
            case .null, .array, .object: return .null
            }
        } catch {
            throw TransformError(400, error.description)
        }
    }

    /// A string at the cursor (which is on the opening quote).
    /// - Throws: ``TransformError`` 400 for a malformed string.
    mutating func readString() throws(TransformError) -> String {
        do {
            return try json.readString()
        } catch {
            throw TransformError(400, error.description)
        }
    }

    // MARK: Datasets

    /// Fields and rows read so far from an array of objects.
    struct RecordTable {
        var fields: [String] = []
        var keyBytes: [[UInt8]] = []
        var index: [String: Int] = [:]
        var rows: [[Value]] = []

        /// The rows padded to the full width, as a dataset.
        consuming func dataset() -> Dataset {
            let width = fields.count
            for r in rows.indices where rows[r].count < width {
                rows[r].append(contentsOf: repeatElement(Value.null, count: width - rows[r].count))
            }
            return Dataset(fields: fields, rows: rows)
        }
    }

    /// An array of flat objects at the cursor, read into rows (fields in first-seen order; a
    /// field a record lacks is null; a repeated key keeps its last value).
    /// - Throws: ``TransformError`` 400 for invalid JSON, 413 beyond `maxRecords`, 422 when an
    ///   element is not an object or a value is an array or object.
    mutating func readRecords(maxRecords: Int, what: String = "data", spare: Int = 0) throws(TransformError) -> Dataset {
        try expect(UInt8(ascii: "["), "'['")
        var table = RecordTable()
        if peek() == UInt8(ascii: "]") { i += 1; return Dataset(fields: [], rows: []) }
        while true {
            guard table.rows.count < maxRecords else {
                throw TransformError(413, "\(what): more than \(maxRecords) records (limit MAX_RECORDS)")
            }
            try readRecord(into: &table, what: what, base: 0, spare: spare)
            guard let next = peek() else { throw fail("unexpected end of input") }
            i += 1
            if next == UInt8(ascii: "]") { break }
            if next != UInt8(ascii: ",") { i -= 1; throw fail("expected ',' or ']'") }
        }
        return table.dataset()
    }

    /// Reads one object at the cursor as a row of `table` (`base` numbers records in errors;
    /// `spare` extra capacity lets later steps add fields without reallocating the row).
    mutating func readRecord(into table: inout RecordTable, what: String, base: Int, spare: Int) throws(TransformError) {
        guard peek() == UInt8(ascii: "{") else {
            throw TransformError(422, "\(what): record \(base + table.rows.count) is not a JSON object")
        }
        i += 1
        var row: [Value] = []
        row.reserveCapacity(table.fields.count + spare)
        row.append(contentsOf: repeatElement(Value.null, count: table.fields.count))
        var predicted = 0
        if peek() == UInt8(ascii: "}") {
            i += 1
            table.rows.append(row)
            return
        }
        while true {
            skipWhitespace()
            guard i < p.count, p[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            // Fast path: records usually repeat the previous record's key order.
            var slot = -1
            if predicted < table.keyBytes.count {
                slot = table.keyBytes[predicted].withUnsafeBufferPointer { k -> Int in
                    let end = i + 1 + k.count
                    guard end < p.count, p[end] == UInt8(ascii: "\""),
                          let pb = p.baseAddress, let kb = k.baseAddress ?? (k.count == 0 ? pb : nil),
                          k.count == 0 || memcmp(pb + i + 1, kb, k.count) == 0 else { return -1 }
                    return predicted
                }
                if slot >= 0 { i += table.keyBytes[slot].count + 2 }
            }
            if slot < 0 {
                let key = try readString()
                if let known = table.index[key] {
                    slot = known
                } else {
                    slot = table.fields.count
                    table.fields.append(key)
                    table.index[key] = slot
                    // Keys with escapes never match the raw-byte fast path; that is only slower.
                    table.keyBytes.append(Array(key.utf8))
                }
            }
            while row.count <= slot { row.append(.null) }
            try expect(UInt8(ascii: ":"), "':'")
            guard let c = peek() else { throw fail("unexpected end of input") }
            if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
                throw TransformError(422, "\(what): record \(base + table.rows.count), field '\(table.fields[slot])': nested arrays and objects are not supported")
            }
            row[slot] = try readScalar()
            predicted = slot + 1
            guard let next = peek() else { throw fail("unexpected end of input") }
            i += 1
            if next == UInt8(ascii: "}") { break }
            if next != UInt8(ascii: ",") { i -= 1; throw fail("expected ',' or '}'") }
        }
        table.rows.append(row)
    }

    /// ``readRecords(maxRecords:what:)`` on `workers` threads for large arrays. The bytes are cut
    /// at guessed record boundaries (the next `}` `,` `{` after evenly spaced offsets), the pieces
    /// are read in parallel, and their fields are merged in order, so the dataset equals the
    /// sequential one. A guess inside a string cannot pass: the piece before it would end inside
    /// that string (quotes within strings are escaped), and any failure (a bad guess, invalid
    /// JSON, a non-object, a nested value) re-reads the array sequentially, which also gives
    /// exactly the sequential error.
    mutating func readRecordsParallel(maxRecords: Int, what: String, workers: Int, spare: Int = 0,
                                      minimumBytes: Int = 1 << 20) throws(TransformError) -> Dataset {
        let start = i
        let n = p.count
        parallelPieces = 0
        guard workers > 1, peek() == UInt8(ascii: "["), n - i >= minimumBytes, let address = p.baseAddress else {
            return try readRecords(maxRecords: maxRecords, what: what, spare: spare)
        }
        let open = i
        // Piece starts: just after '[', then at each guessed boundary's '{'.
        let pieces = workers * 4
        var starts = [open + 1]
        for g in 1..<pieces {
            var k = max(open + (n - open) / pieces * g, starts[starts.count - 1] + 1)
            var found = -1
            while k < n - 1 {
                if p[k] == UInt8(ascii: "}") {
                    var j = k + 1
                    while j < n, p[j] == 0x20 || p[j] == 0x0A || p[j] == 0x0D || p[j] == 0x09 { j += 1 }
                    if j < n, p[j] == UInt8(ascii: ",") {
                        j += 1
                        while j < n, p[j] == 0x20 || p[j] == 0x0A || p[j] == 0x0D || p[j] == 0x09 { j += 1 }
                        if j < n, p[j] == UInt8(ascii: "{") { found = j; break }
                    }
                }
                k += 1
            }
            if found < 0 { break }
            starts.append(found)
        }
        let source = ByteView(base: UnsafeRawPointer(address), count: n)
        let boundaries = starts
        // Each piece: its records, and for the last one the offset of the closing ']'.
        let tables = Parallel.map(boundaries.count, workers: workers) { g -> (RecordTable, close: Int, ok: Bool) in
            let from = boundaries[g]
            let to = g + 1 < boundaries.count ? boundaries[g + 1] : source.count
            let bytes = UnsafeBufferPointer(start: source.base.assumingMemoryBound(to: UInt8.self) + from, count: to - from)
            var reader = DatasetReader(bytes)
            var table = RecordTable()
            do throws(TransformError) {
                while true {
                    guard table.rows.count < maxRecords else { return (RecordTable(), -1, false) }
                    try reader.readRecord(into: &table, what: what, base: 0, spare: spare)
                    guard let next = reader.peek() else { return (RecordTable(), -1, false) }
                    reader.i += 1
                    // The array's end (later pieces, if any, lie beyond it and are ignored).
                    if next == UInt8(ascii: "]") { return (table, from + reader.i - 1, true) }
                    guard next == UInt8(ascii: ",") else { return (RecordTable(), -1, false) }
                    // The piece ends exactly where the next one begins.
                    if reader.peek() == nil { return (table, -1, true) }
                }
            } catch {
                return (RecordTable(), -1, false)
            }
        }
        // Every piece before the one that reached ']' must have ended cleanly at a comma, which
        // also proves the next piece began at a real record.
        guard let last = tables.firstIndex(where: { $0.close >= 0 }), tables[...last].allSatisfy(\.ok),
              tables[...last].reduce(0, { $0 + $1.0.rows.count }) <= maxRecords else {
            i = start
            return try readRecords(maxRecords: maxRecords, what: what, spare: spare)
        }
        let used = tables[...last]
        let close = tables[last].close
        let total = used.reduce(0) { $0 + $1.0.rows.count }
        // Merge: fields in first-seen order across the pieces, rows remapped where needed.
        var fields: [String] = []
        var index: [String: Int] = [:]
        var maps: [[Int]?] = []
        for (table, _, _) in used {
            var map: [Int] = []
            for f in table.fields {
                if let known = index[f] {
                    map.append(known)
                } else {
                    index[f] = fields.count
                    map.append(fields.count)
                    fields.append(f)
                }
            }
            maps.append(map.enumerated().allSatisfy { $0 == $1 } ? nil : map)
        }
        let width = fields.count
        let remaps = maps
        let rowPieces = Parallel.map(used.count, workers: workers) { g -> [[Value]] in
            var rows = used[g].0.rows
            if let map = remaps[g] {
                for r in rows.indices {
                    var row: [Value] = []
                    row.reserveCapacity(width + spare)
                    row.append(contentsOf: repeatElement(Value.null, count: width))
                    for (c, v) in rows[r].enumerated() { row[map[c]] = v }
                    rows[r] = row
                }
            } else {
                for r in rows.indices where rows[r].count < width {
                    rows[r].append(contentsOf: repeatElement(Value.null, count: width - rows[r].count))
                }
            }
            return rows
        }
        var rows: [[Value]] = []
        rows.reserveCapacity(total)
        for piece in rowPieces { rows.append(contentsOf: piece) }
        i = close + 1
        parallelPieces = used.count
        return Dataset(fields: fields, rows: rows)
    }
}

/// The request bytes as seen by the parsing threads. `@unchecked Sendable`: a raw pointer into
/// the request body, which the caller keeps alive and unchanged until every thread has returned
/// (``Parallel/map(_:workers:_:)`` joins them).
struct ByteView: @unchecked Sendable {
    let base: UnsafeRawPointer
    let count: Int
}

/// Dataset output on Formats' writer.
extension JSONWriter {
    /// Appends a dataset value.
    mutating func value(_ v: Value) {
        switch v {
        case .null: raw("null")
        case .bool(let b): if b { raw("true") } else { raw("false") }
        case .int(let i): int(i)
        case .double(let d): double(d)
        case .string(let s): string(s)
        }
    }

    /// `[{"field":value,...},...]` with the dataset's field order.
    mutating func records(_ data: Dataset) {
        let keys: [[UInt8]] = data.fields.enumerated().map { k, name in
            var w = JSONWriter(capacity: name.utf8.count + 4)
            if k > 0 { w.bytes.append(UInt8(ascii: ",")) }
            w.string(name)
            w.bytes.append(UInt8(ascii: ":"))
            return w.bytes
        }
        bytes.append(UInt8(ascii: "["))
        for (r, row) in data.rows.enumerated() {
            if r > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(UInt8(ascii: "{"))
            for k in 0..<min(row.count, keys.count) {
                bytes.append(contentsOf: keys[k])
                value(row[k])
            }
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: "]"))
    }
}
