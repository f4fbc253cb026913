import CSystem
#if canImport(Glibc)
import Glibc
#endif

// Block files: `<directory>/<n>.blk`, n = 1, 2, ... (decimal). Records are appended with one
// pwrite(2) per message (together with any removals noted since the last write); a block is closed
// once the next record would take it past `blockSize`, and fsynced before the next one is started
// (its writeback is started every 1 MiB, so that fsync has little left to wait for). Loads read up
// to 256 KiB of a block ahead, kept in memory until the next load outside it (one window per store).
//
// Record (integers little-endian), the same field order and size as 2.9.10's:
//
//   length u32       the whole record, this field and the checksum included; bit 31 set = has headers
//   sequence u64     bits 63-62: kind (00 message, 01 removal, 10 floor); bits 61-0: the sequence
//   timestamp i64    nanoseconds since the epoch
//   subject_len u16
//   subject          subject_len bytes
//   [headers_len u32, headers]   only when bit 31 of length is set
//   payload          the rest
//   checksum u64     RecordHash of every byte before it
//
// A message record is exactly fileStoreMsgSize bytes (22 + subject + payload + 8, plus 4 + headers),
// so it is also what the message counts for in max_bytes. A removal (30 bytes) says the message at
// `sequence` was deleted; a floor (30 bytes) says every message below `sequence` was removed, and
// carries the stream's last time so an emptied stream keeps it. Removals are records, not edits,
// so a block is never rewritten; the front block is unlinked once every message in it is below a
// written floor (a block in the middle whose messages were all deleted stays until then).
//
// Recovery replays the blocks in order, verifying each checksum. Damage in the last block with no
// intact record after it is a torn tail from a crash: the block is cut there. Damage anywhere else
// is refused with the file and offset rather than dropping acknowledged messages.

/// The file backend of ``StreamStore``.
final class FileBackend: StoreBackend {
    static let fixedSize = 30  // length, sequence, timestamp, subject_len, checksum
    static let headersFlag: UInt32 = 1 << 31
    static let kindShift: UInt64 = 62
    static let sequenceMask: UInt64 = (1 << 62) - 1

    enum Kind: UInt64 { case message = 0, removal = 1, floor = 2 }

    final class Block {
        let number: UInt32
        let path: String
        var fd: Int32
        /// Bytes of intact records (where the next one goes).
        var size: Int64
        /// The highest message sequence in the block (0: none).
        var lastMessage: UInt64 = 0
        /// Bytes handed to the kernel's writeback so far (see ``FileBackend/writeBehindChunk``).
        var writeBehind: Int64 = 0

        init(number: UInt32, path: String, fd: Int32, size: Int64) {
            self.number = number
            self.path = path
            self.fd = fd
            self.size = size
        }
    }

    let directory: String
    let options: FileStoreOptions
    private var blocks: [Block] = []
    /// Removal records waiting for the next write.
    private var pending: [UInt8] = []
    private var pendingFloor: (first: UInt64, lastTime: Int64)?
    private var writtenFloor: UInt64 = 0
    /// Set after a write that could not be undone: the block's contents are unknown until reopening.
    private var failure: String?
    private var dirty = false
    private var lastSync: Int64
    private var scratch: [UInt8] = []
    /// Bytes read ahead from one block for ``read(sequence:entry:)``: consumers load messages in
    /// sequence order, so one pread(2) serves the records after the one asked for.
    private var readAhead: (block: Block?, start: Int64, bytes: [UInt8]) = (nil, 0, [])
    static let readAheadSize = 256 << 10
    /// Every this many bytes appended to a block, its writeback starts (sync_file_range(2), which
    /// does not wait): the fsync that closes a full block then finds little left to write, instead
    /// of stalling the engine for the whole block (it was a quarter of the time at 16 KiB).
    static let writeBehindChunk: Int64 = 1 << 20

