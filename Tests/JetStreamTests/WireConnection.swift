// The reference broker (nats-server 2.9.10 -js) and a plain NATS connection to it: what the
// Reference*Tests send it and read back, frame by frame, to compare with our engine's answers.
import Foundation
import Testing
import TestSupport

/// The reference broker, nats-server 2.9.10, and whether a run must have it.
enum ReferencePeer {
    static let environment = ProcessInfo.processInfo.environment
    /// `REQUIRE_PEERS=1` turns a missing reference broker into a failure instead of a skip.
    static var required: Bool { environment["REQUIRE_PEERS"] == "1" }
    /// `NATS_REFERENCE_BIN`, else Debian's /usr/sbin/nats-server.
    static var path: String { environment["NATS_REFERENCE_BIN"] ?? "/usr/sbin/nats-server" }
    static var available: Bool { FileManager.default.isExecutableFile(atPath: path) }
}

/// A running reference broker with JetStream on its own temporary directory.
struct ReferenceBroker {
    let port: Int
    /// The temporary directory; the store is in it (or where `configuration` puts it).
    let directory: String
    let child: ChildProcess

    /// Starts nats-server 2.9.10 on a free loopback port and waits for its ready line: with
    /// `-js -sd <directory>`, or with the configuration file that `configuration(port, directory)`
    /// writes. Returns nil, with the issue recorded, when the broker is missing (the tests' `.enabled`
    /// trait only lets that happen under REQUIRE_PEERS=1).
    /// - Throws: `TestFailure` when the directory, the port or the process cannot be had, or no
    ///   ready line comes.
    static func start(_ tag: String, configuration: ((_ port: Int, _ directory: String) -> String)? = nil)
        async throws -> ReferenceBroker? {
        guard ReferencePeer.available else {
            Issue.record("nats-server 2.9.10 not found at \(ReferencePeer.path) but REQUIRE_PEERS=1")
            return nil
        }
        let directory = try temporaryDirectory(tag)
        var child: ChildProcess?
        do {
            let port = try freePort()
            var arguments = ["-js", "-sd", directory, "-a", "127.0.0.1", "-p", String(port)]
            if let configuration {
                let path = directory + "/js.conf"
                try configuration(port, directory).write(toFile: path, atomically: true, encoding: .utf8)
                arguments = ["-c", path]
            }
            let started = try ChildProcess(executable: ReferencePeer.path, arguments: arguments,
                                           environment: ProcessInfo.processInfo.environment)
            child = started
            _ = try await started.waitForLine("ready line") { $0.contains("Server is ready") }
            return ReferenceBroker(port: port, directory: directory, child: started)
        } catch {
            if let child { kill(child.process.processIdentifier, SIGKILL) }
            removeTemporary(directory)
            throw error
        }
    }

    /// Kills the broker and removes its directory.
    func stop() {
        kill(child.process.processIdentifier, SIGKILL)
        removeTemporary(directory)
    }
}

/// A blocking NATS connection over a loopback socket that sends protocol text as given and reads
/// whole MSG/HMSG frames (subject, reply, header block, payload), answering the broker's PINGs.
final class WireConnection {
    struct Frame: Equatable {
        var subject: String
        /// Empty when the frame carries no reply subject.
        var reply: String
        /// The raw header block (`NATS/1.0...\r\n\r\n`), empty for a MSG.
        var headers: String
        var payload: String
    }

