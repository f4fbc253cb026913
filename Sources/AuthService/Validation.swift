/// A registration field that broke a rule: which field, which rule, and a message saying so.
public struct ValidationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// `email`, `password` or `name`.
    public var field: String
    /// A stable rule id, e.g. `min_length`.
    public var rule: String
    /// One sentence for the client.
    public var message: String
    public var description: String { message }
}

/// Email syntax (a practical subset of RFC 5321 addresses: ASCII, one `@`, a dotted domain).
public enum EmailAddress {
    /// Longest address accepted (RFC 5321 path limit).
    public static let maximumLength = 254

    /// The trimmed, lower-cased address (the identity used for uniqueness and lookups).
    public static func normalized(_ email: String) -> String {
        email.trimmingWhitespace().lowercased()
    }

    /// Checks a normalized address.
    /// - Throws: ``ValidationFailure`` with rule `email_syntax` or `email_length`.
    public static func validate(_ email: String) throws(ValidationFailure) {
        func bad(_ why: String) -> ValidationFailure {
            ValidationFailure(field: "email", rule: "email_syntax", message: "email is not a valid address: \(why)")
        }
        let bytes = Array(email.utf8)
        guard !bytes.isEmpty else { throw bad("it is empty") }
        guard bytes.count <= maximumLength else {
            throw ValidationFailure(field: "email", rule: "email_length", message: "email must be at most \(maximumLength) characters")
        }
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")), bytes.lastIndex(of: UInt8(ascii: "@")) == at else {
            throw bad("it must contain exactly one '@'")
        }
        let local = bytes[..<at], domain = bytes[(at + 1)...]
        guard !local.isEmpty, local.count <= 64 else { throw bad("the part before '@' must have 1 to 64 characters") }
        let localSpecials = Set("!#$%&'*+/=?^_`{|}~.-".utf8)
        guard local.allSatisfy({ isAlphanumeric($0) || localSpecials.contains($0) }) else {
            throw bad("the part before '@' has a character that is not allowed")
        }
        guard local.first != UInt8(ascii: "."), local.last != UInt8(ascii: "."),
              !zip(local, local.dropFirst()).contains(where: { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") }) else {
            throw bad("dots in the part before '@' must separate characters")
        }
        let labels = domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard labels.count >= 2 else { throw bad("the domain must have at least two labels (example.com)") }
        for label in labels {
            guard (1...63).contains(label.count), label.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") }),
                  label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else {
                throw bad("the domain has an invalid label")
            }
        }
        if let tld = labels.last, !tld.allSatisfy({ isLetter($0) }) || tld.count < 2 {
            throw bad("the top-level domain must be letters")
        }
    }

    static func isLetter(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) }
    static func isAlphanumeric(_ b: UInt8) -> Bool { isLetter(b) || (b >= 0x30 && b <= 0x39) }
}

/// The password rules of registration. Each rule has an id the 422 answer names.
public enum PasswordPolicy {
    /// Fewest characters (NIST SP 800-63B asks for at least 8; we ask for 10).
    public static let minimumLength = 10
    /// Most characters (bounds the hashing work per request).
    public static let maximumLength = 128
    /// Passwords refused outright (lower-cased), besides the other rules.
    static let common: Set<String> = [
        "password123", "password1234", "1234567890", "12345678910", "qwertyuiop", "qwerty1234", "iloveyou123",
        "letmein1234", "welcome123", "admin12345", "passw0rd123", "abc1234567", "1q2w3e4r5t", "password12",
    ]

    /// Checks `password` for a user with `email` (normalized).
    /// - Throws: ``ValidationFailure`` with rule `min_length`, `max_length`, `letters_and_digits`,
    ///   `contains_email` or `common_password`.
    public static func validate(_ password: String, email: String) throws(ValidationFailure) {
        func fail(_ rule: String, _ message: String) -> ValidationFailure {
            ValidationFailure(field: "password", rule: rule, message: "weak password: " + message)
        }
        let count = password.count
        guard count >= minimumLength else { throw fail("min_length", "it must have at least \(minimumLength) characters") }
        guard count <= maximumLength else { throw fail("max_length", "it must have at most \(maximumLength) characters") }
        let hasLetter = password.unicodeScalars.contains { $0.properties.isAlphabetic }
        let hasDigit = password.unicodeScalars.contains { $0.properties.numericType != nil }
        guard hasLetter && hasDigit else { throw fail("letters_and_digits", "it must contain at least one letter and one digit") }
        let lowered = password.lowercased()
        let localPart = email.split(separator: "@").first.map(String.init) ?? ""
        if !email.isEmpty, lowered.contains(email) || (localPart.count >= 4 && lowered.contains(localPart)) {
            throw fail("contains_email", "it must not contain the email address or its name part")
        }
        guard !common.contains(lowered) else { throw fail("common_password", "it is on the list of commonly used passwords") }
    }
}

/// Display-name rules.
public enum DisplayName {
    /// Most characters.
    public static let maximumLength = 100

    /// The trimmed name.
    /// - Throws: ``ValidationFailure`` with rule `name_empty`, `name_length` or `name_characters`.
    public static func validated(_ name: String) throws(ValidationFailure) -> String {
        let trimmed = name.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw ValidationFailure(field: "name", rule: "name_empty", message: "name must not be empty") }
        guard trimmed.count <= maximumLength else {
            throw ValidationFailure(field: "name", rule: "name_length", message: "name must have at most \(maximumLength) characters")
        }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationFailure(field: "name", rule: "name_characters", message: "name must not contain control characters")
        }
        return trimmed
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let f = scalars.first, f.isWhitespace { scalars = scalars.dropFirst() }
        while let l = scalars.last, l.isWhitespace { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
