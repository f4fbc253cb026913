/// A complete HTTP request as a route handler sees it.
public struct HTTPRequest: Sendable {
    /// The request method.
    public var method: HTTPMethod
    /// The percent-decoded path, without the query string.
    public var path: String
    /// The raw request target as sent (path and query).
    public var target: String
    /// The decoded query parameters, in order.
    public var query: HTTPQuery
    /// The header fields, in order.
    public var headers: HTTPHeaders
    /// The body bytes (empty when there was none).
    public var body: [UInt8]
    /// The values of the route's `{name}` path parameters, percent-decoded.
    public var pathParameters: [String: String]
    /// The peer's address as `host:port` (`[v6]:port` for IPv6), or empty when unknown.
    public var remoteAddress: String
    /// The protocol version.
    public var version: HTTPVersion

    /// Creates a request (for tests and in-memory dispatch; the server builds them from parsed requests).
    public init(
        method: HTTPMethod, target: String, headers: HTTPHeaders = [:], body: [UInt8] = [],
        remoteAddress: String = "", version: HTTPVersion = .http1_1
    ) {
        self.method = method
        self.target = target
        let (path, query) = URLDecoding.splitTarget(target)
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.pathParameters = [:]
        self.remoteAddress = remoteAddress
        self.version = version
    }

    /// The body as UTF-8 text.
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Decoded query parameters: ordered, repeated keys kept.
public struct HTTPQuery: Sendable, Equatable {
    /// The `(name, value)` pairs in order, percent-decoded (`+` as space).
    public var items: [(name: String, value: String)]

    /// Creates a query from pairs.
    public init(_ items: [(name: String, value: String)] = []) { self.items = items }

    /// The first value for `name`, or nil.
    public subscript(name: String) -> String? { items.first { $0.name == name }?.value }

    /// Every value for `name`, in order.
    public func values(for name: String) -> [String] { items.filter { $0.name == name }.map(\.value) }

    public static func == (lhs: HTTPQuery, rhs: HTTPQuery) -> Bool {
        lhs.items.count == rhs.items.count && zip(lhs.items, rhs.items).allSatisfy { $0 == $1 }
    }
}

/// Percent-decoding of paths and query strings.
enum URLDecoding {
    /// Splits a request target into the decoded path and the decoded query.
    static func splitTarget(_ target: String) -> (String, HTTPQuery) {
        let utf8 = Array(target.utf8)
        let mark = utf8.firstIndex(of: 0x3F) ?? utf8.count
        let path = percentDecode(utf8[0..<mark], plusAsSpace: false) ?? String(decoding: utf8[0..<mark], as: UTF8.self)
        guard mark < utf8.count else { return (path, HTTPQuery()) }
        return (path, parseQuery(utf8[(mark + 1)...]))
    }

    /// Parses `a=1&b=2&c` into pairs; a key without `=` has an empty value; empty pieces are skipped.
    static func parseQuery(_ bytes: ArraySlice<UInt8>) -> HTTPQuery {
        var items: [(name: String, value: String)] = []
        for piece in bytes.split(separator: 0x26, omittingEmptySubsequences: true) {
            let name: ArraySlice<UInt8>
            let value: ArraySlice<UInt8>
            if let eq = piece.firstIndex(of: 0x3D) {
                name = piece[piece.startIndex..<eq]
                value = piece[(eq + 1)...]
            } else {
                name = piece
                value = []
            }
            items.append((
                name: percentDecode(name, plusAsSpace: true) ?? String(decoding: name, as: UTF8.self),
                value: percentDecode(value, plusAsSpace: true) ?? String(decoding: value, as: UTF8.self)
            ))
        }
        return HTTPQuery(items)
    }

    /// Decodes `%XX` escapes (and `+` when asked). Returns nil for a broken escape.
    static func percentDecode<C: Collection>(_ bytes: C, plusAsSpace: Bool) -> String? where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        while let b = iterator.next() {
            if b == 0x25 {
                guard let h = iterator.next().flatMap(HTTPRequestParser.hexValue),
                    let l = iterator.next().flatMap(HTTPRequestParser.hexValue)
                else { return nil }
                out.append(UInt8(h * 16 + l))
            } else if b == 0x2B && plusAsSpace {
                out.append(0x20)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
