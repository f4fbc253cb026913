#if canImport(Glibc)
import Glibc
#endif

// On-disk format (all integers little-endian):
//
//   file header, 24 bytes:  magic "SKLOG\0\0\u{1}" (8) | base sequence u64 | CRC-32C of the first 16 bytes u32 | zero u32
//   each record:            payload length u32 | CRC-32C u32 | sequence u64 | payload
//
// A record's CRC covers its length field, its sequence number and its payload. Sequence numbers
// strictly increase through the file; the base sequence (set by compaction) keeps numbering
// monotonic when the newest records were tombstones that compaction dropped.

/// What recovery found when a log was opened.
public struct RecoveryReport: Sendable, Equatable {
    /// Intact records kept.
    public var records: Int
    /// Bytes of a torn or damaged tail that were cut off (0 after a clean shutdown).
    public var truncatedBytes: Int64
    /// File offset where the cut was made (the end of the last intact record), if any.
    public var truncatedAt: Int64?
}

/// Tunables of a log.
public struct StoreOptions: Sendable {
    /// Largest payload accepted by `append` and believed by recovery. A length field above it is
    /// treated as damage, so a corrupt length never causes a large allocation.
    public var maxRecordSize: Int
    /// Largest single write(2) when appending. Unlimited by default; the SIGKILL durability test
    /// sets it small so a kill can land between the pieces of one record, leaving the torn tail
    /// a power cut could leave (one write(2) is never split by a signal).
    public var maxWriteChunk: Int
    /// Options with the given limits (16 MiB records, unsplit writes by default).
    public init(maxRecordSize: Int = 16 << 20, maxWriteChunk: Int = .max) {
        self.maxRecordSize = maxRecordSize
        self.maxWriteChunk = maxWriteChunk
    }
}

/// An append-only log of checksummed, sequence-numbered records in one file.
///
/// `append` returns only after the record and the file are fsynced: an acknowledged record
/// survives a crash or power loss. Opening runs recovery: every intact record is delivered in
/// order, and a torn or damaged tail (what a crash in the middle of an append leaves) is cut off.
/// Damage followed by intact records is not a crash artefact, so opening fails instead of
/// dropping them.
///
/// Not thread-safe: one owner at a time (``KeyValueStore`` wraps it in a mutex).
public final class AppendLog {
    static let magic: [UInt8] = [0x53, 0x4B, 0x4C, 0x4F, 0x47, 0, 0, 1]  // "SKLOG\0\0\x01"
    static let headerSize: Int64 = 24
    static let recordHeaderSize = 16

    /// The log file's path.
    public let path: String
    /// The limits this log was opened with.
    public let options: StoreOptions
    private var fd: Int32
    /// Byte offset where the next record goes (the end of the last intact record).
    private var end: Int64
    /// Set after a failed write or fsync: the file state is unknown until reopened.
    private var poisoned = false
    /// Sequence number of the newest record (or the base sequence).
    public private(set) var lastSequence: UInt64
    /// What recovery did when this log was opened.
    public let recovery: RecoveryReport

