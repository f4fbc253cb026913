// NKeyAuthentication: the check of an nkey user's CONNECT (its ed25519 signature of INFO's nonce).

/// Verifies that `signature` (base64url, as CONNECT's `sig`) is the ed25519 signature of `nonce`
/// by the public user nkey `publicKey` (`U` + base32 with its CRC16), as nats-server 2.9.10 does.
enum NKeyAuthentication {
    /// False for a malformed key or signature as for a wrong one.
    static func verify(publicKey: String, nonce: [UInt8], signature: String) -> Bool {
        // The ed25519 verification lands with the OpenSSL target; until then no nkey user passes.
        false
    }
}
