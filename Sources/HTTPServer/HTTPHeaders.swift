// HTTP header fields: ordered, multi-valued, case-preserving, looked up case-insensitively.
// No Foundation: this file is compiled into the fuzz target together with the parser.

/// An ordered list of HTTP header fields.
///
/// Names keep the case they were sent or set with; lookups compare names ASCII case-insensitively.
/// Order and repeated fields are kept as received.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    /// The fields in order.
    public private(set) var fields: [(name: String, value: String)]

    /// Creates an empty header list.
    public init() { fields = [] }

    /// Creates a header list from `(name, value)` pairs, keeping their order.
    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { (name: $0.0, value: $0.1) }
    }

    /// Creates a header list from a literal, keeping the literal's order.
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The number of fields.
    public var count: Int { fields.count }

    /// Appends a field, keeping any existing fields with the same name.
    public mutating func add(name: String, value: String) {
        fields.append((name: name, value: value))
    }

    /// Replaces every field named `name` (case-insensitively) with one field, placed where the first one was
    /// (or at the end).
    public mutating func replaceOrAdd(name: String, value: String) {
        if let first = fields.firstIndex(where: { Self.equalsIgnoringCase($0.name, name) }) {
            fields[first] = (name: name, value: value)
            var index = fields.count - 1
            while index > first {
                if Self.equalsIgnoringCase(fields[index].name, name) { fields.remove(at: index) }
                index -= 1
            }
        } else {
            fields.append((name: name, value: value))
        }
    }

    /// Removes every field named `name` (case-insensitively).
    public mutating func remove(name: String) {
        fields.removeAll { Self.equalsIgnoringCase($0.name, name) }
    }

    /// The value of the first field named `name` (case-insensitively), or nil.
    public subscript(name: String) -> String? {
        fields.first { Self.equalsIgnoringCase($0.name, name) }?.value
    }

    /// Every value of the fields named `name` (case-insensitively), in order.
    public func values(for name: String) -> [String] {
        fields.compactMap { Self.equalsIgnoringCase($0.name, name) ? $0.value : nil }
    }

    /// Whether a field named `name` exists.
    public func contains(_ name: String) -> Bool {
        fields.contains { Self.equalsIgnoringCase($0.name, name) }
    }

    /// The comma-separated tokens of every field named `name`, trimmed and lowercased
    /// (for list-valued fields such as `Connection` and `Transfer-Encoding`).
    public func tokens(for name: String) -> [String] {
        var result: [String] = []
        for value in values(for: name) {
            for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                result.append(Self.trimmedLowercased(part))
            }
        }
        return result
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// ASCII case-insensitive comparison (header names are ASCII tokens).
    static func equalsIgnoringCase(_ a: String, _ b: String) -> Bool {
        var ia = a.utf8.makeIterator()
        var ib = b.utf8.makeIterator()
        while true {
            switch (ia.next(), ib.next()) {
            case (nil, nil): return true
            case let (x?, y?):
                if x != y && lowerASCII(x) != lowerASCII(y) { return false }
            default: return false
            }
        }
    }

    static func lowerASCII(_ b: UInt8) -> UInt8 {
        (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
    }

    static func trimmedLowercased(_ s: Substring) -> String {
        let bytes = Array(s.utf8)
        var lo = 0
        var hi = bytes.count
        while lo < hi && (bytes[lo] == 0x20 || bytes[lo] == 0x09) { lo += 1 }
        while hi > lo && (bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0x09) { hi -= 1 }
        return String(decoding: bytes[lo..<hi].map(lowerASCII), as: UTF8.self)
    }
}

extension HTTPHeaders: CustomStringConvertible {
    public var description: String {
        fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }
}
