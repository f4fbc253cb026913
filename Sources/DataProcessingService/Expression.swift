#if canImport(Glibc)
import Glibc
#endif

/// A syntax or name error in an expression, with the 1-based character position it refers to.
public struct ExpressionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var message: String
    /// 1-based position (in characters) in the expression text.
    public var position: Int
    public var description: String { "\(message) at position \(position)" }
}

/// A run-time error of an expression on one record (a type mismatch), with its position.
public struct EvaluationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var position: Int
    public var description: String { "\(message) at position \(position)" }
}

/// A small expression language over one record, parsed once into a tree whose field references
/// are resolved to column indices, then evaluated per record.
///
/// Grammar (lowest precedence first; binary operators are left-associative):
/// ```
/// expr     := or
/// or       := and (("or" | "||") and)*
/// and      := not (("and" | "&&") not)*
/// not      := ("not" | "!") not | compare
/// compare  := additive (("==" | "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive)?
/// additive := term (("+" | "-") term)*
/// term     := unary (("*" | "/" | "%") unary)*
/// unary    := "-" unary | primary
/// primary  := number | string | "true" | "false" | "null" | field | function "(" [expr ("," expr)*] ")" | "(" expr ")"
/// field    := identifier ([A-Za-z_][A-Za-z0-9_.]*) | `any text in backticks`
/// string   := '...' | "..."   (backslash escapes \\ \' \" \n \t)
/// ```
/// Keywords are case-insensitive. See docs/data-processing.md for the semantics.
public struct Expression: Sendable {
    /// The source text.
    public let source: String
    let root: Node

    /// Deepest nesting the parser accepts (it recurses).
    static let maxDepth = 64

    /// Parses `source` against the record's field names.
    /// - Throws: ``ExpressionError`` for a syntax error, an unknown field or function, a wrong
    ///   argument count, or nesting deeper than 64.
    public init(_ source: String, fields: [String]) throws(ExpressionError) {
        var parser = ExpressionParser(source: source, fields: fields)
        root = try parser.parseAll()
        self.source = source
    }

    private init(source: String, root: Node) {
        self.source = source
        self.root = root
    }

    /// A copy that shares no tree nodes (or long string constants) with this one. Each thread
    /// evaluates its own copy: evaluation retains and releases nodes, and shared reference counts
    /// bouncing between cores cost more than the evaluation itself.
    func privateCopy() -> Expression {
        Expression(source: source, root: root.deepCopy())
    }

    /// Evaluates the expression on one record.
    /// - Throws: ``EvaluationError`` for a type mismatch (e.g. `'abc' * 2`).
    @inline(__always)
    public func evaluate(_ row: [Value]) throws(EvaluationError) -> Value {
        try root.evaluate(row)
    }
}

// MARK: Tree

enum ArithmeticOperator: Sendable { case add, subtract, multiply, divide, remainder }
enum ComparisonOperator: Sendable { case equal, notEqual, less, lessOrEqual, greater, greaterOrEqual }

enum Function: String, Sendable, CaseIterable {
    case abs, round, floor, ceil, sqrt, min, max
    case lower, upper, trim, len, concat, substr, contains, starts_with, ends_with
    case coalesce, `if`, is_null, str, num
    case timestamp, hour, weekday, date

    /// Allowed argument counts.
    var arity: ClosedRange<Int> {
        switch self {
        case .abs, .floor, .ceil, .sqrt, .lower, .upper, .trim, .len, .is_null, .str, .num,
             .timestamp, .hour, .weekday, .date: return 1...1
        case .round: return 1...2
        case .min, .max, .coalesce: return 1...64
        case .concat: return 0...64
        case .substr: return 2...3
        case .contains, .starts_with, .ends_with: return 2...2
        case .if: return 3...3
        }
    }
}

