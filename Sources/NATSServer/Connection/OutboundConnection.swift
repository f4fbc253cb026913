// OutboundConnection: the writing half every kind of broker connection shares (clients; routes
// and TLS connections are to conform too). Queueing control lines, flushing with writev under the
// one-writer rule (WriteOwnership), the direct write from a publisher's loop, EPOLLOUT and the
// write deadline live here; what differs per kind (closing, logging, the loop's pending-flush
// set) is reached through the protocol's requirements. Still tied to clients: the loop's
// pending-flush list and the stalled producers are lists of ClientConnection.
//
// The requirements are met by a final class and every call site names the concrete type, so these
// extension methods are specialised for it: no existential, no witness-table call on the hot path.

import EventLoop
import Glibc
import NATSProtocol
import Synchronization

/// Where a connection is in its life.
enum ConnectionState: Equatable {
    case open
    /// Closing: no more reads or deliveries; queued bytes are being written.
    case draining(CloseReason)
    case closed
}

/// A connection that owns a socket, receives bytes from any loop into its ``Outbound`` and writes
/// them under the one-writer rule. Conformers are final classes owned by one event loop;
/// the `var`s are touched on that loop's thread only, `out` from any loop.
protocol OutboundConnection: AnyObject, Sendable {
    var fd: Int32 { get }
    /// The owning loop's context.
    var context: LoopContext { get }
    /// What other loops touch, behind one lock.
    var out: Mutex<Outbound> { get }
    /// `max_pending` for this connection.
    var maxPending: Int { get }
    var state: ConnectionState { get }
    /// Reads are paused (fast-producer stall): the readiness set while writing leaves out reads.
    var readPaused: Bool { get }

    // The writer's loop-confined state.
    /// EPOLLOUT is registered; `writable()` writes what is queued.
    var waitingForWritable: Bool { get set }
    /// Monotonic time of the last write that made progress (the write deadline counts from it).
    var lastWriteProgress: UInt64 { get set }
    var writeDeadlineTimer: TimerID? { get set }

    /// Sets the readiness this connection waits for; on failure closes it with `reason`.
    /// - Returns: false when the connection was closed.
    @discardableResult
    func setInterest(_ interest: Interest, orClose reason: CloseReason) -> Bool
    /// Closes at once, dropping queued bytes. Owner's loop only.
    func closeNow(_ reason: CloseReason)
    /// The pending bytes passed max_pending (on any loop): count, log, close on the owner's loop.
    func slowConsumerDetected()
    /// The write deadline passed with `pending` bytes still queued: count, log and close.
    func writeDeadlineExceeded(pending: Int)
    /// Adds this connection to `publisher`'s set of connections flushed at its batch end.
    func scheduleFlush(on publisher: LoopContext)
    /// Asks the owning loop to flush this connection (any thread).
    func askOwnerToFlush()
}

/// What queueing one frame did.
enum EnqueueOutcome {
    case needsFlush, queued, closed, slowConsumer
}

/// What one ``OutboundConnection/writeRound(_:by:)`` did.
enum WriteStep {
    /// Another thread is writing this socket; it was asked to write again.
    case busy
    /// Only the owner writes now (a write from another loop only).
    case ownerOnly
    /// Nothing was queued.
    case empty
    /// The owner closed the connection during this write from another loop; the descriptor is
    /// closed now.
    case closedMeanwhile
    case wrote(WriteRound)
}

/// The outcome of one writev round.
struct WriteRound {
    var result: IOResult
    var written: Int
    var requested: Int
    /// Pending bytes when the snapshot was taken (more than `requested` when capped at IOV_MAX).
    var total: Int
    /// Pending bytes after consuming what was written.
    var remaining: Int
    /// A flush was asked for while this round was writing.
    var again: Bool
    /// A short write from another loop made the socket owner-only: ask the owner to flush.
    var handBack: Bool

    var needsAnotherRound: Bool { requested < total || again }
}

extension OutboundConnection {
    // MARK: Queueing (owner side)

