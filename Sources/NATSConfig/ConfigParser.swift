/// Parses the nats.conf format of nats-server 2.9.10 into an ordered tree whose every node knows
/// its `file:line:column`.
///
/// The syntax accepted:
/// - `key = value`, `key: value` or `key value`; a map may follow its key directly (`cluster { }`);
/// - values end at a new line, `,`, `;`, or the `}` / `]` that closes their block;
/// - `#` and `//` comments; a top-level `{ ... }` wrapper, so JSON (with comments) is accepted;
/// - strings double-quoted (escapes `\t \n \r \" \\ \xHH`), single-quoted (raw) or bare;
/// - integers with size suffixes (`k m g t p e` are powers of 1000; `kb ki kib`, `mb mi mib`, ...
///   powers of 1024, any case), floats, booleans (`true false yes no on off`), Zulu date-times,
///   host:port and dotted-IP literals as strings;
/// - `[ ]` arrays (items separated by `,` or new lines) and `{ }` maps;
/// - `$NAME` variables: looked up in the enclosing maps from the innermost out, then in the
///   environment (whose text is parsed as a value); a raw bcrypt hash (`$2a$...`) is a string;
/// - `include path` (quoted or bare), relative to the including file, merged where it stands;
/// - `( ... )` blocks: raw text up to a `)` alone on its line.
public enum ConfigParser {
    /// Files larger than this are refused rather than read into memory.
    public static let maxFileSize = 16 << 20
    /// Nested includes deeper than this are refused (this also stops include cycles).
    public static let maxIncludeDepth = 10
    /// Maps and arrays nested deeper than this are refused (bounded recursion).
    public static let maxNesting = 64

    /// Parses the file at `path`.
    ///
    /// - Parameters:
    ///   - path: the configuration file; includes are resolved relative to its folder.
    ///   - environment: where `$NAME` references not defined in the file are looked up.
    /// - Throws: ``ConfigError`` with the file, line and column of the first problem: a file
    ///   that cannot be read or is too large, a syntax error, an unresolved variable, a bad include.
    public static func parse(
        contentsOf path: String,
        environment: [String: String] = ProcessEnvironment.current
    ) throws(ConfigError) -> ConfigMap {
        try parseFile(path, displayName: path, environment: environment, depth: 0, includedFrom: nil)
    }

    /// Parses configuration text.
    ///
    /// - Parameters:
    ///   - text: the configuration.
    ///   - file: the name used in locations and error messages.
    ///   - baseDirectory: where relative includes are looked for (default: the current folder).
    ///   - environment: where `$NAME` references not defined in the text are looked up.
    /// - Throws: ``ConfigError`` for the first syntax error, unresolved variable or bad include.
    public static func parse(
        _ text: String,
        file: String = "<config>",
        baseDirectory: String? = nil,
        environment: [String: String] = [:]
    ) throws(ConfigError) -> ConfigMap {
        var parser = Parser(
            bytes: Array(text.utf8), file: file,
            directory: baseDirectory ?? HostFiles.currentDirectory,
            environment: environment, includeDepth: 0)
        return try parser.parseDocument()
    }

    static func parseFile(
        _ path: String, displayName: String, environment: [String: String], depth: Int,
        includedFrom: SourceLocation?
    ) throws(ConfigError) -> ConfigMap {
        guard depth <= maxIncludeDepth else {
            throw ConfigError("includes nested more than \(maxIncludeDepth) deep (an include cycle?)", at: includedFrom)
        }
        let data: [UInt8]
        do {
            data = try HostFiles.read(path, limit: maxFileSize + 1)
        } catch {
            switch error {
            case .cannotOpen(let exists):
                let reason = exists ? "permission denied" : "no such file"
                throw ConfigError("cannot open configuration file '\(displayName)': \(reason)", at: includedFrom)
            case .cannotRead(let reason):
                throw ConfigError("cannot read configuration file '\(displayName)': \(reason)", at: includedFrom)
            }
        }
        guard data.count <= maxFileSize else {
            throw ConfigError("configuration file '\(displayName)' is larger than \(maxFileSize) bytes", at: includedFrom)
        }
        var parser = Parser(
            bytes: data, file: displayName,
            directory: HostFiles.directory(of: path),
            environment: environment, includeDepth: depth)
        return try parser.parseDocument()
    }
}

