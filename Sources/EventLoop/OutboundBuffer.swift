// A byte queue made of fixed chunks that never move, flushed with writev.
//
// Flush protocol for a buffer shared between threads (the broker keeps it in a Mutex):
//   1. under the lock:   let n = buffer.snapshotIOVecs(into: &iov)
//   2. no lock:          let r = IO.writev(fd, iov, count: n)
//   3. under the lock:   if case .bytes(let w) = r { buffer.consume(w) }
// Appends between 1 and 3 are safe: they only write past the snapshot's end or into new chunks.
// Only one flusher at a time may hold a snapshot; consume() invalidates it. removeAll() and dropping
// the buffer free the chunks, so never do either while a snapshot's writev is in flight (the broker
// flushes and closes a connection on the same loop thread, which guarantees this).
import CSystem
import Glibc

/// One fixed block of bytes: `[start, end)` is pending, `[end, capacity)` is free.
@usableFromInline
final class OutboundChunk {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let capacity: Int
    // Unchecked: the run-time exclusivity check costs more than the copy for small messages, and a
    // chunk is only touched by the buffer that owns it (under the owner's lock).
    @usableFromInline @exclusivity(unchecked) var start = 0
    @usableFromInline @exclusivity(unchecked) var end = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    @inline(__always) var pending: Int { end - start }
    @inline(__always) var room: Int { capacity - end }
}

/// A FIFO of outbound bytes in chunks whose storage never moves, so iovecs taken by
/// ``snapshotIOVecs(into:maxVectors:)`` stay valid while more bytes are appended.
///
/// Chunks start at ``initialChunkSize`` and double up to ``chunkSize``, so a connection that only
/// ever sends small bursts holds a few KiB; an append larger than ``chunkSize`` gets one chunk of its
/// own size (one copy, one iovec). Memory is bounded by the pending bytes plus three chunks (a partly
/// sent head, the tail's free room, one spare); once everything is consumed only the tail chunk stays.
///
/// Not thread-safe. A value type with copy-on-write storage; keep one owner (a copy made while a
/// snapshot is outstanding makes the next append copy every chunk).
public struct OutboundBuffer {
    /// Size of a regular (largest pooled) chunk.
    public static let chunkSize = 64 * 1024
    /// Size of a buffer's first chunk.
    public static let initialChunkSize = 4 * 1024

    @usableFromInline
    final class Storage {
        /// Chunks in order; `chunks[head...]` are live.
        // Unchecked exclusivity (as in OutboundChunk): only the owning buffer touches its storage.
        @usableFromInline @exclusivity(unchecked) var chunks: [OutboundChunk] = []
        @usableFromInline @exclusivity(unchecked) var head = 0
        @usableFromInline @exclusivity(unchecked) var pending = 0
        /// One emptied regular chunk kept for reuse.
        @exclusivity(unchecked) var spare: OutboundChunk?
        /// Scratch for flush(to:).
        @exclusivity(unchecked) var iov: [iovec] = []
        /// Capacity of the next regular chunk: doubles from initialChunkSize up to chunkSize.
        @exclusivity(unchecked) var nextCapacity = OutboundBuffer.initialChunkSize

        func takeScratch() -> [iovec] {
            var out: [iovec] = []
            swap(&out, &iov)
            return out
        }

        func copy() -> Storage {
            let s = Storage()
            for chunk in chunks[head...] where chunk.pending > 0 {
                let c = OutboundChunk(capacity: Swift.max(chunk.pending, OutboundBuffer.chunkSize))
                c.base.copyMemory(from: chunk.base + chunk.start, byteCount: chunk.pending)
                c.end = chunk.pending
                s.chunks.append(c)
            }
            s.pending = pending
            return s
        }
    }

    @usableFromInline var storage = Storage()

    /// Creates an empty buffer (no memory is allocated until the first append).
    public init() {}

    /// Bytes appended and not yet consumed.
    public var pendingBytes: Int { storage.pending }

    /// True when nothing is pending.
    public var isEmpty: Bool { storage.pending == 0 }

