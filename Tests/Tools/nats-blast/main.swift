// nats-blast: a raw-protocol load generator that costs the client as little as possible per message,
// so the broker, not the client, is what a run measures. The publisher writes pre-encoded PUB/HPUB
// frames in 256 KiB blocks; each subscriber reads 1 MiB at a time and only walks the frame headers
// to count messages. One JSON line per run on stdout.
//
//   nats-blast --port P --scenario pub|pubsub|fanout|queue --size BYTES [--hdr] [--msgs N] [--subs 4]
//
// Exit status: 0 when every expected message arrived (and the publisher's PING was answered), 1 when
// the run timed out (30 s without progress), 2 for bad arguments or a failed connection.
import Foundation
import Glibc
import Synchronization

struct Failure: Error, CustomStringConvertible { let description: String }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A blocking loopback connection that has passed CONNECT and a PING/PONG.
final class Connection: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw Failure(description: "connect to port \(port): errno \(errno)") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try send(Array("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n".utf8))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "send: errno \(errno)")
            }
            offset += n
        }
    }

    /// Sends PING and reads until PONG (the broker sends nothing else to a connection without
    /// subscriptions, apart from INFO, PING and -ERR, which are reported).
    func pingPong() throws {
        try send(Array("PING\r\n".utf8))
        var seen: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { throw Failure(description: "no PONG (recv \(n), errno \(errno))") }
            seen.append(contentsOf: buffer[0..<n])
            let text = String(decoding: seen, as: UTF8.self)
            if text.contains("-ERR") { throw Failure(description: "broker said: \(text)") }
            if text.contains("PONG\r\n") { return }
        }
    }
}

/// Counts MSG/HMSG frames in a byte stream: reads the control line's last number (the total size)
/// and skips that many bytes plus CRLF. Frames may be split across reads.
struct FrameCounter {
    var count = 0
    private var line: [UInt8] = []
    private var skip = 0
    private var inLine = true

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var i = 0
        let n = bytes.count
        while i < n {
            if skip > 0 {
                let take = min(skip, n - i)
                skip -= take
                i += take
                if skip == 0 { inLine = true }
                continue
            }
            // In a control line: find its end.
            var j = i
            while j < n && bytes[j] != 0x0A { j += 1 }
            line.append(contentsOf: bytes[i..<min(j + 1, n)])
            if j == n { return }
            i = j + 1
            if line.starts(with: Array("MSG ".utf8)) || line.starts(with: Array("HMSG ".utf8)) {
                // Last number before CRLF: the payload (or header+payload) size.
                var k = line.count - 3
                var size = 0
                var scale = 1
                while k >= 0 && line[k] >= 0x30 && line[k] <= 0x39 {
                    size += Int(line[k] - 0x30) * scale
                    scale *= 10
                    k -= 1
                }
                count += 1
                skip = size + 2
            }
            line.removeAll(keepingCapacity: true)
        }
    }
}

/// Messages counted by all subscribers and when the last bytes arrived.
final class Progress: Sendable {
    let delivered = Atomic<Int>(0)
    let lastArrival = Mutex<Double>(0)

    func arrived(at time: Double) { lastArrival.withLock { $0 = max($0, time) } }
}

func argument(_ name: String, _ arguments: [String]) -> String? {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}

