// An adaptive read buffer, sized like nats-server's readLoop: it starts small, doubles when a read
// fills it and halves after reads that use less than half of it, between 512 B and 64 KiB.
import Glibc

/// A reusable read buffer whose size follows the traffic. Owns its memory; not thread-safe.
///
/// The bytes of the last read stay valid until the next ``read(from:)``; consumers that need bytes
/// across reads copy them (the protocol parsers keep their own split buffer).
public struct ReadBuffer: ~Copyable {
    /// Smallest size (nats-server's startBufSize).
    public static let minimumSize = 512
    /// Largest size (nats-server's maxBufSize).
    public static let maximumSize = 64 * 1024

    private var base: UnsafeMutableRawPointer
    /// Current size in bytes.
    public private(set) var capacity: Int
    private var lastCount = 0
    /// Consecutive short reads; the buffer shrinks after two in a row, so one small read does not
    /// undo a grown buffer.
    private var shortReads = 0

    /// Creates a buffer of ``minimumSize`` bytes.
    public init() {
        capacity = Self.minimumSize
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    /// The bytes returned by the last successful read (empty before the first).
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: lastCount)
    }

    /// Reads once from `fd`, first resizing according to the previous read.
    /// - Returns: ``IOResult/bytes(_:)`` with the count now in ``bytes``; `.eof`, `.wouldBlock` or
    ///   `.error(errno)` leave ``bytes`` empty.
    public mutating func read(from fd: Int32) -> IOResult {
        adapt()
        let result = IO._read(fd, base, capacity)
        if case .bytes(let n) = result {
            lastCount = n
        } else {
            lastCount = 0
        }
        return result
    }

    private mutating func adapt() {
        if lastCount == 0 { return }
        var target = capacity
        if lastCount == capacity && capacity < Self.maximumSize {
            target = capacity * 2
            shortReads = 0
        } else if lastCount < capacity / 2 && capacity > Self.minimumSize {
            shortReads += 1
            if shortReads >= 2 {
                target = capacity / 2
                shortReads = 0
            }
        } else {
            shortReads = 0
        }
        if target != capacity {
            // The old contents were consumed by the caller, so nothing is copied.
            base.deallocate()
            base = .allocate(byteCount: target, alignment: 16)
            capacity = target
        }
        lastCount = 0
    }
}
