// Test harness: an in-process broker on an ephemeral port and a raw TCP client with
// deadline-bounded reads. PING/PONG is the barrier: after `sync()` returns, everything the broker
// did in reaction to earlier bytes has been written to this client.

import Foundation
import Glibc
import NATSServer
import Testing

/// A broker started in-process on 127.0.0.1 and a random port; shut down on deinit.
final class TestBroker {
    let server: Server

    init(_ configure: (inout Options) -> Void = { _ in }) throws {
        var options = Options()
        options.host = "127.0.0.1"
        options.port = 0
        options.noLog = true
        options.eventLoopCount = 2
        configure(&options)
        server = Server(options: options)
        try server.start()
    }

    var port: Int { server.port }

    deinit { server.shutdown() }

    /// A raw client that has read the INFO line.
    func client(file: String = #fileID, line: Int = #line) throws -> RawClient {
        let client = try RawClient(port: port)
        _ = try client.readInfo()
        return client
    }

    /// A client that sent `CONNECT` with `json` (verbose off unless given) and passed a PING barrier.
    func connected(_ json: String = #"{"verbose":false,"pedantic":false}"#) throws -> RawClient {
        let client = try self.client()
        try client.send("CONNECT \(json)\r\n")
        try client.sync()
        return client
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A blocking TCP client whose reads are bounded by a deadline (poll), never by sleeps.
final class RawClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var sawEOF = false
    /// Default time to wait for an expected line.
    static let timeout: Double = 5

    init(port: Int, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let err = errno
            Glibc.close(fd)
            throw HarnessError("connect: errno \(err)")
        }
    }

    deinit { Glibc.close(fd) }

    /// Writes all of `text`.
    func send(_ text: String) throws {
        try send(bytes: Array(text.utf8))
    }