indirect enum Node: Sendable {
    case constant(Value)
    case field(Int)
    case negate(Node, Int)
    case not(Node, Int)
    case arithmetic(ArithmeticOperator, Node, Node, Int)
    case comparison(ComparisonOperator, Node, Node, Int)
    case and(Node, Node, Int)
    case or(Node, Node, Int)
    case call(Function, [Node], Int)

    func deepCopy() -> Node {
        switch self {
        case .constant(.string(let s)): return .constant(.string(String(decoding: Array(s.utf8), as: UTF8.self)))
        case .constant, .field: return self
        case .negate(let n, let p): return .negate(n.deepCopy(), p)
        case .not(let n, let p): return .not(n.deepCopy(), p)
        case .arithmetic(let op, let l, let r, let p): return .arithmetic(op, l.deepCopy(), r.deepCopy(), p)
        case .comparison(let op, let l, let r, let p): return .comparison(op, l.deepCopy(), r.deepCopy(), p)
        case .and(let l, let r, let p): return .and(l.deepCopy(), r.deepCopy(), p)
        case .or(let l, let r, let p): return .or(l.deepCopy(), r.deepCopy(), p)
        case .call(let f, let args, let p): return .call(f, args.map { $0.deepCopy() }, p)
        }
    }

    func evaluate(_ row: [Value]) throws(EvaluationError) -> Value {
        switch self {
        case .constant(let v): return v
        case .field(let i): return i < row.count ? row[i] : .null
        case .negate(let operand, let pos):
            switch try operand.evaluate(row) {
            case .null: return .null
            case .int(let n): return n == .min ? .number(-Double(n)) : .int(-n)
            case .double(let d): return .double(-d)
            case let other: throw EvaluationError(message: "'-' needs a number, got \(other.typeName)", position: pos)
            }
        case .not(let operand, let pos):
            switch try operand.evaluate(row) {
            case .null: return .null
            case .bool(let b): return .bool(!b)
            case let other: throw EvaluationError(message: "'not' needs a boolean, got \(other.typeName)", position: pos)
            }
        case .and(let l, let r, let pos):
            let a = try Node.logical(l.evaluate(row), "and", pos)
            if a == false { return .bool(false) }
            let b = try Node.logical(r.evaluate(row), "and", pos)
            if b == false { return .bool(false) }
            return a == nil || b == nil ? .null : .bool(true)
        case .or(let l, let r, let pos):
            let a = try Node.logical(l.evaluate(row), "or", pos)
            if a == true { return .bool(true) }
            let b = try Node.logical(r.evaluate(row), "or", pos)
            if b == true { return .bool(true) }
            return a == nil || b == nil ? .null : .bool(false)
        case .arithmetic(let op, let l, let r, let pos):
            return try Node.arithmetic(op, l.evaluate(row), r.evaluate(row), pos)
        case .comparison(let op, let l, let r, let pos):
            return try Node.comparison(op, l.evaluate(row), r.evaluate(row), pos)
        case .call(let function, let arguments, let pos):
            return try Node.call(function, arguments, row, pos)
        }
    }

    /// A boolean operand of and/or: true, false, or nil for null.
    @inline(__always)
    private static func logical(_ v: Value, _ op: String, _ pos: Int) throws(EvaluationError) -> Bool? {
        switch v {
        case .bool(let b): return b
        case .null: return nil
        default: throw EvaluationError(message: "'\(op)' needs booleans, got \(v.typeName)", position: pos)
        }
    }

    private static func symbol(_ op: ArithmeticOperator) -> String {
        switch op {
        case .add: return "+"
        case .subtract: return "-"
        case .multiply: return "*"
        case .divide: return "/"
        case .remainder: return "%"
        }
    }

    static func arithmetic(_ op: ArithmeticOperator, _ a: Value, _ b: Value, _ pos: Int) throws(EvaluationError) -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            switch op {
            case .add:
                let (r, o) = x.addingReportingOverflow(y)
                return o ? .number(Double(x) + Double(y)) : .int(r)
            case .subtract:
                let (r, o) = x.subtractingReportingOverflow(y)
                return o ? .number(Double(x) - Double(y)) : .int(r)
            case .multiply:
                let (r, o) = x.multipliedReportingOverflow(by: y)
                return o ? .number(Double(x) * Double(y)) : .int(r)
            case .divide:
                return y == 0 ? .null : .number(Double(x) / Double(y))
            case .remainder:
                if y == 0 { return .null }
                let (r, o) = x.remainderReportingOverflow(dividingBy: y)
                return o ? .int(0) : .int(r)
            }
        case (.null, _), (_, .null):
            guard a.isNull || a.numeric != nil || (op == .add && a.stringLike),
                  b.isNull || b.numeric != nil || (op == .add && b.stringLike) else {
                throw EvaluationError(message: "'\(symbol(op))' needs numbers, got \(a.typeName) and \(b.typeName)", position: pos)
            }
            return .null
        case (.string(let x), .string(let y)) where op == .add:
            return .string(x + y)
        default:
            guard let x = a.numeric, let y = b.numeric else {
                throw EvaluationError(message: "'\(symbol(op))' needs numbers, got \(a.typeName) and \(b.typeName)", position: pos)
            }
            switch op {
            case .add: return .number(x + y)
            case .subtract: return .number(x - y)
            case .multiply: return .number(x * y)
            case .divide: return y == 0 ? .null : .number(x / y)
            case .remainder: return y == 0 ? .null : .number(fmod(x, y))
            }
        }
    }

    static func comparison(_ op: ComparisonOperator, _ a: Value, _ b: Value, _ pos: Int) throws(EvaluationError) -> Value {
        switch op {
        case .equal, .notEqual:
            let same: Bool
            switch (a, b) {
            case (.null, .null): same = true
            case (.null, _), (_, .null): same = false
            default:
                if let x = a.numeric, let y = b.numeric { same = x == y && Value.compare(a, b) == 0 }
                else if case .string(let x) = a, case .string(let y) = b { same = x.utf8.elementsEqual(y.utf8) }
                else if case .bool(let x) = a, case .bool(let y) = b { same = x == y }
                else { same = false }
            }
            return .bool(op == .equal ? same : !same)
        default:
            if a.isNull || b.isNull { return .null }
            let comparable: Bool
            switch (a, b) {
            case (.string, .string), (.bool, .bool): comparable = true
            default: comparable = a.numeric != nil && b.numeric != nil
            }
            guard comparable else {
                throw EvaluationError(message: "cannot order \(a.typeName) and \(b.typeName)", position: pos)
            }
            let c = Value.compare(a, b)
            switch op {
            case .less: return .bool(c < 0)
            case .lessOrEqual: return .bool(c <= 0)
            case .greater: return .bool(c > 0)
            default: return .bool(c >= 0)
            }
        }
    }

    private static func call(_ f: Function, _ args: [Node], _ row: [Value], _ pos: Int) throws(EvaluationError) -> Value {
        func bad(_ v: Value, _ wanted: String) -> EvaluationError {
            EvaluationError(message: "\(f.rawValue)() needs \(wanted), got \(v.typeName)", position: pos)
        }
        switch f {
        case .if:
            switch try args[0].evaluate(row) {
            case .bool(true): return try args[1].evaluate(row)
            case .bool(false), .null: return try args[2].evaluate(row)
            case let v: throw bad(v, "a boolean condition")
            }
        case .coalesce:
            for a in args {
                let v = try a.evaluate(row)
                if !v.isNull { return v }
            }
            return .null
        case .concat:
            var out = ""
            for a in args { out += try a.evaluate(row).text }
            return .string(out)
        case .min, .max:
            var best: Value = .null
            for a in args {
                let v = try a.evaluate(row)
                if v.isNull { continue }
                guard v.numeric != nil || v.stringLike else { throw bad(v, "numbers or strings") }
                if best.isNull { best = v; continue }
                guard (best.numeric != nil) == (v.numeric != nil) else { throw bad(v, "values of one kind") }
                let c = Value.compare(v, best)
                if (f == .min && c < 0) || (f == .max && c > 0) { best = v }
            }
            return best
        default:
            break
        }
        let x = try args[0].evaluate(row)
        if f == .is_null { return .bool(x.isNull) }
        if x.isNull { return .null }
        switch f {
        case .abs:
            switch x {
            case .int(let n): return n == .min ? .number(-Double(n)) : .int(Swift.abs(n))
            case .double(let d): return .double(Swift.abs(d))
            default: throw bad(x, "a number")
            }
        case .round, .floor, .ceil:
            let rule: FloatingPointRoundingRule = f == .round ? .toNearestOrAwayFromZero : (f == .floor ? .down : .up)
            if args.count == 2 {
                let digitsValue = try args[1].evaluate(row)
                guard case .int(let digits) = digitsValue, (-15...15).contains(digits) else { throw bad(digitsValue, "an integer number of digits in -15...15") }
                guard let d = x.numeric else { throw bad(x, "a number") }
                let scale = pow(10.0, Double(digits))
                return .number((d * scale).rounded(rule) / scale)
            }
            switch x {
            case .int: return x
            case .double(let d):
                let r = d.rounded(rule)
                return Swift.abs(r) < 9.2e18 ? .int(Int64(r)) : .number(r)
            default: throw bad(x, "a number")
            }
        case .sqrt:
            guard let d = x.numeric else { throw bad(x, "a number") }
            return .number(d.squareRoot())
        case .lower, .upper, .trim, .len:
            guard case .string(let s) = x else { throw bad(x, "a string") }
            switch f {
            case .lower: return .string(s.lowercased())
            case .upper: return .string(s.uppercased())
            case .trim: return .string(trimmed(s))
            default: return .int(Int64(s.unicodeScalars.count))
            }
        case .substr:
            guard case .string(let s) = x else { throw bad(x, "a string") }
            let startValue = try args[1].evaluate(row)
            guard case .int(let start) = startValue, start >= 0 else { throw bad(startValue, "a non-negative integer start") }
            var length = Int64.max
            if args.count == 3 {
                let lengthValue = try args[2].evaluate(row)
                guard case .int(let l) = lengthValue, l >= 0 else { throw bad(lengthValue, "a non-negative integer length") }
                length = l
            }
            let scalars = s.unicodeScalars
            let from = scalars.index(scalars.startIndex, offsetBy: Int(Swift.min(start, Int64(scalars.count))))
            let available = scalars.distance(from: from, to: scalars.endIndex)
            let to = scalars.index(from, offsetBy: Int(Swift.min(length, Int64(available))))
            return .string(String(scalars[from..<to]))
        case .contains, .starts_with, .ends_with:
            let y = try args[1].evaluate(row)
            if y.isNull { return .null }
            guard case .string(let s) = x else { throw bad(x, "strings") }
            guard case .string(let t) = y else { throw bad(y, "strings") }
            switch f {
            case .contains: return .bool(t.isEmpty || s.utf8.firstRange(of: t.utf8) != nil)
            case .starts_with: return .bool(s.utf8.starts(with: t.utf8))
            default: return .bool(s.utf8.count >= t.utf8.count && s.utf8.suffix(t.utf8.count).elementsEqual(t.utf8))
            }
        case .str:
            return .string(x.text)
        case .num:
            switch x {
            case .int, .double: return x
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s):
                let t = trimmed(s)
                if let n = Int64(t) { return .int(n) }
                if let d = Double(t), d.isFinite { return .double(d) }
                return .null
            case .null: return .null
            }
        case .timestamp, .hour, .weekday, .date:
            guard let ms = DatasetTime.milliseconds(x) else { return .null }
            switch f {
            case .timestamp: return DatasetTime.format(ms).map(Value.string) ?? .null
            case .hour: return .int(Int64(DatasetTime.hourOfDay(ms)))
            case .weekday: return .string(DatasetTime.weekday(ms))
            default: return .string(DatasetTime.date(ms))
            }
        default:
            return .null
        }
    }
}

