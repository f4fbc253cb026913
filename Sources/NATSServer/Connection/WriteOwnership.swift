// WriteOwnership: who may write a connection's socket, as one value kept under the connection's
// `out` lock. Each transition changes the value and returns what the caller must do once the lock
// is released (write, hand the socket to its owner, close the descriptor), so the rules live here
// and the I/O stays outside.
//
// The rules:
// - One thread writes a socket at a time: the owner loop, or a publisher's loop writing directly.
//   A flush asked for meanwhile makes that writer go again instead of starting a second writer.
// - A flush is queued once: while one is queued, new bytes need no further request.
// - A short write, EAGAIN or an error by another loop hands the socket back to its owner
//   (owner-only), which waits for EPOLLOUT or closes; other loops leave it alone until the owner
//   has drained it. Closing makes the socket owner-only for good.
// - An owner that closes while another loop is in writev leaves freeing the buffer and closing the
//   descriptor to that writer, so the descriptor number cannot be reused under it.

/// Which side writes a socket.
enum SocketWriter: Equatable, Sendable {
    /// The loop that owns the connection.
    case owner
    /// A publisher's loop writing directly, sparing the owner a wake-up.
    case otherLoop
}

/// The write ownership of one connection (see the file comment for the rules). A plain value:
/// the connection keeps it in `Outbound`, under its one lock.
struct WriteOwnership: Equatable, Sendable {
    /// The thread in writev, between its snapshot and consuming what it wrote, with what was asked
    /// of it meanwhile; a request to write again or a pending close exists only while one writes.
    enum Writing: Equatable, Sendable {
        case idle
        /// `rewrite`: a flush was asked for during the write; it writes again before it lets go.
        case owner(rewrite: Bool)
        /// `closePending`: the owner closed during this write; this writer closes the descriptor.
        case otherLoop(rewrite: Bool, closePending: Bool)
    }

    private(set) var writing = Writing.idle
    /// The connection is in some loop's pending-flush set, or its flush is queued with the owner.
    private(set) var flushQueued = false
    /// Only the owner writes: it waits for EPOLLOUT, the connection is closing, or a write from
    /// another loop could not write everything.
    private(set) var ownerOnly = false

    /// The side in writev, nil when none is.
    var writer: SocketWriter? {
        switch writing {
        case .idle: nil
        case .owner: .owner
        case .otherLoop: .otherLoop
        }
    }

    /// A flush was asked for while the current writer was writing.
    var rewrite: Bool {
        switch writing {
        case .idle: false
        case .owner(let rewrite), .otherLoop(let rewrite, _): rewrite
        }
    }

    /// The owner closed while another loop's writer was in writev.
    var closePending: Bool {
        if case .otherLoop(_, true) = writing { return true }
        return false
    }

    /// What ``beginWrite(by:hasBytes:)`` allows.
    enum Start: Equatable {
        /// Snapshot the buffer and writev; call ``endWrite(written:requested:)`` after.
        case write
        /// Another thread is writing; it was asked to write again.
        case busy
        /// Only the owner writes now (asked by another loop only); ask the owner to flush.
        case ownerOnly
        /// Nothing is queued.
        case empty
    }

    /// What the writer does after ``endWrite(written:requested:)``.
    enum End: Equatable {
        /// Consume what was written (the lock is still held). `again`: a flush was asked for
        /// during the write. `handBack`: another loop's short write made the socket owner-only;
        /// ask the owner to flush.
        case consume(again: Bool, handBack: Bool)
        /// The owner closed during this write: drop the buffer (still under the lock), then close
        /// the descriptor.
        case closeDescriptor
    }

    /// What ``close()`` leaves to the caller.
    enum Close: Equatable {
        /// Drop the buffer and close the descriptor now.
        case closeNow
        /// Another loop is in writev: it drops the buffer and closes the descriptor when it returns.
        case leftToWriter
    }

    /// Bytes were queued. - Returns: true when the caller must schedule a flush (none was queued).
    @inline(__always)
    mutating func requestFlush() -> Bool {
        if flushQueued { return false }
        flushQueued = true
        return true
    }

    /// A writer on `side` wants to write; `hasBytes`: the buffer holds pending bytes.
    @inline(__always)
    mutating func beginWrite(by side: SocketWriter, hasBytes: Bool) -> Start {
        switch writing {
        case .idle: break
        case .owner:
            writing = .owner(rewrite: true)
            return .busy
        case .otherLoop(_, let closePending):
            writing = .otherLoop(rewrite: true, closePending: closePending)
            return .busy
        }
        if side == .otherLoop && ownerOnly { return .ownerOnly }
        flushQueued = false
        guard hasBytes else { return .empty }
        writing = side == .owner ? .owner(rewrite: false) : .otherLoop(rewrite: false, closePending: false)
        return .write
    }

    /// The writer returned from writev having written `written` of `requested` bytes (0 for EAGAIN
    /// or an error). Which side it was is in `writing`.
    @inline(__always)
    mutating func endWrite(written: Int, requested: Int) -> End {
        let ended = writing
        writing = .idle
        switch ended {
        case .idle, .owner(rewrite: false):
            return .consume(again: false, handBack: false)
        case .owner(rewrite: true):
            return .consume(again: true, handBack: false)
        case .otherLoop(_, closePending: true):
            return .closeDescriptor
        case .otherLoop(let again, closePending: false):
            guard written < requested else { return .consume(again: again, handBack: false) }
            ownerOnly = true
            flushQueued = true
            return .consume(again: again, handBack: true)
        }
    }

    /// The owner's flush found it is waiting for EPOLLOUT: writable() writes then, so the queued
    /// flush is done.
    mutating func flushDeferredToWritable() {
        flushQueued = false
    }

    /// Another loop wrote its share of rounds and bytes remain: the owner finishes. The flush is
    /// marked queued because requests made during those writes counted on that writer.
    mutating func handBackToOwner() {
        flushQueued = true
    }

    /// The owner registered for EPOLLOUT: other loops stop writing until it has drained.
    mutating func ownerWaitsForWritable() {
        ownerOnly = true
    }

    /// The owner drained the buffer of an open connection: other loops may write directly again.
    mutating func drainedByOwner() {
        ownerOnly = false
    }

    /// The owner starts an orderly close: only it writes from now on.
    /// - Returns: true when the caller must schedule a flush (none was queued).
    mutating func beginDraining() -> Bool {
        ownerOnly = true
        return requestFlush()
    }

    /// The owner closes the connection. The owner never closes inside its own writev (both run
    /// on its loop thread), so only another loop's writer can be in flight.
    mutating func close() -> Close {
        ownerOnly = true
        guard case .otherLoop(let rewrite, _) = writing else { return .closeNow }
        writing = .otherLoop(rewrite: rewrite, closePending: true)
        return .leftToWriter
    }
}
