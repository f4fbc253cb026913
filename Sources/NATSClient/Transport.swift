// The client's two threads: the reader (connects, handshakes, parses, reconnects) and the
// writer (sends coalesced outbound bytes, keep-alive PINGs, request and flush timeouts).

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import NATSProtocol
import NKeys
import Synchronization

extension NATSClient {
    // MARK: - Threads

    func startThreads() {
        let reader = Thread { [self] in self.readerMain() }
        reader.name = "nats-reader"
        reader.start()
        let writer = Thread { [self] in self.writerMain() }
        writer.name = "nats-writer"
        writer.start()
    }

    /// Reader thread: owns the socket's lifetime. Loops connect -> read -> lost -> reconnect.
    private func readerMain() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer {
            buffer.deallocate()
            threadExited()
        }
        readerExecutor.thread.store(UInt(pthread_self()), ordering: .relaxed)
        var initial = true
        while true {
            guard let connection = establish(initial: initial, buffer: buffer) else { return }
            initial = false
            var parser = connection.parser
            var handler = connection.handler
            let fd = connection.fd
            var lostError: NATSError?
            readerExecutor.loopStarted()
            while true {
                // Tasks on the reader executor run here, between reads; what they publish with
                // publishNow leaves in one send after them, as handlers' output does after a read.
                readerExecutor.runJobs()
                sendHandlerOutput()
                let count: Int
                switch readerExecutor.nextWait() {
                case .receive:
                    count = TCPSocket.receive(fd, into: buffer)
                case .poll:
                    guard readerExecutor.poll(fd) else { continue }
                    count = TCPSocket.receive(fd, into: buffer)
                case .pending:
                    let taken = TCPSocket.receiveNow(fd, into: buffer)
                    guard let taken else { continue }
                    count = taken
                }
                if count <= 0 {
                    lostError = count == 0
                        ? .connectionFailed("the server closed the connection")
                        : .connectionFailed("read failed: \(TCPSocket.errnoText())")
                    break
                }
                let result = parser.parse(UnsafeRawBufferPointer(rebasing: buffer[..<count]), into: &handler)
                handler.wakeConsumers()
                sendHandlerOutput()
                if case .error(let error) = result {
                    lostError = .protocolError("unparsable data from the server (\(error))")
                    break
                }
            }
            readerExecutor.loopEnded()
            if !connectionLost(fd: fd, error: lostError) { return }
        }
    }

    struct Established {
        var fd: Int32
        var parser: ServerParser
        var handler: InboundHandler
    }

    /// Connects to a server, trying the list with backoff. Reader thread only.
    /// Returns nil when the client closed or gave up (the client is then closed).
    private func establish(initial: Bool, buffer: UnsafeMutableRawBufferPointer) -> Established? {
        var attempts = 0
        var lastError: NATSError = .connectionFailed("no server could be reached")
        let retry = initial ? options.retryOnFailedConnect : options.allowReconnect
        while true {
            let serverCount = state.withLock { $0.servers.count }
            if !retry && attempts >= serverCount {
                shutdown(reason: lastError)
                return nil
            }
            if retry, let limit = options.maxReconnectAttempts, attempts >= max(limit, 1) {
                shutdown(reason: initial ? lastError : .reconnectFailed(attempts: attempts))
                return nil
            }
            if !initial || attempts >= serverCount {
                // Exponential backoff with jitter; close() interrupts the wait.
                let delay = backoffNanos(attempt: initial ? attempts - serverCount : attempts)
                _ = wakeReader.wait(timeout: .now() + .nanoseconds(Int(min(delay, UInt64(Int.max)))))
            }
            let target = state.withLock { s -> ServerAddress? in
                guard s.phase != .closed, !s.servers.isEmpty else { return nil }
                if !(initial && attempts == 0) { s.serverIndex = (s.serverIndex + 1) % s.servers.count }
                return s.servers[s.serverIndex]
            }
            guard let target else { return nil }
            attempts += 1
            do {
                let established = try handshake(with: target, buffer: buffer)
                return connectionReady(established, server: target, initial: initial) ? established : nil
            } catch {
                lastError = error
            }
        }
    }

    /// The wait before reconnect attempt `attempt` (0-based): doubling from `reconnectWait`, capped
    /// at `reconnectMaxWait` (and at one hour), plus up to `reconnectJitter` of itself.
    func backoffNanos(attempt: Int) -> UInt64 {
        let hour: UInt64 = 3_600_000_000_000
        let base = min(max(options.reconnectWait.nanoseconds, 1_000_000), hour)
        let cap = min(max(options.reconnectMaxWait.nanoseconds, base), hour)
        let shift = min(attempt, 30)
        let (scaled, overflow) = base.multipliedReportingOverflow(by: UInt64(1) << UInt64(shift))
        let delay = overflow ? cap : min(scaled, cap)
        let jitter = min(max(options.reconnectJitter, 0), 1)
        let extra = jitter > 0 ? UInt64(Double(delay) * Double.random(in: 0...jitter)) : 0
        return delay + extra
    }

    /// TCP connect, INFO, CONNECT+PING, PONG. Reader thread only.
    ///
    /// - Throws: connection errors, ``NATSError/timeout``, ``NATSError/authorizationViolation`` or
    ///   another server `-ERR`, ``NATSError/protocolError(_:)``, ``NATSError/invalidArgument(_:)`` when
    ///   the nkey cannot sign the nonce.
    private func handshake(with server: ServerAddress, buffer: UnsafeMutableRawBufferPointer) throws(NATSError) -> Established {
        let timeout = options.connectTimeout.nanoseconds
        let deadline = monotonicNanos() &+ timeout
        let fd = try TCPSocket.connect(host: server.host, port: server.port, timeoutNanos: timeout)
        TCPSocket.setSendTimeout(fd, nanoseconds: options.writeTimeout.nanoseconds)
        var parser = ServerParser()
        var handler = InboundHandler(client: self, fd: fd)
        func readUntil(_ done: (InboundHandler) -> Bool) throws(NATSError) {
            while !done(handler) {
                if let error = handler.handshakeError { throw error }
                guard TCPSocket.waitReadable(fd, deadline: deadline) else { throw .timeout }
                let count = TCPSocket.receive(fd, into: buffer)
                if count <= 0 {
                    if let error = handler.handshakeError { throw error }
                    throw .connectionFailed("\(server.hostPort) closed the connection during the handshake")
                }
                let result = parser.parse(UnsafeRawBufferPointer(rebasing: buffer[..<count]), into: &handler)
                if case .error(let error) = result {
                    throw .protocolError("\(server.hostPort) sent unparsable data (\(error))")
                }
            }
            if let error = handler.handshakeError { throw error }
        }
        do throws(NATSError) {
            try readUntil { $0.info != nil }
            guard let info = handler.info else { throw .protocolError("no INFO") }
            let user = options.user ?? server.user
            let password = options.password ?? server.password
            let token = options.token ?? server.token
            var connect = ConnectInfo(
                verbose: options.verbose, pedantic: options.pedantic, name: options.name, echo: options.echo,
                headers: info.headers, no_responders: options.noResponders && info.headers,
                user: user, pass: user == nil ? nil : (password ?? ""), auth_token: token)
            if let nkeyPair {
                // As nats.go: the nonce's characters are signed (an empty one when INFO has none).
                let signature: [UInt8]
                do {
                    signature = try nkeyPair.sign(Array((info.nonce ?? "").utf8))
                } catch {
                    throw .invalidArgument("cannot sign the server's nonce: \(error)")
                }
                connect.nkey = nkeyPair.publicKey.encoded
                connect.sig = Base64.urlEncoded(signature)
            }
            var bytes: [UInt8] = []
            connect.encoded().withUnsafeBytes { Encoder.connect(&bytes, json: $0) }
            bytes.append(contentsOf: pingBytes)
            let sent = bytes.withUnsafeBytes { TCPSocket.sendAll(fd, $0) }
            guard sent else { throw .connectionFailed("\(server.hostPort): write failed during the handshake") }
            try readUntil { $0.handshakeDone }
        } catch {
            TCPSocket.close(fd)
            throw error
        }
        handler.handshaking = false
        return Established(fd: fd, parser: parser, handler: handler)
    }

    /// Installs a handshaken socket: replays subscriptions, moves buffered bytes behind them,
    /// wakes the writer. Returns false (and closes the socket) if the client closed meanwhile.
    private func connectionReady(_ connection: Established, server: ServerAddress, initial: Bool) -> Bool {
        let now = monotonicNanos()
        let info = connection.handler.info
        var signal = false
        let outcome = state.withLock { s -> (Bool, CheckedContinuation<Void, any Error>?) in
            guard s.phase != .closed else { return (false, nil) }
            var prefix = s.resubscribeBytes()
            let continuation = s.initialConnect
            s.initialConnect = nil
            if !initial {
                // The resubscribe PING goes before anything still queued from before the loss.
                prefix.append(contentsOf: pingBytes)
                let shift = UInt64(prefix.count)
                var queue = FIFO<ClientState.PongWaiter>()
                queue.append(.init(purpose: .resubscribed(server: server.hostPort), position: s.takenTotal &+ shift))
                for var entry in s.pongQueue.removeAll() {
                    entry.position &+= shift
                    queue.append(entry)
                }
                s.pongQueue = queue
                s.statistics.reconnects += 1
            }
            prefix.append(contentsOf: s.outbound)
            s.appendedTotal &+= UInt64(prefix.count - s.outbound.count)
            s.outbound = prefix
            s.fd = connection.fd
            s.confirmedPosition = s.takenTotal
            s.server = server
            s.info = info
            s.phase = .connected
            s.bufferedMessages = 0
            s.pingsOutstanding = 0
            s.nextPingAt = now &+ options.pingInterval.nanoseconds
            signal = s.wakeForOutput() || s.wakeForTimer(s.nextPingAt)
            return (true, continuation)
        }
        if !outcome.0 {
            TCPSocket.close(connection.fd)
            return false
        }
        if signal { wakeWriter.signal() }
        outcome.1?.resume()
        if initial { emit(.connected(server: server.hostPort)) }
        // The handshake INFO may already list cluster peers or lame duck mode.
        if let info, !info.connectURLs.isEmpty || info.lameDuckMode { serverInfoChanged(info) }
        return true
    }

    /// Handles a lost socket. Reader thread only. Returns true to reconnect.
    private func connectionLost(fd: Int32, error: NATSError?) -> Bool {
        var failed: [CheckedContinuation<Void, any Error>] = []
        var resumed: [CheckedContinuation<Void, Never>] = []
        var closeNow = true
        let phase = state.withLock { s -> ClientState.Phase in
            if s.isPinned(fd) {
                s.closeAfterWriter = fd
                closeNow = false
            }
            s.fd = -1
            s.server = nil
            guard s.phase != .closed else { return .closed }
            // PINGs that reached the socket will never be answered; those still queued will be sent
            // later. If bytes went out that the server never confirmed, they may be lost: no flush
            // still waiting may then succeed (its PING stays queued, answered as a keep-alive).
            let unconfirmed = s.takenTotal > s.confirmedPosition
            var kept = FIFO<ClientState.PongWaiter>()
            for var entry in s.pongQueue.removeAll() {
                if case .flush(let id) = entry.purpose, entry.position <= s.takenTotal || unconfirmed {
                    if let waiter = s.flushWaiters.removeValue(forKey: id) { failed.append(waiter) }
                    entry.purpose = .keepAlive
                }
                if entry.position > s.takenTotal { kept.append(entry) }
            }
            s.pongQueue = kept
            s.pingsOutstanding = 0
            s.nextPingAt = .max
            resumed = s.backpressure
            s.backpressure = []
            s.phase = .reconnecting
            return s.phase
        }
        if closeNow { TCPSocket.close(fd) }
        for waiter in failed { waiter.resume(throwing: NATSError.disconnected) }
        for waiter in resumed { waiter.resume() }
        if phase == .closed {
            return false
        }
        emit(.disconnected(error))
        if !options.allowReconnect {
            shutdown(reason: error ?? .connectionFailed("the connection was lost"))
            return false
        }
        return true
    }

    // MARK: - Writer

    private enum WriterStep {
        case send(Int32, [CheckedContinuation<Void, Never>])
        case shutdown(Int32, exit: Bool)
        case park(UInt64)
        case exit
    }

    /// Writer thread: sends everything queued with one `send` per batch, runs timers.
    private func writerMain() {
        defer { threadExited() }
        var batch: [UInt8] = []
        batch.reserveCapacity(64 * 1024)
        while true {
            let now = monotonicNanos()
            var expiredRequests: [CheckedContinuation<Message, any Error>] = []
            var expiredFlushes: [CheckedContinuation<Void, any Error>] = []
            let step = state.withLock { s -> WriterStep in
                while let kind = s.timers.popExpired(now: now) {
                    switch kind {
                    case .request(let token):
                        if let request = s.requests.removeValue(forKey: token) { expiredRequests.append(request.continuation) }
                    case .flush(let id):
                        if let waiter = s.flushWaiters.removeValue(forKey: id) { expiredFlushes.append(waiter) }
                    }
                }
                if s.timers.count > 1024 && s.timers.count > 4 * (s.requests.count + s.flushWaiters.count) {
                    let requests = s.requests, flushes = s.flushWaiters
                    s.timers.compact { kind in
                        switch kind {
                        case .request(let token): return requests[token] != nil
                        case .flush(let id): return flushes[id] != nil
                        }
                    }
                }
                if s.phase == .connected && now >= s.nextPingAt {
                    s.nextPingAt = now &+ options.pingInterval.nanoseconds
                    if s.pingsOutstanding >= options.maxPingsOutstanding {
                        s.writerPinnedFD = s.fd
                        return .shutdown(s.fd, exit: false)
                    }
                    s.queuePing(.keepAlive)
                    s.pingsOutstanding += 1
                }
                if s.fd >= 0 && (s.phase == .connected || s.phase == .closed) && !s.outbound.isEmpty && s.directPinnedFD == -1 {
                    swap(&s.outbound, &batch)
                    s.takenTotal &+= UInt64(batch.count)
                    s.writerPinnedFD = s.fd
                    let waiters = s.backpressure
                    s.backpressure = []
                    return .send(s.fd, waiters)
                }
                if s.phase == .closed && s.directPinnedFD == -1 {
                    if s.fd >= 0 {
                        s.writerPinnedFD = s.fd
                        return .shutdown(s.fd, exit: true)
                    }
                    return .exit
                }
                var until = s.timers.earliest ?? .max
                if s.phase == .connected { until = min(until, s.nextPingAt) }
                s.writerParked = true
                s.writerParkedUntil = until
                return .park(until)
            }
            for waiter in expiredRequests { waiter.resume(throwing: NATSError.timeout) }
            for waiter in expiredFlushes { waiter.resume(throwing: NATSError.timeout) }
            switch step {
            case .send(let fd, let waiters):
                for waiter in waiters { waiter.resume() }
                let ok = batch.withUnsafeBytes { TCPSocket.sendAll(fd, $0) }
                if batch.capacity > 16 * 1024 * 1024 {
                    batch = []
                    batch.reserveCapacity(64 * 1024)
                } else {
                    batch.removeAll(keepingCapacity: true)
                }
                // A failed send: make the reader notice (it owns reconnecting).
                if !ok { TCPSocket.shutdown(fd) }
                unpin(fd)
            case .shutdown(let fd, let exit):
                TCPSocket.shutdown(fd)
                unpin(fd)
                if exit { return }
            case .park(let until):
                if until == .max {
                    wakeWriter.wait()
                } else {
                    let now = monotonicNanos()
                    if until > now {
                        // At most a minute per wait: the loop re-plans anyway, and DispatchTime stays far from overflow.
                        _ = wakeWriter.wait(timeout: .now() + .nanoseconds(Int(min(until - now, 60_000_000_000))))
                    }
                }
                state.withLock { $0.writerParked = false }
            case .exit:
                return
            }
        }
    }

    /// Sends what subscription handlers published during the last read, on the reader thread when
    /// the writer is parked and nobody else is sending, else by waking the writer. Reader thread only.
    private func sendHandlerOutput() {
        let (direct, signal) = state.withLock { s -> ((Int32, [UInt8])?, Bool) in
            guard s.handlerOutput else { return (nil, false) }
            s.handlerOutput = false
            guard s.writerParked, !s.outbound.isEmpty else { return (nil, false) }
            if let taken = s.takeDirectSend() { return (taken, false) }
            s.writerParked = false
            return (nil, true)
        }
        if let (fd, bytes) = direct { sendDirect(fd, bytes) }
        if signal { wakeWriter.signal() }
    }

    private func unpin(_ fd: Int32) {
        let closeIt = state.withLock { s -> Bool in
            s.writerPinnedFD = -1
            if s.closeAfterWriter == fd && !s.isPinned(fd) {
                s.closeAfterWriter = -1
                return true
            }
            return false
        }
        if closeIt { TCPSocket.close(fd) }
    }

    /// Sends bytes taken with `takeDirectSend` without blocking; whatever the socket does not
    /// take at once goes back to the front of the outbound buffer for the writer. Any task.
    func sendDirect(_ fd: Int32, _ bytes: [UInt8]) {
        let sent = bytes.withUnsafeBytes { TCPSocket.sendNow(fd, $0) }
        let failed = sent < 0
        if failed { TCPSocket.shutdown(fd) }
        let (signal, closeIt) = state.withLock { s -> (Bool, Bool) in
            s.directPinnedFD = -1
            if !failed && sent < bytes.count && s.fd == fd {
                s.outbound.insert(contentsOf: bytes[sent...], at: 0)
                s.takenTotal &-= UInt64(bytes.count - sent)
            }
            var closeIt = false
            if s.closeAfterWriter == fd && !s.isPinned(fd) {
                s.closeAfterWriter = -1
                closeIt = true
            }
            let signal = !s.outbound.isEmpty || s.phase == .closed
            if signal { s.writerParked = false }
            return (signal, closeIt)
        }
        if closeIt { TCPSocket.close(fd) }
        if signal { wakeWriter.signal() }
    }

    private func threadExited() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.threadsRunning -= 1
            guard s.threadsRunning == 0 else { return [] }
            let waiters = s.exitWaiters
            s.exitWaiters = []
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
