// Headers: the NATS/1.0 header block of HPUB/HMSG (ADR-4), parsed and serialised.

/// Why a header block or a header edit was refused. Line numbers count from 1 (the version line).
public enum HeadersError: Error, Sendable, Equatable {
    /// The block does not start with `NATS/1.0`.
    case missingVersion
    /// The status after `NATS/1.0` is not exactly three digits, or is not separated by a space.
    case invalidStatus(line: Int)
    /// A line does not end in CRLF (a bare CR or LF, or the block ends mid-line).
    case invalidLineEnding(line: Int)
    /// A header line has no `:`.
    case missingColon(line: Int)
    /// A header name is empty, or holds whitespace, control characters or non-ASCII bytes.
    case invalidName(line: Int)
    /// A header value holds CR, LF or another control character other than tab.
    case invalidValue(line: Int)
    /// A header line starts with whitespace (obsolete line folding is not accepted).
    case continuationLine(line: Int)
    /// A name or value is not valid UTF-8.
    case invalidUTF8(line: Int)
    /// The block does not end with an empty line (`\r\n\r\n`).
    case unterminated
    /// Bytes follow the empty line that ends the block.
    case trailingBytes
    /// A status passed to ``Headers/setStatus(_:description:)`` is outside 100...999, or a
    /// description was given without a status or holds CR/LF.
    case invalidStatusValue
}

/// One header line.
public struct HeaderField: Sendable, Equatable {
    /// The name as written (case preserved).
    public var name: String
    /// The value, without surrounding spaces or tabs.
    public var value: String
}

/// A NATS header block: `NATS/1.0[ <status>[ <description>]]\r\n`, then `Name: value\r\n` lines,
/// then `\r\n`.
///
/// Fields keep their order and may repeat; names keep their case and are looked up
/// case-insensitively (ASCII); names are printable ASCII without `:`. A block that was parsed and not changed since serialises back to
/// exactly the bytes it was parsed from; otherwise it is written as `Name: value` lines.
public struct Headers: Sendable {
    /// The fields, in order.
    public private(set) var fields: [HeaderField] = []
    /// The inline status (e.g. 503), if the version line carries one.
    public private(set) var status: Int?
    /// The text after the status on the version line, if any (e.g. `No Messages`).
    public private(set) var statusDescription: String?
    /// The bytes this value was parsed from, while it is unchanged.
    private var original: [UInt8]?

    /// An empty header block (`NATS/1.0\r\n\r\n`).
    public init() {}

    /// A header block with the given fields, in order.
    /// - Throws: ``HeadersError/invalidName(line:)`` or ``HeadersError/invalidValue(line:)``
    ///   (line = 1-based field position + 1).
    public init(_ fields: [(name: String, value: String)]) throws(HeadersError) {
        for field in fields { try append(name: field.name, value: field.value) }
    }

    // MARK: lookup

    /// The first value for `name` (case-insensitive), or nil.
    public subscript(name: String) -> String? {
        fields.first { Self.namesEqual($0.name, name) }?.value
    }

    /// Every value for `name` (case-insensitive), in order.
    public func values(for name: String) -> [String] {
        fields.filter { Self.namesEqual($0.name, name) }.map(\.value)
    }

    /// True when there are no fields and no status.
    public var isEmpty: Bool { fields.isEmpty && status == nil }

    // MARK: edits

    /// Appends a field (keeps any existing ones with the same name).
    /// - Throws: ``HeadersError/invalidName(line:)`` or ``HeadersError/invalidValue(line:)``.
    public mutating func append(name: String, value: String) throws(HeadersError) {
        let line = fields.count + 2
        guard Self.isValidName(Array(name.utf8)) else { throw .invalidName(line: line) }
        guard Self.isValidValue(Array(value.utf8)) else { throw .invalidValue(line: line) }
        fields.append(HeaderField(name: name, value: Self.trimmed(value)))
        original = nil
    }