/// `s` without leading and trailing whitespace (Unicode white space and newlines).
func trimmed(_ s: String) -> String {
    let scalars = s.unicodeScalars
    guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    guard let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    if first == scalars.startIndex && scalars.index(after: last) == scalars.endIndex { return s }
    return String(scalars[first...last])
}

extension Value {
    var stringLike: Bool { if case .string = self { return true } else { return false } }

    /// The value as text (for `concat` and `str`): null is empty, numbers in JSON form.
    var text: String {
        switch self {
        case .null: return ""
        case .bool(let b): return b ? "true" : "false"
        case .int(let n): return String(n)
        case .double(let d): return d.description
        case .string(let s): return s
        }
    }
}

// MARK: Parser

private struct Token {
    enum Kind: Equatable {
        case number(Value)
        case string(String)
        case identifier(String)
        case quotedField(String)
        case symbol(String)
        case end
    }
    var kind: Kind
    var offset: Int   // byte offset
}

struct ExpressionParser {
    let source: String
    let bytes: [UInt8]
    let fieldIndex: [String: Int]
    let fields: [String]
    private var tokens: [Token] = []
    private var k = 0
    private var depth = 0

    init(source: String, fields: [String]) {
        self.source = source
        self.bytes = Array(source.utf8)
        self.fields = fields
        var index: [String: Int] = [:]
        for (i, f) in fields.enumerated() where index[f] == nil { index[f] = i }
        self.fieldIndex = index
    }

