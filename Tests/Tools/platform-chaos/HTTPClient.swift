// A small HTTP/1.1 client over one blocking loopback socket, kept alive between requests: a login
// driver sends thousands of requests, and a new connection (or a curl process) per request would
// cost more than the login itself.

import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// How one request ended, as far as the client can tell.
enum HTTPOutcome {
    /// A whole response.
    case response(status: Int, body: String)
    /// The request never reached the server whole (connection refused, the send failed): the server
    /// did nothing with it.
    case notSent(String)
    /// The request was sent but no whole response came back (reset, timeout, EOF): the server may or
    /// may not have acted on it.
    case noAnswer(String)
}

/// One keep-alive connection to `127.0.0.1:port`, reopened after any failure. Not thread-safe: one
/// per thread.
final class HTTPClient {
    let port: Int
    let timeoutSeconds: Double
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []

    init(port: Int, timeoutSeconds: Double = 10) {
        self.port = port
        self.timeoutSeconds = timeoutSeconds
    }

    deinit { disconnect() }

    func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        buffer.removeAll(keepingCapacity: true)
    }

    /// Sends one request and reads its response.
    func request(_ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:]) -> HTTPOutcome {
        if fd < 0 {
            do {
                fd = try connectLoopback(port: port, timeoutSeconds: timeoutSeconds)
            } catch {
                return .notSent("\(error)")
            }
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        if let json { head += "Content-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let bytes = Array((head + "\r\n" + (json ?? "")).utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                let code = errno
                disconnect()
                // A server that closed a kept-alive connection before reading this request did nothing with it.
                return .notSent("send failed: errno \(code)")
            }
            sent += n
        }
        do {
            let (status, headers, body) = try readResponse()
            if headers["connection"]?.lowercased() == "close" { disconnect() }
            return .response(status: status, body: String(decoding: body, as: UTF8.self))
        } catch {
            disconnect()
            return .noAnswer("\(error)")
        }
    }

    private struct ReadError: Error, CustomStringConvertible { let description: String }

    /// Reads more bytes into the buffer.
    /// - Throws: ``ReadError`` on EOF, a reset or the receive timeout.
    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { throw ReadError(description: "the server closed the connection") }
        if n < 0 { throw ReadError(description: "recv failed: errno \(errno)") }
        buffer.append(contentsOf: chunk[0..<n])
    }

    private func takeLine() throws -> String {
        while true {
            if let index = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<index])
                if line.last == 0x0D { line.removeLast() }
                buffer.removeFirst(index + 1)
                return String(decoding: line, as: UTF8.self)
            }
            try fill()
        }
    }

    private func take(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { try fill() }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// Status, lower-cased header fields and body (Content-Length or chunked).
    /// - Throws: ``ReadError`` for a broken connection or a response it cannot frame.
    private func readResponse() throws -> (Int, [String: String], [UInt8]) {
        let statusLine = try takeLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw ReadError(description: "bad status line '\(statusLine)'") }
        var headers: [String: String] = [:]
        while true {
            let line = try takeLine()
            if line.isEmpty { break }
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var body: [UInt8] = []
            while true {
                let sizeLine = try takeLine()
                guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) else {
                    throw ReadError(description: "bad chunk size '\(sizeLine)'")
                }
                if size == 0 {
                    while try !takeLine().isEmpty {}
                    return (status, headers, body)
                }
                body += try take(size)
                _ = try takeLine()
            }
        }
        guard let length = Int(headers["content-length"] ?? "0") else { throw ReadError(description: "bad Content-Length") }
        return (status, headers, try take(length))
    }
}

/// One GET over a fresh connection: whether it answered 200 within `timeout` seconds.
func answers200(port: Int, path: String, timeout: Double = 2) -> Bool {
    let client = HTTPClient(port: port, timeoutSeconds: timeout)
    if case .response(200, _) = client.request("GET", path, headers: ["Connection": "close"]) { return true }
    return false
}
