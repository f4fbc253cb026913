// The one Mutex-protected state of a client: phase, socket, outbound bytes, waiters, subscriptions.

import NATSProtocol
import Synchronization

/// Everything the client's threads and tasks share, kept in one `Mutex` (`NATSClient.state`).
/// Methods here never block, never do I/O and never resume continuations: they return what the
/// caller must do after unlocking.
struct ClientState: ~Copyable {
    enum Phase: Equatable {
        /// Before the first successful handshake.
        case connecting
        case connected
        /// Lost the connection; the reader thread is trying servers again.
        case reconnecting
        /// Closed for good (by close/drain or after giving up).
        case closed
    }

    /// One entry of the PONG queue: what the matching PING was for.
    enum PongPurpose {
        case keepAlive
        case flush(id: UInt64)
        /// The PING sent after re-subscribing; its PONG confirms the reconnect.
        case resubscribed(server: String)
        /// Sent to wake the reader out of a blocking `recv` (see `ReaderExecutor`); nothing waits for it.
        case wake
    }

    /// One entry of the PONG queue, in wire order.
    struct PongWaiter {
        var purpose: PongPurpose
        /// `appendedTotal` just after its PING was queued: the PING reached the socket once
        /// `takenTotal` passed it.
        var position: UInt64
    }

    /// One subscription's bookkeeping. A class so the reader updates counts with one lookup;
    /// only touched with `state` locked.
    final class SubscriptionRecord {
        let subscription: Subscription
        let subject: String
        let queue: String?
        /// Auto-unsubscribe limit (total messages), if any.
        var max: Int?
        /// Messages the server delivered for this sid (all connections).
        var received = 0
        /// `received` when the SUB was (re)sent on the current connection: the server counts
        /// UNSUB max from there.
        var baseline = 0
        /// Unsubscribed, waiting for in-flight messages: not replayed on reconnect.
        var draining = false

        init(subscription: Subscription, subject: String, queue: String?) {
            self.subscription = subscription
            self.subject = subject
            self.queue = queue
        }
    }

    struct PendingRequest {
        let continuation: CheckedContinuation<Message, any Error>
        let subject: String
    }

    var phase: Phase = .connecting
    /// The connected socket, or -1. Owned (closed) by the reader thread.
    var fd: Int32 = -1
    var server: ServerAddress?
    var info: ServerInfo?
    var servers: [ServerAddress] = []
    var serverIndex = 0

    // Outbound: bytes waiting for the writer thread.
    var outbound: [UInt8] = []
    /// Bytes ever appended to / taken from `outbound` (positions for flush bookkeeping).
    var appendedTotal: UInt64 = 0
    var takenTotal: UInt64 = 0
    /// `takenTotal` up to which the server is known to have processed everything (the position of
    /// the last PING answered, or the start of the current connection).
    var confirmedPosition: UInt64 = 0
    /// Publishes appended while not connected (reported if they are discarded).
    var bufferedMessages = 0
    var writerParked = false
    /// A subscription handler (or a task on the reader executor) queued output on the reader thread
    /// while the writer was parked: the reader sends it after the read, or after the tasks, instead
    /// of waking the writer (`sendHandlerOutput`).
    var handlerOutput = false
    var writerParkedUntil: UInt64 = .max
    /// The socket the writer is using right now (send or shutdown); the reader must not close it.
    var writerPinnedFD: Int32 = -1
    /// The socket a publishing task is sending on directly (see `takeDirectSend`), or -1.
    var directPinnedFD: Int32 = -1
    /// A socket the reader gave up while a sender had it pinned; the last sender to unpin closes it.
    var closeAfterWriter: Int32 = -1
    var backpressure: [CheckedContinuation<Void, Never>] = []

    // PING/PONG.
    var pongQueue = FIFO<PongWaiter>()
    var flushWaiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    var nextFlushID: UInt64 = 1
    var pingsOutstanding = 0
    /// Keep-alive PINGs the server answered (for tests and diagnostics).
    var keepAlivePongs: UInt64 = 0
    var nextPingAt: UInt64 = .max

    // Subscriptions and the request mux.
    var subscriptions: [UInt64: SubscriptionRecord] = [:]
    var nextSid: UInt64 = 1
    var muxSid: UInt64 = 0
    var muxPrefix: [UInt8] = []
    var requests: [UInt64: PendingRequest] = [:]
    var timers = TimerHeap()

    var statistics = NATSClient.Statistics()
    var listeners: [UInt64: AsyncStream<NATSClient.Event>.Continuation] = [:]
    var nextListenerID: UInt64 = 0
    var initialConnect: CheckedContinuation<Void, any Error>?
    var closeError: NATSError?
    /// Client threads still running, and close() calls waiting for them to stop.
    var threadsRunning = 0
    var exitWaiters: [CheckedContinuation<Void, Never>] = []

    var isAcceptingWrites: Bool { phase != .closed }

    /// Queues a keep-alive or flush PING.
    mutating func queuePing(_ purpose: PongPurpose) {
        outbound.append(contentsOf: pingBytes)
        appendedTotal &+= UInt64(pingBytes.count)
        pongQueue.append(PongWaiter(purpose: purpose, position: appendedTotal))
    }

    /// Marks the parked writer awake when it has bytes to send; true means the caller must signal it.
    mutating func wakeForOutput() -> Bool {
        guard writerParked, phase == .connected || phase == .closed else { return false }
        writerParked = false
        return true
    }

    /// Marks the parked writer awake when `deadline` is earlier than it planned to sleep.
    mutating func wakeForTimer(_ deadline: UInt64) -> Bool {
        guard writerParked, deadline < writerParkedUntil else { return false }
        writerParked = false
        return true
    }

    /// Lets the caller send the outbound bytes itself when nobody else is sending and the writer
    /// sleeps: a latency-sensitive message (request, reply, flush) then skips a thread wake-up.
    /// Call only right after `wakeForOutput()` returned true (the writer was parked); on success
    /// the caller marks it parked again and does not signal it.
    /// Returns the socket and the bytes, already counted as taken; nil when the writer should send.
    mutating func takeDirectSend() -> (Int32, [UInt8])? {
        guard phase == .connected, writerPinnedFD == -1, directPinnedFD == -1,
              fd >= 0, !outbound.isEmpty, outbound.count <= 64 * 1024 else { return nil }
        let bytes = outbound
        outbound = []
        takenTotal &+= UInt64(bytes.count)
        directPinnedFD = fd
        return (fd, bytes)
    }

    /// Whether `fd` is still in use by a sender (the reader must not close it yet).
    func isPinned(_ fd: Int32) -> Bool { writerPinnedFD == fd || directPinnedFD == fd }

    /// Builds the SUB (and UNSUB max) replay for a new connection, in sid order, and resets
    /// each record's baseline.
    mutating func resubscribeBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        for sid in subscriptions.keys.sorted() {
            guard let record = subscriptions[sid], !record.draining else { continue }
            Encoder.sub(&bytes, subject: record.subject, queue: record.queue, sid: sid)
            if let max = record.max {
                Encoder.unsub(&bytes, sid: sid, max: max - record.received)
            }
            record.baseline = record.received
        }
        if muxSid != 0 {
            Encoder.sub(&bytes, subject: String(decoding: muxPrefix, as: UTF8.self) + "*", sid: muxSid)
        }
        return bytes
    }
}

let pingBytes: [UInt8] = Array("PING\r\n".utf8)
let pongBytes: [UInt8] = Array("PONG\r\n".utf8)
