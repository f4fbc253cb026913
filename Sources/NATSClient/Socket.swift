// Blocking POSIX TCP sockets for the client transport (one reader thread, one writer thread).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSystem

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC).
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Thin helpers over a connected socket file descriptor. The owner closes it exactly once.
enum TCPSocket {
    /// Resolves `host` and connects to the first address that accepts within `timeoutNanos`.
    ///
    /// The returned descriptor is blocking, close-on-exec, with TCP_NODELAY.
    /// - Throws: ``NATSError/connectionRefused(host:port:)``, ``NATSError/timeout``,
    ///   ``NATSError/connectionFailed(_:)``.
    static func connect(host: String, port: Int, timeoutNanos: UInt64) throws(NATSError) -> Int32 {
        let deadline = monotonicNanos() &+ timeoutNanos
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            let reason = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
            throw .connectionFailed("cannot resolve \(host): \(reason)")
        }
        defer { freeaddrinfo(list) }
        var lastError: NATSError = .connectionFailed("no usable address for \(host)")
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            cursor = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd < 0 { lastError = .connectionFailed("socket: \(errnoText())"); continue }
            _ = csys_set_cloexec(fd)
            _ = csys_set_nonblocking(fd)
            var result = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result != 0 && errno == EINPROGRESS {
                result = waitConnected(fd, deadline: deadline)
            } else if result != 0 {
                result = errno
            }
            if result == 0 {
                let flags = fcntl(fd, F_GETFL, 0)
                _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
                _ = csys_setsockopt_int(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
                _ = csys_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1)
                return fd
            }
            Glibc.close(fd)
            switch result {
            case ECONNREFUSED: lastError = .connectionRefused(host: host, port: port)
            case ETIMEDOUT: lastError = .timeout
            default: lastError = .connectionFailed("\(host):\(port): \(String(cString: strerror(result)))")
            }
            if monotonicNanos() >= deadline { break }
        }
        throw lastError
    }

    /// Waits for a non-blocking connect; returns 0 or the errno.
    private static func waitConnected(_ fd: Int32, deadline: UInt64) -> Int32 {
        while true {
            let now = monotonicNanos()
            if now >= deadline { return ETIMEDOUT }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ms = Int32(min((deadline - now) / 1_000_000 + 1, 60_000))
            let ready = poll(&pfd, 1, ms)
            if ready < 0 { if errno == EINTR { continue }; return errno }
            if ready == 0 { continue }
            var soError: Int32 = 0
            _ = csys_getsockopt_int(fd, SOL_SOCKET, SO_ERROR, &soError)
            return soError
        }
    }

    /// Waits until `fd` is readable or `deadline` passes. Returns false on timeout.
    static func waitReadable(_ fd: Int32, deadline: UInt64) -> Bool {
        while true {
            let now = monotonicNanos()
            if now >= deadline { return false }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(min((deadline - now) / 1_000_000 + 1, 60_000))
            let ready = poll(&pfd, 1, ms)
            if ready < 0 { if errno == EINTR { continue }; return true }
            if ready > 0 { return true }
        }
    }

    /// Receives into `buffer`; returns the byte count, 0 at end of stream, or -1 with errno set.
    @inline(__always)
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count < 0 && errno == EINTR { continue }
            return count
        }
    }

    /// Receives what is already there without blocking: the byte count, 0 at end of stream, -1
    /// with errno set, or nil when nothing is waiting.
    static func receiveNow(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return nil }
            return count
        }
    }

    /// Sends every byte of `bytes` (blocking). Returns false if the socket failed.
    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += sent
        }
        return true
    }

    /// Bounds how long a blocking `send` may wait for room (SO_SNDTIMEO); 0 leaves it unbounded.
    static func setSendTimeout(_ fd: Int32, nanoseconds: UInt64) {
        guard nanoseconds > 0 else { return }
        var value = timeval(tv_sec: Int(nanoseconds / 1_000_000_000), tv_usec: Int(nanoseconds % 1_000_000_000 / 1000))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends what the socket takes without blocking. Returns the bytes sent (possibly 0), or -1
    /// when the socket failed.
    static func sendNow(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while offset < bytes.count {
            let sent = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if sent < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return offset }
                return -1
            }
            offset += sent
        }
        return offset
    }

    /// Makes a blocked `recv`/`send` on another thread return at once.
    static func shutdown(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Closes the descriptor (once; the reader thread owns it).
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