    /// Number of chunks currently held (live plus spare); for tests and stats.
    public var chunkCount: Int { storage.chunks.count - storage.head + (storage.spare == nil ? 0 : 1) }

    /// Bytes of chunk memory currently held (live plus spare); for stats and memory accounting.
    public var allocatedBytes: Int {
        let s = storage
        var total = s.spare?.capacity ?? 0
        for i in s.head..<s.chunks.count { total += s.chunks[i].capacity }
        return total
    }

    @inline(__always)
    private mutating func uniqueStorage() -> Storage {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return storage
    }

    /// Appends `bytes` (copied once). Bytes that do not fit the last chunk go to a new chunk; an
    /// append larger than a chunk gets one chunk of its own size.
    @inlinable
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        // Fast path, inlined into the encoder: the bytes fit the tail chunk of a uniquely held buffer.
        let n = bytes.count
        if n > 0, isKnownUniquelyReferenced(&storage) {
            let s = storage
            let live = s.chunks.count
            if live > s.head {
                let tail = s.chunks[live - 1]
                if tail.capacity - tail.end >= n {
                    (tail.base + tail.end).copyMemory(from: bytes.baseAddress.unsafelyUnwrapped, byteCount: n)
                    tail.end += n
                    s.pending += n
                    return
                }
            }
        }
        appendSlow(bytes)
    }

    /// ``append(_:)-(UnsafeRawBufferPointer)`` when the bytes need a new chunk (or a copy of shared storage).
    @usableFromInline
    mutating func appendSlow(_ bytes: UnsafeRawBufferPointer) {
        guard var src = bytes.baseAddress, bytes.count > 0 else { return }
        let s = uniqueStorage()
        var remaining = bytes.count
        s.pending += remaining
        if let tail = s.chunks.last, s.chunks.count > s.head, tail.room > 0 {
            let n = Swift.min(tail.room, remaining)
            (tail.base + tail.end).copyMemory(from: src, byteCount: n)
            tail.end += n
            remaining -= n
            src += n
        }
        while remaining > 0 {
            let chunk = Self.newChunk(s, minimum: remaining)
            let n = Swift.min(chunk.capacity, remaining)
            chunk.base.copyMemory(from: src, byteCount: n)
            chunk.end = n
            s.chunks.append(chunk)
            remaining -= n
            src += n
        }
    }

    /// Appends the bytes of `array`.
    public mutating func append(_ array: [UInt8]) {
        array.withUnsafeBytes { append($0) }
    }

    /// Appends one byte.
    public mutating func append(byte: UInt8) {
        let s = uniqueStorage()
        s.pending += 1
        if let tail = s.chunks.last, s.chunks.count > s.head, tail.room > 0 {
            tail.base.storeBytes(of: byte, toByteOffset: tail.end, as: UInt8.self)
            tail.end += 1
            return
        }
        let chunk = Self.newChunk(s, minimum: 1)
        chunk.base.storeBytes(of: byte, as: UInt8.self)
        chunk.end = 1
        s.chunks.append(chunk)
    }

    private static func newChunk(_ s: Storage, minimum: Int) -> OutboundChunk {
        if minimum > chunkSize {
            return OutboundChunk(capacity: minimum)
        }
        if let spare = s.spare {
            s.spare = nil
            spare.start = 0
            spare.end = 0
            return spare
        }
        let capacity = s.nextCapacity
        s.nextCapacity = Swift.min(chunkSize, capacity * 2)
        return OutboundChunk(capacity: capacity)
    }

    /// Fills `iovecs` (cleared first, capacity kept) with the pending bytes in order, at most
    /// `maxVectors` entries.
    ///
    /// The pointers stay valid until the next ``consume(_:)`` (or until the buffer is dropped), even if
    /// more bytes are appended meanwhile.
    /// - Returns: the number of vectors written; their total length is at most ``pendingBytes``.
    @discardableResult
    public func snapshotIOVecs(into iovecs: inout [iovec], maxVectors: Int = IO.maxVectors) -> Int {
        iovecs.removeAll(keepingCapacity: true)
        let s = storage
        var i = s.head
        while i < s.chunks.count && iovecs.count < maxVectors {
            let chunk = s.chunks[i]
            if chunk.pending > 0 {
                iovecs.append(iovec(iov_base: chunk.base + chunk.start, iov_len: chunk.pending))
            }
            i += 1
        }
        return iovecs.count
    }

    /// Drops the first `n` pending bytes (what writev reported as written), releasing emptied chunks
    /// except one spare. Invalidates any snapshot.
    public mutating func consume(_ n: Int) {
        precondition(n >= 0 && n <= storage.pending, "OutboundBuffer.consume: \(n) exceeds pending bytes")
        if n == 0 { return }
        let s = uniqueStorage()
        s.pending -= n
        var remaining = n
        while remaining > 0 {
            let chunk = s.chunks[s.head]
            let take = Swift.min(chunk.pending, remaining)
            chunk.start += take
            remaining -= take
            if chunk.pending == 0 {
                if s.head == s.chunks.count - 1 {
                    // The last chunk: rewind it in place and keep appending to it.
                    chunk.start = 0
                    chunk.end = 0
                    break
                }
                releaseHead(s)
            }
        }
        // Drop emptied chunks still at the front (an emptied tail stays, rewound).
        while s.head < s.chunks.count - 1 && s.chunks[s.head].pending == 0 {
            releaseHead(s)
        }
        if s.head > 16 && s.head * 2 > s.chunks.count {
            s.chunks.removeFirst(s.head)
            s.head = 0
        }
        if s.pending == 0 {
            // Drained: keep only the (rewound) tail chunk, and not even that when it is oversized.
            s.spare = nil
            if s.chunks.count - s.head == 1 && s.chunks[s.head].capacity > Self.chunkSize {
                s.chunks.removeAll(keepingCapacity: true)
                s.head = 0
            }
        }
    }

    private func releaseHead(_ s: Storage) {
        let chunk = s.chunks[s.head]
        if s.spare == nil && chunk.capacity == Self.chunkSize { s.spare = chunk }
        s.head += 1
        if s.head == s.chunks.count {
            s.chunks.removeAll(keepingCapacity: true)
            s.head = 0
        }
    }

    /// Drops everything pending (e.g. when the connection closes) and releases all chunks. Not while
    /// a snapshot taken from this buffer is being written.
    public mutating func removeAll() {
        storage = Storage()
    }

    /// The outcome of ``flush(to:)``.
    public enum FlushResult: Equatable, Sendable {
        /// Everything pending was written.
        case done
        /// The socket is full; `remaining` bytes are still pending (wait for writable).
        case partial(remaining: Int)
        /// writev failed with this errno; nothing more was consumed.
        case error(Int32)
    }

    /// Writes as much as the descriptor accepts, consuming what was written. For single-threaded
    /// owners; shared buffers use the snapshot/consume protocol instead.
    public mutating func flush(to fd: Int32) -> FlushResult {
        // Borrow the scratch array without keeping a second reference to the storage, which would
        // defeat the uniqueness check in consume() and copy every chunk.
        var iov = uniqueStorage().takeScratch()
        defer { storage.iov = iov }
        while pendingBytes > 0 {
            let count = snapshotIOVecs(into: &iov)
            let result = iov.withUnsafeBufferPointer { IO.writev(fd, $0.baseAddress!, count: count) }
            switch result {
            case .bytes(let written):
                consume(written)
                if written == 0 { return .partial(remaining: pendingBytes) }
            case .wouldBlock:
                return .partial(remaining: pendingBytes)
            case .error(let err):
                return .error(err)
            case .eof:
                return .error(EPIPE)
            }
        }
        return .done
    }
}

/// Sendable like `Array`: copies may share `Storage`, but shared storage is never mutated (every
/// mutating method first makes it unique) and the non-mutating reads do not write. This is what lets
/// the broker keep a buffer in a `Mutex` and append borrowed bytes inside `withLock`.
extension OutboundBuffer: @unchecked Sendable {}
