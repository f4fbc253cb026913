import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `httpRequest` off the cooperative pool.
func http(port: Int, method: String = "GET", path: String, headers: [String: String] = [:], body: String = "") async throws -> SimpleHTTPResponse {
    try await offPool { try httpRequest(port: port, method: method, path: path, headers: headers, body: body) }
}

struct SimpleHTTPResponse: Sendable {
    var status: Int
    var headers: [String: String]   // lower-cased names
    var body: String
}

/// One HTTP/1.1 request over a fresh loopback connection (`Connection: close`).
func httpRequest(port: Int, method: String = "GET", path: String, headers: [String: String] = [:], body: String = "") throws -> SimpleHTTPResponse {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PeerError(description: "socket failed") }
    defer { close(fd) }
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw PeerError(description: "connect to \(port) failed: errno \(errno)") }
    var request = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n"
    for (k, v) in headers { request += "\(k): \(v)\r\n" }
    request += "\r\n" + body
    let bytes = Array(request.utf8)
    guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { throw PeerError(description: "send failed") }
    var received = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        received.append(contentsOf: chunk[0..<n])
    }
    let text = String(decoding: received, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw PeerError(description: "no response head: \(text)") }
    let lines = text[..<split.lowerBound].split(separator: "\r\n")
    guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ")[1]) else {
        throw PeerError(description: "bad status line")
    }
    var fields: [String: String] = [:]
    for line in lines.dropFirst() {
        if let colon = line.firstIndex(of: ":") {
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    return SimpleHTTPResponse(status: status, headers: fields, body: String(text[split.upperBound...]))
}


/// The reference broker (/usr/sbin/nats-server) on a given port.
final class ReferenceBroker: @unchecked Sendable {
    // @unchecked: `process` is used only by the test that owns the broker, sequentially.
    static let executable = ProcessInfo.processInfo.environment["NATS_REFERENCE_SERVER_BIN"] ?? "/usr/sbin/nats-server"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: executable) }
    let port: Int
    private let process = Process()

    init(port: Int) throws {
        self.port = port
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["-a", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
    deinit { stop() }
}
