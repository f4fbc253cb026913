// js-bench: a raw-protocol JetStream load client, so that our broker and nats-server 2.9.10 are
// measured with the same client. It creates its stream (file storage) on the broker it is given,
// measures one scenario and prints one JSON line on stdout.
//
//   js-bench --url nats://127.0.0.1:4222 --mode pub --size BYTES [--window N] [--msgs N]
//   js-bench --url nats://127.0.0.1:4222 --mode pull --size BYTES [--batch 100] [--msgs N] [--ack explicit|none]
//   js-bench --url nats://127.0.0.1:4222 --mode push --size BYTES [--msgs N] [--ack explicit|none]
//
// pub: publishes with a reply subject and waits for the PubAcks, keeping `window` in flight (1 = one
// synchronous publish at a time; its round trips give the latency percentiles). pull: stores `msgs`
// messages first (not timed), then reads them through a durable pull consumer with MSG.NEXT
// requests of `batch`, acking each message (`--ack none`: a consumer that needs no acks). push: the
// same, through a push consumer delivering to a subject the client subscribes to (acks written 100 at a time).
// Exit status: 0 on a complete run, 1 when the broker refused something or went silent for 30 s,
// 2 for bad arguments or a failed connection.
import Glibc

struct Failure: Error, CustomStringConvertible { let description: String }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A blocking loopback connection with a frame reader for MSG/HMSG, PING and -ERR.
final class Connection {
    let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0
    private var end = 0

    struct Message {
        var subject: ArraySlice<UInt8>
        var reply: ArraySlice<UInt8>
        var payload: ArraySlice<UInt8>
        /// The status line's code for a header-only status message (`NATS/1.0 408 ...`), else nil.
        var status: Int?
    }

    init(host: String, port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw Failure(description: "connect to \(host):\(port): errno \(errno)") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try send(Array("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\nSUB _jsb.> 1\r\n".utf8))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "send: errno \(errno)")
            }
            offset += n
        }
    }

    private func fill() throws {
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count {
            if start == 0 { buffer += [UInt8](repeating: 0, count: buffer.count) } else {
                buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end])
                end -= start
                start = 0
            }
        }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + end, $0.count - end, 0) }
        if n < 0, errno == EINTR { return }
        if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { throw Failure(description: "no data from the broker for 30 s") }
        guard n > 0 else { throw Failure(description: "the broker closed the connection") }
        end += n
    }

    private func int(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var v = 0
        for b in bytes {
            guard b >= 48, b <= 57 else { return nil }
            v = v * 10 + Int(b - 48)
        }
        return v
    }

    /// The next message; answers PINGs, fails on -ERR.
    func next() throws -> Message {
        while true {
            guard let newline = buffer[start..<end].firstIndex(of: 10) else {
                try fill()
                continue
            }
            let lineEnd = newline > start && buffer[newline - 1] == 13 ? newline - 1 : newline
            // Token ranges, not slices: a slice would keep the buffer shared and make fill() copy it.
            var ranges: [Range<Int>] = []
            var i = start
            while i < lineEnd {
                while i < lineEnd, buffer[i] == 32 { i += 1 }
                let tokenStart = i
                while i < lineEnd, buffer[i] != 32 { i += 1 }
                if i > tokenStart { ranges.append(tokenStart..<i) }
            }
            guard let verb = ranges.first else { start = newline + 1; continue }
            if buffer[verb].elementsEqual("PING".utf8) {
                start = newline + 1
                try send(Array("PONG\r\n".utf8))
                continue
            }
            if buffer[verb].elementsEqual("-ERR".utf8) {
                throw Failure(description: "broker: " + String(decoding: buffer[start..<lineEnd], as: UTF8.self))
            }
            let isMSG = buffer[verb].elementsEqual("MSG".utf8), isHMSG = buffer[verb].elementsEqual("HMSG".utf8)
            guard isMSG || isHMSG else { start = newline + 1; continue }
            guard ranges.count >= (isHMSG ? 5 : 4), let total = int(buffer[ranges[ranges.count - 1]]) else {
                throw Failure(description: "bad line " + String(decoding: buffer[start..<lineEnd], as: UTF8.self))
            }
            let headerSize = isHMSG ? int(buffer[ranges[ranges.count - 2]]) ?? 0 : 0
            let hasReply = ranges.count == (isHMSG ? 6 : 5)
            if end - (newline + 1) < total + 2 {
                // Parse the line again once more bytes are in: fill() may have moved them.
                try fill()
                continue
            }
            let payloadStart = newline + 1
            let block = buffer[payloadStart..<(payloadStart + headerSize)]
            var status: Int?
            if isHMSG, block.count >= 12, block.starts(with: "NATS/1.0 ".utf8) {
                status = int(block[(block.startIndex + 9)..<(block.startIndex + 12)])
            }
            let message = Message(subject: buffer[ranges[1]], reply: hasReply ? buffer[ranges[3]] : [],
                                  payload: buffer[(payloadStart + headerSize)..<(payloadStart + total)], status: status)
            start = payloadStart + total + 2
            return message
        }
    }

    /// Sends `bytes` and returns the first message on `reply`.
    func request(_ bytes: [UInt8], reply: String) throws -> Message {
        try send(bytes)
        while true {
            let message = try next()
            if message.subject.elementsEqual(reply.utf8) { return message }
        }
    }
}