    /// Appends protocol bytes (INFO, +OK, PONG, PING, -ERR). Owner's loop only.
    /// The same max-pending rule applies as for messages.
    func appendControl(bytes: [UInt8]) {
        appendControl { buffer in bytes.withUnsafeBytes { buffer.append($0) } }
    }

    func appendControl(_ encode: (inout OutboundBuffer) -> Void) {
        let maxPending = self.maxPending
        let outcome: EnqueueOutcome = out.withLock { o in
            if o.closed { return .closed }
            let before = o.buffer.pendingBytes
            encode(&o.buffer)
            if o.buffer.pendingBytes > maxPending && before > 0 {
                o.closed = true
                return .slowConsumer
            }
            return o.write.requestFlush() ? .needsFlush : .queued
        }
        switch outcome {
        case .needsFlush: scheduleFlush(on: context)
        case .queued, .closed: break
        case .slowConsumer: slowConsumerDetected()
        }
    }

    // MARK: Writing

    /// Flushes queued bytes with one writev (more if the snapshot was capped). Owner's loop only.
    func flush() {
        if state == .closed { return }
        if waitingForWritable {
            // EPOLLOUT will come; writable() writes everything then.
            out.withLock { $0.write.flushDeferredToWritable() }
            return
        }
        writeOut()
    }

    /// Writes until the buffer is empty, the socket is full or another loop is writing. Owner's
    /// loop only (also what EPOLLOUT runs).
    func writeOut() {
        while state != .closed {
            switch writeRound(&context.iovecs, by: .owner) {
            case .busy, .ownerOnly, .closedMeanwhile:
                // Another loop is writing; it goes again (or hands back) when its writev returns.
                return
            case .empty:
                finishedWriting()
                return
            case .wrote(let round):
                switch round.result {
                case .bytes:
                    if round.written > 0 {
                        lastWriteProgress = LoopContext.now()
                        // A reply to what was just written may come back within the busy-poll window.
                        context.loop.noteOutput()
                    }
                    if round.remaining == 0 {
                        finishedWriting()
                        return
                    }
                    if round.written < round.requested {
                        waitForWritable()
                        return
                    }
                    // Bytes appended after the snapshot already queued another flush; only a
                    // snapshot capped at IOV_MAX vectors, or a flush asked for during the write,
                    // needs another round now.
                    if !round.needsAnotherRound { return }
                case .wouldBlock:
                    waitForWritable()
                    return
                case .error, .eof:
                    closeNow(.writeError)
                    return
                }
            }
        }
    }

    /// Writes this connection's queued bytes from a publisher's loop (not the owner's), sparing the
    /// owner a wake-up. Only when no other thread is writing it and its owner is not waiting for
    /// EPOLLOUT or closing; a short write, EAGAIN or an error hands the rest to the owner, which
    /// then waits for EPOLLOUT or closes as usual. Publisher's loop thread only.
    func writeFromOtherLoop(_ publisher: LoopContext) {
        for _ in 0..<4 {
            switch writeRound(&publisher.iovecs, by: .otherLoop) {
            case .busy, .empty, .closedMeanwhile:
                return
            case .ownerOnly:
                askOwnerToFlush()
                return
            case .wrote(let round):
                if round.written > 0 { publisher.loop.noteOutput() }
                if round.handBack {
                    // The owner registers for EPOLLOUT (or sees the error and closes).
                    askOwnerToFlush()
                    return
                }
                if !round.needsAnotherRound { return }
            }
        }
        // Still more to write: leave it to the owner rather than stall this publisher's loop. Always
        // queued: a flush asked for during these writes (already marked queued) counted on this
        // writer and has no other turn coming.
        out.withLock { $0.write.handBackToOwner() }
        askOwnerToFlush()
    }

