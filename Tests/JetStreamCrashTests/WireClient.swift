// A blocking raw-protocol NATS client for the crash test: publishes with replies, waits for the
// answer on a given reply subject, and reads JetStream deliveries with their headers.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TestSupport

/// One message from the broker (MSG or HMSG).
struct WireMessage {
    var subject: String
    var reply: String
    /// The raw header block (`NATS/1.0...\r\n\r\n`), empty for MSG.
    var headers: String
    var payload: [UInt8]

    var text: String { String(decoding: payload, as: UTF8.self) }

    /// The status code of a header-only status message (`NATS/1.0 404 No Messages`), if it is one.
    var status: Int? {
        guard headers.hasPrefix("NATS/1.0 ") else { return nil }
        return Int(headers.dropFirst("NATS/1.0 ".count).prefix(3))
    }

    func header(_ name: String) -> String? {
        for line in headers.components(separatedBy: "\r\n").dropFirst() {
            if let colon = line.firstIndex(of: ":"), line[..<colon] == name {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    /// The payload as a JSON object, if it is one.
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]
    }
}

enum WireError: Error, CustomStringConvertible {
    case closed(String)
    case timeout(String)
    case protocolError(String)

    var description: String {
        switch self {
        case .closed(let s): "connection closed: \(s)"
        case .timeout(let s): "timed out: \(s)"
        case .protocolError(let s): "protocol: \(s)"
        }
    }
}

/// One connection. Not thread-safe: each thread uses its own.
final class WireClient {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var nextReply = 0
    /// The connection's inbox prefix: every reply subject is `<inbox>.<n>`; one SUB covers them.
    let inbox: String

    /// Connects to 127.0.0.1:`port`, reads INFO, sends CONNECT (headers, no_responders) and the inbox SUB.
    /// Throws `TestFailure` when the connection is refused and `WireError` when INFO does not come.
    init(port: Int, inbox: String = "_in") throws {
        fd = try connectLoopback(port: port, timeoutSeconds: 0.2)
        self.inbox = inbox
        let deadline = Date().addingTimeInterval(5)
        var info = ""
        while !info.hasPrefix("INFO ") {
            guard let line = try readLine(until: deadline) else { throw WireError.timeout("INFO") }
            info = line
        }
        try send(#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"# + "\r\nSUB \(inbox).> 1\r\n")
    }

    deinit { close(fd) }

    func newReply() -> String {
        nextReply += 1
        return "\(inbox).\(nextReply)"
    }

    /// Writes all of `text`; throws `WireError.closed` when the socket fails.
    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            guard n > 0 else { throw WireError.closed("send errno \(errno)") }
            offset += n
        }
    }

    /// PUB or HPUB bytes for `subject` with `reply` and optional headers.
    static func publication(_ subject: String, reply: String?, headers: [(String, String)] = [], payload: String) -> [UInt8] {
        let body = Array(payload.utf8)
        let replyPart = reply.map { " " + $0 } ?? ""
        if headers.isEmpty {
            return Array("PUB \(subject)\(replyPart) \(body.count)\r\n".utf8) + body + [13, 10]
        }
        let block = Array(("NATS/1.0\r\n" + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n").utf8)
        return Array("HPUB \(subject)\(replyPart) \(block.count) \(block.count + body.count)\r\n".utf8) + block + body + [13, 10]
    }

    /// Publishes and waits for the one answer on a fresh reply subject (other messages are dropped).
    /// Throws `WireError` on a closed connection or when nothing comes within `timeout` seconds.
    func request(_ subject: String, _ payload: String = "", headers: [(String, String)] = [],
                 timeout: Double = 5) throws -> WireMessage {
        let reply = newReply()
        try send(WireClient.publication(subject, reply: reply, headers: headers, payload: payload))
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            guard let message = try readMessage(until: deadline) else { throw WireError.timeout("answer to \(subject)") }
            if message.subject == reply { return message }
        }
    }

    /// The next MSG/HMSG, answering server PINGs on the way; nil at the deadline.
    func readMessage(until deadline: Date) throws -> WireMessage? {
        while true {
            guard let line = try readLine(until: deadline) else { return nil }
            if line == "PING" { try send("PONG\r\n"); continue }
            if line.hasPrefix("-ERR") { throw WireError.protocolError(line) }
            let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard let verb = words.first, verb == "MSG" || verb == "HMSG" else { continue }
            let headered = verb == "HMSG"
            guard words.count >= (headered ? 5 : 4), let total = Int(words[words.count - 1]) else {
                throw WireError.protocolError(line)
            }
            let headerSize = headered ? Int(words[words.count - 2]) ?? 0 : 0
            let hasReply = words.count == (headered ? 6 : 5)
            guard let bytes = try readBytes(total + 2, until: deadline) else { throw WireError.timeout("payload of \(line)") }
            return WireMessage(subject: words[1], reply: hasReply ? words[3] : "",
                               headers: String(decoding: bytes[0..<headerSize], as: UTF8.self),
                               payload: Array(bytes[headerSize..<total]))
        }
    }

    private func fill(until deadline: Date) throws -> Bool {
        if start > 65_536 {
            buffer.removeFirst(start)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer += chunk[0..<n]
                return true
            }
            if n == 0 { throw WireError.closed("EOF") }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
            throw WireError.closed("recv errno \(errno)")
        }
        return false
    }

    private func readLine(until deadline: Date) throws -> String? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 10) {
                var end = newline
                if end > start, buffer[end - 1] == 13 { end -= 1 }
                let line = String(decoding: buffer[start..<end], as: UTF8.self)
                start = newline + 1
                return line
            }
            guard try fill(until: deadline) else { return nil }
        }
    }

    private func readBytes(_ count: Int, until deadline: Date) throws -> [UInt8]? {
        while buffer.count - start < count {
            guard try fill(until: deadline) else { return nil }
        }
        let bytes = Array(buffer[start..<(start + count)])
        start += count
        return bytes
    }
}
