/// A JSON document as a tree. Object members keep document order and repeated keys (the caller
/// decides which one wins; ``subscript(_:)`` takes the last, as most decoders do). Numbers
/// without a fraction or exponent that fit 64 bits stay exact integers.
public enum JSON: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` / `false`.
    case bool(Bool)
    /// A number without fraction or exponent that fits `Int64`.
    case int(Int64)
    /// Any other number (correctly rounded).
    case double(Double)
    /// A string (invalid UTF-8 in the source became U+FFFD).
    case string(String)
    /// An array.
    case array([JSON])
    /// An object, members in document order.
    case object([JSONMember])

    /// The value of the last member named `key` of an object; nil for other values.
    public subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    /// The text of a string, else nil.
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The flag of a boolean, else nil.
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// An integer, or a double with an integral value within `Int64`, else nil.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9e18: return Int64(d)
        default: return nil
        }
    }
    /// A number as a double, else nil.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    /// The members of an object, else nil.
    public var members: [JSONMember]? { if case .object(let m) = self { return m } else { return nil } }
    /// The elements of an array, else nil.
    public var elements: [JSON]? { if case .array(let a) = self { return a } else { return nil } }
    /// A short name of the JSON type, for error messages.
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

    /// Parses `bytes` as exactly one JSON value surrounded by optional whitespace.
    /// - Throws: ``JSONError`` for malformed JSON, nesting deeper than `maxDepth`, or data after
    ///   the value.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = JSONReader.defaultMaxDepth) throws(JSONError) -> JSON {
        let result = bytes.withUnsafeBufferPointer { buffer in
            Result { () throws(JSONError) -> JSON in try parse(buffer, maxDepth: maxDepth) }
        }
        return try result.get()
    }

    /// Parses the UTF-8 of `text` (see ``parse(_:maxDepth:)-([UInt8],_)``).
    /// - Throws: ``JSONError`` as that function does.
    public static func parse(_ text: String, maxDepth: Int = JSONReader.defaultMaxDepth) throws(JSONError) -> JSON {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }

    /// Parses the bytes of `buffer` (see ``parse(_:maxDepth:)-([UInt8],_)``).
    /// - Throws: ``JSONError`` as that function does.
    public static func parse(_ buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int = JSONReader.defaultMaxDepth) throws(JSONError) -> JSON {
        var reader = JSONReader(buffer)
        reader.maxDepth = maxDepth
        let value = try reader.readValue()
        try reader.expectEnd()
        return value
    }

    /// Compact JSON text of this value: members in their order, RFC 8259 escaping.
    public var serialized: [UInt8] {
        var writer = JSONWriter()
        writer.value(self)
        return writer.bytes
    }
}

/// One member of a JSON object.
public struct JSONMember: Sendable, Hashable {
    /// The member's name.
    public var key: String
    /// The member's value.
    public var value: JSON
    /// A member named `key` with `value`.
    public init(_ key: String, _ value: JSON) { self.key = key; self.value = value }
}

/// Why a JSON text was rejected: what was wrong and the byte offset where it was found.
public struct JSONError: Error, Equatable, CustomStringConvertible {
    /// What was wrong, e.g. "expected ',' or '}'".
    public let message: String
    /// The offset of the offending byte from the start of the input.
    public let offset: Int

    /// An error at byte `offset`.
    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    /// `invalid JSON at byte <offset>: <message>`.
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}
