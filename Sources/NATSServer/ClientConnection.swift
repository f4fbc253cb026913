// ClientConnection: one client socket. The message hot path lives here: parse from the loop's read
// buffer, match in the shared trie, encode straight into each receiver's outbound buffer, and flush
// every touched receiver once per read batch.

import EventLoop
import Formats
import Glibc
import NATSProtocol
import Synchronization

extension OutboundBuffer: ByteSink {}

/// Why a connection closed (the texts nats-server shows in /connz `reason`).
enum CloseReason: String, Sendable {
    case clientClosed = "Client Closed"
    case readError = "Read Error"
    case writeError = "Write Error"
    case protocolViolation = "Protocol Violation"
    case authenticationFailure = "Authentication Failure"
    case authenticationTimeout = "Authentication Timeout"
    case staleConnection = "Stale Connection"
    case slowConsumerPendingBytes = "Slow Consumer (Pending Bytes)"
    case slowConsumerWriteDeadline = "Slow Consumer (Write Deadline)"
    case maxControlLineExceeded = "Maximum Control Line Exceeded"
    case maxPayloadExceeded = "Maximum Message Payload Exceeded"
    case badClientProtocol = "Bad Client Protocol Version"
    case noRespondersRequiresHeaders = "No Responders Requires Headers"
    case serverShutdown = "Server Shutdown"
}

/// The part of a connection other loops touch: its outbound bytes and what a publisher must know
/// to encode for it. Guarded by `ClientConnection.out`.
struct Outbound: ~Copyable {
    var buffer = OutboundBuffer()
    /// No more bytes are accepted (closing, closed, or slow consumer).
    var closed = false
    /// The client negotiated headers: deliver HMSG, else strip headers and deliver MSG.
    var headers = false
    /// The connection is already in some loop's pending-flush set (or its flush is queued).
    var flushQueued = false
    /// A thread is writing this socket (between taking a snapshot of `buffer` and consuming what
    /// it wrote): its owner loop, or a publisher's loop writing directly. One writer at a time.
    var writing = false
    /// A flush was asked for while `writing`: the writer writes again before it lets go.
    var rewrite = false
    /// Only the owner loop writes: it waits for EPOLLOUT, the connection is closing, or a direct
    /// write from another loop could not write everything. Cleared by the owner once drained.
    var ownerOnly = false
    /// The owner closed the connection while a publisher's loop was writing: that writer drops the
    /// buffer and closes the descriptor when its write returns.
    var closePending = false
    /// Publishers that stopped reading because this connection's pending bytes passed half of
    /// max_pending (2.9.10's fast-producer stall); resumed when it drains or their timer fires.
    var stalledProducers: [ClientConnection] = []
    /// Messages and bytes delivered to this connection (its /connz `out_msgs`/`out_bytes`).
    var outMsgs = 0
    var outBytes = 0
}

/// One client connection, owned by one event loop.
///
/// `@unchecked Sendable`: every `var` below is touched only on `context.loop`'s thread; what other
/// loops' publishers need is in the `out` Mutex, and `let`s are immutable.
final class ClientConnection: IOHandler, @unchecked Sendable {
    let cid: UInt64
    let fd: Int32
    let peer: PeerAddress
    let context: LoopContext
    /// The broker outlives its connections: shutdown closes them all before the loops stop, and
    /// the loops are joined before the broker is released.
    unowned(unsafe) let broker: Broker
    /// `max_pending`, copied once (read on every delivery).
    let maxPending: Int
    /// `127.0.0.1:5555 - cid:7`, the prefix of this connection's log lines.
    let logPrefix: String
    /// `-V`: log every op received and every op sent.
    let tracing: Bool
    let out = Mutex(Outbound())

    private enum State: Equatable {
        case open
        /// Closing: no more reads or deliveries; queued bytes are being written.
        case draining(CloseReason)
        case closed
    }

    // Loop-confined and never accessed re-entrantly: no dynamic exclusivity checks on the hot path.
    @exclusivity(unchecked) private var state: State = .open
    @exclusivity(unchecked) private var parser: ClientParser
    @exclusivity(unchecked) private(set) var options = ConnectOptions()
    @exclusivity(unchecked) private var activity = false
    private var authenticated: Bool
    /// The user's permission checks; nil (no check at all) for users without permissions.
    private var permissions: ConnectionPermissions?
    private(set) var subscriptions: [SidKey: Subscription] = [:]
    /// Monitoring (/connz), loop-confined: when it connected, its last read, its inbound counts, the last PING round trip.
    let startTime = WallClock.now()
    var lastActivity: UInt64 = LoopContext.now()
    var inMsgs = 0
    var inBytes = 0
    var rttNanos: UInt64 = 0
    /// Not yet closed. Loop thread only.
    var isOpen: Bool { state != .closed }

    private var authTimer: TimerID?
    private var pingTimer: TimerID?
    private var drainTimer: TimerID?
    private var writeDeadlineTimer: TimerID?
    private var pingsOut = 0
    private var rttKnown = false
    private var rttStart: UInt64 = 0
    /// The client PINGed us since the last ping tick.
    private var clientPinged = false
    private var waitingForWritable = false
    /// Reads are paused: a receiver of this publisher is over half its max_pending (fast-producer
    /// stall, as 2.9.10's `stalledWait`, without blocking the loop thread).
    private var readPaused = false
    private var stallTimer: TimerID?
    /// Set during a parse round when a delivery found its receiver over half max_pending.
    @exclusivity(unchecked) private var stalledOn: ClientConnection?
    @exclusivity(unchecked) private var stalledPending = 0
    private var lastWriteProgress: UInt64 = 0

