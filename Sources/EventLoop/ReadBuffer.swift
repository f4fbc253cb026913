// An adaptive read buffer, sized like nats-server 2.9.10's readLoop: it starts at 512 B, doubles
// (up to 64 KiB, or the maximum given) when a read fills it, and once more than two reads have used
// less than half of it (a full read resets that count) every read that does not fill it halves it,
// down to 64 B.
import Glibc

/// A reusable read buffer whose size follows the traffic. Owns its memory; not thread-safe.
///
/// The bytes of the last read stay valid until the next ``read(from:)``; consumers that need bytes
/// across reads copy them (the protocol parsers keep their own split buffer).
public struct ReadBuffer: ~Copyable {
    /// Initial size (nats-server's startBufSize: room for INFO/CONNECT).
    public static let startSize = 512
    /// Smallest size it shrinks to (nats-server's minBufSize: room for PING/PONG).
    public static let minimumSize = 64
    /// Largest size by default (nats-server's maxBufSize, sized for one buffer per connection).
    public static let maximumSize = 64 * 1024

    /// Largest size of this buffer.
    public let maximum: Int

    private var base: UnsafeMutableRawPointer
    /// Current size in bytes.
    public private(set) var capacity: Int
    private var lastCount = 0
    /// Reads that used under half the buffer since the last full one; above two, the buffer shrinks
    /// (so a few small reads do not undo a grown buffer).
    private var shortReads = 0
    /// Short reads tolerated before shrinking (nats-server's shortsToShrink).
    private static let shortsToShrink = 2

    /// Creates a buffer of ``startSize`` bytes that grows up to `maximum` bytes (at least
    /// ``startSize``). A buffer shared by many connections, such as one per event loop, can afford a
    /// larger maximum than one per connection: fewer reads for large messages.
    public init(maximum: Int = ReadBuffer.maximumSize) {
        self.maximum = Swift.max(maximum, Self.startSize)
        capacity = Self.startSize
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
        let full = lastCount >= capacity
        if full {
            shortReads = 0
        } else if lastCount < capacity / 2 {
            shortReads += 1
        }
        var target = capacity
        if full && capacity < maximum {
            target = Swift.min(capacity * 2, maximum)
        } else if !full && capacity > Self.minimumSize && shortReads > Self.shortsToShrink {
            target = capacity / 2
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