    /// One snapshot, writev and consume under the one-writer rule (``WriteOwnership``), with
    /// `iovecs` the calling loop's scratch. `side`: the owner's loop, or a publisher's loop, which
    /// leaves an owner-only socket alone and hands it back after a short write.
    func writeRound(_ iovecs: inout [iovec], by side: SocketWriter) -> WriteStep {
        var total = 0
        var count = 0
        let start = out.withLock { o -> WriteOwnership.Start in
            total = o.buffer.pendingBytes
            let start = o.write.beginWrite(by: side, hasBytes: total > 0)
            if start == .write { count = o.buffer.snapshotIOVecs(into: &iovecs) }
            return start
        }
        switch start {
        case .write: break
        case .busy: return .busy
        case .ownerOnly: return .ownerOnly
        case .empty: return .empty
        }
        var requested = 0
        for i in 0..<count { requested += iovecs[i].iov_len }
        let fd = self.fd
        let result = iovecs.withUnsafeBufferPointer { IO.writev(fd, $0.baseAddress!, count: count) }
        let written: Int
        if case .bytes(let n) = result { written = n } else { written = 0 }
        let maxPending = self.maxPending
        nonisolated(unsafe) var released: [ClientConnection] = []
        var end = WriteOwnership.End.closeDescriptor
        let remaining = out.withLock { o -> Int in
            end = o.write.endWrite(written: written, requested: requested)
            guard case .consume = end else {
                o.buffer.removeAll()
                return 0
            }
            if written > 0 { o.buffer.consume(written) }
            if !o.stalledProducers.isEmpty && (written == requested || o.buffer.pendingBytes < maxPending / 2) {
                swap(&released, &o.stalledProducers)
            }
            return o.buffer.pendingBytes
        }
        guard case .consume(let again, let handBack) = end else {
            // The owner closed during this write (only a writer on another loop sees this).
            IO.close(fd)
            return .closedMeanwhile
        }
        if !released.isEmpty { ClientConnection.resume(released) }
        return .wrote(WriteRound(result: result, written: written, requested: requested, total: total,
                                 remaining: remaining, again: again, handBack: handBack))
    }

    /// The owner wrote everything: other loops may write again, EPOLLOUT is dropped, and an
    /// orderly close completes. Owner's loop only.
    func finishedWriting() {
        if state == .open {
            out.withLock { o in
                // Drained by the owner: other loops may write directly again (unless more bytes
                // arrived meanwhile, in which case a flush is queued and clears it next time).
                if o.buffer.pendingBytes == 0 { o.write.drainedByOwner() }
            }
        }
        if waitingForWritable {
            waitingForWritable = false
            if let writeDeadlineTimer { _ = context.loop.cancel(writeDeadlineTimer) }
            writeDeadlineTimer = nil
            setInterest(state == .open && !readPaused ? .readable : [], orClose: .writeError)
        }
        if case .draining(let reason) = state { closeNow(reason) }
    }

    /// The socket is full: waits for EPOLLOUT, bounded by the write deadline. Owner's loop only.
    func waitForWritable() {
        if waitingForWritable { return }
        waitingForWritable = true
        out.withLock { $0.write.ownerWaitsForWritable() }
        lastWriteProgress = LoopContext.now()
        guard setInterest(state == .open && !readPaused ? [.readable, .writable] : .writable, orClose: .writeError) else {
            return
        }
        scheduleWriteDeadline(after: context.broker.options.writeDeadline)
    }

    /// Closes the connection when no write made progress for the write deadline (an orderly
    /// close in progress just completes). Owner's loop only.
    func scheduleWriteDeadline(after delay: Duration) {
        writeDeadlineTimer = context.loop.schedule(after: delay) { [self] in
            writeDeadlineTimer = nil
            guard waitingForWritable, state != .closed else { return }
            let deadline = UInt64(max(0, context.broker.options.writeDeadline.nanoseconds))
            let stalled = LoopContext.now() &- lastWriteProgress
            if stalled >= deadline {
                if case .draining(let reason) = state {
                    closeNow(reason)
                    return
                }
                writeDeadlineExceeded(pending: out.withLock { $0.buffer.pendingBytes })
            } else {
                scheduleWriteDeadline(after: .nanoseconds(Int64(deadline - stalled)))
            }
        }
    }
}