    /// Creates the directory if needed and opens its blocks (creating the first), without reading them.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)`` naming the directory or block.
    init(directory: String, options: FileStoreOptions) throws(StreamStoreError) {
        self.directory = directory
        self.options = options
        self.lastSync = monotonicNanoseconds()
        try BlockIO.makeDirectories(directory)
        var numbers: [UInt32] = []
        for name in try BlockIO.list(directory) where name.hasSuffix(".blk") {
            if let n = UInt32(name.dropLast(4)), n > 0 { numbers.append(n) }
        }
        do {
            for n in numbers.sorted() {
                let path = blockPath(n)
                let fd = try BlockIO.open(path, O_RDWR)
                blocks.append(Block(number: n, path: path, fd: fd, size: 0))
                blocks[blocks.count - 1].size = try BlockIO.size(fd, path: path)
            }
            if blocks.isEmpty { try startBlock(1) }
        } catch {
            close()
            throw error
        }
    }

    private func blockPath(_ n: UInt32) -> String { directory + "/" + String(n) + ".blk" }

    private func startBlock(_ n: UInt32) throws(StreamStoreError) {
        let path = blockPath(n)
        let fd = try BlockIO.open(path, O_RDWR | O_CREAT | O_TRUNC)
        blocks.append(Block(number: n, path: path, fd: fd, size: 0))
        try BlockIO.syncDirectory(directory)
    }

    // MARK: Replay

    /// Reads every block in order and hands each record to `apply`; cuts a torn tail off the last block.
    /// - Throws: ``StreamStoreError/corrupt(path:offset:reason:)``, ``StreamStoreError/io(operation:path:errno:)``.
    func replay(_ apply: (ReplayRecord) throws(StreamStoreError) -> Void) throws(StreamStoreError) {
        var lastSeen: UInt64 = 0  // highest sequence a message or floor has accounted for
        for (index, block) in blocks.enumerated() {
            let data = try BlockIO.read(block.fd, count: Int(block.size), at: 0, path: block.path)
            var offset = 0
            var damage: String?
            while offset < data.count {
                let parsed = data.withUnsafeBytes { FileBackend.parse($0, at: offset) }
                guard case .success(let record) = parsed else {
                    if case .failure(let why) = parsed { damage = why.reason }
                    break
                }
                switch record.kind {
                case .message:
                    // An intact record out of order is not something a crash leaves: refuse it.
                    guard record.sequence > lastSeen else {
                        throw .corrupt(path: block.path, offset: Int64(offset),
                                       reason: "message sequence \(record.sequence) after \(lastSeen)")
                    }
                    lastSeen = record.sequence
                    block.lastMessage = record.sequence
                    let subject = data.withUnsafeBytes {
                        String(decoding: $0[record.subject], as: UTF8.self)
                    }
                    try apply(.message(sequence: record.sequence, timestamp: record.timestamp, subject: subject,
                                       bytes: UInt32(record.length), block: block.number, offset: UInt32(offset)))
                case .removal:
                    // A removal past the last message is a skip: its sequence is used, and a message
                    // after it at or below it would sit in the index out of order.
                    lastSeen = max(lastSeen, record.sequence)
                    try apply(.removal(sequence: record.sequence))
                case .floor:
                    if record.sequence > 0 { lastSeen = max(lastSeen, record.sequence - 1) }
                    writtenFloor = max(writtenFloor, record.sequence)
                    try apply(.floor(first: record.sequence, lastTime: record.timestamp))
                }
                offset += record.length
            }
            guard let damage else { continue }
            // A crash tears at most the last write, at the end of the last block.
            let isLast = index == blocks.count - 1
            if isLast, FileBackend.intactRecord(in: data, after: offset) == nil {
                try BlockIO.truncate(block.fd, to: Int64(offset), path: block.path)
                try BlockIO.sync(block.fd, path: block.path)
                block.size = Int64(offset)
            } else {
                throw .corrupt(path: block.path, offset: Int64(offset), reason: damage)
            }
        }
    }

    struct Record {
        var kind: Kind
        var sequence: UInt64
        var timestamp: Int64
        var length: Int
        var subject: Range<Int>
        var headers: Range<Int>
        var payload: Range<Int>
    }

