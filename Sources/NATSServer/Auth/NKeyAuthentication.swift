// NKeyAuthentication: the check of an nkey user's CONNECT (its ed25519 signature of INFO's nonce).

import NATSProtocol
import NKeys

/// Verifies that CONNECT's `sig` (base64url, or standard base64 with padding, as 2.9.10 accepts
/// both) is the ed25519 signature of the nonce by the user's public nkey, as nats-server 2.9.10 does.
enum NKeyAuthentication {
    /// Bytes of the random part of a nonce: 11, which base64url writes in 15 characters.
    static let nonceRandomBytes = 11

    /// Why the signature does not pass, in 2.9.10's debug words and order; nil when it passes.
    static func failure(user: NKeyUser, nonce: [UInt8], signature: String) -> String? {
        if signature.isEmpty { return "Signature missing" }
        guard let raw = Base64.decodeSignature(signature) else { return "Signature not valid base64" }
        switch user.key {
        case .failure(let failure): return failure.text
        case .success(let key): return key.verify(nonce, signature: raw) ? nil : "Signature not verified"
        }
    }

    /// A fresh nonce for one connection's INFO: 11 random bytes in base64url without padding
    /// (15 characters of `A-Z a-z 0-9 - _`), as 2.9.10 makes it. CONNECT signs these characters.
    static func makeNonce() -> String {
        // The bytes in one draw; the system generator only if OpenSSL has no entropy.
        if let bytes = try? Ed25519.randomBytes(nonceRandomBytes) { return Base64.urlEncoded(bytes) }
        var generator = SystemRandomNumberGenerator()
        return Base64.urlEncoded((0..<nonceRandomBytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}

extension Options {
    /// True when INFO carries a nonce: some configured user is an nkey user (2.9.10 sends none
    /// otherwise).
    var nonceRequired: Bool { allUsers.contains { $0.nkey != nil } }
}

extension ClientConnection {
    /// 2.9.10's log text for a refused CONNECT: it names CONNECT's nkey when nkey users are
    /// configured, its user when password users are, and nothing otherwise.
    func authenticationErrorText(_ auth: AuthIndex) -> String {
        if auth.nonceRequired { return "authentication error - Nkey \(ServerError.goQuoted(options.nkey))" }
        if auth.hasUsers { return "authentication error - User \(ServerError.goQuoted(options.user))" }
        return "authentication error"
    }

    /// CONNECT's credentials checked against `settings` (on CONNECT and again after a reload); a
    /// refusal is logged and answered by ``refuseAuthentication(reason:_:)``, and gives nil.
    func checkCredentials(_ settings: Broker.Settings) -> AuthResult? {
        switch broker.authenticate(options, nonce: nonce.map { Array($0.utf8) }, settings: settings) {
        case .accepted(let result):
            return result
        case .refused(let reason):
            refuseAuthentication(reason: reason, settings.auth)
            return nil
        }
    }

    /// Logs a refused CONNECT as 2.9.10 does (the nkey check's reason at debug level, then the
    /// error) and closes with Authorization Violation.
    func refuseAuthentication(reason: String?, _ auth: AuthIndex) {
        if let reason { broker.logger.debug("\(logPrefix) - \(reason)") }
        broker.logger.error("\(logPrefix) - \(authenticationErrorText(auth))")
        sendError(.authorizationViolation, reason: .authenticationFailure)
    }
}
