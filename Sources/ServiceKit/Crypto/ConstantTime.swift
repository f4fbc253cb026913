#if canImport(Glibc)
import Glibc
#endif

/// Comparisons whose running time does not depend on where two secrets differ.
public enum ConstantTime {
    /// True when `a` and `b` hold the same bytes. The time taken depends only on the lengths
    /// (which are not secret for MACs and hashes), never on the position of the first difference.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

/// Bytes from the operating system's cryptographically secure generator (/dev/urandom, which
/// on Linux draws from the same kernel CSPRNG as getrandom(2); Glibc's Swift module does not
/// export getrandom itself).
public enum SecureRandom {
    /// Returns `count` random bytes read from /dev/urandom.
    /// - Throws: ``CryptoError/randomUnavailable(errno:)`` when the device cannot be opened or read.
    public static func bytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        guard count > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: count)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .randomUnavailable(errno: errno) }
        defer { close(fd) }
        var failure: Int32 = 0
        out.withUnsafeMutableBytes { raw in
            var filled = 0
            while filled < count {
                let n = read(fd, raw.baseAddress! + filled, count - filled)
                if n > 0 { filled += n; continue }
                if n < 0 && errno == EINTR { continue }
                failure = n < 0 ? errno : EIO
                return
            }
        }
        if failure != 0 { throw .randomUnavailable(errno: failure) }
        return out
    }
}
