// A raw TCP client: writes exact bytes and records every byte the broker sends back.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One client connection. Not thread-safe: one scenario thread owns it.
final class RawClient {
    private let fd: Int32
    /// Everything received so far, in order.
    private(set) var received: [UInt8] = []
    /// True once the broker closed (EOF or reset).
    private(set) var closedByServer = false
    /// True once a write failed because the peer was gone.
    private(set) var writeFailed = false

    init(port: Int) throws {
        fd = try RawClient.connectSocket(port: port)
    }

    deinit { close(fd) }

    /// A connected, blocking TCP socket to 127.0.0.1:`port`. Throws when the connect fails.
    static func connectSocket(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError.socket("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let code = errno
            close(fd)
            throw HarnessError.socket("connect to \(port): errno \(code)")
        }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Writes all of `bytes` (one call when the kernel takes it). A peer that is gone sets `writeFailed`.
    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                writeFailed = true
                return
            }
            offset += n
        }
    }

    /// Reads until `done(received)` holds, the broker closes, or `timeout` seconds pass.
    /// Returns whether `done` was satisfied.
    @discardableResult
    func read(timeout: Double, until done: ([UInt8]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if done(received) { return true }
            if closedByServer { return false }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return false }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(remaining * 1000, 1000).rounded(.up)))
            if ready < 0 {
                if errno == EINTR { continue }
                closedByServer = true
                return false
            }
            if ready == 0 { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                received.append(contentsOf: chunk[0..<n])
            } else if n == 0 {
                closedByServer = true
            } else if errno != EINTR && errno != EAGAIN {
                // ECONNRESET and friends: the broker is gone.
                closedByServer = true
            }
        }
    }

    /// Reads until the broker closes or `timeout` passes; returns whether it closed.
    @discardableResult
    func readUntilClosed(timeout: Double) -> Bool {
        read(timeout: timeout) { _ in false }
        return closedByServer
    }
}