    init(cid: UInt64, fd: Int32, peer: PeerAddress, context: LoopContext, broker: Broker) {
        self.cid = cid
        self.fd = fd
        self.peer = peer
        self.context = context
        self.broker = broker
        self.logPrefix = "\(peer) - cid:\(cid)"
        self.tracing = broker.logger.traceEnabled
        self.maxPending = broker.options.maxPending
        let options = broker.options
        parser = ClientParser(maxControlLine: options.maxControlLine, maxPayload: options.maxPayload)
        authenticated = !options.authRequired
        parser.requireConnectFirst = options.authRequired
    }

    // MARK: Lifecycle

    /// Registers the socket, sends INFO and starts the keep-alive and auth timers. Loop thread only.
    /// - Throws: ``SystemError`` when the descriptor cannot be registered.
    func start() throws(SystemError) {
        try context.loop.register(fd: fd, interest: .readable, handler: self)
        let info = broker.info
        appendControl { buffer in info.write(to: &buffer, clientID: cid, clientIP: peer.ip) }
        schedulePingTimer(first: true)
        if broker.options.authRequired {
            authTimer = context.loop.schedule(after: broker.options.authTimeout) { [self] in
                authTimer = nil
                if state == .open && !authenticated {
                    broker.logger.debug("\(logPrefix) - Authentication Timeout")
                    sendError(.authenticationTimeout, reason: .authenticationTimeout)
                }
            }
        }
    }

    /// After a reload: re-checks this client's CONNECT credentials against the new options and
    /// takes the new permissions; closes with Authorization Violation when they no longer pass.
    /// Subscriptions the new permissions deny are removed with a Permissions Violation (the
    /// connection stays), as 2.9.10 does. Loop thread only.
    func applyReload() {
        guard state == .open, authenticated else { return }
        guard broker.options.authRequired else {
            permissions = nil
            return
        }
        let (accepted, userPermissions) = broker.authenticate(options)
        guard accepted else {
            let who = options.user.isEmpty ? "" : " - User \"\(options.user)\""
            broker.logger.error("\(logPrefix) - authentication error\(who)")
            sendError(.authorizationViolation, reason: .authenticationFailure)
            return
        }
        permissions = userPermissions.map(ConnectionPermissions.init)
        guard let permissions else { return }
        for (key, sub) in subscriptions {
            let allowed = sub.subject.withUnsafeBytes { subject in
                permissions.canSubscribe(subject)
                    && !(sub.queue ?? []).withUnsafeBytes { Self.isSystemQueue($0) }
            }
            if allowed { continue }
            remove(sub, key: key)
            let subject = String(decoding: sub.subject, as: UTF8.self)
            let sid = String(decoding: sub.sid, as: UTF8.self)
            let user = options.user.isEmpty ? "" : " for User \"\(options.user)\""
            broker.logger.notice("Removed sub \"\(subject)\" (sid \"\(sid)\")\(user) - not authorized")
            let text = "Permissions Violation for Subscription to \"\(subject)\" (sid \"\(sid)\")"
            if tracing { traceOut("-ERR '\(text)'") }
            appendControl(bytes: Array("-ERR '\(text)'\r\n".utf8))
        }
    }

    /// Sends the lame duck INFO (`"ldm":true`) when the client CONNECTed with protocol 1 or later,
    /// as 2.9.10 does. Loop thread only.
    func sendLameDuckInfo() {
        guard state == .open, options.protocolVersion >= 1 else { return }
        if tracing { traceOut("INFO ldm") }
        let info = broker.info
        appendControl { buffer in info.write(to: &buffer, clientID: cid, clientIP: peer.ip, lameDuck: true) }
    }

    /// Starts an orderly close: stops reading and routing, writes what is queued (bounded by a
    /// short deadline), then closes. Loop thread only.
    func closeAfterFlush(_ reason: CloseReason) {
        guard state == .open else { return }
        state = .draining(reason)
        let alreadyQueued = out.withLock { o in
            o.closed = true
            o.ownerOnly = true
            let queued = o.flushQueued
            o.flushQueued = true
            return queued
        }
        cancelTimers()
        removeAllSubscriptions()
        if !waitingForWritable {
            try? context.loop.setInterest(fd: fd, [])
        }
        if !alreadyQueued { context.pendingFlush.append(self) }
        let limit = min(broker.options.writeDeadline, .seconds(2))
        drainTimer = context.loop.schedule(after: limit) { [self] in
            drainTimer = nil
            if case .draining(let reason) = state { closeNow(reason) }
        }
    }

    /// Closes at once, dropping queued bytes. Loop thread only.
    func closeNow(_ reason: CloseReason) {
        let closingReason: CloseReason
        switch state {
        case .closed: return
        case .open:
            closingReason = reason
            removeAllSubscriptions()
        case .draining(let drainReason):
            closingReason = drainReason
        }
        state = .closed
        cancelTimers()
        if let drainTimer { _ = context.loop.cancel(drainTimer) }
        if let writeDeadlineTimer { _ = context.loop.cancel(writeDeadlineTimer) }
        drainTimer = nil
        writeDeadlineTimer = nil
        nonisolated(unsafe) var released: [ClientConnection] = []
        let writerOnAnotherLoop = out.withLock { o -> Bool in
            o.closed = true
            o.ownerOnly = true
            swap(&released, &o.stalledProducers)
            // A publisher's loop in writev still reads the buffer and the descriptor: it frees and
            // closes them when it returns (so the number cannot be reused under it).
            if o.writing {
                o.closePending = true
                return true
            }
            o.buffer.removeAll()
            return false
        }
        if !released.isEmpty { Self.resume(released) }
        context.loop.deregister(fd: fd)
        if !writerOnAnotherLoop { IO.close(fd) }
        broker.connectionClosed(self, reason: closingReason)
    }

