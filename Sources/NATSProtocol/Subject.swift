// Subject rules of nats-server 2.9.10 (sublist.go IsValidSubject / IsValidLiteralSubject), over bytes.

/// Subject and queue-name validation, and a tokenizer, all over raw bytes and allocation-free.
///
/// A subject is one or more `.`-separated tokens. A token is never empty and never holds
/// whitespace (space, tab, CR, LF, form feed). `*` matches one token and `>` one or more trailing
/// tokens; both are wildcards only as whole tokens (`foo*.bar` is literal) and `>` must be last.
public enum Subject {
    /// The token separator `.`.
    public static let separator: UInt8 = 0x2E
    /// The single-token wildcard `*`.
    public static let partialWildcard: UInt8 = 0x2A
    /// The trailing wildcard `>`.
    public static let fullWildcard: UInt8 = 0x3E

    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        // space, \t, \n, \r, \f
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C
    }

    /// Whether `subject` is valid for SUB: wildcards allowed as whole tokens, `>` only last,
    /// no empty tokens, no whitespace.
    public static func isValid(_ subject: UnsafeRawBufferPointer) -> Bool {
        if subject.isEmpty { return false }
        var tokenStart = 0
        var sawFullWildcard = false
        let count = subject.count
        var index = 0
        while index <= count {
            if index == count || subject[index] == separator {
                let length = index - tokenStart
                if length == 0 || sawFullWildcard { return false }
                if length == 1 && subject[tokenStart] == fullWildcard { sawFullWildcard = true }
                tokenStart = index + 1
            } else if isWhitespace(subject[index]) {
                return false
            }
            index += 1
        }
        return true
    }

    /// Whether `subject` is a literal subject, as pedantic PUB/HPUB requires: no empty token and
    /// no `*` or `>` token. Like 2.9.10 this does not look for whitespace (the parser already
    /// splits arguments on spaces and tabs).
    public static func isValidLiteral(_ subject: UnsafeRawBufferPointer) -> Bool {
        var tokenStart = 0
        let count = subject.count
        var index = 0
        while index <= count {
            if index == count || subject[index] == separator {
                let length = index - tokenStart
                if length == 0 { return false }
                if length == 1 {
                    let byte = subject[tokenStart]
                    if byte == partialWildcard || byte == fullWildcard { return false }
                }
                tokenStart = index + 1
            }
            index += 1
        }
        return true
    }

    /// Whether `queue` is an acceptable queue group name: non-empty with no whitespace.
    ///
    /// 2.9.10 applies no other rule (it only splits SUB arguments on whitespace), so dots and
    /// wildcard characters are accepted, as they are there.
    public static func isValidQueue(_ queue: UnsafeRawBufferPointer) -> Bool {
        if queue.isEmpty { return false }
        for byte in queue where isWhitespace(byte) { return false }
        return true
    }

    /// Whether `subject` contains a `*` or `>` token.
    public static func hasWildcard(_ subject: UnsafeRawBufferPointer) -> Bool {
        for token in tokens(subject) where token.count == 1 {
            if token[0] == partialWildcard || token[0] == fullWildcard { return true }
        }
        return false
    }

    /// Whether the literal subject `subject` is matched by the (possibly wildcard) `pattern`.
    /// Both are split on `.`; no validation is done here.
    public static func matches(pattern: UnsafeRawBufferPointer, subject: UnsafeRawBufferPointer) -> Bool {
        var patternTokens = tokens(pattern)
        var subjectTokens = tokens(subject)
        while true {
            let p = patternTokens.next()
            let s = subjectTokens.next()
            guard let p else { return s == nil }
            if p.count == 1 && p[0] == fullWildcard { return s != nil }
            guard let s else { return false }
            if p.count == 1 && p[0] == partialWildcard { continue }
            if !p.elementsEqual(s) { return false }
        }
    }

    /// The `.`-separated tokens of `subject`, as views into it. An empty subject has one empty token,
    /// and `a..b` yields an empty middle token (tokens are reported, not validated).
    public static func tokens(_ subject: UnsafeRawBufferPointer) -> Tokens {
        Tokens(subject)
    }

    /// An allocation-free iterator over the tokens of a subject.
    public struct Tokens: Sequence, IteratorProtocol {
        @usableFromInline let bytes: UnsafeRawBufferPointer
        @usableFromInline var position: Int
        @usableFromInline var finished: Bool

        /// Creates an iterator over `bytes`, which must stay valid while it is used.
        @inlinable
        public init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            self.position = 0
            self.finished = false
        }

        /// The next token, or nil after the last one.
        @inlinable
        public mutating func next() -> UnsafeRawBufferPointer? {
            if finished { return nil }
            let start = position
            var index = start
            let count = bytes.count
            while index < count && bytes[index] != Subject.separator { index += 1 }
            if index >= count {
                finished = true
            } else {
                position = index + 1
            }
            return UnsafeRawBufferPointer(rebasing: bytes[start..<index])
        }
    }
}

extension Subject {
    /// ``isValid(_:)`` for a `String`.
    public static func isValid(_ subject: String) -> Bool {
        withUTF8View(subject) { isValid($0) }
    }

    /// ``isValid(_:)`` for bytes.
    public static func isValid(_ subject: [UInt8]) -> Bool {
        subject.withUnsafeBytes { isValid($0) }
    }

    /// ``isValidLiteral(_:)`` for a `String`.
    public static func isValidLiteral(_ subject: String) -> Bool {
        withUTF8View(subject) { isValidLiteral($0) }
    }

    /// ``isValidLiteral(_:)`` for bytes.
    public static func isValidLiteral(_ subject: [UInt8]) -> Bool {
        subject.withUnsafeBytes { isValidLiteral($0) }
    }

    /// ``isValidQueue(_:)`` for a `String`.
    public static func isValidQueue(_ queue: String) -> Bool {
        withUTF8View(queue) { isValidQueue($0) }
    }

    /// ``isValidQueue(_:)`` for bytes.
    public static func isValidQueue(_ queue: [UInt8]) -> Bool {
        queue.withUnsafeBytes { isValidQueue($0) }
    }

    /// ``matches(pattern:subject:)`` for `String`s.
    public static func matches(pattern: String, subject: String) -> Bool {
        withUTF8View(pattern) { p in withUTF8View(subject) { s in matches(pattern: p, subject: s) } }
    }
}

/// Runs `body` over the UTF-8 bytes of `string` (contiguous; a bridged string is copied once).
func withUTF8View<R>(_ string: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    var copy = string
    return try copy.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
}