    struct Damage: Error { var reason: String }

    /// Decodes and verifies the record at `offset` of `bytes`.
    static func parse(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Result<Record, Damage> {
        let available = bytes.count - offset
        guard available >= fixedSize else { return .failure(Damage(reason: "record cut short")) }
        let word = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let hasHeaders = word & headersFlag != 0
        let length = Int(word & ~headersFlag)
        let minimum = fixedSize + (hasHeaders ? 4 : 0)
        guard length >= minimum else { return .failure(Damage(reason: "length \(length) too small")) }
        guard length <= available else { return .failure(Damage(reason: "record cut short")) }
        let body = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length - 8)])
        let stored = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + length - 8, as: UInt64.self))
        guard RecordHash.hash(body) == stored else { return .failure(Damage(reason: "checksum mismatch")) }
        let rawSequence = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self))
        guard let kind = Kind(rawValue: rawSequence >> kindShift) else { return .failure(Damage(reason: "unknown record kind")) }
        let timestamp = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 12, as: Int64.self))
        let subjectLength = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 20, as: UInt16.self)))
        let subjectStart = offset + 22
        guard subjectLength <= length - minimum else { return .failure(Damage(reason: "subject length \(subjectLength)")) }
        var cursor = subjectStart + subjectLength
        var headers = cursor..<cursor
        if hasHeaders {
            let headerLength = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: cursor, as: UInt32.self)))
            cursor += 4
            guard headerLength <= offset + length - 8 - cursor else { return .failure(Damage(reason: "headers length \(headerLength)")) }
            headers = cursor..<(cursor + headerLength)
            cursor += headerLength
        }
        let record = Record(kind: kind, sequence: rawSequence & sequenceMask, timestamp: timestamp, length: length,
                            subject: subjectStart..<(subjectStart + subjectLength), headers: headers,
                            payload: cursor..<(offset + length - 8))
        switch kind {
        case .message:
            guard subjectLength > 0 else { return .failure(Damage(reason: "message without subject")) }
        case .removal, .floor:
            guard length == fixedSize else { return .failure(Damage(reason: "removal record of \(length) bytes")) }
        }
        return .success(record)
    }

    /// The offset of the first intact record after `offset`, if any.
    static func intactRecord(in data: [UInt8], after offset: Int) -> Int? {
        data.withUnsafeBytes { bytes in
            var candidate = offset + 1
            while candidate + fixedSize <= bytes.count {
                if case .success = parse(bytes, at: candidate) { return candidate }
                candidate += 1
            }
            return nil
        }
    }

    // MARK: Writing

    func messageSize(subjectLength: Int, headers: Int, payload: Int) -> UInt64 {
        UInt64(22 + subjectLength + payload + 8 + (headers > 0 ? 4 + headers : 0))
    }

    func replacementFits(replacedSize: UInt64, rawSize: UInt64) -> Bool { replacedSize > rawSize }

    /// Appends one record to `buffer`.
    private static func encode(into buffer: inout [UInt8], kind: Kind, sequence: UInt64, timestamp: Int64,
                               subject: String, headers: [UInt8], payload: [UInt8]) {
        let start = buffer.count
        let subjectLength = subject.utf8.count
        let length = 22 + subjectLength + payload.count + 8 + (headers.isEmpty ? 0 : 4 + headers.count)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
        }
        put(UInt32(length) | (headers.isEmpty ? 0 : headersFlag))
        put(sequence | (kind.rawValue << kindShift))
        put(timestamp)
        put(UInt16(subjectLength))
        buffer.append(contentsOf: subject.utf8)
        if !headers.isEmpty {
            put(UInt32(headers.count))
            buffer.append(contentsOf: headers)
        }
        buffer.append(contentsOf: payload)
        let hash = buffer.withUnsafeBytes { RecordHash.hash(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        put(hash)
    }

    func append(sequence: UInt64, timestamp: Int64, subject: String, headers: [UInt8], payload: [UInt8],
                pendingSize: UInt64) throws(StreamStoreError) -> (block: UInt32, offset: UInt32) {
        if let failure { throw .failed(path: failure) }
        var block = blocks[blocks.count - 1]
        let needed = Int64(pendingSize) + Int64(pending.count) + (pendingFloor == nil ? 0 : Int64(Self.fixedSize))
        if block.size > 0 && block.size + needed > Int64(options.blockSize) {
            try rotate()
            block = blocks[blocks.count - 1]
        }
        scratch.removeAll(keepingCapacity: true)
        appendPending(to: &scratch)
        let offset = block.size + Int64(scratch.count)
        guard offset + Int64(pendingSize) <= Int64(UInt32.max) else {
            throw .io(operation: "write", path: block.path, errno: EFBIG)
        }
        Self.encode(into: &scratch, kind: .message, sequence: sequence, timestamp: timestamp,
                    subject: subject, headers: headers, payload: payload)
        try write(scratch, to: block)
        block.lastMessage = sequence
        if options.syncEveryWrite {
            try guarded(block) { () throws(StreamStoreError) in try BlockIO.sync(block.fd, path: block.path, dataOnly: true) }
            dirty = false
        }
        // The message is written: a failed periodic fsync must not report it as not stored. The
        // failure is kept and the next write or sync reports it.
        try? syncIfDue()
        return (block.number, UInt32(offset))
    }

    /// Moves the noted removals into `buffer` (the floor first) and clears them.
    private func appendPending(to buffer: inout [UInt8]) {
        if let floor = pendingFloor {
            Self.encode(into: &buffer, kind: .floor, sequence: floor.first, timestamp: floor.lastTime,
                        subject: "", headers: [], payload: [])
            writtenFloor = max(writtenFloor, floor.first)
            pendingFloor = nil
        }
        buffer.append(contentsOf: pending)
        pending.removeAll(keepingCapacity: true)
    }

    /// One pwrite(2) at the block's end. After a failed one the block's end is unknown, so the
    /// backend refuses further writes; reopening cuts whatever part of the record reached the disk.
    private func write(_ bytes: [UInt8], to block: Block) throws(StreamStoreError) {
        try guarded(block) { () throws(StreamStoreError) in
            let failed: StreamStoreError? = bytes.withUnsafeBytes { raw in
                do throws(StreamStoreError) { try BlockIO.writeAll(block.fd, raw, at: block.size, path: block.path) } catch { return error }
                return nil
            }
            if let failed { throw failed }
        }
        block.size += Int64(bytes.count)
        dirty = true
        if block.size - block.writeBehind >= Self.writeBehindChunk {
            // Only a hint: a failure here shows in the fsync that has to follow.
            _ = csys_start_writeback(block.fd, block.writeBehind, block.size - block.writeBehind)
            block.writeBehind = block.size
        }
        unlinkDeadBlocks()
    }

    private func guarded(_ block: Block, _ body: () throws(StreamStoreError) -> Void) throws(StreamStoreError) {
        do {
            try body()
        } catch {
            // Pending removals were consumed; reopening replays the limits, and a caller of an
            // explicit removal sees this error. Until then nothing more is written.
            failure = block.path
            throw error
        }
    }

    private func rotate() throws(StreamStoreError) {
        let old = blocks[blocks.count - 1]
        // The old block must be on disk before records appear in the new one: recovery treats only
        // the last block's tail as tearable.
        try guarded(old) { () throws(StreamStoreError) in try BlockIO.sync(old.fd, path: old.path) }
        try guarded(old) { () throws(StreamStoreError) in try startBlock(old.number + 1) }
    }

    /// Closes and deletes front blocks whose messages are all below the written floor.
    private func unlinkDeadBlocks() {
        while blocks.count > 1, blocks[0].lastMessage < writtenFloor {
            let dead = blocks.removeFirst()
            if readAhead.block === dead { readAhead = (nil, 0, []) }
            Glibc.close(dead.fd)
            dead.fd = -1
            // A failed unlink leaves a block whose records are all below the floor: harmless on replay.
            try? BlockIO.remove(dead.path)
        }
    }

    func read(sequence: UInt64, entry: IndexEntry) throws(StreamStoreError) -> StoredMessage {
        guard let block = block(numbered: entry.block) else {
            throw .corrupt(path: blockPath(entry.block), offset: Int64(entry.offset), reason: "block missing")
        }
        let start = Int64(entry.offset)
        let count = Int(entry.bytes)
        if readAhead.block !== block || start < readAhead.start
            || start + Int64(count) > readAhead.start + Int64(readAhead.bytes.count) {
            // Only bytes already written: a consumer at the tail reads just its record, and what
            // is cached never changes (records are appended, never rewritten).
            let window = max(count, min(Self.readAheadSize, Int(max(0, block.size - start))))
            readAhead = (block, start, try BlockIO.read(block.fd, count: window, at: start, path: block.path))
        }
        let bytes = readAhead.bytes
        let at = Int(start - readAhead.start)
        let parsed = bytes.withUnsafeBytes { Self.parse(UnsafeRawBufferPointer(rebasing: $0[..<min($0.count, at + count)]), at: at) }
        guard case .success(let record) = parsed, record.kind == .message, record.sequence == sequence,
              record.length == count else {
            var reason = "record of sequence \(sequence) unreadable"
            if case .failure(let damage) = parsed { reason += ": " + damage.reason }
            throw .corrupt(path: block.path, offset: Int64(entry.offset), reason: reason)
        }
        return StoredMessage(subject: String(decoding: bytes[record.subject], as: UTF8.self),
                             headers: Array(bytes[record.headers]), payload: Array(bytes[record.payload]),
                             sequence: sequence, timestamp: record.timestamp)
    }

    private func block(numbered n: UInt32) -> Block? {
        var low = 0, high = blocks.count - 1
        while low <= high {
            let mid = (low + high) / 2
            if blocks[mid].number == n { return blocks[mid] }
            if blocks[mid].number < n { low = mid + 1 } else { high = mid - 1 }
        }
        return nil
    }

    func noteRemoval(sequence: UInt64, timestamp: Int64) {
        Self.encode(into: &pending, kind: .removal, sequence: sequence, timestamp: timestamp,
                    subject: "", headers: [], payload: [])
    }

    func noteFloor(first: UInt64, lastTime: Int64) {
        guard first > writtenFloor else { return }
        pendingFloor = (first, lastTime)
    }

    func flush() throws(StreamStoreError) {
        guard pendingFloor != nil || !pending.isEmpty else { return }
        if let failure { throw .failed(path: failure) }
        var block = blocks[blocks.count - 1]
        if block.size > 0 && block.size + Int64(pending.count + Self.fixedSize) > Int64(options.blockSize) {
            try rotate()
            block = blocks[blocks.count - 1]
        }
        scratch.removeAll(keepingCapacity: true)
        appendPending(to: &scratch)
        try write(scratch, to: block)
        if options.syncEveryWrite {
            try guarded(block) { () throws(StreamStoreError) in try BlockIO.sync(block.fd, path: block.path, dataOnly: true) }
            dirty = false
        }
    }

    func sync() throws(StreamStoreError) {
        if let failure { throw .failed(path: failure) }
        let block = blocks[blocks.count - 1]
        try guarded(block) { () throws(StreamStoreError) in try BlockIO.sync(block.fd, path: block.path) }
        dirty = false
        lastSync = monotonicNanoseconds()
    }

    func syncIfDue() throws(StreamStoreError) {
        guard dirty, monotonicNanoseconds() - lastSync >= options.syncInterval else { return }
        try sync()
    }

    func close() {
        if failure == nil {
            try? flush()
            if dirty { try? sync() }
        }
        for block in blocks where block.fd >= 0 {
            Glibc.close(block.fd)
            block.fd = -1
        }
        blocks.removeAll()
        readAhead = (nil, 0, [])
    }
}