    /// Replaces every field named `name` (case-insensitive) with one field.
    /// - Throws: ``HeadersError/invalidName(line:)`` or ``HeadersError/invalidValue(line:)``.
    public mutating func set(name: String, value: String) throws(HeadersError) {
        guard Self.isValidName(Array(name.utf8)) else { throw .invalidName(line: fields.count + 2) }
        guard Self.isValidValue(Array(value.utf8)) else { throw .invalidValue(line: fields.count + 2) }
        if let first = fields.firstIndex(where: { Self.namesEqual($0.name, name) }) {
            fields[first] = HeaderField(name: name, value: Self.trimmed(value))
            var index = fields.count - 1
            while index > first {
                if Self.namesEqual(fields[index].name, name) { fields.remove(at: index) }
                index -= 1
            }
        } else {
            fields.append(HeaderField(name: name, value: Self.trimmed(value)))
        }
        original = nil
    }

    /// Removes every field named `name` (case-insensitive); returns how many were removed.
    @discardableResult
    public mutating func remove(name: String) -> Int {
        let before = fields.count
        fields.removeAll { Self.namesEqual($0.name, name) }
        if fields.count != before { original = nil }
        return before - fields.count
    }

    /// Sets or clears the inline status and its description.
    /// - Throws: ``HeadersError/invalidStatusValue`` for a code outside 100...999, a description
    ///   without a code, or a description holding CR or LF.
    public mutating func setStatus(_ code: Int?, description: String? = nil) throws(HeadersError) {
        if let code, !(100...999).contains(code) { throw .invalidStatusValue }
        if let description {
            if code == nil { throw .invalidStatusValue }
            if description.utf8.contains(where: { $0 == 13 || $0 == 10 }) { throw .invalidStatusValue }
        }
        status = code
        let trimmedDescription = description.map(Self.trimmed)
        statusDescription = (trimmedDescription?.isEmpty ?? true) ? nil : trimmedDescription
        original = nil
    }

    // MARK: serialise

    /// The number of bytes ``write(to:)`` produces.
    public var serializedCount: Int {
        if let original { return original.count }
        var count = 8 + 2 + 2  // NATS/1.0, CRLF, final CRLF
        if status != nil { count += 4 }
        if let statusDescription { count += 1 + statusDescription.utf8.count }
        for field in fields { count += field.name.utf8.count + 2 + field.value.utf8.count + 2 }
        return count
    }

    /// Writes the block, final `\r\n\r\n` included.
    public func write<S: ByteSink>(to sink: inout S) {
        if let original {
            original.withUnsafeBytes { sink.append($0) }
            return
        }
        sink.append(ascii: "NATS/1.0")
        if let status {
            sink.append(byte: 0x20)
            sink.append(decimal: status)
            if let statusDescription {
                sink.append(byte: 0x20)
                sink.append(utf8: statusDescription)
            }
        }
        sink.append(ascii: "\r\n")
        for field in fields {
            sink.append(utf8: field.name)
            sink.append(ascii: ": ")
            sink.append(utf8: field.value)
            sink.append(ascii: "\r\n")
        }
        sink.append(ascii: "\r\n")
    }