    private func cancelTimers() {
        if let stallTimer { _ = context.loop.cancel(stallTimer) }
        stallTimer = nil
        if let authTimer { _ = context.loop.cancel(authTimer) }
        if let pingTimer { _ = context.loop.cancel(pingTimer) }
        authTimer = nil
        pingTimer = nil
    }

    private func removeAllSubscriptions() {
        guard !subscriptions.isEmpty else { return }
        let all = Array(subscriptions.values)
        out.withLock { _ in for sub in all { sub.removed = true } }
        broker.mutateSubscriptions { trie in
            for sub in all { trie.remove(subject: sub.subject, queue: sub.queue, value: sub) }
        }
        subscriptions.removeAll()
    }

    /// Sends `error`; closes after flushing when 2.9.10 closes for it. Loop thread only.
    func sendError(_ error: ServerError, reason: CloseReason = .protocolViolation) {
        if tracing { traceOut("-ERR '\(error.text)'") }
        appendControl(bytes: error.wireLine)
        if error.closesConnection { closeAfterFlush(reason) }
    }

    // MARK: Tracing (-V)

    /// Logs an op received, nats-server style: `"<<- [SUB foo 1]"`. Empty arguments are skipped.
    func traceIn(_ op: String, _ arguments: String...) {
        let parts = arguments.filter { !$0.isEmpty }
        let text = parts.isEmpty ? op : op + " " + parts.joined(separator: " ")
        broker.logger.trace("\(logPrefix) - \"<<- [\(text)]\"")
    }

    /// Logs a payload received.
    func tracePayload(_ payload: UnsafeRawBufferPointer) {
        broker.logger.trace("\(logPrefix) - \"<<- MSG_PAYLOAD: [\(ServerError.goQuoted(String(decoding: payload, as: UTF8.self)))]\"")
    }

    /// Logs an op sent: `"->> [MSG foo 1 2]"`.
    func traceOut(_ text: String) {
        broker.logger.trace("\(logPrefix) - \"->> [\(text)]\"")
    }

    // MARK: IOHandler

    func readable() {
        guard state == .open else { return }
        var total = 0
        while true {
            let result = context.readBuffer.read(from: fd)
            switch result {
            case .bytes(let count):
                lastActivity = LoopContext.now()
                var handler = OpDispatch(connection: self)
                let parsed = parser.parse(context.readBuffer.bytes, into: &handler)
                switch parsed {
                case .ok: break
                case .stopped: return
                case .error(let error):
                    handleParseError(error)
                    return
                }
                guard state == .open else { return }
                if let receiver = stalledOn {
                    stalledOn = nil
                    if pauseReading(for: receiver, pending: stalledPending) { return }
                }
                total += count
                // A short read drained the socket; level-triggered epoll reports any later data.
                if count < context.readBuffer.capacity || total >= LoopContext.bytesPerTurn { return }
            case .wouldBlock:
                return
            case .eof:
                closeNow(.clientClosed)
                return
            case .error(let code):
                broker.logger.debug("\(logPrefix) - Read error: errno \(code)")
                closeNow(.readError)
                return
            }
        }
    }

    func writable() {
        writeOut()
    }

    func hangup() {
        closeNow(.clientClosed)
    }

    private func handleParseError(_ error: ClientParseError) {
        switch error {
        case .unknownOperation:
            broker.logger.error("\(logPrefix) - Client parser ERROR: unknown protocol operation")
            sendError(.unknownProtocolOperation, reason: .protocolViolation)
        case .authorizationViolation:
            broker.logger.error("\(logPrefix) - Authorization Error")
            sendError(.authorizationViolation, reason: .authenticationFailure)
        case .maxControlLineExceeded:
            broker.logger.error("\(logPrefix) - maximum control line exceeded")
            sendError(.maxControlLineExceeded, reason: .maxControlLineExceeded)
        case .maxPayloadViolation:
            broker.logger.error("\(logPrefix) - Maximum Payload Violation")
            sendError(.maxPayloadViolation, reason: .maxPayloadExceeded)
        case .badArguments(let verb):
            broker.logger.error("\(logPrefix) - Client parser ERROR: bad \(verb) arguments")
            closeAfterFlush(.protocolViolation)
        }
    }

    // MARK: Outbound (owner side)

    /// Appends protocol bytes for this client (INFO, +OK, PONG, PING, -ERR). Loop thread only.
    /// The same max-pending rule applies as for messages.
    private func appendControl(bytes: [UInt8]) {
        appendControl { buffer in bytes.withUnsafeBytes { buffer.append($0) } }
    }

    private func appendControl(_ encode: (inout OutboundBuffer) -> Void) {
        let maxPending = self.maxPending
        let outcome: EnqueueOutcome = out.withLock { o in
            if o.closed { return .closed }
            let before = o.buffer.pendingBytes
            encode(&o.buffer)
            if o.buffer.pendingBytes > maxPending && before > 0 {
                o.closed = true
                return .slowConsumer
            }
            if o.flushQueued { return .queued }
            o.flushQueued = true
            return .needsFlush
        }
        switch outcome {
        case .needsFlush: context.pendingFlush.append(self)
        case .queued, .closed: break
        case .slowConsumer: slowConsumerDetected()
        }
    }

    private func sendOK() {
        if tracing { traceOut("OK") }
        appendControl { Encoder.ok(&$0) }
    }

    enum EnqueueOutcome {
        case needsFlush, queued, closed, slowConsumer
    }

    /// Called when this connection exceeded max_pending (on any loop). Counts and logs it, then
    /// closes the connection on its own loop, with no -ERR, as 2.9.10 does.
    private func slowConsumerDetected() {
        broker.slowConsumers.wrappingAdd(1, ordering: .relaxed)
        broker.logger.notice("\(logPrefix) - Slow Consumer Detected: MaxPending of \(broker.options.maxPending) Exceeded")
        // Deferred to the owner's task queue: this may run on another loop, or inside a delivery
        // loop that still holds a match result naming this connection.
        context.loop.execute { [self] in closeNow(.slowConsumerPendingBytes) }
    }

