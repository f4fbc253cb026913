#if canImport(Glibc)
import Glibc
#endif

/// One typed cell of a dataset: null, boolean, 64-bit integer, finite double or string.
///
/// `int(1)` and `double(1.0)` are different values for hashing (group-by, dedup and join keys)
/// but compare as equal numbers when ordering (sort, min/max, `<` in expressions). Non-finite
/// doubles are never stored: whatever would produce one produces `null`.
public enum Value: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)

    /// A double, or null when it is not finite (NaN, ±infinity).
    @inline(__always)
    static func number(_ d: Double) -> Value { d.isFinite ? .double(d) : .null }

    /// The numeric value of an int or double.
    @inline(__always)
    var numeric: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// True for `.null`.
    @inline(__always)
    var isNull: Bool { if case .null = self { return true } else { return false } }

    /// The type name used in error messages and schemas.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "double"
        case .string: return "string"
        }
    }

    /// The rank of the value's kind in the total order: null < bool < number < string.
    @inline(__always)
    private var kindRank: Int {
        switch self {
        case .null: return 0
        case .bool: return 1
        case .int, .double: return 2
        case .string: return 3
        }
    }

    /// The total order used by sort, min and max: null < false < true < numbers (by value, ints
    /// and doubles compared numerically) < strings (by UTF-8 bytes). Returns -1, 0 or 1.
    static func compare(_ a: Value, _ b: Value) -> Int {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y ? -1 : (x == y ? 0 : 1)
        case (.double(let x), .double(let y)): return x < y ? -1 : (x == y ? 0 : 1)
        case (.int(let x), .double(let y)): return compareMixed(x, y)
        case (.double(let x), .int(let y)): return -compareMixed(y, x)
        case (.string(let x), .string(let y)): return compareStrings(x, y)
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (x ? 1 : -1)
        case (.null, .null): return 0
        default:
            let ra = a.kindRank, rb = b.kindRank
            return ra < rb ? -1 : (ra == rb ? 0 : 1)
        }
    }

    /// An Int64 against a double, exactly (no rounding of large integers).
    private static func compareMixed(_ i: Int64, _ d: Double) -> Int {
        if d >= 9.223372036854775807e18 { return -1 }
        if d < -9.223372036854775808e18 { return 1 }
        let t = d.rounded(.towardZero)
        let ti = Int64(t)
        if i != ti { return i < ti ? -1 : 1 }
        let frac = d - t
        return frac > 0 ? -1 : (frac < 0 ? 1 : 0)
    }

    /// Strings by their UTF-8 bytes (memcmp order; fast and locale-free).
    static func compareStrings(_ a: String, _ b: String) -> Int {
        var a = a, b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let n = min(pa.count, pb.count)
                if n > 0, let ba = pa.baseAddress, let bb = pb.baseAddress {
                    let r = memcmp(ba, bb, n)
                    if r != 0 { return r < 0 ? -1 : 1 }
                }
                return pa.count < pb.count ? -1 : (pa.count == pb.count ? 0 : 1)
            }
        }
    }
}

/// A table of records: field names in order, and one row of values per record (every row has
/// exactly `fields.count` values; a field a record lacks is null).
public struct Dataset: Sendable, Equatable {
    /// Field names, in first-seen order.
    public var fields: [String]
    /// The records.
    public var rows: [[Value]]

    /// A dataset.
    public init(fields: [String], rows: [[Value]]) {
        self.fields = fields
        self.rows = rows
    }

    /// Number of records.
    public var count: Int { rows.count }

    /// The index of `field`, if present.
    public func index(of field: String) -> Int? { fields.firstIndex(of: field) }

    /// The value of `field` in record `row` (nil when the field does not exist).
    public func value(_ field: String, at row: Int) -> Value? {
        guard let i = index(of: field), rows.indices.contains(row) else { return nil }
        return rows[row][i]
    }
}

/// An error that answers a transform: a status (HTTP-like: 400 bad request, 408 time budget,
/// 413 a size limit, 422 a pipeline or data error, 429 busy) and a message.
public struct TransformError: Error, Sendable, Equatable, CustomStringConvertible {
    /// HTTP-like status code, also the NATS service error code.
    public var status: Int
    /// Human-readable text (one line).
    public var message: String
    /// An error.
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { "\(status): \(message)" }
}
