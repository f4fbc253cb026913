import Dispatch
import Foundation
import Glibc
import TestSupport
import Testing
@testable import HTTPServer

struct ClientError: Error, CustomStringConvertible {
    var description: String
}

/// A response as read off the wire by the test client.
struct WireResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

/// A blocking TCP client with a receive timeout, so a missing response fails the test instead of hanging.
final class TestClient: @unchecked Sendable {
    // @unchecked: each test uses one client from one task at a time.
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int, receiveTimeoutSeconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        // On failure deinit closes fd (it runs because every stored property is set); closing here too
        // would close whatever descriptor another thread got in between.
        guard rc == 0 else { throw ClientError(description: "connect: \(errno)") }
        var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { if fd >= 0 { close(fd) } }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError(description: "send: \(errno)") }
            offset += n
        }
    }

    /// Reads more bytes; false at EOF. Throws on timeout or error.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 { return false }
        if errno == ECONNRESET { return false }
        throw ClientError(description: "recv: errno \(errno) (timeout?)")
    }

    private func readLine() throws -> String {
        while true {
            if let lf = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[0..<lf])
                buffer.removeFirst(lf + 1)
                if line.last == 0x0D { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { throw ClientError(description: "EOF inside a line") }
        }
    }

    private func readExactly(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill() else { throw ClientError(description: "EOF inside a body") }
        }
        let out = Array(buffer[0..<count])
        buffer.removeFirst(count)
        return out
    }

    /// Reads one response (skipping 100 Continue). `head` means a response to HEAD (no body).
    func readResponse(head: Bool = false) throws -> WireResponse {
        while true {
            let statusLine = try readLine()
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
                throw ClientError(description: "bad status line \(statusLine.debugDescription)")
            }
            var headers: [(String, String)] = []
            while true {
                let line = try readLine()
                if line.isEmpty { break }
                guard let colon = line.firstIndex(of: ":") else { throw ClientError(description: "bad header \(line)") }
                headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            var response = WireResponse(status: status, headers: headers, body: [])
            if status == 100 { continue }
            if head || status == 204 || status == 304 { return response }
            if let length = response.header("Content-Length").flatMap(Int.init) {
                response.body = try readExactly(length)
            } else if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
                while true {
                    let sizeLine = try readLine()
                    guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) else {
                        throw ClientError(description: "bad chunk size \(sizeLine)")
                    }
                    if size == 0 {
                        while try !readLine().isEmpty {}
                        break
                    }
                    response.body += try readExactly(size)
                    _ = try readExactly(2)
                }
            } else {
                while try fill() {}
                response.body = buffer
                buffer = []
            }
            return response
        }
    }

    /// Reads the chunked body of a streamed response piece by piece until `done` says stop.
    func readChunks(until done: (String) -> Bool) throws -> String {
        var text = ""
        while !done(text) {
            let sizeLine = try readLine()
            guard let size = Int(sizeLine, radix: 16) else { throw ClientError(description: "bad chunk size \(sizeLine)") }
            if size == 0 { break }
            text += String(decoding: try readExactly(size), as: UTF8.self)
            _ = try readExactly(2)
        }
        return text
    }

    /// Reads the rest of a chunked stream through its terminating chunk; returns the text.
    func readChunksToEnd() throws -> String {
        var text = ""
        while true {
            let sizeLine = try readLine()
            guard let size = Int(sizeLine, radix: 16) else { throw ClientError(description: "bad chunk size \(sizeLine)") }
            if size == 0 {
                while try !readLine().isEmpty {}
                return text
            }
            text += String(decoding: try readExactly(size), as: UTF8.self)
            _ = try readExactly(2)
        }
    }

    /// True when the server has closed the connection (EOF with nothing buffered).
    func isClosedByServer() throws -> Bool {
        if !buffer.isEmpty { return false }
        return try !fill()
    }
}

/// A router with the routes the live tests use.
func liveRouter() -> HTTPRouter {
    var router = HTTPRouter()
    router.get("/hello") { _ in .text("hello") }
    router.get("/v1/items/{id}") { request in
        .json(bytes: Array(try JSONEncoder().encode(["id": request.pathParameters["id"] ?? "", "q": request.query["q"] ?? ""])))
    }
    router.post("/echo", bodyLimit: 64) { request in
        HTTPResponse(status: .ok, headers: ["Content-Type": "application/octet-stream"], body: request.body)
    }
    router.get("/slow/{ms}") { request in
        let ms = Int(request.pathParameters["ms"] ?? "") ?? 0
        try await Task.sleep(for: .milliseconds(ms))
        return .text("slept \(ms)")
    }
    router.get("/remote") { request in .text(request.remoteAddress) }
    return router
}

/// Starts a server on an ephemeral port, runs `body`, and always shuts the server down.
func withServer<T>(
    _ router: HTTPRouter = liveRouter(), configuration: HTTPServer.Configuration = HTTPServer.Configuration(),
    _ body: (HTTPServer) async throws -> T
) async throws -> T {
    let server = HTTPServer(host: "127.0.0.1", port: 0, router: router, configuration: configuration)
    try server.start()
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}