    /// Flushes queued bytes with one writev (more if the snapshot was capped). Loop thread only.
    func flush() {
        if state == .closed { return }
        if waitingForWritable {
            // EPOLLOUT will come; writable() writes everything then.
            out.withLock { $0.flushQueued = false }
            return
        }
        writeOut()
    }

    private func writeOut() {
        while state != .closed {
            switch writeRound(&context.iovecs, owner: true) {
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
            switch writeRound(&publisher.iovecs, owner: false) {
            case .busy, .empty, .closedMeanwhile:
                return
            case .ownerOnly:
                context.enqueueRemoteFlush(self)
                return
            case .wrote(let round):
                if round.written > 0 { publisher.loop.noteOutput() }
                if round.written < round.requested {
                    // writeRound made the socket owner-only; the owner registers for EPOLLOUT (or
                    // sees the error and closes).
                    context.enqueueRemoteFlush(self)
                    return
                }
                if !round.needsAnotherRound { return }
            }
        }
        // Still more to write: leave it to the owner rather than stall this publisher's loop. Always
        // queued: a flush asked for during these writes (flushQueued already set) counted on this
        // writer and has no other turn coming.
        out.withLock { $0.flushQueued = true }
        context.enqueueRemoteFlush(self)
    }

    /// What one ``writeRound(_:owner:)`` did.
    private enum WriteStep {
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

    private struct WriteRound {
        var result: IOResult
        var written: Int
        var requested: Int
        /// Pending bytes when the snapshot was taken (more than `requested` when capped at IOV_MAX).
        var total: Int
        /// Pending bytes after consuming what was written.
        var remaining: Int
        /// A flush was asked for while this round was writing.
        var again: Bool

        var needsAnotherRound: Bool { requested < total || again }
    }

    /// One snapshot, writev and consume under the one-writer rule, with `iovecs` the calling loop's
    /// scratch. `owner`: called on the owner's loop; otherwise an owner-only socket is left alone,
    /// and a short write makes it owner-only (the caller then asks the owner to flush).
    private func writeRound(_ iovecs: inout [iovec], owner: Bool) -> WriteStep {
        var total = 0
        let count = out.withLock { o -> Int in
            if o.writing {
                o.rewrite = true
                return -1
            }
            if !owner && o.ownerOnly { return -2 }
            o.flushQueued = false
            let n = o.buffer.snapshotIOVecs(into: &iovecs)
            total = o.buffer.pendingBytes
            if n > 0 { o.writing = true }
            return n
        }
        if count == -1 { return .busy }
        if count == -2 { return .ownerOnly }
        if count == 0 { return .empty }
        var requested = 0
        for i in 0..<count { requested += iovecs[i].iov_len }
        let result = iovecs.withUnsafeBufferPointer { IO.writev(fd, $0.baseAddress!, count: count) }
        let written: Int
        if case .bytes(let n) = result { written = n } else { written = 0 }
        let maxPending = self.maxPending
        nonisolated(unsafe) var released: [ClientConnection] = []
        var again = false
        var closeDescriptor = false
        let remaining = out.withLock { o -> Int in
            o.writing = false
            again = o.rewrite
            o.rewrite = false
            if o.closePending {
                // Only a writer on another loop sees this: the owner closed meanwhile.
                o.closePending = false
                o.buffer.removeAll()
                closeDescriptor = true
                return 0
            }
            if written > 0 { o.buffer.consume(written) }
            if !o.stalledProducers.isEmpty && (written == requested || o.buffer.pendingBytes < maxPending / 2) {
                swap(&released, &o.stalledProducers)
            }
            if !owner && written < requested {
                o.ownerOnly = true
                o.flushQueued = true
            }
            return o.buffer.pendingBytes
        }
        if closeDescriptor {
            IO.close(fd)
            return .closedMeanwhile
        }
        if !released.isEmpty { Self.resume(released) }
        return .wrote(WriteRound(result: result, written: written, requested: requested, total: total,
                                 remaining: remaining, again: again))
    }

    private func finishedWriting() {
        if state == .open {
            out.withLock { o in
                // Drained by the owner: other loops may write directly again (unless more bytes
                // arrived meanwhile, in which case a flush is queued and clears it next time).
                if o.buffer.pendingBytes == 0 { o.ownerOnly = false }
            }
        }
        if waitingForWritable {
            waitingForWritable = false
            if let writeDeadlineTimer { _ = context.loop.cancel(writeDeadlineTimer) }
            writeDeadlineTimer = nil
            try? context.loop.setInterest(fd: fd, state == .open && !readPaused ? .readable : [])
        }
        if case .draining(let reason) = state { closeNow(reason) }
    }

    private func waitForWritable() {
        if waitingForWritable { return }
        waitingForWritable = true
        out.withLock { $0.ownerOnly = true }
        lastWriteProgress = LoopContext.now()
        do {
            try context.loop.setInterest(fd: fd, state == .open && !readPaused ? [.readable, .writable] : .writable)
        } catch {
            closeNow(.writeError)
            return
        }
        scheduleWriteDeadline(after: broker.options.writeDeadline)
    }

    private func scheduleWriteDeadline(after delay: Duration) {
        writeDeadlineTimer = context.loop.schedule(after: delay) { [self] in
            writeDeadlineTimer = nil
            guard waitingForWritable, state != .closed else { return }
            let deadline = UInt64(max(0, broker.options.writeDeadline.nanoseconds))
            let stalled = LoopContext.now() &- lastWriteProgress
            if stalled >= deadline {
                if case .draining(let reason) = state {
                    closeNow(reason)
                    return
                }
                let pending = out.withLock { $0.buffer.pendingBytes }
                broker.slowConsumers.wrappingAdd(1, ordering: .relaxed)
                broker.logger.notice(
                    "\(logPrefix) - Slow Consumer Detected: WriteDeadline of \(goDuration(broker.options.writeDeadline)) exceeded with \(pending) total bytes pending")
                closeNow(.slowConsumerWriteDeadline)
            } else {
                scheduleWriteDeadline(after: .nanoseconds(Int64(deadline - stalled)))
            }
        }
    }

    // MARK: Keep-alive

    private func schedulePingTimer(first: Bool) {
        var delay = broker.options.pingInterval
        if first {
            if delay > .seconds(2) { delay = .seconds(2) }
            // nats-server randomises the first PING by up to 20%.
            let extra = max(0, delay.nanoseconds / 5)
            if extra > 0 { delay += .nanoseconds(Int64.random(in: 0..<extra)) }
        }
        pingTimer = context.loop.schedule(after: delay) { [self] in
            pingTimer = nil
            pingTick()
        }
    }

    private func pingTick() {
        guard state == .open else { return }
        let now = LoopContext.now()
        let needRTT = !rttKnown || now &- rttStart > 3_600_000_000_000
        if !needRTT && (activity || clientPinged) {
            broker.logger.debug("\(logPrefix) - Delaying PING due to client activity")
        } else {
            if pingsOut + 1 > broker.options.maxPingsOut {
                broker.logger.debug("\(logPrefix) - Stale Client Connection - Closing")
                sendError(.staleConnection, reason: .staleConnection)
                return
            }
            pingsOut += 1
            rttStart = now
            if tracing { traceOut("PING") }
            appendControl { Encoder.ping(&$0) }
        }
        activity = false
        clientPinged = false
        schedulePingTimer(first: false)
    }

    // MARK: Client operations

    fileprivate func handleConnect(json: UnsafeRawBufferPointer) -> Bool {
        if let authTimer { _ = context.loop.cancel(authTimer) }
        authTimer = nil
        rttKnown = true
        rttStart = LoopContext.now()
        if let pingTimer { _ = context.loop.cancel(pingTimer) }
        schedulePingTimer(first: true)

        do {
            try options.apply(json: json)
        } catch {
            broker.logger.error("\(logPrefix) - Client parser ERROR: CONNECT: \(error.message)")
            closeAfterFlush(.protocolViolation)
            return false
        }
        let headers = options.headers
        out.withLock { $0.headers = headers }

        if broker.options.authRequired {
            let (accepted, userPermissions) = broker.authenticate(options)
            if !accepted {
                broker.logger.error("\(logPrefix) - Authorization Error")
                sendError(.authorizationViolation, reason: .authenticationFailure)
                return false
            }
            permissions = userPermissions.map(ConnectionPermissions.init)
        }
        if !options.account.isEmpty || options.newAccount {
            sendError(.authorizationViolation, reason: .authenticationFailure)
            return false
        }
        authenticated = true
        if options.protocolVersion < 0 || options.protocolVersion > 1 {
            sendError(.invalidClientProtocol, reason: .badClientProtocol)
            return false
        }
        if options.noResponders && !options.headers {
            sendError(.noRespondersRequiresHeaders, reason: .noRespondersRequiresHeaders)
            return false
        }
        if options.verbose { sendOK() }
        return state == .open
    }

    fileprivate func handlePub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                               headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        context.batch.inMsgs &+= 1
        context.batch.inBytes &+= headers.count &+ payload.count
        inMsgs &+= 1
        inBytes &+= headers.count &+ payload.count
        activity = true
        if subject.isEmpty {
            // 2.9.10's client-HMSG quirk: counted, acknowledged, routed nowhere.
            if options.verbose { sendOK() }
            return state == .open
        }
        if options.pedantic && !Subject.isValidLiteral(subject) {
            if tracing { traceOut("-ERR 'Invalid Publish Subject'") }
            appendControl(bytes: ServerError.invalidPublishSubject.wireLine)
        }
        // 2.9.10 reserves these prefixes for gateways, service imports and JetStream acks: the
        // message is refused with a permissions violation (the connection stays open), before +OK.
        if Self.hasReservedPrefix(subject, Self.gatewayReplyPrefix) {
            sendPermissionViolation(.publishPermissionViolation(subject: String(decoding: subject, as: UTF8.self)))
            return state == .open
        }
        if let permissions, permissions.checksPublish, !permissions.canPublish(subject) {
            sendPermissionViolation(.publishPermissionViolation(subject: String(decoding: subject, as: UTF8.self)))
            return state == .open
        }
        if !reply.isEmpty && Self.isReservedReply(reply) {
            sendPermissionViolation(.replyPermissionViolation(reply: String(decoding: reply, as: UTF8.self)))
            return state == .open
        }
        if options.verbose { sendOK() }
        route(subject: subject, reply: reply, headers: headers, payload: payload)
        return state == .open
    }

    private static let gatewayReplyPrefix = Array("_GR_.".utf8)
    private static let serviceReplyPrefix = Array("_R_.".utf8)
    private static let jetStreamAckPrefix = Array("$JS.ACK.".utf8)

    /// True when `bytes` is longer than `prefix` and starts with it (2.9.10 needs at least one more byte).
    private static func hasReservedPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: [UInt8]) -> Bool {
        bytes.count > prefix.count && bytes.starts(with: prefix)
    }

