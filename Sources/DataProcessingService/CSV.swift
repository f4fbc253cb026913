/// An RFC 4180 CSV reader: the first record is the header; fields separated by commas; records
/// by CRLF or LF (a lone CR too); fields may be quoted with `"`, a quote inside a quoted field is
/// written `""`, and quoted fields may hold commas and line breaks. Lines that are completely
/// empty are skipped.
///
/// Typing (``Typing/infer``, the default): an unquoted empty field is null; unquoted `true` /
/// `false` are booleans; unquoted integers (`-?[0-9]+`, within 64 bits) are ints; unquoted
/// decimals (`1.5`, `-2e3`) are doubles; everything else, and every quoted field, is a string.
/// The header's names are always taken as written.
/// ``Typing/strings`` keeps every field as a string (empty fields as empty strings).
enum CSVReader {
    /// How field text becomes values.
    enum Typing: Sendable { case infer, strings }

    /// Parses `text`.
    /// - Throws: ``TransformError`` 400 for a malformed file (unterminated quote, a stray quote,
    ///   no header), 422 for a duplicate or empty header name or a record whose field count
    ///   differs from the header's, 413 beyond `maxRecords` records.
    static func parse(_ text: String, typing: Typing = .infer, maxRecords: Int, what: String = "csv") throws(TransformError) -> Dataset {
        var text = text
        let result = text.withUTF8 { u -> Result<Dataset, TransformError> in
            do throws(TransformError) {
                return .success(try parse(bytes: u, typing: typing, maxRecords: maxRecords, what: what))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses UTF-8 `bytes`; see ``parse(_:typing:maxRecords:what:)``.
    static func parse(bytes u: UnsafeBufferPointer<UInt8>, typing: Typing, maxRecords: Int, what: String) throws(TransformError) -> Dataset {
        var i = 0
        var line = 1
        // A UTF-8 byte order mark is not part of the first header name.
        if u.count >= 3, u[0] == 0xEF, u[1] == 0xBB, u[2] == 0xBF { i = 3 }
        var header: [String]? = nil
        var rows: [[Value]] = []
        var fields: [Value] = []
        var scratch: [UInt8] = []

        // Header names are taken as written (typed, `01` or `.5` would name a column `1` or `0.5`).
        func value(_ bytes: UnsafeBufferPointer<UInt8>, quoted: Bool) -> Value {
            let s = String(decoding: bytes, as: UTF8.self)
            if quoted || typing == .strings || header == nil { return .string(s) }
            return inferred(bytes, s)
        }

        while i < u.count {
            let recordLine = line
            // A completely empty line.
            if u[i] == 0x0A { i += 1; line += 1; continue }
            if u[i] == 0x0D { i += 1; if i < u.count, u[i] == 0x0A { i += 1 }; line += 1; continue }
            fields.removeAll(keepingCapacity: true)
            var endOfRecord = false
            while !endOfRecord {
                if i < u.count, u[i] == UInt8(ascii: "\"") {
                    // Quoted field.
                    i += 1
                    scratch.removeAll(keepingCapacity: true)
                    var closed = false
                    while i < u.count {
                        let c = u[i]
                        if c == UInt8(ascii: "\"") {
                            if i + 1 < u.count, u[i + 1] == UInt8(ascii: "\"") {
                                scratch.append(c)
                                i += 2
                                continue
                            }
                            i += 1
                            closed = true
                            break
                        }
                        if c == 0x0A { line += 1 }
                        scratch.append(c)
                        i += 1
                    }
                    guard closed else {
                        throw TransformError(400, "\(what): unterminated quoted field starting on line \(recordLine)")
                    }
                    fields.append(scratch.withUnsafeBufferPointer { value($0, quoted: true) })
                    if i < u.count, u[i] != UInt8(ascii: ","), u[i] != 0x0A, u[i] != 0x0D {
                        throw TransformError(400, "\(what): line \(line): unexpected character after a closing quote")
                    }
                } else {
                    let start = i
                    while i < u.count {
                        let c = u[i]
                        if c == UInt8(ascii: ",") || c == 0x0A || c == 0x0D { break }
                        if c == UInt8(ascii: "\"") {
                            throw TransformError(400, "\(what): line \(line): a quote inside an unquoted field (quote the field and double the quote)")
                        }
                        i += 1
                    }
                    fields.append(value(UnsafeBufferPointer(rebasing: u[start..<i]), quoted: false))
                }
                // Separator or end of record.
                if i >= u.count {
                    endOfRecord = true
                } else if u[i] == UInt8(ascii: ",") {
                    i += 1
                } else {
                    if u[i] == 0x0D { i += 1 }
                    if i < u.count, u[i] == 0x0A { i += 1 }
                    line += 1
                    endOfRecord = true
                }
            }
            if let header {
                guard fields.count == header.count else {
                    throw TransformError(422, "\(what): line \(recordLine) has \(fields.count) fields, the header has \(header.count)")
                }
                guard rows.count < maxRecords else {
                    throw TransformError(413, "\(what): more than \(maxRecords) records (limit MAX_RECORDS)")
                }
                rows.append(fields)
            } else {
                var names: [String] = []
                var seen = Set<String>()
                for f in fields {
                    let name = f.text
                    guard !name.isEmpty else { throw TransformError(422, "\(what): header field \(names.count + 1) is empty") }
                    guard seen.insert(name).inserted else { throw TransformError(422, "\(what): duplicate header name '\(name)'") }
                    names.append(name)
                }
                header = names
            }
        }
        guard let header else { throw TransformError(400, "\(what): no header row") }
        return Dataset(fields: header, rows: rows)
    }

    /// The inferred value of an unquoted field.
    static func inferred(_ b: UnsafeBufferPointer<UInt8>, _ s: String) -> Value {
        if b.isEmpty { return .null }
        let first = b[0]
        if first == UInt8(ascii: "t") && s == "true" { return .bool(true) }
        if first == UInt8(ascii: "f") && s == "false" { return .bool(false) }
        guard first == UInt8(ascii: "-") || first == UInt8(ascii: "+") || first == UInt8(ascii: ".")
                || (first >= 0x30 && first <= 0x39) else { return .string(s) }
        var k = 0
        if first == UInt8(ascii: "-") || first == UInt8(ascii: "+") { k = 1 }
        var digits = 0
        while k < b.count, b[k] >= 0x30, b[k] <= 0x39 { k += 1; digits += 1 }
        if k == b.count, digits > 0 {
            if let n = Int64(s) { return .int(n) }
            if let d = Double(s), d.isFinite { return .double(d) }
            return .string(s)
        }
        // Decimal or exponent form; Double() also accepts things like "nan" and "0x1p3", which
        // the guard above already excluded except for hex after a digit: require only decimal characters.
        for c in b where !((c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e")
                           || c == UInt8(ascii: "E") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")) {
            return .string(s)
        }
        if let d = Double(s), d.isFinite { return .double(d) }
        return .string(s)
    }
}