    /// The block as bytes, final `\r\n\r\n` included.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(serializedCount)
        write(to: &out)
        return out
    }

    // MARK: parse

    /// Parses a whole header block, final `\r\n\r\n` included (the `headers` view of HPUB/HMSG).
    /// - Throws: ``HeadersError`` naming the first problem and its line.
    public init(parsing block: UnsafeRawBufferPointer) throws(HeadersError) {
        let bytes = Array(block)
        var lineNumber = 1
        var position = 0

        // Reads one CRLF-terminated line; returns its byte range without the CRLF.
        func nextLine() throws(HeadersError) -> Range<Int> {
            var index = position
            while index < bytes.count {
                let byte = bytes[index]
                if byte == 13 {
                    guard index + 1 < bytes.count else { throw .invalidLineEnding(line: lineNumber) }
                    guard bytes[index + 1] == 10 else { throw .invalidLineEnding(line: lineNumber) }
                    let range = position..<index
                    position = index + 2
                    return range
                }
                if byte == 10 { throw .invalidLineEnding(line: lineNumber) }
                index += 1
            }
            throw position == bytes.count && lineNumber > 1 ? .unterminated : .invalidLineEnding(line: lineNumber)
        }

        // Version line.
        let version = Array("NATS/1.0".utf8)
        guard bytes.count >= version.count, Array(bytes[0..<version.count]) == version else {
            throw .missingVersion
        }
        let first = try nextLine()
        var rest = bytes[(first.lowerBound + version.count)..<first.upperBound]
        if !rest.isEmpty {
            guard rest.first == 0x20 || rest.first == 0x09 else { throw .missingVersion }
            while let byte = rest.first, byte == 0x20 || byte == 0x09 { rest = rest.dropFirst() }
            let digits = rest.prefix(3)
            guard digits.count == 3, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                throw .invalidStatus(line: 1)
            }
            var code = 0
            for digit in digits { code = code * 10 + Int(digit - 48) }
            var afterStatus = rest.dropFirst(3)
            if let byte = afterStatus.first, byte != 0x20 && byte != 0x09 { throw .invalidStatus(line: 1) }
            while let byte = afterStatus.first, byte == 0x20 || byte == 0x09 { afterStatus = afterStatus.dropFirst() }
            while let byte = afterStatus.last, byte == 0x20 || byte == 0x09 { afterStatus = afterStatus.dropLast() }
            status = code
            if !afterStatus.isEmpty {
                guard Self.isValidValue(Array(afterStatus)) else { throw .invalidValue(line: 1) }
                guard let text = String(validating: afterStatus, as: UTF8.self) else { throw .invalidUTF8(line: 1) }
                statusDescription = text
            }
        }

        // Field lines, up to the empty line.
        while true {
            lineNumber += 1
            let line = try nextLine()
            if line.isEmpty { break }
            let content = bytes[line]
            if let lead = content.first, lead == 0x20 || lead == 0x09 {
                throw .continuationLine(line: lineNumber)
            }
            guard let colon = content.firstIndex(of: 0x3A) else { throw .missingColon(line: lineNumber) }
            let nameBytes = bytes[line.lowerBound..<colon]
            var valueBytes = bytes[(colon + 1)..<line.upperBound]
            guard Self.isValidName(Array(nameBytes)) else { throw .invalidName(line: lineNumber) }
            guard Self.isValidValue(Array(valueBytes)) else { throw .invalidValue(line: lineNumber) }
            while let byte = valueBytes.first, byte == 0x20 || byte == 0x09 { valueBytes = valueBytes.dropFirst() }
            while let byte = valueBytes.last, byte == 0x20 || byte == 0x09 { valueBytes = valueBytes.dropLast() }
            guard let name = String(validating: nameBytes, as: UTF8.self),
                  let value = String(validating: valueBytes, as: UTF8.self)
            else { throw .invalidUTF8(line: lineNumber) }
            fields.append(HeaderField(name: name, value: value))
        }
        guard position == bytes.count else { throw .trailingBytes }
        original = bytes
    }

    /// ``init(parsing:)-(UnsafeRawBufferPointer)`` over bytes.
    /// - Throws: ``HeadersError`` naming the first problem and its line.
    public init(parsing block: [UInt8]) throws(HeadersError) {
        let result = block.withUnsafeBytes { raw in Result { () throws(HeadersError) -> Headers in try Headers(parsing: raw) } }
        self = try result.get()
    }

    // MARK: rules

    /// Header names: printable ASCII except `:` (no spaces or controls), at least one byte.
    static func isValidName(_ name: [UInt8]) -> Bool {
        !name.isEmpty && name.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x3A }
    }

    /// Header values: anything but control characters (tab allowed).
    static func isValidValue(_ value: [UInt8]) -> Bool {
        value.allSatisfy { $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }
    }

    static func trimmed(_ text: String) -> String {
        var scalars = Substring(text)
        while let c = scalars.first, c == " " || c == "\t" { scalars = scalars.dropFirst() }
        while let c = scalars.last, c == " " || c == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }

    static func namesEqual(_ a: String, _ b: String) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        for (p, q) in zip(x, y) where p != q {
            let lp = (p >= 65 && p <= 90) ? p + 32 : p
            let lq = (q >= 65 && q <= 90) ? q + 32 : q
            if lp != lq { return false }
        }
        return true
    }
}

extension Headers: Equatable {
    /// Equal when status, description and the ordered fields are equal (bytes of the original
    /// spelling, such as spacing after `:`, do not matter).
    public static func == (lhs: Headers, rhs: Headers) -> Bool {
        lhs.status == rhs.status && lhs.statusDescription == rhs.statusDescription && lhs.fields == rhs.fields
    }
}