func pub(_ subject: String, reply: String, payload: [UInt8]) -> [UInt8] {
    Array("PUB \(subject) \(reply) \(payload.count)\r\n".utf8) + payload + [13, 10]
}

func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

func contains(_ bytes: ArraySlice<UInt8>, _ needle: String) -> Bool {
    let n = Array(needle.utf8)
    guard bytes.count >= n.count else { return false }
    var i = bytes.startIndex
    while i + n.count <= bytes.endIndex {
        if bytes[i..<(i + n.count)].elementsEqual(n) { return true }
        i += 1
    }
    return false
}

/// Creates the benchmark stream (file storage, subject `jsb.data`) and checks the answer.
func createStream(_ c: Connection) throws {
    let body = Array(#"{"name":"JSB","subjects":["jsb.data"],"storage":"file"}"#.utf8)
    let answer = try c.request(pub("$JS.API.STREAM.CREATE.JSB", reply: "_jsb.create", payload: body), reply: "_jsb.create")
    guard !contains(answer.payload, "\"error\"") else { throw Failure(description: "stream create: " + text(answer.payload)) }
}

/// Publishes `count` messages with `window` PubAcks in flight; returns (seconds, round trips when window is 1).
func publish(_ c: Connection, count: Int, size: Int, window: Int) throws -> (Double, [Double]) {
    let payload = [UInt8](repeating: 120, count: size)
    var sent = 0
    var acked = 0
    var latencies: [Double] = []
    latencies.reserveCapacity(window == 1 ? count : 0)
    var sentAt = 0.0
    let begin = now()
    while acked < count {
        var frames: [UInt8] = []
        while sent < count, sent - acked < window {
            frames += pub("jsb.data", reply: "_jsb.a", payload: payload)
            sent += 1
        }
        if !frames.isEmpty {
            if window == 1 { sentAt = now() }
            try c.send(frames)
        }
        let answer = try c.next()
        guard answer.subject.elementsEqual("_jsb.a".utf8) else { continue }
        guard !contains(answer.payload, "\"error\"") else { throw Failure(description: "PubAck: " + text(answer.payload)) }
        acked += 1
        if window == 1 { latencies.append(now() - sentAt) }
    }
    return (now() - begin, latencies)
}

/// Reads `count` messages through a pull consumer with requests of `batch`.
func pull(_ c: Connection, count: Int, batch: Int, ack: Bool) throws -> Double {
    let config = #"{"stream_name":"JSB","config":{"durable_name":"jsb","ack_policy":"\#(ack ? "explicit" : "none")","max_ack_pending":-1}}"#
    let created = try c.request(pub("$JS.API.CONSUMER.DURABLE.CREATE.JSB.jsb", reply: "_jsb.cc", payload: Array(config.utf8)),
                                reply: "_jsb.cc")
    guard !contains(created.payload, "\"error\"") else { throw Failure(description: "consumer create: " + text(created.payload)) }
    let request = pub("$JS.API.CONSUMER.MSG.NEXT.JSB.jsb", reply: "_jsb.n",
                      payload: Array(#"{"batch":\#(batch),"expires":5000000000}"#.utf8))
    var received = 0
    var pendingAcks: [UInt8] = []
    let begin = now()
    try c.send(request)
    var inBatch = 0
    while received < count {
        let message = try c.next()
        if message.subject.elementsEqual("_jsb.n".utf8) {
            // A status: the request expired or the stream ran dry before the batch filled.
            guard message.status == 408 || message.status == 404 else {
                throw Failure(description: "pull status \(message.status.map(String.init) ?? "?")")
            }
            try c.send(pendingAcks + request)
            pendingAcks.removeAll(keepingCapacity: true)
            inBatch = 0
            continue
        }
        guard message.reply.starts(with: "$JS.ACK.".utf8) else { continue }
        received += 1
        inBatch += 1
        if ack { pendingAcks += Array("PUB ".utf8) + message.reply + Array(" 0\r\n\r\n".utf8) }
        if inBatch == batch {
            inBatch = 0
            try c.send(pendingAcks + (received < count ? request : []))
            pendingAcks.removeAll(keepingCapacity: true)
        }
    }
    if !pendingAcks.isEmpty { try c.send(pendingAcks) }
    // The acks reach the broker before the answer to this request.
    _ = try c.request(pub("$JS.API.CONSUMER.INFO.JSB.jsb", reply: "_jsb.ci", payload: []), reply: "_jsb.ci")
    return now() - begin
}

/// Reads `count` messages through a push consumer whose deliver subject is this connection's inbox.
func push(_ c: Connection, count: Int, ack: Bool) throws -> Double {
    let config = #"{"stream_name":"JSB","config":{"durable_name":"jsbpush","deliver_subject":"_jsbpush","ack_policy":"\#(ack ? "explicit" : "none")","max_ack_pending":-1}}"#
    var pendingAcks: [UInt8] = []
    var received = 0
    let begin = now()
    // Its own SUB on the exact deliver subject: 2.9.10 did not deliver to a push consumer whose deliver
    // subject only a wildcard subscription (the `_jsb.>` inbox) covered.
    try c.send(Array("SUB _jsbpush 2\r\n".utf8)
               + pub("$JS.API.CONSUMER.DURABLE.CREATE.JSB.jsbpush", reply: "_jsb.pc", payload: Array(config.utf8)))
    while received < count {
        let message = try c.next()
        if message.subject.elementsEqual("_jsb.pc".utf8) {
            guard !contains(message.payload, "\"error\"") else { throw Failure(description: "consumer create: " + text(message.payload)) }
            continue
        }
        guard message.reply.starts(with: "$JS.ACK.".utf8) else { continue }
        received += 1
        if ack {
            pendingAcks += Array("PUB ".utf8) + message.reply + Array(" 0\r\n\r\n".utf8)
            if received % 100 == 0 {
                try c.send(pendingAcks)
                pendingAcks.removeAll(keepingCapacity: true)
            }
        }
    }
    if !pendingAcks.isEmpty { try c.send(pendingAcks) }
    _ = try c.request(pub("$JS.API.CONSUMER.INFO.JSB.jsbpush", reply: "_jsb.ci", payload: []), reply: "_jsb.ci")
    return now() - begin
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func main() -> Int32 {
    var options: [String: String] = [:]
    var args = CommandLine.arguments.dropFirst()
    while let key = args.popFirst() {
        guard key.hasPrefix("--"), let value = args.popFirst() else {
            print("usage: js-bench --url nats://HOST:PORT --mode pub|pull|push --size BYTES [--window N] [--batch N] [--msgs N] [--ack explicit|none]")
            return 2
        }
        options[String(key.dropFirst(2))] = value
    }
    let url = options["url"] ?? "nats://127.0.0.1:4222"
    let hostPort = url.hasPrefix("nats://") ? String(url.dropFirst(7)) : url
    let parts = hostPort.split(separator: ":")
    guard parts.count == 2, let port = Int(parts[1]), let size = Int(options["size"] ?? "128"), size >= 0,
          let mode = options["mode"], ["pub", "pull", "push"].contains(mode) else {
        print("js-bench: --url nats://HOST:PORT, --mode pub|pull|push and --size BYTES are required")
        return 2
    }
    let window = Int(options["window"] ?? "1") ?? 1
    let batch = Int(options["batch"] ?? "100") ?? 100
    let ack = (options["ack"] ?? "explicit") != "none"
    let defaultCount = mode == "pub" && window == 1 ? 5_000 : max(2_000, min(50_000, (32 << 20) / max(size, 1)))
    let count = Int(options["msgs"] ?? "") ?? defaultCount
    guard window > 0, batch > 0, count > 0 else {
        print("js-bench: --window, --batch and --msgs must be positive")
        return 2
    }
    let connection: Connection
    do {
        connection = try Connection(host: String(parts[0]), port: port)
        try createStream(connection)
    } catch {
        print("js-bench: \(error)")
        return 2
    }
    do {
        var fields: [String] = []
        let elapsed: Double
        if mode == "pub" {
            let (seconds, latencies) = try publish(connection, count: count, size: size, window: window)
            elapsed = seconds
            fields.append("\"id\":\"pub:\(size):w\(window)\"")
            if window == 1 {
                let sorted = latencies.sorted()
                fields.append("\"p50_us\":\(Int(percentile(sorted, 0.5) * 1e6)),\"p99_us\":\(Int(percentile(sorted, 0.99) * 1e6))")
            }
        } else if mode == "pull" {
            _ = try publish(connection, count: count, size: size, window: 256)
            elapsed = try pull(connection, count: count, batch: batch, ack: ack)
            fields.append("\"id\":\"pull:\(size):b\(batch)\(ack ? "" : ":noack")\"")
        } else {
            _ = try publish(connection, count: count, size: size, window: 256)
            elapsed = try push(connection, count: count, ack: ack)
            fields.append("\"id\":\"push:\(size)\(ack ? "" : ":noack")\"")
        }
        fields.append("\"msgs\":\(count),\"size\":\(size),\"elapsed_s\":\(elapsed),\"msgs_per_s\":\(Double(count) / elapsed)")
        print("{" + fields.joined(separator: ",") + "}")
        return 0
    } catch {
        print("js-bench: \(error)")
        return 1
    }
}

exit(main())