    /// 2.9.10's `isReservedReply`: service-import (`_R_.`), JetStream ack and gateway reply prefixes.
    private static func isReservedReply(_ reply: UnsafeRawBufferPointer) -> Bool {
        hasReservedPrefix(reply, serviceReplyPrefix) || hasReservedPrefix(reply, jetStreamAckPrefix)
            || hasReservedPrefix(reply, gatewayReplyPrefix)
    }

    /// 2.9.10 refuses the queue group `_sys_` to clients with permissions.
    private static func isSystemQueue(_ queue: UnsafeRawBufferPointer) -> Bool {
        queue.elementsEqual("_sys_".utf8)
    }

    /// Sends a permissions -ERR, which keeps the connection open. Error path only (allocates).
    private func sendPermissionViolation(_ error: ServerError) {
        if tracing { traceOut("-ERR '\(error.text)'") }
        broker.logger.error("\(logPrefix) - \(error.text)")
        appendControl(bytes: error.wireLine)
    }

    fileprivate func handleHPub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                                headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        guard options.headers else {
            // 2.9.10 closes without an -ERR when headers were not negotiated.
            broker.logger.error("\(logPrefix) - Client parser ERROR: message headers not supported")
            closeAfterFlush(.protocolViolation)
            return false
        }
        return handlePub(subject: subject, reply: reply, headers: headers, payload: payload)
    }

    /// Delivers one published message to every plain subscription and one member per queue group.
    /// Publisher's loop thread only.
    private func route(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        let result = context.match(subject)
        if result.isEmpty {
            // 2.9.10's sublist matches nothing for a subject with an empty token (`foo..x`, `.foo`),
            // and such a publish gets no 503 either. The trie never matches one, so only an empty
            // result needs the scan.
            guard Self.hasNoEmptyToken(subject) else { return }
            if !reply.isEmpty && options.noResponders { sendNoResponders(reply: reply) }
            return
        }
        var delivered = false
        for sub in result.plain where deliver(sub, subject: subject, reply: reply, headers: headers, payload: payload) {
            delivered = true
        }
        for group in result.queues {
            let count = group.count
            if count == 0 { continue }
            let start = count == 1 ? 0 : context.random(below: count)
            for i in 0..<count {
                var index = start + i
                if index >= count { index -= count }
                if deliver(group[index], subject: subject, reply: reply, headers: headers, payload: payload) {
                    delivered = true
                    break
                }
            }
        }
        if !delivered && !reply.isEmpty && options.noResponders {
            sendNoResponders(reply: reply)
        }
    }

    @inline(__always)
    private func deliver(_ sub: Subscription, subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                         headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        let receiver = sub.client
        if receiver === self && !options.echo { return false }
        if let check = sub.deliveryGuard, !check.admit(subject: subject, reply: reply) { return false }
        return receiver.enqueueMessage(sub, subject: subject, reply: reply, headers: headers,
                                       payload: payload, publisher: context, producer: self)
    }

    /// Encodes a message for this (receiving) connection into its outbound buffer. Called on the
    /// publisher's loop thread; `publisher` is that loop's context.
    /// - Returns: false when nothing was queued (closed, unsubscribed, over its limit, slow consumer).
    @inline(__always)
    func enqueueMessage(_ sub: Subscription, subject: UnsafeRawBufferPointer,
                        reply: UnsafeRawBufferPointer, headers: UnsafeRawBufferPointer,
                        payload: UnsafeRawBufferPointer, publisher: LoopContext,
                        producer: ClientConnection) -> Bool {
        let frame = MessageFrame(subject: subject, sid: sub.sidBytes, reply: reply, headers: headers,
                                 payload: payload, scratch: publisher.scratch, scratchCapacity: publisher.scratchCapacity)
        let maxPending = self.maxPending
        let result = out.withLock { o -> EnqueueResult in
            if o.closed { return EnqueueResult(outcome: .closed) }
            let (allowed, requestRemoval) = sub.reserveDelivery()
            guard allowed else { return EnqueueResult(outcome: .closed, requestRemoval: requestRemoval) }
            let withHeaders = o.headers && !frame.headers.isEmpty
            let body = (withHeaders ? frame.headers.count : 0) + frame.payload.count
            let head = 64 + frame.subject.count + frame.sid.count + frame.reply.count
            if o.buffer.pendingBytes + head + body > maxPending && o.buffer.pendingBytes > 0 {
                o.closed = true
                return EnqueueResult(outcome: .slowConsumer)
            }
            frame.encode(into: &o.buffer, withHeaders: withHeaders, bound: head + body)
            o.outMsgs &+= 1
            o.outBytes &+= body
            let pending = o.buffer.pendingBytes > maxPending / 2 ? o.buffer.pendingBytes : 0
            if o.flushQueued {
                return EnqueueResult(outcome: .queued, bytes: body, requestRemoval: requestRemoval, stallPending: pending)
            }
            o.flushQueued = true
            return EnqueueResult(outcome: .needsFlush, bytes: body, requestRemoval: requestRemoval, stallPending: pending)
        }
        if result.requestRemoval { requestRemoval(sub) }
        if result.stallPending > 0 && producer !== self && producer.stalledOn == nil {
            // Publisher's loop thread: the producer's loop-confined state is ours to set.
            producer.stalledOn = self
            producer.stalledPending = result.stallPending
        }
        switch result.outcome {
        case .needsFlush:
            publisher.pendingFlush.append(self)
        case .queued:
            break
        case .closed:
            return false
        case .slowConsumer:
            slowConsumerDetected()
            return false
        }
        publisher.batch.outMsgs &+= 1
        publisher.batch.outBytes &+= result.bytes
        if tracing {
            let op = headers.isEmpty || !out.withLock({ $0.headers }) ? "MSG" : "HMSG"
            var text = "\(op) \(String(decoding: subject, as: UTF8.self)) \(String(decoding: sub.sidBytes, as: UTF8.self))"
            if !reply.isEmpty { text += " " + String(decoding: reply, as: UTF8.self) }
            traceOut(text + " \(headers.count + payload.count)")
        }
        return true
    }

    /// What happened to one delivery (a nominal type, so the lock's result needs no runtime metadata).
    struct EnqueueResult {
        var outcome: EnqueueOutcome
        var bytes = 0
        var requestRemoval = false
        /// The receiver's pending bytes when over half max_pending (the publisher stalls), else 0.
        var stallPending = 0
    }

    /// 2.9.10's `stallDuration`: 100 ms, plus 100 ms per tenth of the upper half of max_pending
    /// used, 1 s at max_pending.
    static func stallDuration(pending: Int, maxPending: Int) -> Duration {
        let minimum = 100_000_000
        if pending >= maxPending { return .seconds(1) }
        let half = maxPending / 2
        guard pending > half, half >= 10 else { return .nanoseconds(minimum) }
        let steps = (pending - half) / (half / 10)
        return .nanoseconds(minimum + minimum * steps)
    }

    /// Stops reading from this publisher until `receiver` drains below half its max_pending or
    /// the stall time passes. Loop thread only.
    /// - Returns: true when reads were paused (false: the receiver drained or closed meanwhile).
    private func pauseReading(for receiver: ClientConnection, pending: Int) -> Bool {
        if readPaused { return true }
        let maxPending = receiver.maxPending
        let registered = receiver.out.withLock { o -> Bool in
            if o.closed || o.buffer.pendingBytes <= maxPending / 2 { return false }
            o.stalledProducers.append(self)
            return true
        }
        guard registered else { return false }
        readPaused = true
        try? context.loop.setInterest(fd: fd, waitingForWritable ? .writable : [])
        let ttl = Self.stallDuration(pending: pending, maxPending: maxPending)
        stallTimer = context.loop.schedule(after: ttl) { [self] in
            stallTimer = nil
            if readPaused { broker.logger.debug("\(logPrefix) - Timed out of fast producer stall (\(goDuration(ttl)))") }
            resumeReading()
        }
        return true
    }

    /// Reads again after a stall. Loop thread only.
    private func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        if let stallTimer { _ = context.loop.cancel(stallTimer) }
        stallTimer = nil
        guard state == .open else { return }
        try? context.loop.setInterest(fd: fd, waitingForWritable ? [.readable, .writable] : .readable)
    }

    /// Resumes stalled publishers, each on its own loop. Any loop thread.
    private static func resume(_ producers: [ClientConnection]) {
        for producer in producers {
            if producer.context.loop.isCurrent {
                producer.resumeReading()
            } else {
                producer.context.loop.execute { producer.resumeReading() }
            }
        }
    }

    /// `HMSG <reply> <sid> 16 16\r\nNATS/1.0 503\r\n\r\n\r\n` to the publisher's own subscription
    /// matching the reply subject, if it has one (2.9.10 `subForReply`).
    private func sendNoResponders(reply: UnsafeRawBufferPointer) {
        nonisolated(unsafe) var result = MatchResult<Subscription>()
        broker.subscriptions.withLock { result = $0.match(reply) }
        guard let sub = result.plain.first(where: { $0.client === self }) else { return }
        appendControl { buffer in
            buffer.append(ascii: "HMSG ")
            buffer.append(reply)
            buffer.append(byte: 0x20)
            sub.sid.withUnsafeBytes { buffer.append($0) }
            buffer.append(ascii: " 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")
        }
    }

    @inline(__always)
    static func hasNoEmptyToken(_ subject: UnsafeRawBufferPointer) -> Bool {
        guard let first = subject.first, let last = subject.last else { return false }
        if first == Subject.separator || last == Subject.separator { return false }
        var previous: UInt8 = 0
        for byte in subject {
            if byte == Subject.separator && previous == Subject.separator { return false }
            previous = byte
        }
        return true
    }

    fileprivate func handleSub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer,
                               sid: UnsafeRawBufferPointer) -> Bool {
        activity = true
        if let permissions, !permissions.canSubscribe(subject) || Self.isSystemQueue(queue) {
            sendPermissionViolation(.subscriptionPermissionViolation(
                subject: String(decoding: subject, as: UTF8.self),
                queue: queue.isEmpty ? nil : String(decoding: queue, as: UTF8.self)))
            return state == .open
        }
        let limit = broker.options.maxSubscriptions
        if limit > 0 && subscriptions.count >= limit {
            broker.logger.error("\(logPrefix) - maximum subscriptions exceeded")
            sendError(.maxSubscriptionsExceeded)
            return state == .open
        }
        let key = SidKey(sid)
        if subscriptions[key] == nil {
            let sub = Subscription(subject: Array(subject), queue: queue.isEmpty ? nil : Array(queue),
                                   sid: key.bytes, client: self, guard: permissions?.delivery)
            let inserted = broker.mutateSubscriptions { trie in
                trie.insert(subject: sub.subject, queue: sub.queue, value: sub)
            }
            guard inserted else {
                sendError(.invalidSubject)
                return state == .open
            }
            subscriptions[key] = sub
        }
        if options.verbose { sendOK() }
        return state == .open
    }

    fileprivate func handleUnsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool {
        let key = SidKey(sid)
        if let sub = subscriptions[key] {
            let removeNow = out.withLock { _ -> Bool in
                if let max, max > 0, max > sub.delivered {
                    sub.maxMessages = max
                    return false
                }
                return true
            }
            if removeNow { remove(sub, key: key) }
        }
        if options.verbose { sendOK() }
        return state == .open
    }

    private func remove(_ sub: Subscription, key: SidKey) {
        subscriptions[key] = nil
        out.withLock { _ in sub.removed = true }
        broker.mutateSubscriptions { trie in
            _ = trie.remove(subject: sub.subject, queue: sub.queue, value: sub)
        }
    }

    /// Asks this connection's loop to drop `sub`, which reached its UNSUB limit. Any thread.
    func requestRemoval(_ sub: Subscription) {
        context.loop.execute { [self] in
            let key = SidKey(bytes: sub.sid)
            if state == .open, let current = subscriptions[key], current === sub {
                remove(sub, key: key)
            }
        }
    }

    fileprivate func handlePing() -> Bool {
        clientPinged = true
        if tracing { traceOut("PONG") }
        appendControl { Encoder.pong(&$0) }
        return state == .open
    }

    fileprivate func handlePong() -> Bool {
        if pingsOut > 0 { rttNanos = LoopContext.now() &- rttStart }
        pingsOut = 0
        rttKnown = true
        return true
    }

    fileprivate func handleInfo(json: UnsafeRawBufferPointer) -> Bool {
        do {
            _ = try JSON.parse(json.assumingMemoryBound(to: UInt8.self))
            return true
        } catch {
            broker.logger.error("\(logPrefix) - Client parser ERROR: INFO: \(error.message)")
            closeAfterFlush(.protocolViolation)
            return false
        }
    }

    fileprivate func handleClientError(message: UnsafeRawBufferPointer) -> Bool {
        broker.logger.error("\(logPrefix) - Client Error \(String(decoding: message, as: UTF8.self))")
        closeAfterFlush(.clientClosed)
        return false
    }
}


