// Outbound: the part of a connection other loops touch, and MessageFrame, the encoding of one
// delivery into it. Shared by every kind of connection that receives messages.

import EventLoop
import NATSProtocol

extension OutboundBuffer: ByteSink {}

/// The part of a connection other loops touch: its outbound bytes and what a publisher must know
/// to encode for it. Guarded by the owning connection's `out` lock (``OutboundConnection/out``).
struct Outbound: ~Copyable {
    var buffer = OutboundBuffer()
    /// No more bytes are accepted (closing, closed, or slow consumer).
    var closed = false
    /// The client negotiated headers: deliver HMSG, else strip headers and deliver MSG.
    var headers = false
    /// Who may write the socket, and whether a flush is queued (the one-writer rule).
    var write = WriteOwnership()
    /// Publishers that stopped reading because this connection's pending bytes passed half of
    /// max_pending (2.9.10's fast-producer stall); resumed when it drains or their timer fires.
    var stalledProducers: [ClientConnection] = []
    /// Messages and bytes delivered to this connection (its /connz `out_msgs`/`out_bytes`).
    var outMsgs = 0
    var outBytes = 0
}

/// The byte views of one delivery: into the publisher's read buffer (or parser split buffer), the
/// subscription's sid, and the publisher loop's scratch area. `@unchecked Sendable` because they
/// only cross into the receiver's `out` lock for the duration of one copy, on the publisher's
/// thread, and are never retained.
struct MessageFrame: @unchecked Sendable {
    let subject: UnsafeRawBufferPointer
    let sid: UnsafeRawBufferPointer
    let reply: UnsafeRawBufferPointer
    let headers: UnsafeRawBufferPointer
    let payload: UnsafeRawBufferPointer
    let scratch: UnsafeMutableRawPointer
    let scratchCapacity: Int
    /// Write an empty reply field (JetStream's stream and consumer sends without a reply).
    var emptyReplyField = false

    /// Largest body (headers + payload) assembled in the scratch area; above it the second copy
    /// costs more than the two extra appends it saves.
    static let scratchBodyLimit = 512

    /// Writes MSG (or HMSG) into `buffer`. A small frame (`bound` is an upper bound of its size) is
    /// assembled in the scratch area and copied with one append; a larger one is encoded straight
    /// into the buffer (three appends), so its payload is copied once, not twice.
    @inline(__always)
    func encode(into buffer: inout OutboundBuffer, withHeaders: Bool, bound: Int) {
        if bound <= scratchCapacity && (withHeaders ? headers.count : 0) + payload.count <= MessageFrame.scratchBodyLimit {
            var sink = ScratchSink(base: scratch, capacity: scratchCapacity)
            if withHeaders {
                Encoder.hmsg(&sink, subject: subject, sid: sid, reply: reply, headers: headers, payload: payload,
                             emptyReplyField: emptyReplyField)
            } else {
                Encoder.msg(&sink, subject: subject, sid: sid, reply: reply, payload: payload,
                            emptyReplyField: emptyReplyField)
            }
            buffer.append(UnsafeRawBufferPointer(start: scratch, count: sink.count))
        } else if withHeaders {
            Encoder.hmsg(&buffer, subject: subject, sid: sid, reply: reply, headers: headers, payload: payload,
                         emptyReplyField: emptyReplyField)
        } else {
            Encoder.msg(&buffer, subject: subject, sid: sid, reply: reply, payload: payload,
                        emptyReplyField: emptyReplyField)
        }
    }
}

/// A bounded byte sink over raw memory (the loop's scratch area).
struct ScratchSink: ByteSink {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    var count = 0

    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        precondition(count + bytes.count <= capacity, "scratch frame overflow")
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always)
    mutating func append(byte: UInt8) {
        precondition(count < capacity, "scratch frame overflow")
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }
}
