// Plain non-blocking POSIX TCP sockets, IPv4 and IPv6: a listener and a client connect.
import CSystem
import Glibc

/// A remote endpoint as a numeric IP string and a port.
public struct PeerAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Numeric host, e.g. `"127.0.0.1"` or `"::1"`.
    public var ip: String
    /// TCP port.
    public var port: Int

    /// Creates an address from a numeric host string and a port.
    public init(ip: String, port: Int) {
        self.ip = ip
        self.port = port
    }

    /// `ip:port`, with IPv6 hosts in brackets.
    public var description: String { ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)" }
}

/// Why a host/port pair could not be turned into a socket address.
public struct AddressResolutionError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The host that was looked up.
    public let host: String
    /// The port that was looked up.
    public let port: Int
    /// getaddrinfo's explanation.
    public let message: String

    /// A one-line explanation naming the host and port.
    public var description: String { "cannot resolve \(host):\(port): \(message)" }
}

/// The outcome of one ``Listener/accept()``.
public enum AcceptResult: Equatable, Sendable {
    /// A new connection: non-blocking, close-on-exec, TCP_NODELAY set. The caller owns `fd`.
    case accepted(fd: Int32, peer: PeerAddress)
    /// No pending connection.
    case wouldBlock
    /// accept failed with this errno. ECONNABORTED: just accept again. EMFILE/ENFILE (out of
    /// descriptors): the connection stays queued and the listener stays readable, so back off
    /// (drop `.readable` interest and retry from a timer) instead of spinning.
    case error(Int32)
}

/// A bound, listening, non-blocking TCP socket. Copyable handle: exactly one owner calls ``close()``.
public struct Listener: Sendable {
    /// The listening descriptor (register it for `.readable` and call ``accept()`` when ready).
    public let fd: Int32
    /// The port actually bound (the ephemeral one when 0 was requested).
    public let port: Int

    /// Creates a non-blocking listening socket with SO_REUSEADDR. An IPv6 wildcard (`"::"`) also
    /// accepts IPv4 connections.
    /// - Parameters:
    ///   - host: numeric address or name to bind (`"0.0.0.0"`, `"::"`, `"127.0.0.1"`, `"localhost"`).
    ///   - port: TCP port; 0 picks an ephemeral one (read it back from ``port``).
    ///   - backlog: listen backlog.
    /// - Throws: ``AddressResolutionError`` when `host` does not resolve; ``SystemError`` when
    ///   socket, bind (e.g. EADDRINUSE) or listen fails.
    public static func bind(host: String, port: Int, backlog: Int32 = 1024) throws -> Listener {
        let addresses = try resolve(host: host, port: port, passive: true)
        var lastError = SystemError("bind", EADDRNOTAVAIL)
        for address in addresses {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                lastError = SystemError("socket", errno)
                continue
            }
            _ = csys_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if address.family == AF_INET6 {
                _ = csys_setsockopt_int(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0)
            }
            let bound = address.storage.withUnsafeBytes { raw in
                Glibc.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), address.length)
            }
            if bound != 0 {
                lastError = SystemError("bind", errno)
                Glibc.close(fd)
                continue
            }
            if listen(fd, backlog) != 0 {
                lastError = SystemError("listen", errno)
                Glibc.close(fd)
                continue
            }
            guard let local = socketLocalAddress(fd) else {
                lastError = SystemError("getsockname", errno)
                Glibc.close(fd)
                continue
            }
            return Listener(fd: fd, port: local.port)
        }
        throw lastError
    }

    /// Accepts one pending connection. Never blocks.
    /// - Returns: `.accepted` with a non-blocking, close-on-exec, TCP_NODELAY descriptor and the peer's
    ///   address; `.wouldBlock` when none is pending; `.error(errno)` otherwise.
    public func accept() -> AcceptResult {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let client = withUnsafeMutablePointer(to: &storage) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    csys_accept_nonblocking(fd, $0, &length)
                }
            }
            if client >= 0 {
                _ = csys_setsockopt_int(client, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
                let peer = decode(&storage) ?? PeerAddress(ip: "", port: 0)
                return .accepted(fd: client, peer: peer)
            }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            trapOnProgrammingError(err, "accept4")
            return .error(err)
        }
    }

    /// Closes the listening socket. Deregister it from its loop first.
    public func close() {
        IO.close(fd)
    }
}