    /// Writes all of `bytes`; fails if the peer is gone.
    func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HarnessError("send: errno \(errno)")
            }
            offset += n
        }
    }

    /// Reads more bytes, waiting at most until `deadline`. Returns false on timeout or EOF.
    private func fill(until deadline: Double) throws -> Bool {
        if sawEOF { return false }
        let remaining = deadline - Date().timeIntervalSince1970
        if remaining <= 0 { return false }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, Int32(max(1, remaining * 1000)))
        if ready < 0 {
            if errno == EINTR { return true }
            throw HarnessError("poll: errno \(errno)")
        }
        if ready == 0 { return false }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 || errno == ECONNRESET {
            sawEOF = true
            return false
        }
        if errno == EINTR || errno == EAGAIN { return true }
        throw HarnessError("recv: errno \(errno)")
    }

    /// The next line without its CRLF, or nil if none arrived before the timeout (or EOF).
    func readLine(timeout: Double = RawClient.timeout) throws -> String? {
        let deadline = Date().timeIntervalSince1970 + timeout
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                if line.last == 0x0D { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            if !(try fill(until: deadline)) {
                if sawEOF || Date().timeIntervalSince1970 >= deadline { return nil }
            }
        }
    }

    /// Exactly `count` bytes.
    func readBytes(count: Int, timeout: Double = RawClient.timeout) throws -> [UInt8] {
        let deadline = Date().timeIntervalSince1970 + timeout
        while buffer.count < count {
            if !(try fill(until: deadline)) && (sawEOF || Date().timeIntervalSince1970 >= deadline) {
                throw HarnessError("timed out reading \(count) bytes")
            }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// Exactly `count` bytes followed by CRLF (a message body).
    func readBody(count: Int, timeout: Double = RawClient.timeout) throws -> [UInt8] {
        let deadline = Date().timeIntervalSince1970 + timeout
        while buffer.count < count + 2 {
            if !(try fill(until: deadline)) && (sawEOF || Date().timeIntervalSince1970 >= deadline) {
                throw HarnessError("timed out reading a \(count)-byte body")
            }
        }
        let body = Array(buffer[..<count])
        guard buffer[count] == 0x0D, buffer[count + 1] == 0x0A else { throw HarnessError("body not followed by CRLF") }
        buffer.removeFirst(count + 2)
        return body
    }

    /// Reads the INFO line and decodes its JSON; also returns the raw line.
    @discardableResult
    func readInfo() throws -> (json: [String: Any], raw: String) {
        guard let line = try readLine() else { throw HarnessError("no INFO") }
        guard line.hasPrefix("INFO "), line.hasSuffix(" ") else { throw HarnessError("not an INFO line: \(line)") }
        let body = line.dropFirst(5).dropLast()
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8))
        guard let json = object as? [String: Any] else { throw HarnessError("INFO is not an object") }
        return (json, line)
    }

    /// Sends PING and returns every line that arrived before the PONG (bodies included as lines).
    @discardableResult
    func sync(timeout: Double = RawClient.timeout) throws -> [String] {
        try send("PING\r\n")
        var lines: [String] = []
        while true {
            guard let line = try readLine(timeout: timeout) else {
                throw HarnessError("no PONG (lines so far: \(lines), closed: \(sawEOF))")
            }
            if line == "PONG" { return lines }
            lines.append(line)
        }
    }

    /// The next line, which must equal `expected`.
    func expect(_ expected: String, timeout: Double = RawClient.timeout,
                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let line = try readLine(timeout: timeout)
        #expect(line == expected, sourceLocation: sourceLocation)
    }

    /// Waits until the server closes the connection, collecting what arrives meanwhile.
    /// - Returns: the lines read before the close; nil if the connection stayed open.
    func linesUntilClosed(timeout: Double = RawClient.timeout) throws -> [String]? {
        let deadline = Date().timeIntervalSince1970 + timeout
        var lines: [String] = []
        while Date().timeIntervalSince1970 < deadline {
            if let line = try readLine(timeout: max(0.001, deadline - Date().timeIntervalSince1970)) {
                lines.append(line)
            } else if sawEOF {
                return lines
            }
        }
        return nil
    }

    /// Reads and discards everything until EOF or the timeout. Returns true on EOF.
    func drainUntilClosed(timeout: Double = RawClient.timeout) throws -> Bool {
        let deadline = Date().timeIntervalSince1970 + timeout
        while Date().timeIntervalSince1970 < deadline {
            buffer.removeAll(keepingCapacity: true)
            if !(try fill(until: deadline)) && sawEOF { return true }
        }
        return sawEOF
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().timeIntervalSince1970 + timeout
    while Date().timeIntervalSince1970 < deadline {
        if try condition() { return true }
        usleep(2000)
    }
    return try condition()
}

/// GET `path` from 127.0.0.1:`port` with HTTP/1.0; returns the status code and the body.
///
/// The HTTP server runs its handlers on the Swift concurrency pool, so the blocking socket work
/// happens on a thread of its own while the calling test suspends (never blocking a pool thread).
func httpGet(port: Int, path: String, timeout: Double = 20) async throws -> (status: Int, body: [UInt8]) {
    let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<(Int, [UInt8]), any Error>, Never>) in
        let thread = Thread {
            continuation.resume(returning: Result { try blockingGet(port: port, path: path, timeout: timeout) })
        }
        thread.start()
    }
    let (status, body) = try result.get()
    return (status, body)
}

private func blockingGet(port: Int, path: String, timeout: Double) throws -> (Int, [UInt8]) {
    let client = try RawClient(port: port)
    try client.send("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    guard let statusLine = try client.readLine(timeout: timeout) else { throw HarnessError("no HTTP status line") }
    let parts = statusLine.split(separator: " ")
    let status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
    var length = 0
    while let header = try client.readLine(timeout: timeout), !header.isEmpty {
        if header.lowercased().hasPrefix("content-length:") {
            length = Int(header.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
        }
    }
    return (status, try client.readBytes(count: length, timeout: timeout))
}
