import Formats

/// A JSON value for data whose shape is not fixed at compile time (custom JWT claims,
/// configuration files, log fields): objects are dictionaries, so values hash and compare
/// regardless of member order. Read and written with Formats' ``Formats/JSON`` reader and writer,
/// which keep the order where it matters.
public enum JSONValue: Sendable, Equatable, Hashable, Codable {
    /// `null`.
    case null
    /// `true` / `false`.
    case bool(Bool)
    /// An integer that fits in 64 bits (JSON numbers without fraction or exponent).
    case int(Int64)
    /// Any other number.
    case double(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object (member order is not kept).
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let i = try? container.decode(Int64.self) { self = .int(i) }
        else if let d = try? container.decode(Double.self) { self = .double(d) }
        else if let s = try? container.decode(String.self) { self = .string(s) }
        else if let a = try? container.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }

    /// Parses one JSON document. Returns nil for invalid JSON (``Formats/JSON/parse(_:maxDepth:)-([UInt8],_)``
    /// says why, for callers that need it); a repeated object key keeps its last value.
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        guard let document = try? JSON.parse(bytes) else { return nil }
        return JSONValue(document)
    }

    /// The value of a parsed document (objects lose their member order).
    public init(_ document: JSON) {
        switch document {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(JSONValue.init))
        case .object(let members):
            var object: [String: JSONValue] = [:]
            for m in members { object[m.key] = JSONValue(m.value) }
            self = .object(object)
        }
    }

    /// Compact JSON with sorted object keys (deterministic output); non-finite doubles become null.
    public var serialized: [UInt8] {
        var out: [UInt8] = []
        write(to: &out)
        return out
    }

    /// Appends ``serialized`` to `out`.
    public func write(to out: inout [UInt8]) {
        var writer = JSONWriter(capacity: 0)
        swap(&writer.bytes, &out)
        writer.value(document)
        swap(&writer.bytes, &out)
    }

    /// The value as a Formats document, object members sorted by key.
    public var document: JSON {
        switch self {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let items): return .array(items.map(\.document))
        case .object(let members):
            return .object(members.sorted { $0.key < $1.key }.map { JSONMember($0.key, $0.value.document) })
        }
    }

    /// The string for `.string`, else nil.
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The number as Double for `.int` and `.double`, else nil.
    public var numberValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
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
}