func run() throws -> Int32 {
    let arguments = Array(CommandLine.arguments.dropFirst())
    guard let port = argument("--port", arguments).flatMap(Int.init),
          let scenario = argument("--scenario", arguments), ["pub", "pubsub", "fanout", "queue"].contains(scenario),
          let size = argument("--size", arguments).flatMap(Int.init), size >= 0 else {
        FileHandle.standardError.write(Data("usage: nats-blast --port P --scenario pub|pubsub|fanout|queue --size BYTES [--hdr] [--msgs N] [--subs 4]\n".utf8))
        return 2
    }
    let headers = arguments.contains("--hdr")
    let subs = scenario == "pub" ? 0 : (scenario == "pubsub" ? 1 : (argument("--subs", arguments).flatMap(Int.init) ?? 4))
    let budget = 64 << 20
    let messages = argument("--msgs", arguments).flatMap(Int.init)
        ?? max(50_000, min(2_000_000, budget / max(size, 16) / max(1, scenario == "fanout" ? subs : 1)))
    let expected = scenario == "fanout" ? messages * subs : (scenario == "pub" ? 0 : messages)

    // Subscribers first, each confirmed by a PONG before anything is published.
    let subject = "blast.\(getpid())"
    var subscribers: [Connection] = []
    for s in 0..<subs {
        let c = try Connection(port: port)
        let queue = scenario == "queue" ? " workers" : ""
        try c.send(Array("SUB \(subject)\(queue) \(s + 1)\r\n".utf8))
        try c.pingPong()
        subscribers.append(c)
    }
    let publisher = try Connection(port: port)
    try publisher.pingPong()

    // One frame, then a 256 KiB block of them.
    let header = Array("NATS/1.0\r\nX-Bench: nats-blast-0123456789\r\n\r\n".utf8)
    let payload = [UInt8](repeating: 0x61, count: size)
    var frame: [UInt8]
    if headers {
        frame = Array("HPUB \(subject) \(header.count) \(header.count + size)\r\n".utf8) + header + payload
    } else {
        frame = Array("PUB \(subject) \(size)\r\n".utf8) + payload
    }
    frame += Array("\r\n".utf8)
    let perBlock = max(1, (256 << 10) / frame.count)
    var block: [UInt8] = []
    block.reserveCapacity(perBlock * frame.count)
    for _ in 0..<perBlock { block += frame }

    let progress = Progress()
    let done = DispatchGroup()
    for connection in subscribers {
        done.enter()
        let target = scenario == "fanout" ? messages : expected
        let shared = scenario == "queue"
        Thread {
            defer { done.leave() }
            var frames = FrameCounter()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buffer.deallocate() }
            while true {
                let n = recv(connection.fd, buffer.baseAddress!, buffer.count, 0)
                if n <= 0 { return }   // 30 s of silence, or shut down
                let before = frames.count
                frames.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                let all = progress.delivered.wrappingAdd(frames.count - before, ordering: .relaxed).newValue
                progress.arrived(at: now())
                // A queue group shares the messages: stop when the members together have them all.
                if shared ? all >= target : frames.count >= target { return }
            }
        }.start()
    }

    let start = now()
    var sent = 0
    try block.withUnsafeBytes { all in
        while sent + perBlock <= messages {
            try publisher.send(all)
            sent += perBlock
        }
        let rest = messages - sent
        if rest > 0 {
            try publisher.send(UnsafeRawBufferPointer(rebasing: all[0..<(rest * frame.count)]))
            sent += rest
        }
    }
    try publisher.pingPong()
    let published = now()
    if scenario == "queue" {
        // Members that got nothing more would wait for their 30 s timeout: wake them once the group
        // has everything (bounded).
        let deadline = now() + 30
        while progress.delivered.load(ordering: .relaxed) < expected && now() < deadline { usleep(200) }
        for c in subscribers { shutdown(c.fd, Int32(SHUT_RDWR)) }
    }
    done.wait()
    let got = progress.delivered.load(ordering: .relaxed)
    let end = max(published, progress.lastArrival.withLock { $0 })
    let elapsed = end - start
    let delivered = scenario == "pub" ? messages : got
    let complete = scenario == "pub" || got >= expected
    let id = "\(scenario == "fanout" ? "fanout\(subs)" : (scenario == "queue" ? "queue\(subs)" : scenario))/\(size)B\(headers ? "/hdr" : "")"
    print("{\"id\":\"\(id)\",\"messages\":\(messages),\"delivered\":\(delivered),\"expected\":\(scenario == "pub" ? messages : expected),\"complete\":\(complete),\"elapsed_s\":\(elapsed),\"msgs_per_s\":\(Double(delivered) / elapsed)}")
    return complete ? 0 : 1
}

do {
    exit(try run())
} catch {
    FileHandle.standardError.write(Data("nats-blast: \(error)\n".utf8))
    exit(2)
}
