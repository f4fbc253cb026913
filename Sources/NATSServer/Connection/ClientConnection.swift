// ClientConnection: one client socket, owned by one event loop. This file holds its state and
// lifecycle (start, reload, orderly and immediate close) and reading; writing, delivery, the
// protocol operations and keep-alive are extensions in this folder. The message hot path: parse
// from the loop's read buffer, match in the shared trie, encode straight into each receiver's
// outbound buffer, and flush every touched receiver once per read batch.

import EventLoop
import Glibc
import NATSProtocol
import Synchronization

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

    typealias State = ConnectionState

    // Loop-confined and never accessed re-entrantly: no dynamic exclusivity checks on the hot path.
    @exclusivity(unchecked) var state: State = .open
    @exclusivity(unchecked) var parser: ClientParser
    @exclusivity(unchecked) var options = ConnectOptions()
    @exclusivity(unchecked) var activity = false
    var authenticated: Bool
    /// The nonce this connection's INFO carried (nkey users configured), which an nkey user signs.
    let nonce: String?
    /// The user's permission checks; nil (no check at all) for users without permissions.
    var permissions: ConnectionPermissions?
    var subscriptions: [SidKey: Subscription] = [:]
    /// The subscriptions held when the connection closed, kept for its /connz?state=closed entry
    /// (2.9.10 lists them there) until the broker has taken that snapshot.
    var subscriptionsAtClose: [Subscription] = []
    /// The account whose subjects this connection publishes and subscribes in: `$G` until CONNECT
    /// authenticates a user of a configured account.
    var account: Account {
        get { accountReference.takeUnretainedValue() }
        set { accountReference = Unmanaged.passUnretained(newValue) }
    }
    /// ``account`` without reference counting, so routing a message retains nothing: the broker
    /// keeps every account for its whole life, longer than any connection.
    @exclusivity(unchecked) var accountReference: Unmanaged<Account>
    /// Monitoring (/connz), loop-confined: when it connected, its last read, its inbound counts, the last PING round trip.
    let startTime = WallClock.now()
    var lastActivity: UInt64 = LoopContext.now()
    var inMsgs = 0
    var inBytes = 0
    var rttNanos: UInt64 = 0
    /// Not yet closed. Loop thread only.
    var isOpen: Bool { state != .closed }

    var authTimer: TimerID?
    var pingTimer: TimerID?
    var drainTimer: TimerID?
    var writeDeadlineTimer: TimerID?
    var pingsOut = 0
    var rttKnown = false
    var rttStart: UInt64 = 0
    /// The client PINGed us since the last ping tick.
    var clientPinged = false
    var waitingForWritable = false
    /// Reads are paused: a receiver of this publisher is over half its max_pending (fast-producer
    /// stall, as 2.9.10's `stalledWait`, without blocking the loop thread).
    var readPaused = false
    var stallTimer: TimerID?
    /// Set during a parse round when a delivery found its receiver over half max_pending.
    @exclusivity(unchecked) var stalledOn: ClientConnection?
    @exclusivity(unchecked) var stalledPending = 0
    /// Set during a parse round when JetStream's inbox was over its limit after a message of ours.
    @exclusivity(unchecked) var jetStreamBacklogged = false
    var lastWriteProgress: UInt64 = 0

    init(cid: UInt64, fd: Int32, peer: PeerAddress, context: LoopContext, broker: Broker) {
        self.cid = cid
        self.fd = fd
        self.peer = peer
        self.context = context
        self.broker = broker
        self.logPrefix = "\(peer) - cid:\(cid)"
        self.tracing = broker.logger.traceEnabled
        self.maxPending = broker.options.maxPending
        accountReference = Unmanaged.passUnretained(broker.globalAccount)
        let settings = broker.settings
        let options = settings.options
        parser = ClientParser(maxControlLine: options.maxControlLine, maxPayload: options.maxPayload)
        authenticated = !settings.auth.authRequired
        nonce = settings.auth.nonceRequired ? NKeyAuthentication.makeNonce() : nil
        parser.requireConnectFirst = settings.auth.authRequired
    }

    // MARK: Lifecycle

    /// Registers the socket, sends INFO and starts the keep-alive and auth timers. Loop thread only.
    /// - Throws: ``SystemError`` when the descriptor cannot be registered.
    func start() throws(SystemError) {
        try context.loop.register(fd: fd, interest: .readable, handler: self)
        let info = broker.info
        appendControl { buffer in info.write(to: &buffer, clientID: cid, clientIP: peer.ip, nonce: nonce) }
        schedulePingTimer(first: true)
        let settings = broker.settings
        if settings.auth.authRequired {
            authTimer = context.loop.schedule(after: settings.options.authTimeout) { [self] in
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
        let settings = broker.settings
        guard settings.auth.authRequired else {
            permissions = nil
            return
        }
        guard let auth = checkCredentials(settings) else { return }
        if auth.account != account.name {
            // A connection's subscriptions live in its account: moving it is closing it.
            broker.logger.error("\(logPrefix) - authentication error - account changed")
            sendError(.authorizationViolation, reason: .authenticationFailure)
            return
        }
        permissions = auth.permissions.map(ConnectionPermissions.init)
        guard let permissions else { return }
        for (key, sub) in subscriptions {
            // As 2.9.10: kept when a plain SUB of its subject would pass, or a queue SUB with its queue.
            let allowed = sub.subject.withUnsafeBytes { subject in
                permissions.canSubscribe(subject, queue: UnsafeRawBufferPointer(start: nil, count: 0))
                    || (sub.queue ?? []).withUnsafeBytes { queue in
                        !queue.isEmpty && permissions.canSubscribe(subject, queue: queue)
                    }
            }
            if allowed { continue }
            remove(sub, key: key)
            let subject = String(decoding: sub.subject, as: UTF8.self)
            let sid = String(decoding: sub.sid, as: UTF8.self)
            broker.logger.notice("Removed sub \(ServerError.goQuoted(subject)) (sid \(ServerError.goQuoted(sid))) for \(authUser) - not authorized")
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
            return !o.write.beginDraining()
        }
        cancelTimers()
        removeAllSubscriptions()
        // Stop reading (a failure closes at once: level-triggered readiness would spin).
        if !waitingForWritable && !setInterest([], orClose: reason) { return }
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
        let closing = out.withLock { o -> WriteOwnership.Close in
            o.closed = true
            swap(&released, &o.stalledProducers)
            // A publisher's loop in writev still reads the buffer and the descriptor: it frees and
            // closes them when it returns (so the number cannot be reused under it).
            let closing = o.write.close()
            if closing == .closeNow { o.buffer.removeAll() }
            return closing
        }
        if !released.isEmpty { Self.resume(released) }
        context.loop.deregister(fd: fd)
        if closing == .closeNow { IO.close(fd) }
        broker.connectionClosed(self, reason: closingReason)
        subscriptionsAtClose = []  // each holds this connection: keeping them would be a cycle
    }

    /// Sets the readiness this connection waits for. A failed epoll_ctl (ENOMEM) would leave it
    /// waiting for the wrong events, a paused publisher never read again or EPOLLOUT reported with
    /// nothing to write, so the error is logged and the connection closed with `reason`.
    /// Loop thread only.
    /// - Returns: false when the connection was closed.
    @discardableResult
    func setInterest(_ interest: Interest, orClose reason: CloseReason) -> Bool {
        do {
            try context.loop.setInterest(fd: fd, interest)
            return true
        } catch {
            broker.logger.error("\(logPrefix) - Event registration failed: \(error.description)")
            closeNow(reason)
            return false
        }
    }

    func cancelTimers() {
        if let stallTimer { _ = context.loop.cancel(stallTimer) }
        stallTimer = nil
        if let authTimer { _ = context.loop.cancel(authTimer) }
        if let pingTimer { _ = context.loop.cancel(pingTimer) }
        authTimer = nil
        pingTimer = nil
    }

    func removeAllSubscriptions() {
        guard !subscriptions.isEmpty else { return }
        let all = Array(subscriptions.values)
        out.withLock { _ in for sub in all { sub.removed = true } }
        account.mutate { trie in
            for sub in all { trie.remove(subject: sub.subject, queue: sub.queue, value: sub) }
        }
        subscriptions.removeAll()
        subscriptionsAtClose = all
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
        let limit = broker.options.maxTracedMessageLength
        if limit > 0 && payload.count > limit {
            // 2.9.10 quotes the first `limit` bytes, then keeps `limit` bytes of the quoted text.
            let quoted = Array(ServerError.goQuoted(String(decoding: payload.prefix(limit), as: UTF8.self)).utf8)
            let kept = String(decoding: quoted[1..<min(quoted.count, limit + 1)], as: UTF8.self)
            broker.logger.trace("\(logPrefix) - \"<<- MSG_PAYLOAD: [\"\(kept)...\"]\"")
            return
        }
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
                if jetStreamBacklogged {
                    jetStreamBacklogged = false
                    if waitForJetStream() { return }
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

    func handleParseError(_ error: ClientParseError) {
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
}