/// A duration as Go prints one in nats-server's logs: `10s`, `250ms`, `1m30s`.
func goDuration(_ duration: Duration) -> String {
    let nanos = duration.nanoseconds
    if nanos % 1_000_000_000 != 0 {
        if nanos < 1_000_000_000 && nanos % 1_000_000 == 0 { return "\(nanos / 1_000_000)ms" }
        return "\(Double(nanos) / 1e9)s"
    }
    let seconds = nanos / 1_000_000_000
    if seconds < 60 { return "\(seconds)s" }
    let minutes = seconds / 60
    if minutes < 60 { return "\(minutes)m\(seconds % 60)s" }
    return "\(minutes / 60)h\(minutes % 60)m\(seconds % 60)s"
}

/// The byte views of one delivery: into the publisher's read buffer (or parser split buffer), the
/// subscription's sid, and the publisher loop's scratch area. `@unchecked Sendable` because they
/// only cross into the receiver's `out` lock for the duration of one copy, on the publisher's
/// thread, and are never retained.
private struct MessageFrame: @unchecked Sendable {
    let subject: UnsafeRawBufferPointer
    let sid: UnsafeRawBufferPointer
    let reply: UnsafeRawBufferPointer
    let headers: UnsafeRawBufferPointer
    let payload: UnsafeRawBufferPointer
    let scratch: UnsafeMutableRawPointer
    let scratchCapacity: Int

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
                Encoder.hmsg(&sink, subject: subject, sid: sid, reply: reply, headers: headers, payload: payload)
            } else {
                Encoder.msg(&sink, subject: subject, sid: sid, reply: reply, payload: payload)
            }
            buffer.append(UnsafeRawBufferPointer(start: scratch, count: sink.count))
        } else if withHeaders {
            Encoder.hmsg(&buffer, subject: subject, sid: sid, reply: reply, headers: headers, payload: payload)
        } else {
            Encoder.msg(&buffer, subject: subject, sid: sid, reply: reply, payload: payload)
        }
    }
}

