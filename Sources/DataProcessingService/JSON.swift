#if canImport(Glibc)
import Glibc
#endif

/// A parsed JSON document that keeps object members in document order (the order of `derive`
/// fields in a pipeline matters). Produced by ``JSONReader``; datasets are read straight into
/// ``Dataset`` rows instead.
public indirect enum JSONNode: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONNode])
    case object([JSONMember])

    /// The value of the last member named `key` of an object.
    public subscript(key: String) -> JSONNode? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    /// The text of a string.
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// An integer, or a double with an integral value.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9e18: return Int64(d)
        default: return nil
        }
    }
    /// A number as a double.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    /// The members of an object.
    public var members: [JSONMember]? { if case .object(let m) = self { return m } else { return nil } }
    /// The elements of an array.
    public var elements: [JSONNode]? { if case .array(let a) = self { return a } else { return nil } }
    /// A short type name for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
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

/// One member of a JSON object.
public struct JSONMember: Sendable, Equatable {
    public var key: String
    public var value: JSONNode
    public init(_ key: String, _ value: JSONNode) { self.key = key; self.value = value }
}

/// A strict RFC 8259 reader over bytes: one pass, no Foundation. Arrays of objects can be read
/// directly into a ``Dataset`` (``readRecords(maxRecords:)``) without building a tree.
///
/// Errors are ``TransformError`` 400 naming the byte offset, 413 when a dataset exceeds its
/// record limit, 422 for a dataset whose shape is not an array of flat objects.
struct JSONReader {
    /// Deepest nesting of arrays and objects accepted (the reader recurses).
    static let maxDepth = 64

    let p: UnsafeBufferPointer<UInt8>
    var i = 0
    /// Pieces the last ``readRecordsParallel(maxRecords:what:workers:spare:minimumBytes:)`` read
    /// in parallel (0 when it read sequentially).
    var parallelPieces = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { p = bytes }

