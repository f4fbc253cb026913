// AuthIndex: the configured users arranged for CONNECT, built once per load or reload, and the
// byte comparisons credentials are checked with.

import NKeys

/// The users of the options in force, looked up by the bytes of a name or nkey, so that a CONNECT
/// costs no scan of the users and no parse of a key.
struct AuthIndex: Sendable {
    /// Password users by the UTF-8 bytes of their name (the first of a name when listed twice).
    let passwordUsers: [[UInt8]: User]
    /// nkey users by the bytes of their public key.
    let nkeyUsers: [[UInt8]: NKeyUser]
    /// True when clients must authenticate in CONNECT.
    let authRequired: Bool
    /// True when INFO carries a nonce: some user is an nkey user.
    let nonceRequired: Bool
    /// True when users are configured (rather than a single user, a token or nothing).
    let hasUsers: Bool

    init(_ options: Options) {
        var passwords: [[UInt8]: User] = [:]
        var nkeys: [[UInt8]: NKeyUser] = [:]
        var count = 0
        func add(_ user: User) {
            count += 1
            if let nkey = user.nkey {
                let key = Array(nkey.utf8)
                if nkeys[key] == nil { nkeys[key] = NKeyUser(user: user, nkey: nkey) }
            } else {
                let key = Array(user.name.utf8)
                if passwords[key] == nil { passwords[key] = user }
            }
        }
        options.users.forEach(add)
        for account in options.accounts { account.users.forEach(add) }
        passwordUsers = passwords
        nkeyUsers = nkeys
        hasUsers = count > 0
        nonceRequired = !nkeys.isEmpty
        authRequired = options.username != nil || options.authToken != nil || hasUsers
    }
}

/// An nkey user and its public key, parsed once into OpenSSL's form (freed with this object).
final class NKeyUser: Sendable {
    let user: User
    /// The parsed key, or why the configured key does not parse (2.9.10's debug words).
    let key: Result<Ed25519Verifier, NKeyFailure>

    init(user: User, nkey: String) {
        self.user = user
        do {
            let parsed = try NKeyPublicKey(nkey)
            if let verifier = parsed.verifier() {
                key = .success(verifier)
            } else {
                key = .failure(NKeyFailure(text: "User nkey not valid: OpenSSL refused the key"))
            }
        } catch {
            key = .failure(NKeyFailure(text: "User nkey not valid: \(error)"))
        }
    }
}

/// Why an nkey CONNECT is refused, in 2.9.10's debug words.
struct NKeyFailure: Error, Sendable {
    let text: String
}

/// Credential comparisons as 2.9.10 makes them: on bytes. Swift's `String ==` follows Unicode
/// canonical equivalence (the Kelvin sign `\u{212A}` equals `K`), which would let another
/// spelling of a name or secret pass.
enum Credentials {
    /// Whether the UTF-8 bytes of `a` and `b` are the same.
    static func sameBytes(_ a: String, _ b: String) -> Bool {
        a.utf8.elementsEqual(b.utf8)
    }

    /// Whether the UTF-8 bytes of `secret` and `offered` are the same, in a time that does not
    /// depend on where they differ (only on the lengths, as Go's `subtle.ConstantTimeCompare`).
    static func secretsMatch(_ secret: String, _ offered: String) -> Bool {
        var secret = secret
        var offered = offered
        return secret.withUTF8 { expected in
            offered.withUTF8 { given in
                guard expected.count == given.count else { return false }
                var difference: UInt8 = 0
                for index in 0..<expected.count { difference |= expected[index] ^ given[index] }
                return difference == 0
            }
        }
    }
}