    /// The reply subject of a publish that names none.
    let reply: String
    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1:`port`, reads INFO, sends CONNECT (headers on) and a SUB for each of
    /// `subscriptions` (sids 1, 2, ...), and waits for the PONG that shows the broker has them.
    /// - Throws: `TestFailure` when the connection fails, a read times out (10 s) or no PONG comes.
    init(port: Int, subscriptions: [String], reply: String) throws {
        self.reply = reply
        fd = try connectLoopback(port: port, timeoutSeconds: 10)
        do {
            _ = try line()   // INFO
            let subscribe = subscriptions.enumerated().map { "SUB \($0.element) \($0.offset + 1)\r\n" }.joined()
            try send("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n\(subscribe)PING\r\n")
            guard try line() == "PONG" else { throw TestFailure("no PONG after CONNECT") }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Subscribes to `subject` too and waits until the broker has it.
    /// - Throws: `TestFailure` when the socket fails or no PONG comes.
    func subscribe(_ subject: String, sid: Int) throws {
        try send("SUB \(subject) \(sid)\r\nPING\r\n")
        guard try line() == "PONG" else { throw TestFailure("no PONG after SUB") }
    }

    /// Writes all of `text`.
    /// - Throws: `TestFailure` when the write fails.
    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TestFailure("write failed: errno \(errno)") }
            offset += n
        }
    }

    /// A PUB of `body` to `subject`, or an HPUB when there are `headers`, with `reply` (else the
    /// connection's own).
    /// - Throws: `TestFailure` when the write fails.
    func publish(_ subject: String, _ body: String, reply: String? = nil, headers: [(String, String)] = []) throws {
        let reply = reply ?? self.reply
        if headers.isEmpty {
            try send("PUB \(subject) \(reply) \(body.utf8.count)\r\n\(body)\r\n")
        } else {
            let block = WireConnection.headerBlock(headers)
            try send("HPUB \(subject) \(reply) \(block.utf8.count) \(block.utf8.count + body.utf8.count)\r\n\(block)\(body)\r\n")
        }
    }

    /// Publishes and returns the next frame (the answer, when nothing else is under way).
    /// - Throws: `TestFailure` as ``publish(_:_:reply:headers:)`` and ``frame()`` do.
    func request(_ subject: String, _ body: String, reply: String? = nil, headers: [(String, String)] = []) throws -> Frame {
        try publish(subject, body, reply: reply, headers: headers)
        return try frame()
    }

    /// The next `count` frames.
    /// - Throws: `TestFailure` as ``frame()`` does.
    func frames(_ count: Int) throws -> [Frame] {
        try (0..<count).map { _ in try frame() }
    }

    /// The next MSG or HMSG frame; PINGs are answered and PONGs passed over on the way.
    /// - Throws: `TestFailure` on any other line, a malformed frame line, a failed read or a
    ///   read timeout.
    func frame() throws -> Frame {
        while true {
            let head = try line()
            if head == "PING" { try send("PONG\r\n"); continue }
            if head == "PONG" { continue }
            let parts = head.split(separator: " ").map(String.init)
            if parts.first == "MSG", parts.count == 4 || parts.count == 5, let size = Int(parts[parts.count - 1]) {
                let reply = parts.count == 5 ? parts[3] : ""
                return Frame(subject: parts[1], reply: reply, headers: "", payload: String(decoding: try take(size), as: UTF8.self))
            }
            if parts.first == "HMSG", parts.count == 5 || parts.count == 6,
               let headerSize = Int(parts[parts.count - 2]), let total = Int(parts[parts.count - 1]), headerSize <= total {
                let reply = parts.count == 6 ? parts[3] : ""
                let bytes = try take(total)
                return Frame(subject: parts[1], reply: reply, headers: String(decoding: bytes[..<headerSize], as: UTF8.self),
                             payload: String(decoding: bytes[headerSize...], as: UTF8.self))
            }
            throw TestFailure("unexpected line from the broker: \(head)")
        }
    }

    /// `NATS/1.0`, a `name: value` line each, and the blank line that ends the block.
    static func headerBlock(_ headers: [(String, String)]) -> String {
        "NATS/1.0\r\n" + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw TestFailure("read from the broker failed (\(n), errno \(errno))") }
        buffer.append(contentsOf: chunk[..<n])
    }

    /// The next line, without its CRLF (or bare LF).
    private func line() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let end = newline > 0 && buffer[newline - 1] == 0x0D ? newline - 1 : newline
                let text = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(newline + 1)
                return text
            }
            try fill()
        }
    }

    /// `count` bytes and the CRLF after them.
    private func take(_ count: Int) throws -> [UInt8] {
        while buffer.count < count + 2 { try fill() }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count + 2)
        return bytes
    }
}