    /// Parses `bytes` as one JSON document.
    /// - Throws: ``TransformError`` 400 for invalid JSON.
    static func parse(_ bytes: [UInt8]) throws(TransformError) -> JSONNode {
        let result: Result<JSONNode, TransformError> = bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONReader(buffer)
            do throws(TransformError) {
                let node = try reader.readValue(depth: 0)
                try reader.expectEnd()
                return .success(node)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    // MARK: Basics

    func fail(_ what: String) -> TransformError {
        TransformError(400, "invalid JSON at byte \(i): \(what)")
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while i < p.count {
            let c = p[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return }
        }
    }

    /// The next non-whitespace byte (not consumed), or nil at the end.
    @inline(__always)
    mutating func peek() -> UInt8? {
        skipWhitespace()
        return i < p.count ? p[i] : nil
    }

    mutating func expect(_ c: UInt8, _ what: String) throws(TransformError) {
        skipWhitespace()
        guard i < p.count, p[i] == c else { throw fail("expected \(what)") }
        i += 1
    }

    mutating func expectEnd() throws(TransformError) {
        skipWhitespace()
        if i != p.count { throw fail("unexpected data after the JSON document") }
    }

    private mutating func literal(_ word: StaticString) throws(TransformError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= p.count else { throw fail("unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where p[i + k] != w[k] { throw fail("invalid literal") }
        i += n
    }

    // MARK: Values

    mutating func readValue(depth: Int) throws(TransformError) -> JSONNode {
        guard let c = peek() else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"):
            guard depth < Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
            i += 1
            var members: [JSONMember] = []
            if peek() == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard i < p.count, p[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try readString()
                try expect(UInt8(ascii: ":"), "':'")
                members.append(JSONMember(key, try readValue(depth: depth + 1)))
                guard let next = peek() else { throw fail("unexpected end of input") }
                i += 1
                if next == UInt8(ascii: "}") { return .object(members) }
                if next != UInt8(ascii: ",") { i -= 1; throw fail("expected ',' or '}'") }
            }
        case UInt8(ascii: "["):
            guard depth < Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
            i += 1
            var elements: [JSONNode] = []
            if peek() == UInt8(ascii: "]") { i += 1; return .array(elements) }
            while true {
                elements.append(try readValue(depth: depth + 1))
                guard let next = peek() else { throw fail("unexpected end of input") }
                i += 1
                if next == UInt8(ascii: "]") { return .array(elements) }
                if next != UInt8(ascii: ",") { i -= 1; throw fail("expected ',' or ']'") }
            }
        default:
            switch try readScalar() {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .int(let n): return .int(n)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        }
    }

    /// A string, number, boolean or null at the cursor (after whitespace).
    @inline(__always)
    mutating func readScalar() throws(TransformError) -> Value {
        guard let c = peek() else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try readNumber()
        default: throw fail("unexpected character")
        }
    }

    /// A string at the cursor (which is on the opening quote).
    mutating func readString() throws(TransformError) -> String {
        i += 1
        let start = i
        while i < p.count {
            let c = p[i]
            if c == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: p[start..<i]), as: UTF8.self)
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            i += 1
        }
        var bytes = Array(UnsafeBufferPointer(rebasing: p[start..<i]))
        while i < p.count {
            let c = p[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return String(decoding: bytes, as: UTF8.self)
            }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            guard i + 1 < p.count else { break }
            let e = p[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try readHex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    if i + 1 < p.count, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let low = try readHex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            appendUTF8(0xFFFD, to: &bytes)
                            scalar = low
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                }
                if (0xD800..<0xE000).contains(scalar) { scalar = 0xFFFD }
                appendUTF8(scalar, to: &bytes)
            default:
                i -= 1
                throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    private mutating func readHex4() throws(TransformError) -> UInt32 {
        guard i + 4 <= p.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = p[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 0x41 + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private func appendUTF8(_ scalar: UInt32, to bytes: inout [UInt8]) {
        switch scalar {
        case 0..<0x80: bytes.append(UInt8(scalar))
        case 0x80..<0x800:
            bytes.append(UInt8(0xC0 | (scalar >> 6)))
            bytes.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            bytes.append(UInt8(0xE0 | (scalar >> 12)))
            bytes.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            bytes.append(UInt8(0xF0 | (scalar >> 18)))
            bytes.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

    /// A number: `.int` when it has no fraction or exponent and fits 64 bits, else `.double`.
    mutating func readNumber() throws(TransformError) -> Value {
        let start = i
        var negative = false
        if p[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        guard i < p.count, p[i] >= 0x30, p[i] <= 0x39 else { throw fail("invalid number") }
        // Integer part, accumulated as a negative magnitude so Int64.min fits.
        var mantissa: UInt64 = 0
        var digits = 0
        var dropped = 0   // integer digits beyond 19 (scale by 10^dropped)
        if p[i] == 0x30 {
            i += 1
            if i < p.count, p[i] >= 0x30, p[i] <= 0x39 { throw fail("leading zero in number") }
        } else {
            while i < p.count, p[i] >= 0x30, p[i] <= 0x39 {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(p[i] - 0x30); digits += 1 } else { dropped += 1 }
                i += 1
            }
        }
        var isInteger = true
        var exponent = dropped
        if i < p.count, p[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < p.count, p[i] >= 0x30, p[i] <= 0x39 else { throw fail("digit expected after '.'") }
            while i < p.count, p[i] >= 0x30, p[i] <= 0x39 {
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(p[i] - 0x30)
                    exponent -= 1
                    if mantissa != 0 { digits += 1 }
                }
                i += 1
            }
        }
        if i < p.count, p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            var expNegative = false
            if i < p.count, p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-") {
                expNegative = p[i] == UInt8(ascii: "-")
                i += 1
            }
            guard i < p.count, p[i] >= 0x30, p[i] <= 0x39 else { throw fail("digit expected in exponent") }
            var e = 0
            while i < p.count, p[i] >= 0x30, p[i] <= 0x39 {
                if e < 100_000 { e = e * 10 + Int(p[i] - 0x30) }
                i += 1
            }
            exponent += expNegative ? -e : e
        }
        if isInteger && dropped == 0 {
            if negative {
                if mantissa <= UInt64(Int64.max) { return .int(-Int64(mantissa)) }
                if mantissa == UInt64(Int64.max) + 1 { return .int(Int64.min) }
            } else if mantissa <= UInt64(Int64.max) {
                return .int(Int64(mantissa))
            }
        }
        // Exact fast path (Clinger): the mantissa and the power of ten are both exact doubles.
        if mantissa < (1 << 53) && exponent >= -22 && exponent <= 22 {
            var d = Double(mantissa)
            if exponent < 0 { d /= Self.powersOfTen[-exponent] } else { d *= Self.powersOfTen[exponent] }
            return .number(negative ? -d : d)
        }
        return .number(Self.strtod(UnsafeBufferPointer(rebasing: p[start..<i])))
    }

    static let powersOfTen: [Double] = (0...22).map { e in
        var d = 1.0
        for _ in 0..<e { d *= 10 }
        return d
    }

    /// The C library's correctly rounded conversion, for numbers off the fast path.
    static func strtod(_ bytes: UnsafeBufferPointer<UInt8>) -> Double {
        var text = Array(bytes)
        text.append(0)
        return text.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { return .nan }   // never: the array holds at least the NUL
            return base.withMemoryRebound(to: CChar.self, capacity: b.count) { Glibc.strtod($0, nil) }
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
            var reader = JSONReader(bytes)
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

/// Compact JSON output into a byte array.
struct JSONWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    @inline(__always)
    mutating func raw(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { u in
            bytes.append(0x22)
            var plainStart = 0
            for k in 0..<u.count {
                let c = u[k]
                if c >= 0x20 && c != 0x22 && c != 0x5C { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[plainStart..<k]))
                plainStart = k + 1
                switch c {
                case 0x22: raw("\\\"")
                case 0x5C: raw("\\\\")
                case 0x0A: raw("\\n")
                case 0x0D: raw("\\r")
                case 0x09: raw("\\t")
                default:
                    raw("\\u00")
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    bytes.append(hex[Int(c >> 4)])
                    bytes.append(hex[Int(c & 0xF)])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: u[plainStart..<u.count]))
            bytes.append(0x22)
        }
    }

    mutating func int(_ v: Int64) {
        if v >= 0 && v < 10 { bytes.append(0x30 + UInt8(v)); return }
        var magnitude = v.magnitude
        var buffer: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes of scratch: enough for 20 digits
        withUnsafeMutableBytes(of: &buffer) { scratch in
            var n = scratch.count
            repeat {
                n -= 1
                scratch[n] = 0x30 + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if v < 0 { n -= 1; scratch[n] = UInt8(ascii: "-") }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[n...]))
        }
    }

    mutating func double(_ d: Double) {
        guard d.isFinite else { raw("null"); return }
        bytes.append(contentsOf: d.description.utf8)
    }

    mutating func value(_ v: Value) {
        switch v {
        case .null: raw("null")
        case .bool(let b): if b { raw("true") } else { raw("false") }
        case .int(let i): int(i)
        case .double(let d): double(d)
        case .string(let s): string(s)
        }
    }

    mutating func node(_ n: JSONNode) {
        switch n {
        case .null: raw("null")
        case .bool(let b): if b { raw("true") } else { raw("false") }
        case .int(let i): int(i)
        case .double(let d): double(d)
        case .string(let s): string(s)
        case .array(let a):
            bytes.append(UInt8(ascii: "["))
            for (k, e) in a.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                node(e)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (k, m) in members.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                string(m.key)
                bytes.append(UInt8(ascii: ":"))
                node(m.value)
            }
            bytes.append(UInt8(ascii: "}"))
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
