// NKeyAuthentication: the check of an nkey user's CONNECT (its ed25519 signature of INFO's nonce).

import NKeys

/// Verifies that `signature` (base64url, as CONNECT's `sig`) is the ed25519 signature of `nonce`
/// by the public user nkey `publicKey` (`U` + base32 with its CRC16), as nats-server 2.9.10 does.
enum NKeyAuthentication {
    /// Bytes of the random part of a nonce: 11, which base64url writes in 15 characters.
    static let nonceRandomBytes = 11

    /// False for a malformed key or signature as for a wrong one. The signature may be base64url
    /// without padding (what clients send) or standard base64 with padding, as 2.9.10 accepts both.
    static func verify(publicKey: String, nonce: [UInt8], signature: String) -> Bool {
        failure(publicKey: publicKey, nonce: nonce, signature: signature) == nil
    }

    /// Why the signature does not pass, in 2.9.10's debug words; nil when it passes.
    static func failure(publicKey: String, nonce: [UInt8], signature: String) -> String? {
        if signature.isEmpty { return "Signature missing" }
        guard let raw = Base64.decodeSignature(signature) else { return "Signature not valid base64" }
        let key: NKeyPublicKey
        do {
            key = try NKeyPublicKey(publicKey)
        } catch {
            return "User nkey not valid: \(error)"
        }
        return key.verify(nonce, signature: raw) ? nil : "Signature not verified"
    }

    /// A fresh nonce for one connection's INFO: 11 random bytes in base64url without padding
    /// (15 characters of `A-Z a-z 0-9 - _`), as 2.9.10 makes it. CONNECT signs these characters.
    static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<nonceRandomBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Base64.urlEncoded(bytes)
    }
}

extension Options {
    /// True when INFO carries a nonce: some configured user is an nkey user (2.9.10 sends none
    /// otherwise).
    var nonceRequired: Bool { allUsers.contains { $0.nkey != nil } }
}

extension ClientConnection {
    /// For a refused CONNECT naming a configured nkey user: why its signature failed (2.9.10 logs
    /// it at debug level before the error); nil otherwise.
    var nkeyFailureText: String? {
        let configured = broker.options
        guard configured.nonceRequired, !options.nkey.isEmpty,
              configured.allUsers.contains(where: { $0.nkey == options.nkey })
        else { return nil }
        return NKeyAuthentication.failure(publicKey: options.nkey, nonce: Array((nonce ?? "").utf8),
                                          signature: options.sig)
    }

    /// 2.9.10's log text for a refused CONNECT: it names CONNECT's nkey when nkey users are
    /// configured, its user when password users are, and nothing otherwise.
    var authenticationErrorText: String {
        let configured = broker.options
        if configured.nonceRequired { return "authentication error - Nkey \"\(options.nkey)\"" }
        if !configured.allUsers.isEmpty { return "authentication error - User \"\(options.user)\"" }
        return "authentication error"
    }
}