/// Client-side TCP helpers (tests, tools, and clients that want a plain socket).
public enum Socket {
    /// Connects to `host:port` (blocking connect, trying each resolved address), sets TCP_NODELAY
    /// and close-on-exec, then makes the socket non-blocking unless `nonBlocking` is false.
    /// - Returns: the connected descriptor; the caller owns it.
    /// - Throws: ``AddressResolutionError`` when `host` does not resolve; ``SystemError`` when every
    ///   address fails (the last failure, e.g. ECONNREFUSED).
    public static func connect(host: String, port: Int, nonBlocking: Bool = true) throws -> Int32 {
        let addresses = try resolve(host: host, port: port, passive: false)
        var lastError = SystemError("connect", ECONNREFUSED)
        for address in addresses {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                lastError = SystemError("socket", errno)
                continue
            }
            var rc: Int32
            repeat {
                rc = address.storage.withUnsafeBytes { raw in
                    Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), address.length)
                }
            } while rc != 0 && errno == EINTR
            if rc != 0 {
                lastError = SystemError("connect", errno)
                Glibc.close(fd)
                continue
            }
            _ = csys_setsockopt_int(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            if nonBlocking && csys_set_nonblocking(fd) != 0 {
                lastError = SystemError("fcntl", errno)
                Glibc.close(fd)
                continue
            }
            return fd
        }
        throw lastError
    }

    /// The peer address of a connected socket, or nil if it has none.
    public static func peerAddress(_ fd: Int32) -> PeerAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return rc == 0 ? decode(&storage) : nil
    }

    /// The local address of a socket, or nil if it has none.
    public static func localAddress(_ fd: Int32) -> PeerAddress? {
        socketLocalAddress(fd)
    }
}

private func socketLocalAddress(_ fd: Int32) -> PeerAddress? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &storage) { ptr in
        ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return rc == 0 ? decode(&storage) : nil
}

/// Decodes an AF_INET/AF_INET6 address into a numeric string and port.
private func decode(_ storage: inout sockaddr_storage) -> PeerAddress? {
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) { ptr in
            ptr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var addr = sin.pointee.sin_addr
                guard inet_ntop(AF_INET, &addr, &text, socklen_t(text.count)) != nil else { return nil }
                return PeerAddress(ip: ipString(text), port: Int(UInt16(bigEndian: sin.pointee.sin_port)))
            }
        }
    case AF_INET6:
        return withUnsafePointer(to: &storage) { ptr in
            ptr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var addr = sin6.pointee.sin6_addr
                guard inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count)) != nil else { return nil }
                return PeerAddress(ip: ipString(text), port: Int(UInt16(bigEndian: sin6.pointee.sin6_port)))
            }
        }
    default:
        return nil
    }
}

/// One resolved socket address.
private struct ResolvedAddress {
    var family: Int32
    var storage: [UInt8]
    var length: socklen_t
}

/// getaddrinfo for TCP. Empty host with `passive` means the IPv4 wildcard.
private func resolve(host: String, port: Int, passive: Bool) throws -> [ResolvedAddress] {
    guard (0...65535).contains(port) else {
        throw AddressResolutionError(host: host, port: port, message: "port out of range")
    }
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
    var result: UnsafeMutablePointer<addrinfo>?
    let node: String? = host.isEmpty ? (passive ? "0.0.0.0" : "127.0.0.1") : host
    let rc = getaddrinfo(node, String(port), &hints, &result)
    guard rc == 0, let first = result else {
        let message = rc == 0 ? "no addresses" : String(cString: gai_strerror(rc))
        throw AddressResolutionError(host: host, port: port, message: message)
    }
    defer { freeaddrinfo(first) }
    var out: [ResolvedAddress] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let info = cursor {
        if let addr = info.pointee.ai_addr, info.pointee.ai_family == AF_INET || info.pointee.ai_family == AF_INET6 {
            let bytes = UnsafeRawBufferPointer(start: addr, count: Int(info.pointee.ai_addrlen))
            out.append(ResolvedAddress(family: info.pointee.ai_family, storage: Array(bytes),
                                       length: info.pointee.ai_addrlen))
        }
        cursor = info.pointee.ai_next
    }
    if out.isEmpty {
        throw AddressResolutionError(host: host, port: port, message: "no IPv4 or IPv6 address")
    }
    return out
}

/// The NUL-terminated C string in `text`.
private func ipString(_ text: [CChar]) -> String {
    let bytes = text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
