// Thin syscall wrappers for the hot path: read, writev (as sendmsg with MSG_NOSIGNAL), write, close.
// EINTR is retried, EAGAIN/EWOULDBLOCK become `.wouldBlock`, EBADF/EFAULT trap (they mean a
// programming error such as using a closed descriptor), every other errno is returned to the caller.
import CSystem
import Glibc

/// The outcome of one non-blocking read or write.
public enum IOResult: Equatable, Sendable {
    /// `n > 0` bytes were transferred (a zero-length request also reports `.bytes(0)`).
    case bytes(Int)
    /// The descriptor is not ready; wait for readiness.
    case wouldBlock
    /// The peer closed its side (reads only).
    case eof
    /// The call failed with this errno (e.g. ECONNRESET, EPIPE).
    case error(Int32)
}

/// An error from a system call outside the hot path (socket setup, epoll registration).
public struct SystemError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The call that failed, e.g. `"bind"`.
    public let operation: String
    /// The errno value it reported.
    public let code: Int32

    /// Creates an error for `operation` failing with errno `code`.
    public init(_ operation: String, _ code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// `"<operation>: <strerror text> (errno N)"`.
    public var description: String {
        "\(operation): \(String(cString: strerror(code))) (errno \(code))"
    }
}

@inline(__always)
func trapOnProgrammingError(_ err: Int32, _ call: StaticString) {
    precondition(err != EBADF && err != EFAULT, "\(call) failed with EBADF/EFAULT: descriptor or buffer misuse")
}

/// Non-blocking I/O on raw descriptors. The descriptor must be open; EBADF/EFAULT trap.
public enum IO {
    /// IOV_MAX on Linux: the most vectors one writev accepts.
    public static let maxVectors = 1024

    /// Reads at most `buffer.count` bytes from `fd` into `buffer`.
    /// - Returns: `.bytes(n)`, `.eof` when the peer closed, `.wouldBlock`, or `.error(errno)`.
    @inlinable
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .bytes(0) }
        return _read(fd, base, buffer.count)
    }

    @usableFromInline
    static func _read(_ fd: Int32, _ base: UnsafeMutableRawPointer, _ count: Int) -> IOResult {
        while true {
            let n = Glibc.read(fd, base, count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .eof }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            trapOnProgrammingError(err, "read")
            return .error(err)
        }
    }

    /// Writes the `count` vectors at `iov` to `fd` with one gathering call (at most ``maxVectors`` of
    /// them; the rest is left for the next call, as with any partial write). On a socket this is
    /// `sendmsg(MSG_NOSIGNAL)`, so a closed peer yields `.error(EPIPE)` rather than SIGPIPE; on other
    /// descriptors it falls back to `writev`, where a closed pipe still raises SIGPIPE (ignore it
    /// process-wide if you write to pipes).
    /// - Returns: `.bytes(n)` (possibly fewer than requested), `.wouldBlock`, or `.error(errno)`.
    public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, count: Int) -> IOResult {
        if count == 0 { return .bytes(0) }
        let vectors = Int32(min(count, IO.maxVectors))
        while true {
            var n = csys_sendv(fd, iov, vectors)
            if n < 0 && errno == ENOTSOCK {
                n = Glibc.writev(fd, iov, vectors)
            }
            if n >= 0 { return .bytes(n) }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            trapOnProgrammingError(err, "writev")
            return .error(err)
        }
    }

    /// Writes `bytes` to `fd` (one call; may be partial). Same outcomes as ``writev(_:_:count:)``.
    public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .bytes(0) }
        var v = iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: bytes.count)
        return writev(fd, &v, count: 1)
    }

    /// Closes `fd`. EINTR is not retried (on Linux the descriptor is released anyway).
    public static func close(_ fd: Int32) {
        if Glibc.close(fd) != 0 {
            trapOnProgrammingError(errno, "close")
        }
    }
}

extension EventLoop {
    /// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (the broker logs the result).
    /// - Returns: the soft limit before and after (equal when it could not be raised; -1 means unlimited).
    public static func raiseFileDescriptorLimit() -> (old: Int, new: Int) {
        var soft: Int64 = 0
        var hard: Int64 = 0
        guard csys_get_nofile(&soft, &hard) == 0 else { return (-1, -1) }
        let old = Int(soft)
        if soft == -1 || soft == hard { return (old, old) }
        var target = hard
        if target == -1 {
            // An unlimited hard limit: Linux still caps descriptors at fs.nr_open (1 Mi by default).
            target = 1 << 20
        }
        if csys_set_nofile_soft(target) != 0 { return (old, old) }
        guard csys_get_nofile(&soft, &hard) == 0 else { return (old, old) }
        return (old, Int(soft))
    }
}
