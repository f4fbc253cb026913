#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ServiceKit

/// Where the token-signing secret comes from: `JWT_SECRET`, or a key the service generated and
/// keeps in its data folder.
public enum SigningKey {
    /// File name of the generated key inside the data folder.
    public static let fileName = "jwt-secret"

    /// The secret and where it came from.
    public struct Resolved: Sendable {
        /// The HMAC key bytes (the UTF-8 bytes of the secret text, as every service reads `JWT_SECRET`).
        public var secret: [UInt8]
        /// The file path when the key was generated or loaded from the data folder; nil for `JWT_SECRET`.
        public var generatedPath: String?
        /// True when this call created the file.
        public var created: Bool
    }

    /// Why no key could be had.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// What went wrong.
        public var description: String
    }

    /// Uses `configured` when set; else reads `<dataDirectory>/jwt-secret`, creating it (64 hex
    /// characters from the system CSPRNG, mode 0600, written to a temporary file, fsynced and
    /// renamed) when absent.
    /// - Throws: ``Failure`` when the folder or file cannot be read or written, or the file holds
    ///   fewer than ``JWTAuthority/minimumSecretLength`` bytes.
    public static func resolve(configured: String?, dataDirectory: String) throws(Failure) -> Resolved {
        if let configured { return Resolved(secret: Array(configured.utf8), generatedPath: nil, created: false) }
        let path = dataDirectory + "/" + fileName
        if let data = FileManager.default.contents(atPath: path) {
            let text = String(decoding: data, as: UTF8.self).trimmingWhitespace()
            guard text.utf8.count >= JWTAuthority.minimumSecretLength else {
                throw Failure(description: "\(path) holds \(text.utf8.count) bytes; a signing key needs at least \(JWTAuthority.minimumSecretLength)")
            }
            return Resolved(secret: Array(text.utf8), generatedPath: path, created: false)
        }
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "cannot create \(dataDirectory): \(error)")
        }
        let text: String
        do {
            text = Hex.encode(try SecureRandom.bytes(32))
        } catch {
            throw Failure(description: "cannot generate a signing key: \(error)")
        }
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(temporary): errno \(errno)") }
        let bytes = Array((text + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(temporary)
            throw Failure(description: "cannot write \(temporary): errno \(errno)")
        }
        // link(2) fails if another process created the key meanwhile: then use theirs.
        if link(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            if code == EEXIST { return try resolve(configured: nil, dataDirectory: dataDirectory) }
            throw Failure(description: "cannot create \(path): errno \(code)")
        }
        unlink(temporary)
        let dir = open(dataDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { _ = fsync(dir); close(dir) }
        return Resolved(secret: Array(text.utf8), generatedPath: path, created: true)
    }
}