/// A map under construction. Variable lookups walk the chain of these, innermost first.
private final class MapScope {
    var map = ConfigMap()
}

private struct Parser {
    let bytes: [UInt8]
    let file: String
    let directory: String
    let environment: [String: String]
    let includeDepth: Int

    var pos = 0
    var line = 1
    var lineStart = 0
    var scopes: [MapScope] = []

    init(bytes: [UInt8], file: String, directory: String, environment: [String: String], includeDepth: Int) {
        self.bytes = bytes
        self.file = file
        self.directory = directory
        self.environment = environment
        self.includeDepth = includeDepth
        // A UTF-8 byte order mark is not part of the text.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            pos = 3
            lineStart = 3
        }
    }

    // MARK: Cursor

    var location: SourceLocation { SourceLocation(file: file, line: line, column: pos - lineStart + 1) }
    var atEnd: Bool { pos >= bytes.count }
    var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }
    func peek(_ offset: Int) -> UInt8? { pos + offset < bytes.count ? bytes[pos + offset] : nil }

    mutating func advance() {
        if bytes[pos] == UInt8(ascii: "\n") {
            line += 1
            lineStart = pos + 1
        }
        pos += 1
    }

    static func isBlank(_ b: UInt8) -> Bool { b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
    static func isNewline(_ b: UInt8) -> Bool { b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r") }
    static func isSpace(_ b: UInt8) -> Bool { isBlank(b) || isNewline(b) || b == 0x0B || b == 0x0C }

    /// True at `#` or `//`.
    var atComment: Bool {
        peek == UInt8(ascii: "#") || (peek == UInt8(ascii: "/") && peek(1) == UInt8(ascii: "/"))
    }

    mutating func skipBlanks() {
        while let b = peek, Self.isBlank(b) { advance() }
    }

    mutating func skipComment() {
        while let b = peek, !Self.isNewline(b) { advance() }
    }

    /// Skips white space, new lines and comments.
    mutating func skipTrivia() {
        while let b = peek {
            if Self.isSpace(b) {
                advance()
            } else if atComment {
                skipComment()
            } else {
                return
            }
        }
    }

    func describe(_ b: UInt8?) -> String {
        guard let b else { return "end of file" }
        switch b {
        case UInt8(ascii: "\n"): return "a new line"
        case UInt8(ascii: "\r"): return "a carriage return"
        case UInt8(ascii: "\t"): return "a tab"
        case 0x20...0x7E: return "'\(Character(Unicode.Scalar(b)))'"
        default: return "byte 0x\(String(b, radix: 16))"
        }
    }

    // MARK: Maps

    mutating func parseDocument() throws(ConfigError) -> ConfigMap {
        let scope = MapScope()
        scopes.append(scope)
        try parseEntries(into: scope, closer: nil, depth: 0)
        scopes.removeLast()
        return scope.map
    }

    /// Parses `key value` entries into `scope` until `closer` (consumed) or, at the top level, EOF.
    mutating func parseEntries(into scope: MapScope, closer: (UInt8, SourceLocation)?, depth: Int) throws(ConfigError) {
        while true {
            skipTrivia()
            // Separators between entries are allowed anywhere.
            while let b = peek, b == UInt8(ascii: ",") || b == UInt8(ascii: ";") {
                advance()
                skipTrivia()
            }
            guard let b = peek else {
                if let closer {
                    throw ConfigError("unexpected end of file: the map opened at \(closer.1) is not closed", at: location)
                }
                return
            }
            if let closer, b == closer.0 {
                advance()
                return
            }
            if closer == nil, b == UInt8(ascii: "{") || b == UInt8(ascii: "}") {
                // A top-level brace pair wraps JSON-style files; nats-server skips it too.
                advance()
                continue
            }
            try parseEntry(into: scope, depth: depth)
            try expectEntryEnd(closer: closer?.0)
        }
    }

    /// After a value: blanks, then a new line, `,`, `;`, a comment, the closer or EOF.
    mutating func expectEntryEnd(closer: UInt8?) throws(ConfigError) {
        skipBlanks()
        guard let b = peek else { return }
        if Self.isNewline(b) || b == UInt8(ascii: ",") || b == UInt8(ascii: ";") || atComment { return }
        if let closer, b == closer { return }
        if closer == nil, b == UInt8(ascii: "}") { return }
        throw ConfigError("expected a new line, ',' or ';' after the value, found \(describe(b))", at: location)
    }

    mutating func parseEntry(into scope: MapScope, depth: Int) throws(ConfigError) {
        let keyLocation = location
        let (key, quoted) = try parseKey()
        let hadBlank = peek.map(Self.isBlank) ?? false
        skipBlanks()
        if !quoted, hadBlank, key.lowercased() == "include" {
            try parseInclude(into: scope, at: keyLocation)
            return
        }
        if let b = peek, b == UInt8(ascii: "=") || b == UInt8(ascii: ":") {
            advance()
            skipBlanks()
        }
        guard let b = peek, !Self.isNewline(b), !atComment else {
            throw ConfigError("expected a value for \"\(key)\", found \(describe(peek))", at: location)
        }
        let node = try parseValue(depth: depth)
        scope.map.set(ConfigEntry(key: key, keyLocation: keyLocation, node: node))
    }

    /// A key: quoted, or bare up to white space, `=` or `:`.
    mutating func parseKey() throws(ConfigError) -> (String, quoted: Bool) {
        let start = location
        if let q = peek, q == UInt8(ascii: "\"") || q == UInt8(ascii: "'") {
            advance()
            let from = pos
            while let b = peek, b != q {
                if Self.isNewline(b) { throw ConfigError("the key quoted at \(start) is not closed on its line", at: location) }
                advance()
            }
            guard !atEnd else { throw ConfigError("unexpected end of file in the key quoted at \(start)", at: location) }
            let key = String(decoding: bytes[from..<pos], as: UTF8.self)
            advance()
            return (key, true)
        }
        if let b = peek, b == UInt8(ascii: "=") || b == UInt8(ascii: ":") {
            throw ConfigError("expected a key, found \(describe(b))", at: location)
        }
        let from = pos
        while let b = peek, !Self.isSpace(b), b != UInt8(ascii: "="), b != UInt8(ascii: ":"),
            b != UInt8(ascii: "{"), b != UInt8(ascii: "[")
        {
            advance()
        }
        guard pos > from else { throw ConfigError("expected a key, found \(describe(peek))", at: location) }
        return (String(decoding: bytes[from..<pos], as: UTF8.self), false)
    }

    mutating func parseInclude(into scope: MapScope, at keyLocation: SourceLocation) throws(ConfigError) {
        let pathLocation = location
        let path: String
        if let q = peek, q == UInt8(ascii: "\"") || q == UInt8(ascii: "'") {
            advance()
            let from = pos
            while let b = peek, b != q, !Self.isNewline(b) { advance() }
            guard peek == q else { throw ConfigError("the include path quoted at \(pathLocation) is not closed", at: location) }
            path = String(decoding: bytes[from..<pos], as: UTF8.self)
            advance()
        } else {
            let from = pos
            while let b = peek, !Self.isSpace(b), b != UInt8(ascii: ";"), b != UInt8(ascii: "}") { advance() }
            path = String(decoding: bytes[from..<pos], as: UTF8.self)
        }
        guard !path.isEmpty else { throw ConfigError("include needs a file name", at: pathLocation) }
        let full = HostFiles.resolve(path, relativeTo: directory)
        let included = try ConfigParser.parseFile(
            full, displayName: full, environment: environment,
            depth: includeDepth + 1, includedFrom: keyLocation)
        for entry in included.entries { scope.map.set(entry) }
    }

    // MARK: Values

    mutating func parseValue(depth: Int) throws(ConfigError) -> ConfigNode {
        guard depth < ConfigParser.maxNesting else {
            throw ConfigError("maps and arrays nested more than \(ConfigParser.maxNesting) deep", at: location)
        }
        let start = location
        guard let b = peek else { throw ConfigError("expected a value, found end of file", at: start) }
        switch b {
        case UInt8(ascii: "{"):
            advance()
            let scope = MapScope()
            scopes.append(scope)
            try parseEntries(into: scope, closer: (UInt8(ascii: "}"), start), depth: depth + 1)
            scopes.removeLast()
            return ConfigNode(.map(scope.map), at: start)
        case UInt8(ascii: "["):
            advance()
            return ConfigNode(.array(try parseArrayItems(openedAt: start, depth: depth + 1)), at: start)
        case UInt8(ascii: "\""):
            return ConfigNode(.string(try parseDoubleQuoted()), at: start)
        case UInt8(ascii: "'"):
            return ConfigNode(.string(try parseSingleQuoted()), at: start)
        case UInt8(ascii: "("):
            return ConfigNode(.string(try parseBlock()), at: start)
        case UInt8(ascii: "$"):
            return try parseVariable()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return ConfigNode(try classifyNumeric(bareToken(), at: start), at: start)
        case UInt8(ascii: "."):
            throw ConfigError("a number must start with a digit", at: start)
        default:
            let text = bareToken()
            switch text.lowercased() {
            case "true", "yes", "on": return ConfigNode(.bool(true), at: start)
            case "false", "no", "off": return ConfigNode(.bool(false), at: start)
            default: return ConfigNode(.string(text), at: start)
            }
        }
    }

    /// A bare token: up to white space, a new line, `,`, `;`, `]` or `}`.
    mutating func bareToken() -> String {
        let from = pos
        while let b = peek, !Self.isSpace(b), b != UInt8(ascii: ","), b != UInt8(ascii: ";"),
            b != UInt8(ascii: "]"), b != UInt8(ascii: "}")
        {
            advance()
        }
        return String(decoding: bytes[from..<pos], as: UTF8.self)
    }

    mutating func parseArrayItems(openedAt start: SourceLocation, depth: Int) throws(ConfigError) -> [ConfigNode] {
        var items: [ConfigNode] = []
        while true {
            skipTrivia()
            guard let b = peek else {
                throw ConfigError("unexpected end of file: the array opened at \(start) is not closed", at: location)
            }
            if b == UInt8(ascii: "]") {
                advance()
                return items
            }
            if b == UInt8(ascii: ",") {
                throw ConfigError("unexpected ',' in the array opened at \(start)", at: location)
            }
            items.append(try parseValue(depth: depth))
            skipBlanks()
            if atComment { skipComment() }
            guard let next = peek else { continue }
            if next == UInt8(ascii: ",") {
                advance()
            } else if next == UInt8(ascii: "]") || Self.isNewline(next) {
                continue
            } else {
                throw ConfigError("expected ',' or ']' in the array opened at \(start), found \(describe(next))", at: location)
            }
        }
    }

    mutating func parseDoubleQuoted() throws(ConfigError) -> String {
        let start = location
        advance()
        var out: [UInt8] = []
        while let b = peek {
            switch b {
            case UInt8(ascii: "\""):
                advance()
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                let escapeAt = location
                advance()
                guard let e = peek else { break }
                advance()
                switch e {
                case UInt8(ascii: "t"): out.append(UInt8(ascii: "\t"))
                case UInt8(ascii: "n"): out.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "r"): out.append(UInt8(ascii: "\r"))
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "x"):
                    guard let h = peek.flatMap(Self.hexValue), let l = peek(1).flatMap(Self.hexValue) else {
                        throw ConfigError("expected two hexadecimal digits after '\\x'", at: escapeAt)
                    }
                    advance()
                    advance()
                    out.append(h << 4 | l)
                default:
                    throw ConfigError(
                        "invalid escape \(describe(e)) in a string: only \\xHH, \\t, \\n, \\r, \\\" and \\\\ are allowed",
                        at: escapeAt)
                }
            default:
                out.append(b)
                advance()
            }
        }
        throw ConfigError("unexpected end of file: the string opened at \(start) is not closed", at: location)
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    mutating func parseSingleQuoted() throws(ConfigError) -> String {
        let start = location
        advance()
        let from = pos
        while let b = peek, b != UInt8(ascii: "'") { advance() }
        guard !atEnd else {
            throw ConfigError("unexpected end of file: the string opened at \(start) is not closed", at: location)
        }
        let text = String(decoding: bytes[from..<pos], as: UTF8.self)
        advance()
        return text
    }

    /// `( ... )`: raw text up to a `)` that stands alone on its line. As in nats-server, the text
    /// starts right after `(`, so a block opened at the end of a line begins with that new line.
    mutating func parseBlock() throws(ConfigError) -> String {
        let start = location
        advance()
        let from = pos
        while !atEnd {
            if bytes[pos] == UInt8(ascii: ")"), pos > from, bytes[pos - 1] == UInt8(ascii: "\n"),
                peek(1) == nil || peek(1).map(Self.isNewline) == true
            {
                let text = String(decoding: bytes[from..<(pos - 1)], as: UTF8.self)
                advance()
                return text
            }
            advance()
        }
        throw ConfigError("unexpected end of file: the block opened at \(start) needs a ')' alone on a line", at: location)
    }

    mutating func parseVariable() throws(ConfigError) -> ConfigNode {
        let start = location
        advance()  // $
        let name = bareToken()
        guard !name.isEmpty else { throw ConfigError("'$' must be followed by a variable name", at: start) }
        // A raw bcrypt hash is a password, not a reference.
        if name.hasPrefix("2a$") || name.hasPrefix("2b$") || name.hasPrefix("2y$") {
            return ConfigNode(.string("$" + name), at: start)
        }
        for scope in scopes.reversed() {
            if let index = scope.map.entries.firstIndex(where: { $0.key == name }) {
                scope.map.markUsed(at: index)
                return ConfigNode(scope.map.entries[index].node.value, at: start)
            }
        }
        if let text = environment[name] {
            // The environment's text is read as a value would be in the file ("4222" is a number).
            var sub = Parser(
                bytes: Array(text.utf8), file: "$\(name)", directory: directory, environment: [:],
                includeDepth: includeDepth)
            if let node = try? sub.parseValue(depth: 0), sub.trailingIsBlank() {
                return ConfigNode(node.value, at: start)
            }
            return ConfigNode(.string(text), at: start)
        }
        throw ConfigError("variable reference for '\(name)' on line \(start.line) can not be found", at: start)
    }

    mutating func trailingIsBlank() -> Bool {
        skipTrivia()
        return atEnd
    }

    /// Classifies a token that starts with a digit or '-': integer (with size suffix), float,
    /// date-time, or a dotted/colon literal such as an IP address or host:port.
    func classifyNumeric(_ token: String, at start: SourceLocation) throws(ConfigError) -> ConfigValue {
        let utf8 = Array(token.utf8)
        var i = 0
        if i < utf8.count, utf8[i] == UInt8(ascii: "-") { i += 1 }
        let digitsStart = i
        while i < utf8.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(utf8[i]) { i += 1 }
        guard i > digitsStart else { throw ConfigError("expected a number, found '\(token)'", at: start) }
        let rest = String(decoding: utf8[i...], as: UTF8.self)
        if rest.isEmpty || Self.sizeMultipliers[rest.lowercased()] != nil {
            let multiplier = Self.sizeMultipliers[rest.lowercased()] ?? 1
            guard let number = Int64(String(decoding: utf8[..<i], as: UTF8.self)) else {
                throw ConfigError("integer '\(token)' is out of range", at: start)
            }
            let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { throw ConfigError("integer '\(token)' is out of range", at: start) }
            return .integer(product)
        }
        if Self.isFloat(utf8), let value = Double(token) { return .float(value) }
        if Self.isZuluDate(utf8) { return .datetime(token) }
        if utf8.allSatisfy({ Self.isAddressByte($0) }) { return .string(token) }
        throw ConfigError(
            "invalid number '\(token)' (size suffixes are k, kb, ki, kib, m, mb, ... ; quote text that starts with a digit)",
            at: start)
    }

    static let sizeMultipliers: [String: Int64] = {
        var table: [String: Int64] = [:]
        let prefixes = ["k", "m", "g", "t", "p", "e"]
        var decimal: Int64 = 1
        var binary: Int64 = 1
        for p in prefixes {
            decimal *= 1000
            binary *= 1024
            table[p] = decimal
            for suffix in ["b", "i", "ib"] { table[p + suffix] = binary }
        }
        return table
    }()

    static func isFloat(_ s: [UInt8]) -> Bool {
        var i = 0
        if i < s.count, s[i] == UInt8(ascii: "-") { i += 1 }
        let a = i
        while i < s.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(s[i]) { i += 1 }
        guard i > a, i < s.count, s[i] == UInt8(ascii: ".") else { return false }
        i += 1
        let b = i
        while i < s.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(s[i]) { i += 1 }
        return i > b && i == s.count
    }

    static func isZuluDate(_ s: [UInt8]) -> Bool {
        let pattern = Array("0000-00-00T00:00:00Z".utf8)
        guard s.count == pattern.count else { return false }
        for (c, p) in zip(s, pattern) {
            if p == UInt8(ascii: "0") {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { return false }
            } else if c != p {
                return false
            }
        }
        return true
    }

    static func isAddressByte(_ b: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: ":")
            || b == UInt8(ascii: "-")
    }
}