/// A bounded byte sink over raw memory (the loop's scratch area).
private struct ScratchSink: ByteSink {
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

/// Forwards parsed ops to the connection. A struct so the generic parser specialises on it.
private struct OpDispatch: ClientOpHandler {
    unowned(unsafe) let connection: ClientConnection

    mutating func connect(json: UnsafeRawBufferPointer) -> Bool {
        if connection.tracing { connection.traceIn("CONNECT", text(json)) }
        return connection.handleConnect(json: json)
    }
    mutating func pub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool {
        if connection.tracing {
            connection.traceIn("PUB", text(subject), text(reply), "\(payload.count)")
            connection.tracePayload(payload)
        }
        return connection.handlePub(subject: subject, reply: reply,
                                    headers: UnsafeRawBufferPointer(start: nil, count: 0), payload: payload)
    }
    mutating func hpub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        if connection.tracing {
            connection.traceIn("HPUB", text(subject), text(reply), "\(headers.count)",
                               "\(headers.count + payload.count)")
            connection.tracePayload(payload)
        }
        return connection.handleHPub(subject: subject, reply: reply, headers: headers, payload: payload)
    }
    mutating func sub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer,
                      sid: UnsafeRawBufferPointer) -> Bool {
        if connection.tracing { connection.traceIn("SUB", text(subject), text(queue), text(sid)) }
        return connection.handleSub(subject: subject, queue: queue, sid: sid)
    }
    mutating func unsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool {
        if connection.tracing { connection.traceIn("UNSUB", text(sid), max.map { "\($0)" } ?? "") }
        return connection.handleUnsub(sid: sid, max: max)
    }
    mutating func ping() -> Bool {
        if connection.tracing { connection.traceIn("PING") }
        return connection.handlePing()
    }
    mutating func pong() -> Bool {
        if connection.tracing { connection.traceIn("PONG") }
        return connection.handlePong()
    }
    mutating func info(json: UnsafeRawBufferPointer) -> Bool {
        if connection.tracing { connection.traceIn("INFO", text(json)) }
        return connection.handleInfo(json: json)
    }
    mutating func ok() -> Bool {
        if connection.tracing { connection.traceIn("OK") }
        return true
    }
    mutating func err(message: UnsafeRawBufferPointer) -> Bool { connection.handleClientError(message: message) }
    var acceptsHeaders: Bool { connection.options.headers }

    private func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }

}