    /// Opens (creating if absent) the log at `path`, calling `onRecord` for every intact record in
    /// order, and cuts off a torn tail.
    /// - Throws: ``StoreError/io(operation:path:errno:)``, ``StoreError/badHeader(path:)``,
    ///   ``StoreError/corruption(path:offset:nextValidRecord:)``, or whatever `onRecord` throws.
    public init(path: String, options: StoreOptions = StoreOptions(),
                onRecord: (_ sequence: UInt64, _ payload: [UInt8]) throws -> Void) throws {
        self.path = path
        self.options = options
        let directory = AppendLog.directory(of: path)
        // A compaction that crashed before its rename leaves only this scratch file behind.
        try FileIO.remove(path + ".compact")
        if !FileIO.exists(path) {
            try AppendLog.writeFile(at: path, baseSequence: 0, records: [])
            try FileIO.syncDirectory(directory)
        }
        let fd = try FileIO.open(path, O_RDWR)
        do {
            let size = try FileIO.size(fd, path: path)
            let header = try FileIO.read(fd, count: Int(AppendLog.headerSize), at: 0, path: path)
            guard header.count == Int(AppendLog.headerSize), Array(header[0..<8]) == AppendLog.magic,
                  header.withUnsafeBytes({ $0.littleEndian(at: 16, as: UInt32.self) }) == CRC32C.checksum(Array(header[0..<16]))
            else { throw StoreError.badHeader(path: path) }
            let base = header.withUnsafeBytes { $0.littleEndian(at: 8, as: UInt64.self) }

            var reader = RecordReader(fd: fd, path: path, size: size, maxRecordSize: options.maxRecordSize)
            var offset = AppendLog.headerSize
            var last: UInt64 = 0
            var count = 0
            while offset < size, let record = try reader.record(at: offset, after: last) {
                try onRecord(record.sequence, record.payload)
                last = record.sequence
                offset += Int64(AppendLog.recordHeaderSize + record.payload.count)
                count += 1
            }
            var report = RecoveryReport(records: count, truncatedBytes: 0, truncatedAt: nil)
            if offset < size {
                // Damage at `offset`. A crash mid-append leaves only that one record torn; intact
                // records after it mean something else went wrong, so refuse rather than drop them.
                if let next = try reader.findIntactRecord(from: offset + 1, after: last) {
                    throw StoreError.corruption(path: path, offset: offset, nextValidRecord: next)
                }
                try FileIO.truncate(fd, to: offset, path: path)
                try FileIO.sync(fd, path: path)
                report = RecoveryReport(records: count, truncatedBytes: size - offset, truncatedAt: offset)
            }
            self.fd = fd
            self.end = offset
            self.lastSequence = max(base, last)
            self.recovery = report
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Closes the file. Later calls throw ``StoreError/closed``.
    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    /// Appends `payload` as the next record and returns its sequence number once the record is
    /// durable (written and fsynced).
    /// - Throws: ``StoreError/recordTooLarge(size:limit:)``, ``StoreError/closed``,
    ///   ``StoreError/failed(path:)`` after an earlier failure, ``StoreError/io(operation:path:errno:)``
    ///   (the log then refuses writes until reopened).
    @discardableResult
    public func append(_ payload: [UInt8]) throws(StoreError) -> UInt64 {
        try append(contentsOf: [payload])
    }

    /// Appends `payloads` as consecutive records with one write and one fsync (group commit):
    /// all of them are durable when it returns. Returns the first record's sequence number (the
    /// others follow it); 0 and nothing written for an empty batch.
    /// - Throws: as ``append(_:)``; after a failure none of the batch counts as written.
    public func append(contentsOf payloads: [[UInt8]]) throws(StoreError) -> UInt64 {
        guard !payloads.isEmpty else { return 0 }
        for payload in payloads where payload.count > options.maxRecordSize {
            throw .recordTooLarge(size: payload.count, limit: options.maxRecordSize)
        }
        guard fd >= 0 else { throw .closed }
        guard !poisoned else { throw .failed(path: path) }
        let first = lastSequence + 1
        var bytes: [UInt8] = []
        for (offset, payload) in payloads.enumerated() {
            bytes.append(contentsOf: AppendLog.encode(sequence: first + UInt64(offset), payload: payload))
        }
        do {
            try FileIO.writeAll(fd, bytes, at: end, path: path, chunk: options.maxWriteChunk)
            try FileIO.sync(fd, path: path)
        } catch {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing about the
            // file can be trusted until recovery reads it again.
            poisoned = true
            throw error
        }
        end += Int64(bytes.count)
        lastSequence = first + UInt64(payloads.count - 1)
        return first
    }

    /// Replaces the log's contents with `records` (sequence numbers strictly increasing, each
    /// at most `lastSequence`), keeping `lastSequence`: writes a scratch file, fsyncs it,
    /// renames it over the log and fsyncs the folder. A crash at any point leaves either the old
    /// or the new file, both complete.
    /// - Throws: ``StoreError/io(operation:path:errno:)``, ``StoreError/closed``, ``StoreError/failed(path:)``.
    public func rewrite(_ records: [(sequence: UInt64, payload: [UInt8])]) throws(StoreError) {
        guard fd >= 0 else { throw .closed }
        guard !poisoned else { throw .failed(path: path) }
        let scratch = path + ".compact"
        let size = try AppendLog.writeFile(at: scratch, baseSequence: lastSequence, records: records)
        let newFD = try FileIO.open(scratch, O_RDWR)
        do {
            try FileIO.rename(scratch, path)
            try FileIO.syncDirectory(AppendLog.directory(of: path))
        } catch {
            Glibc.close(newFD)
            poisoned = true
            throw error
        }
        Glibc.close(fd)
        fd = newFD
        end = size
    }

    /// Writes a complete, fsynced log file (header plus `records`) at `path`; returns its size.
    @discardableResult
    static func writeFile(at path: String, baseSequence: UInt64, records: [(sequence: UInt64, payload: [UInt8])]) throws(StoreError) -> Int64 {
        let fd = try FileIO.open(path, O_RDWR | O_CREAT | O_TRUNC)
        defer { Glibc.close(fd) }
        var header = magic
        header.appendLittleEndian(baseSequence)
        header.appendLittleEndian(CRC32C.checksum(header))
        header.appendLittleEndian(UInt32(0))
        var buffer = header
        var offset: Int64 = 0
        for record in records {
            buffer.append(contentsOf: encode(sequence: record.sequence, payload: record.payload))
            if buffer.count >= 1 << 20 {
                try FileIO.writeAll(fd, buffer, at: offset, path: path)
                offset += Int64(buffer.count)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        try FileIO.writeAll(fd, buffer, at: offset, path: path)
        offset += Int64(buffer.count)
        try FileIO.sync(fd, path: path)
        return offset
    }

    static func encode(sequence: UInt64, payload: [UInt8]) -> [UInt8] {
        var record = [UInt8]()
        record.reserveCapacity(recordHeaderSize + payload.count)
        record.appendLittleEndian(UInt32(payload.count))
        record.appendLittleEndian(UInt32(0))  // checksum, filled in below
        record.appendLittleEndian(sequence)
        record.append(contentsOf: payload)
        let crc = record.withUnsafeBytes { raw in
            CRC32C.update(CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[0..<4])),
                          UnsafeRawBufferPointer(rebasing: raw[8...]))
        }
        record.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self) }
        return record
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// Reads and validates records through a fixed-size window, so recovery memory is bounded by the
/// window plus one record of at most `maxRecordSize`, whatever the length fields say.
struct RecordReader {
    let fd: Int32
    let path: String
    let size: Int64
    let maxRecordSize: Int
    private var window: [UInt8] = []
    private var windowStart: Int64 = 0
    private static let windowSize = 1 << 16

    init(fd: Int32, path: String, size: Int64, maxRecordSize: Int) {
        self.fd = fd; self.path = path; self.size = size; self.maxRecordSize = maxRecordSize
    }

    /// `count` bytes at `offset` (the caller checked they lie inside the file).
    private mutating func bytes(at offset: Int64, count: Int) throws(StoreError) -> [UInt8] {
        if offset >= windowStart, offset + Int64(count) <= windowStart + Int64(window.count) {
            let from = Int(offset - windowStart)
            return Array(window[from..<from + count])
        }
        if count > RecordReader.windowSize / 2 {
            let out = try FileIO.read(fd, count: count, at: offset, path: path)
            guard out.count == count else { throw .io(operation: "read (file shrank)", path: path, errno: EIO) }
            return out
        }
        let length = Int(min(Int64(RecordReader.windowSize), size - offset))
        window = try FileIO.read(fd, count: length, at: offset, path: path)
        guard window.count == length else { throw .io(operation: "read (file shrank)", path: path, errno: EIO) }
        windowStart = offset
        return Array(window[0..<count])
    }

    /// The intact record at `offset` whose sequence is above `previous`, or nil if the bytes there
    /// are not one (short, oversized length, bad checksum, or sequence not increasing).
    mutating func record(at offset: Int64, after previous: UInt64) throws(StoreError) -> (sequence: UInt64, payload: [UInt8])? {
        let headerSize = AppendLog.recordHeaderSize
        guard size - offset >= Int64(headerSize) else { return nil }
        let header = try bytes(at: offset, count: headerSize)
        let (length, crc, sequence) = header.withUnsafeBytes {
            ($0.littleEndian(at: 0, as: UInt32.self), $0.littleEndian(at: 4, as: UInt32.self), $0.littleEndian(at: 8, as: UInt64.self))
        }
        guard Int(length) <= maxRecordSize, Int64(length) <= size - offset - Int64(headerSize), sequence > previous else { return nil }
        let payload = try bytes(at: offset + Int64(headerSize), count: Int(length))
        let computed = header.withUnsafeBytes { h in
            payload.withUnsafeBytes { p in
                CRC32C.update(CRC32C.update(CRC32C.update(0, UnsafeRawBufferPointer(rebasing: h[0..<4])),
                                            UnsafeRawBufferPointer(rebasing: h[8..<16])), p)
            }
        }
        guard computed == crc else { return nil }
        return (sequence, payload)
    }

    /// The offset of the first intact record at or after `offset` with a sequence above `previous`.
    mutating func findIntactRecord(from offset: Int64, after previous: UInt64) throws(StoreError) -> Int64? {
        var candidate = offset
        while size - candidate >= Int64(AppendLog.recordHeaderSize) {
            if try record(at: candidate, after: previous) != nil { return candidate }
            candidate += 1
        }
        return nil
    }
}
