// ed25519 through OpenSSL's EVP API (RFC 8032's pure Ed25519: no digest, the message signed
// whole), and the seed file reader.

import COpenSSL
import Glibc

/// Ed25519 key derivation, signing and verification by OpenSSL's libcrypto.
public enum Ed25519 {
    /// The 32-byte public key of a 32-byte seed.
    /// - Throws: ``NKeyError/crypto(_:)`` when OpenSSL refuses the seed.
    public static func publicKey(seed: [UInt8]) throws(NKeyError) -> [UInt8] {
        let key = try privateKey(seed)
        defer { EVP_PKEY_free(key) }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == 32 else {
            throw .crypto("EVP_PKEY_get_raw_public_key: \(openSSLError())")
        }
        return out
    }

    /// The 64-byte signature of `message` by the key of `seed`.
    /// - Throws: ``NKeyError/crypto(_:)`` when OpenSSL fails.
    public static func sign(seed: [UInt8], message: [UInt8]) throws(NKeyError) -> [UInt8] {
        let key = try privateKey(seed)
        defer { EVP_PKEY_free(key) }
        guard let context = EVP_MD_CTX_new() else { throw .crypto("EVP_MD_CTX_new: \(openSSLError())") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, nil, nil, key) == 1 else {
            throw .crypto("EVP_DigestSignInit: \(openSSLError())")
        }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = 64
        // An empty message still needs a pointer that is not NULL.
        let result = withNonNullBytes(message) { pointer, count in
            EVP_DigestSign(context, &signature, &length, pointer, count)
        }
        guard result == 1, length == 64 else { throw .crypto("EVP_DigestSign: \(openSSLError())") }
        return signature
    }

    /// Whether `signature` is the signature of `message` by `publicKey`. False for a key that is
    /// not 32 bytes, a signature that is not 64, or one that does not verify.
    public static func verify(publicKey: [UInt8], message: [UInt8], signature: [UInt8]) -> Bool {
        guard publicKey.count == 32, signature.count == 64 else { return false }
        guard let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, publicKey, 32) else {
            ERR_clear_error()
            return false
        }
        defer { EVP_PKEY_free(key) }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, key) == 1 else {
            ERR_clear_error()
            return false
        }
        let result = withNonNullBytes(message) { pointer, count in
            EVP_DigestVerify(context, signature, 64, pointer, count)
        }
        // A failed verification leaves an entry on this thread's error queue.
        if result != 1 { ERR_clear_error() }
        return result == 1
    }

    /// 32 bytes from OpenSSL's CSPRNG.
    /// - Throws: ``NKeyError/crypto(_:)`` when it has no entropy.
    public static func randomSeed() throws(NKeyError) -> [UInt8] {
        try randomBytes(32)
    }

    /// `count` bytes from OpenSSL's CSPRNG, drawn in one call.
    /// - Throws: ``NKeyError/crypto(_:)`` when it has no entropy or `count` is negative.
    public static func randomBytes(_ count: Int) throws(NKeyError) -> [UInt8] {
        guard count >= 0, count <= Int(Int32.max) else { throw .crypto("RAND_bytes: bad count \(count)") }
        var bytes = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&bytes, Int32(count)) == 1 else { throw .crypto("RAND_bytes: \(openSSLError())") }
        return bytes
    }

    private static func privateKey(_ seed: [UInt8]) throws(NKeyError) -> OpaquePointer {
        guard seed.count == 32 else { throw .invalidLength(expected: 32, found: seed.count) }
        guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, 32) else {
            throw .crypto("EVP_PKEY_new_raw_private_key: \(openSSLError())")
        }
        return key
    }

    static func withNonNullBytes<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
        if bytes.isEmpty {
            var placeholder: UInt8 = 0
            return withUnsafePointer(to: &placeholder) { body($0, 0) }
        }
        return bytes.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
    }

    /// The oldest queued OpenSSL error as text (the queue is cleared).
    static func openSSLError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "unknown error" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An ed25519 public key parsed once into OpenSSL's form, for checking many signatures with it
/// (a server checks every CONNECT of an nkey user with the same key). Freed with the object.
///
/// Sendable: the `EVP_PKEY` is never changed after `init`, and OpenSSL allows one key to be used
/// by several threads at once for verification, each with its own `EVP_MD_CTX`.
public final class Ed25519Verifier: @unchecked Sendable {
    private let key: OpaquePointer

    /// Parses the 32 raw bytes of a public key; nil when they are not 32 or OpenSSL refuses them.
    public init?(publicKey: [UInt8]) {
        guard publicKey.count == 32,
              let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, publicKey, 32)
        else {
            ERR_clear_error()
            return nil
        }
        self.key = key
    }

    deinit { EVP_PKEY_free(key) }

    /// Whether `signature` is this key's signature of `message`. False for a signature that is
    /// not 64 bytes.
    public func verify(_ message: [UInt8], signature: [UInt8]) -> Bool {
        guard signature.count == 64, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, key) == 1 else {
            ERR_clear_error()
            return false
        }
        let result = Ed25519.withNonNullBytes(message) { pointer, count in
            EVP_DigestVerify(context, signature, 64, pointer, count)
        }
        // A failed verification leaves an entry on this thread's error queue.
        if result != 1 { ERR_clear_error() }
        return result == 1
    }
}

enum SeedFile {
    /// The file's text (at most 64 KiB: a seed file is one short line or a few).
    static func read(_ path: String) throws(NKeyError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadableFile(path: path, errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65_536 {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .unreadableFile(path: path, errno: errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
