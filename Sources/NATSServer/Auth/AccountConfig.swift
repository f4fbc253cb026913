// AccountConfig: one `accounts { NAME { ... } }` entry as configured (the running account, with its
// subscriptions and imports, is built from it).

/// An account as written in the configuration: its users, what it exports to other accounts,
/// what it imports from them, and whether it may use JetStream.
public struct AccountConfig: Sendable, Equatable {
    /// The account's name (`A` in `accounts { A { ... } }`).
    public var name: String
    /// The account's users, each with ``User/account`` set to ``name``.
    public var users: [User]

    /// Creates an account with its users.
    public init(name: String, users: [User] = []) {
        self.name = name
        self.users = users
    }
}
