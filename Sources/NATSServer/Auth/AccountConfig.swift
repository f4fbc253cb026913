// AccountConfig: one `accounts { NAME { ... } }` entry as configured (the running account, with its
// subscriptions and imports, is built from it).

/// An account as written in the configuration: its users, what it exports to other accounts,
/// what it imports from them, and whether it may use JetStream.
public struct AccountConfig: Sendable, Equatable {
    /// The account's name (`A` in `accounts { A { ... } }`).
    public var name: String
    /// The account's users, each with ``User/account`` set to ``name``.
    public var users: [User]
    /// `exports [...]`: the streams and services other accounts may import.
    public var exports: [AccountExport] = []
    /// `imports [...]`: the streams and services taken from other accounts.
    public var imports: [AccountImport] = []
    /// `jetstream: enabled` or a `jetstream {}` block in the account.
    public var jetStream = false

    /// Creates an account with its users.
    public init(name: String, users: [User] = []) {
        self.name = name
        self.users = users
    }
}

/// How a service export answers: one response, or any number of them until the response
/// threshold passes (2.9.10's `ServiceRespType`).
public enum ServiceResponseType: String, Sendable, Equatable {
    case singleton = "Singleton"
    case stream = "Streamed"
    case chunked = "Chunked"
}

/// One entry of an account's `exports`.
public struct AccountExport: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case stream
        case service(ServiceResponseType)
    }
    /// The exported subject (wildcards allowed).
    public var subject: String
    public var kind: Kind
    /// The accounts allowed to import it; nil means every account (a public export).
    public var accounts: [String]?

    public init(subject: String, kind: Kind, accounts: [String]? = nil) {
        self.subject = subject
        self.kind = kind
        self.accounts = accounts
    }

    /// Whether `account` may import `subject` (equal to, or narrower than, the exported one).
    func permits(_ account: String, subject importing: String) -> Bool {
        if let accounts, !accounts.contains(account) { return false }
        return SubjectMapping.isSubset(importing, of: subject)
    }
}

/// One entry of an account's `imports`.
public struct AccountImport: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case stream
        case service
    }
    public var kind: Kind
    /// The exporting account.
    public var account: String
    /// The subject in the exporting account.
    public var subject: String
    /// A stream import's `prefix` ("" for none): the local subject is `prefix.subject`.
    public var prefix: String = ""
    /// `to`: the local subject (a service import's subject clients publish on; a stream import's
    /// subject mapping). "" means the same subject as ``subject``.
    public var to: String = ""

    public init(kind: Kind, account: String, subject: String, prefix: String = "", to: String = "") {
        self.kind = kind
        self.account = account
        self.subject = subject
        self.prefix = prefix
        self.to = to
    }

    /// The subject this import uses in the importing account.
    var localSubject: String {
        if !prefix.isEmpty { return prefix + "." + subject }
        return to.isEmpty ? subject : to
    }
}

/// Subject pattern helpers for exports and imports.
enum SubjectMapping {
    /// True when every subject `narrow` matches is also matched by `wide`.
    static func isSubset(_ narrow: String, of wide: String) -> Bool {
        let n = narrow.split(separator: ".", omittingEmptySubsequences: false)
        let w = wide.split(separator: ".", omittingEmptySubsequences: false)
        for (i, token) in w.enumerated() {
            if token == ">" { return n.count > i }
            guard i < n.count else { return false }
            if token == "*" {
                if n[i] == ">" { return false }
                continue
            }
            if n[i] != token { return false }
        }
        return n.count == w.count
    }

    /// Maps a literal `subject` matched by `from` onto `to`: the tokens the wildcards of `from`
    /// matched take the places of the wildcards of `to`, in order (`s.>` to `x.>` turns `s.a.b`
    /// into `x.a.b`); a `to` without wildcards is used as it is.
    static func map(_ subject: [UInt8], from: [[UInt8]], to: [[UInt8]]) -> [UInt8] {
        let tokens = subject.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        var captured: [ArraySlice<UInt8>] = []
        var tail: [UInt8] = []
        for (i, token) in from.enumerated() {
            if token == [UInt8(ascii: ">")] {
                tail = Array(tokens[i...].joined(separator: [UInt8(ascii: ".")]))
                break
            }
            if token == [UInt8(ascii: "*")], i < tokens.count { captured.append(tokens[i]) }
        }
        var result: [UInt8] = []
        var next = 0
        for (i, token) in to.enumerated() {
            if i > 0 { result.append(UInt8(ascii: ".")) }
            if token == [UInt8(ascii: "*")], next < captured.count {
                result.append(contentsOf: captured[next])
                next += 1
            } else if token == [UInt8(ascii: ">")] {
                result.append(contentsOf: tail)
            } else {
                result.append(contentsOf: token)
            }
        }
        return result
    }

    static func tokens(_ subject: String) -> [[UInt8]] {
        subject.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
    }
}
