import Formats
import POSIXFiles
#if canImport(Glibc)
import Glibc
#endif

/// A consumer's state on disk, under `<stream directory>/obs/<consumer>/`:
///
/// - `meta.inf`: `{"name":..,"created":<ns>,"config":{..}}`, written at create and update;
/// - `o.dat`: the state, rewritten (tmp + rename, no fsync, as 2.9.10) at most every 100 ms
///   while it changes: `JSC1`, then unsigned LEB128 numbers: delivered consumer and stream
///   sequence, ack floor consumer and stream sequence, the pending count and per pending
///   message its stream sequence, delivery sequence and timestamp (zig-zag), the redelivered
///   count and per entry stream sequence and count; then the 8-byte RecordHash of all before.
enum ConsumerStateFile {
    static let configName = "meta.inf"
    static let stateName = "o.dat"
    static let magic = Array("JSC1".utf8)

    struct State: Equatable {
        var deliveredConsumer: UInt64 = 0
        var deliveredStream: UInt64 = 0
        var ackFloorConsumer: UInt64 = 0
        var ackFloorStream: UInt64 = 0
        var pending: [UInt64: PendingDelivery] = [:]
        var redelivered: [UInt64: UInt64] = [:]
    }

    static func encode(_ s: State) -> [UInt8] {
        var out = magic
        for v in [s.deliveredConsumer, s.deliveredStream, s.ackFloorConsumer, s.ackFloorStream] { putVarint(v, &out) }
        putVarint(UInt64(s.pending.count), &out)
        for (seq, p) in s.pending.sorted(by: { $0.key < $1.key }) {
            putVarint(seq, &out)
            putVarint(p.deliverySequence, &out)
            putVarint(UInt64(bitPattern: (p.timestamp << 1) ^ (p.timestamp >> 63)), &out)
        }
        putVarint(UInt64(s.redelivered.count), &out)
        for (seq, n) in s.redelivered.sorted(by: { $0.key < $1.key }) {
            putVarint(seq, &out)
            putVarint(n, &out)
        }
        var hash = out.withUnsafeBytes { RecordHash.hash($0) }
        withUnsafeBytes(of: &hash) { out.append(contentsOf: $0) }
        return out
    }

    /// - Throws: ``StreamStoreError/corrupt(path:offset:reason:)`` naming `path` when the bytes
    ///   are not a whole state written by ``encode(_:)``.
    static func decode(_ bytes: [UInt8], path: String) throws(StreamStoreError) -> State {
        guard bytes.count >= magic.count + 8, Array(bytes[0..<4]) == magic else {
            throw .corrupt(path: path, offset: 0, reason: "not a consumer state file")
        }
        let body = bytes[0..<(bytes.count - 8)]
        var stored: UInt64 = 0
        withUnsafeMutableBytes(of: &stored) { dst in
            bytes[(bytes.count - 8)...].withUnsafeBytes { dst.copyMemory(from: $0) }
        }
        let computed = body.withUnsafeBytes { RecordHash.hash($0) }
        guard stored == computed else {
            throw .corrupt(path: path, offset: Int64(bytes.count - 8), reason: "checksum mismatch")
        }
        var index = 4
        func next() throws(StreamStoreError) -> UInt64 {
            var value: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard index < body.endIndex, shift < 64 else {
                    throw .corrupt(path: path, offset: Int64(index), reason: "truncated number")
                }
                let b = body[index]
                index += 1
                value |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
        }
        var s = State()
        s.deliveredConsumer = try next()
        s.deliveredStream = try next()
        s.ackFloorConsumer = try next()
        s.ackFloorStream = try next()
        let pendingCount = try next()
        guard pendingCount <= UInt64(body.count) else { throw .corrupt(path: path, offset: Int64(index), reason: "bad pending count") }
        for _ in 0..<pendingCount {
            let seq = try next(), dseq = try next(), zigzag = try next()
            let ts = Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
            s.pending[seq] = PendingDelivery(deliverySequence: dseq, timestamp: ts)
        }
        let redeliveredCount = try next()
        guard redeliveredCount <= UInt64(body.count) else {
            throw .corrupt(path: path, offset: Int64(index), reason: "bad redelivered count")
        }
        for _ in 0..<redeliveredCount {
            let seq = try next()
            s.redelivered[seq] = try next()
        }
        guard index == body.endIndex else { throw .corrupt(path: path, offset: Int64(index), reason: "trailing bytes") }
        return s
    }

    private static func putVarint(_ value: UInt64, _ out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func encodeConfig(name: String, created: Int64, config: ConsumerConfig) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.string("name", name)
        w.int("created", created)
        var c: [UInt8] = []
        config.write(to: &c)
        w.raw("config", c)
        return w.finished()
    }

    /// - Throws: ``StreamStoreError/corrupt(path:offset:reason:)`` naming `path`.
    static func decodeConfig(_ bytes: [UInt8], path: String) throws(StreamStoreError) -> (name: String, created: Int64, config: ConsumerConfig) {
        guard let doc = try? JSON.parse(bytes), let name = doc["name"]?.stringValue, case .int(let created)? = doc["created"],
              let configJSON = doc["config"], let config = try? ConsumerConfig.decode(configJSON) else {
            throw .corrupt(path: path, offset: 0, reason: "not a consumer config file")
        }
        return (name, created, config)
    }

    /// Writes `bytes` to `path` through `path.tmp` and a rename, without fsync.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)``.
    static func write(_ bytes: [UInt8], to path: String) throws(StreamStoreError) {
        let tmp = path + ".tmp"
        let fd = try BlockIO.open(tmp, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try BlockIO.writeAll(fd, bytes, at: 0, path: tmp)
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try BlockIO.rename(tmp, path)
    }

    /// The whole file, or nil when it does not exist.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)``.
    static func read(_ path: String) throws(StreamStoreError) -> [UInt8]? {
        guard BlockIO.exists(path) else { return nil }
        let fd = try BlockIO.open(path, O_RDONLY)
        defer { close(fd) }
        let size = try BlockIO.size(fd, path: path)
        return try BlockIO.read(fd, count: Int(size), at: 0, path: path)
    }
}

extension Consumer {
    var persistentState: ConsumerStateFile.State {
        ConsumerStateFile.State(deliveredConsumer: deliverySequence - 1, deliveredStream: streamSequence - 1,
                                ackFloorConsumer: ackFloorDelivery, ackFloorStream: ackFloorStream,
                                pending: pending, redelivered: redelivered)
    }

    /// 2.9.10's applyState.
    func apply(_ s: ConsumerStateFile.State) {
        if streamSequence <= s.deliveredStream { streamSequence = s.deliveredStream + 1 }
        deliverySequence = s.deliveredConsumer + 1
        ackFloorDelivery = s.ackFloorConsumer
        ackFloorStream = s.ackFloorStream
        pending = s.pending
        redelivered = s.redelivered
    }
}