    /// 1-based character position of a byte offset.
    func position(_ offset: Int) -> Int {
        var n = 1
        for b in bytes.prefix(offset) where b & 0xC0 != 0x80 { n += 1 }
        return n
    }

    private func error(_ message: String, _ offset: Int) -> ExpressionError {
        ExpressionError(message: message, position: position(offset))
    }

    mutating func parseAll() throws(ExpressionError) -> Node {
        try tokenize()
        if tokens.first?.kind == .end { throw error("empty expression", 0) }
        let node = try parseOr()
        let t = tokens[k]
        if t.kind != .end { throw error("unexpected \(describe(t))", t.offset) }
        return node
    }

    private func describe(_ t: Token) -> String {
        switch t.kind {
        case .number(let v): return "number \(v.text)"
        case .string: return "string"
        case .identifier(let s): return "'\(s)'"
        case .quotedField(let s): return "`\(s)`"
        case .symbol(let s): return "'\(s)'"
        case .end: return "end of expression"
        }
    }

    // MARK: Lexer

    private mutating func tokenize() throws(ExpressionError) {
        var i = 0
        let b = bytes
        while true {
            while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
            guard i < b.count else { tokens.append(Token(kind: .end, offset: i)); return }
            let start = i
            let c = b[i]
            if isDigit(c) || (c == UInt8(ascii: ".") && i + 1 < b.count && isDigit(b[i + 1])) {
                while i < b.count, isDigit(b[i]) { i += 1 }
                var isInteger = true
                if i < b.count, b[i] == UInt8(ascii: ".") {
                    isInteger = false
                    i += 1
                    while i < b.count, isDigit(b[i]) { i += 1 }
                }
                if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                    var j = i + 1
                    if j < b.count, b[j] == UInt8(ascii: "+") || b[j] == UInt8(ascii: "-") { j += 1 }
                    if j < b.count, isDigit(b[j]) {
                        isInteger = false
                        i = j
                        while i < b.count, isDigit(b[i]) { i += 1 }
                    }
                }
                let text = String(decoding: b[start..<i], as: UTF8.self)
                if isInteger, let n = Int64(text) {
                    tokens.append(Token(kind: .number(.int(n)), offset: start))
                } else if let d = Double(text), d.isFinite {
                    tokens.append(Token(kind: .number(.double(d)), offset: start))
                } else {
                    throw error("invalid number '\(text)'", start)
                }
                if i < b.count, isIdentifierStart(b[i]) { throw error("invalid number", start) }
            } else if isIdentifierStart(c) {
                while i < b.count, isIdentifierStart(b[i]) || isDigit(b[i]) || b[i] == UInt8(ascii: ".") { i += 1 }
                tokens.append(Token(kind: .identifier(String(decoding: b[start..<i], as: UTF8.self)), offset: start))
            } else if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
                i += 1
                var text: [UInt8] = []
                var closed = false
                while i < b.count {
                    let d = b[i]
                    if d == c { closed = true; i += 1; break }
                    if d == UInt8(ascii: "\\"), i + 1 < b.count {
                        let e = b[i + 1]
                        switch e {
                        case UInt8(ascii: "n"): text.append(0x0A)
                        case UInt8(ascii: "t"): text.append(0x09)
                        case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): text.append(e)
                        default: throw error("invalid escape '\\\(String(decoding: [e], as: UTF8.self))'", i)
                        }
                        i += 2
                        continue
                    }
                    text.append(d)
                    i += 1
                }
                guard closed else { throw error("unterminated string", start) }
                tokens.append(Token(kind: .string(String(decoding: text, as: UTF8.self)), offset: start))
            } else if c == UInt8(ascii: "`") {
                i += 1
                let nameStart = i
                while i < b.count, b[i] != UInt8(ascii: "`") { i += 1 }
                guard i < b.count else { throw error("unterminated `field name`", start) }
                tokens.append(Token(kind: .quotedField(String(decoding: b[nameStart..<i], as: UTF8.self)), offset: start))
                i += 1
            } else {
                let two = i + 1 < b.count ? String(decoding: b[i...(i + 1)], as: UTF8.self) : ""
                if ["==", "!=", "<>", "<=", ">=", "&&", "||"].contains(two) {
                    tokens.append(Token(kind: .symbol(two), offset: start))
                    i += 2
                } else if "+-*/%()<>=!,".utf8.contains(c) {
                    tokens.append(Token(kind: .symbol(String(decoding: [c], as: UTF8.self)), offset: start))
                    i += 1
                } else {
                    let scalar = String(decoding: b[i...].prefix(4), as: UTF8.self).prefix(1)
                    throw error("unexpected character '\(scalar)'", start)
                }
            }
        }
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private func isIdentifierStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_")
    }

    // MARK: Grammar

    private func isKeyword(_ t: Token, _ word: String) -> Bool {
        if case .identifier(let s) = t.kind { return s.lowercased() == word }
        return false
    }
    private func isSymbol(_ t: Token, _ symbols: String...) -> String? {
        if case .symbol(let s) = t.kind, symbols.contains(s) { return s }
        return nil
    }

    private mutating func enter(_ offset: Int) throws(ExpressionError) {
        depth += 1
        if depth > Expression.maxDepth { throw error("expression nests deeper than \(Expression.maxDepth)", offset) }
    }

    private mutating func parseOr() throws(ExpressionError) -> Node {
        try enter(tokens[k].offset)
        defer { depth -= 1 }
        var left = try parseAnd()
        while isKeyword(tokens[k], "or") || isSymbol(tokens[k], "||") != nil {
            let pos = position(tokens[k].offset)
            k += 1
            left = .or(left, try parseAnd(), pos)
        }
        return left
    }

    private mutating func parseAnd() throws(ExpressionError) -> Node {
        var left = try parseNot()
        while isKeyword(tokens[k], "and") || isSymbol(tokens[k], "&&") != nil {
            let pos = position(tokens[k].offset)
            k += 1
            left = .and(left, try parseNot(), pos)
        }
        return left
    }

    private mutating func parseNot() throws(ExpressionError) -> Node {
        if isKeyword(tokens[k], "not") || isSymbol(tokens[k], "!") != nil {
            let offset = tokens[k].offset
            k += 1
            try enter(offset)
            defer { depth -= 1 }
            return .not(try parseNot(), position(offset))
        }
        return try parseComparison()
    }

    private mutating func parseComparison() throws(ExpressionError) -> Node {
        let left = try parseAdditive()
        guard let s = isSymbol(tokens[k], "==", "=", "!=", "<>", "<", "<=", ">", ">=") else { return left }
        let pos = position(tokens[k].offset)
        k += 1
        let right = try parseAdditive()
        let op: ComparisonOperator
        switch s {
        case "==", "=": op = .equal
        case "!=", "<>": op = .notEqual
        case "<": op = .less
        case "<=": op = .lessOrEqual
        case ">": op = .greater
        default: op = .greaterOrEqual
        }
        if isSymbol(tokens[k], "==", "=", "!=", "<>", "<", "<=", ">", ">=") != nil {
            throw error("comparisons cannot be chained; use 'and'", tokens[k].offset)
        }
        return .comparison(op, left, right, pos)
    }

    private mutating func parseAdditive() throws(ExpressionError) -> Node {
        var left = try parseTerm()
        while let s = isSymbol(tokens[k], "+", "-") {
            let pos = position(tokens[k].offset)
            k += 1
            left = .arithmetic(s == "+" ? .add : .subtract, left, try parseTerm(), pos)
        }
        return left
    }

    private mutating func parseTerm() throws(ExpressionError) -> Node {
        var left = try parseUnary()
        while let s = isSymbol(tokens[k], "*", "/", "%") {
            let pos = position(tokens[k].offset)
            k += 1
            left = .arithmetic(s == "*" ? .multiply : (s == "/" ? .divide : .remainder), left, try parseUnary(), pos)
        }
        return left
    }

    private mutating func parseUnary() throws(ExpressionError) -> Node {
        if isSymbol(tokens[k], "-") != nil {
            let offset = tokens[k].offset
            k += 1
            try enter(offset)
            defer { depth -= 1 }
            let operand = try parseUnary()
            if case .constant(.int(let n)) = operand, n != .min { return .constant(.int(-n)) }
            if case .constant(.double(let d)) = operand { return .constant(.double(-d)) }
            return .negate(operand, position(offset))
        }
        if isSymbol(tokens[k], "+") != nil { k += 1; return try parseUnary() }
        return try parsePrimary()
    }

    private mutating func parsePrimary() throws(ExpressionError) -> Node {
        let t = tokens[k]
        switch t.kind {
        case .number(let v):
            k += 1
            return .constant(v)
        case .string(let s):
            k += 1
            return .constant(.string(s))
        case .quotedField(let name):
            k += 1
            return try field(name, t.offset)
        case .identifier(let name):
            k += 1
            if isSymbol(tokens[k], "(") != nil {
                guard let function = Function(rawValue: name.lowercased()) else {
                    throw error("unknown function '\(name)' (known: \(Function.allCases.map(\.rawValue).joined(separator: ", ")))", t.offset)
                }
                k += 1
                var arguments: [Node] = []
                if isSymbol(tokens[k], ")") == nil {
                    while true {
                        arguments.append(try parseOr())
                        if isSymbol(tokens[k], ",") != nil { k += 1; continue }
                        break
                    }
                }
                guard isSymbol(tokens[k], ")") != nil else { throw error("expected ',' or ')' in call to \(function.rawValue)", tokens[k].offset) }
                k += 1
                guard function.arity.contains(arguments.count) else {
                    let r = function.arity
                    let wanted = r.lowerBound == r.upperBound ? "\(r.lowerBound)" : "\(r.lowerBound) to \(r.upperBound)"
                    throw error("\(function.rawValue)() takes \(wanted) argument\(r.upperBound == 1 ? "" : "s"), got \(arguments.count)", t.offset)
                }
                return .call(function, arguments, position(t.offset))
            }
            switch name.lowercased() {
            case "true": return .constant(.bool(true))
            case "false": return .constant(.bool(false))
            case "null": return .constant(.null)
            case "and", "or", "not": throw error("unexpected '\(name)'", t.offset)
            default: return try field(name, t.offset)
            }
        case .symbol("("):
            k += 1
            let inner = try parseOr()
            guard isSymbol(tokens[k], ")") != nil else { throw error("expected ')'", tokens[k].offset) }
            k += 1
            return inner
        case .end:
            throw error("unexpected end of expression", t.offset)
        default:
            throw error("unexpected \(describe(t))", t.offset)
        }
    }

    private func field(_ name: String, _ offset: Int) throws(ExpressionError) -> Node {
        guard let i = fieldIndex[name] else {
            let known = fields.prefix(20).joined(separator: ", ") + (fields.count > 20 ? ", ..." : "")
            throw error("unknown field '\(name)' (fields: \(known))", offset)
        }
        return .field(i)
    }
}
