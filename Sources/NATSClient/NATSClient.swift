// The public client: connect, publish, subscribe, request, flush, drain, close.

import Dispatch
import Foundation
import NATSProtocol
import NKeys
import Synchronization

/// An async/await NATS client.
///
/// One client holds one TCP connection at a time, served by a reader thread and a writer thread.
/// Publishes are appended to an outbound buffer and sent in batches; when the connection drops,
/// the client reconnects with exponential backoff and jitter, re-subscribes (keeping queue groups
/// and auto-unsubscribe limits) and sends what was published meanwhile (bounded by
/// ``Options/reconnectBufferSize``).
///
/// ```swift
/// let client = try await NATSClient.connect(.init(url: "nats://127.0.0.1:4222"))
/// let sub = try await client.subscribe("greet.*")
/// try await client.publish(Array("hello".utf8), subject: "greet.joe")
/// let reply = try await client.request(Array("hi".utf8), subject: "service.echo")
/// try await client.drain()
/// ```
///
/// Always end a client with ``close()`` or ``drain(timeout:)``: its threads keep it alive until then.
public final class NATSClient: Sendable {
    /// The options the client was created with.
    public let options: Options
    let state: Mutex<ClientState>
    /// Wakes the parked writer thread.
    let wakeWriter = DispatchSemaphore(value: 0)
    /// Interrupts the reader thread's reconnect backoff (on close).
    let wakeReader = DispatchSemaphore(value: 0)
    let requestTokens = Atomic<UInt64>(1)
    /// Runs tasks on this client's reader thread between reads: tasks that await this client's
    /// requests or subscriptions from there are resumed without a thread wake-up. See ``ReaderExecutor``.
    public let readerExecutor = ReaderExecutor()
    /// The nkey that signs the server's nonce in CONNECT (``Options/nkeySeed`` or its file).
    let nkeyPair: NKeyPair?

    private init(options: Options, servers: [ServerAddress], nkeyPair: NKeyPair? = nil) {
        self.options = options
        self.nkeyPair = nkeyPair
        var initial = ClientState()
        initial.servers = servers
        initial.threadsRunning = 2
        self.state = Mutex(initial)
        readerExecutor.kick.withLock { $0 = { [weak self] in self?.sendWakePing() } }
    }

    /// Sends a PING whose PONG brings a reader blocked in `recv` round to polling for executor jobs.
    func sendWakePing() {
        let outcome = state.withLock { s -> (Bool, (Int32, [UInt8])?) in
            guard s.phase == .connected else { return (false, nil) }
            s.queuePing(.wake)
            guard s.wakeForOutput() else { return (false, nil) }
            if let taken = s.takeDirectSend() {
                s.writerParked = true
                return (false, taken)
            }
            return (true, nil)
        }
        if let (fd, bytes) = outcome.1 { sendDirect(fd, bytes) }
        if outcome.0 { wakeWriter.signal() }
    }

    /// A client that never connects (its threads are not started): for testing pure helpers.
    static func forTesting(_ options: Options) -> NATSClient {
        NATSClient(options: options, servers: [])
    }

    // MARK: - Connecting

    /// Connects to the first reachable server of `options.servers` and completes the handshake.
    ///
    /// - Parameter options: servers, credentials and policies.
    /// - Returns: a connected client.
    /// - Throws: ``NATSError/invalidURL(_:)`` for a bad server URL or option,
    ///   ``NATSError/invalidArgument(_:)`` for a bad option (an nkey seed that is not one included),
    ///   ``NATSError/connectionRefused(host:port:)``, ``NATSError/connectionFailed(_:)``,
    ///   ``NATSError/timeout`` (``Options/connectTimeout``), ``NATSError/authorizationViolation``,
    ///   ``NATSError/serverError(_:)``, or ``NATSError/reconnectFailed(attempts:)`` with
    ///   ``Options/retryOnFailedConnect``. With several servers, the error of the last one tried.
    public static func connect(_ options: Options) async throws(NATSError) -> NATSClient {
        var servers: [ServerAddress] = []
        for url in options.servers { servers.append(try ServerAddress(parsing: url)) }
        if servers.isEmpty { throw .invalidURL("no server URL given") }
        if options.maxPingsOutstanding < 1 { throw .invalidArgument("maxPingsOutstanding must be at least 1") }
        if options.writeBufferLimit < 1024 { throw .invalidArgument("writeBufferLimit must be at least 1024 bytes") }
        if options.reconnectBufferSize < 0 { throw .invalidArgument("reconnectBufferSize must not be negative") }
        if options.pingInterval.nanoseconds < 1_000_000 { throw .invalidArgument("pingInterval must be at least 1 ms") }
        try validatePublishSubject(options.inboxPrefix, what: "inbox prefix")
        guard options.reconnectJitter.isFinite, (0...1).contains(options.reconnectJitter) else {
            throw .invalidArgument("reconnectJitter must be between 0 and 1")
        }
        let nkeyPair = try options.nkeyPair()
        let client = NATSClient(options: options, servers: servers, nkeyPair: nkeyPair)
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                client.state.withLock { $0.initialConnect = continuation }
                client.startThreads()
            }
        } catch {
            throw NATSError.from(error)
        }
        return client
    }

    /// Connects to one server URL with default options.
    ///
    /// - Throws: as ``connect(_:)``.
    public static func connect(_ url: String) async throws(NATSError) -> NATSClient {
        try await connect(Options(url: url))
    }

    // MARK: - State

    /// Whether the client has a live connection right now.
    public var isConnected: Bool { state.withLock { $0.phase == .connected } }

    /// Whether the client is closed for good.
    public var isClosed: Bool { state.withLock { $0.phase == .closed } }

    /// The INFO of the server currently (or last) connected.
    public var serverInfo: ServerInfo? { state.withLock { $0.info } }

    /// `host:port` of the server currently connected, if any.
    public var connectedServer: String? { state.withLock { $0.server?.hostPort } }

    /// Every known server as `host:port`, configured ones first, then discovered ones.
    public var knownServers: [String] { state.withLock { $0.servers.map(\.hostPort) } }

    /// Traffic counters since the client was created.
    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// A new stream of connection events from now on; it ends when the client closes.
    ///
    /// Each access creates an independent stream that keeps the newest 1024 undelivered events.
    public var events: AsyncStream<Event> {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
        let id = state.withLock { s -> UInt64? in
            guard s.phase != .closed else { return nil }
            s.nextListenerID += 1
            s.listeners[s.nextListenerID] = continuation
            return s.nextListenerID
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    /// Delivers an event to every listener. Never called with the state locked.
    func emit(_ event: Event) {
        let listeners = state.withLock { Array($0.listeners.values) }
        for listener in listeners { listener.yield(event) }
    }

    // MARK: - Publishing

    /// Publishes `payload` to `subject`.
    ///
    /// Returns once the message is queued for the socket, not when the server has it: call
    /// ``flush(timeout:)`` for that. Suspends while more than ``Options/writeBufferLimit`` bytes
    /// wait for the socket. While disconnected, messages are kept for the reconnect up to
    /// ``Options/reconnectBufferSize``.
    /// - Parameters:
    ///   - payload: the message body.
    ///   - subject: a subject without wildcards.
    ///   - reply: an optional reply subject for the receiver.
    ///   - headers: optional headers (sent with HPUB).
    /// - Throws: ``NATSError/invalidArgument(_:)`` for a bad subject, ``NATSError/maxPayloadExceeded(size:limit:)``,
    ///   ``NATSError/reconnectBufferExceeded(limit:)`` while disconnected, ``NATSError/closed``.
    public func publish(_ payload: [UInt8], subject: String, reply: String? = nil, headers: Headers? = nil) async throws(NATSError) {
        try await publish(payload, subject: subject, reply: reply, headers: headers, urgent: false)
    }

    /// `urgent`: send on the caller's task when the writer is idle (replies), saving a wake-up.
    func publish(_ payload: [UInt8], subject: String, reply: String?, headers: Headers?, urgent: Bool) async throws(NATSError) {
        try Self.validatePublishSubject(subject)
        if let reply { try Self.validatePublishSubject(reply, what: "reply subject") }
        let headerBytes = headers?.serialized()
        while true {
            let outcome = state.withLock { s -> AppendOutcome in
                let outcome = appendPublish(&s, subject: subject, reply: reply, headers: headerBytes, payload: payload, mayWait: true)
                if urgent, case .queuedSignal = outcome, let (fd, bytes) = s.takeDirectSend() {
                    s.writerParked = true
                    return .direct(fd, bytes)
                }
                return outcome
            }
            switch outcome {
            case .direct(let fd, let bytes):
                sendDirect(fd, bytes)
                return
            case .queued: return
            case .queuedSignal:
                wakeWriter.signal()
                return
            case .failed(let error): throw error
            case .mustWait: await waitForRoom()
            }
        }
    }

    /// Publishes `payload` to `subject` without suspending: for subscription handlers
    /// (``subscribe(_:queue:handler:)``) and other synchronous code.
    ///
    /// The message is queued as ``publish(_:subject:reply:headers:)`` queues it, but this call never
    /// waits for room: while connected it queues past ``Options/writeBufferLimit``. Called from a
    /// subscription handler, what it queues is sent by the reader thread itself once it has handled
    /// the current socket read, in one send with the other handlers' output; called from elsewhere,
    /// it sends on the calling thread when the writer thread is idle.
    /// - Parameters:
    ///   - payload: the message body.
    ///   - subject: a subject without wildcards.
    ///   - reply: an optional reply subject for the receiver.
    ///   - headers: optional headers (sent with HPUB).
    /// - Throws: ``NATSError/invalidArgument(_:)`` for a bad subject, ``NATSError/maxPayloadExceeded(size:limit:)``,
    ///   ``NATSError/reconnectBufferExceeded(limit:)`` while disconnected, ``NATSError/closed``.
    public func publishNow(_ payload: [UInt8], subject: String, reply: String? = nil, headers: Headers? = nil) throws(NATSError) {
        try Self.validatePublishSubject(subject)
        if let reply { try Self.validatePublishSubject(reply, what: "reply subject") }
        let headerBytes = headers?.serialized()
        let onReader = readerExecutor.onReaderThread
        let outcome = state.withLock { s -> AppendOutcome in
            let outcome = appendPublish(&s, subject: subject, reply: reply, headers: headerBytes, payload: payload, mayWait: false)
            guard case .queuedSignal = outcome else { return outcome }
            if onReader {
                // The writer stays parked: the reader sends after this read.
                s.writerParked = true
                s.handlerOutput = true
                return .queued
            }
            if let (fd, bytes) = s.takeDirectSend() {
                s.writerParked = true
                return .direct(fd, bytes)
            }
            return outcome
        }
        switch outcome {
        case .direct(let fd, let bytes): sendDirect(fd, bytes)
        case .queued, .mustWait: return
        case .queuedSignal: wakeWriter.signal()
        case .failed(let error): throw error
        }
    }

    /// Publishes the UTF-8 bytes of `text`.
    ///
    /// - Throws: as ``publish(_:subject:reply:headers:)``.
    public func publish(_ text: String, subject: String, reply: String? = nil, headers: Headers? = nil) async throws(NATSError) {
        try await publish(Array(text.utf8), subject: subject, reply: reply, headers: headers)
    }

    /// Publishes the bytes of `data`.
    ///
    /// - Throws: as ``publish(_:subject:reply:headers:)``.
    public func publish(_ data: Data, subject: String, reply: String? = nil, headers: Headers? = nil) async throws(NATSError) {
        try await publish([UInt8](data), subject: subject, reply: reply, headers: headers)
    }

    /// Publishes `value` encoded as JSON.
    ///
    /// - Throws: ``NATSError/json(_:)`` if it cannot be encoded, and the errors of ``publish(_:subject:reply:headers:)``.
    public func publish<T: Encodable>(json value: T, subject: String, reply: String? = nil, headers: Headers? = nil) async throws(NATSError) {
        try await publish(try JSONPayload.encode(value), subject: subject, reply: reply, headers: headers)
    }

    enum AppendOutcome {
        case direct(Int32, [UInt8])
        case queued
        case queuedSignal
        case mustWait
        case failed(NATSError)
    }

    /// Encodes a PUB/HPUB into the outbound buffer if the phase and limits allow. Caller holds `state`.
    func appendPublish(_ s: inout ClientState, subject: String, reply: String?, headers: [UInt8]?,
                       payload: [UInt8], mayWait: Bool) -> AppendOutcome {
        let size = payload.count + (headers?.count ?? 0)
        let frame = size + subject.utf8.count + (reply?.utf8.count ?? 0) + 32
        switch s.phase {
        case .closed:
            return .failed(.closed)
        case .connected:
            if mayWait && s.outbound.count >= options.writeBufferLimit { return .mustWait }
        case .connecting, .reconnecting:
            if s.outbound.count + frame > options.reconnectBufferSize {
                return .failed(.reconnectBufferExceeded(limit: options.reconnectBufferSize))
            }
        }
        if let info = s.info {
            if size > info.maxPayload { return .failed(.maxPayloadExceeded(size: size, limit: info.maxPayload)) }
            if headers != nil && !info.headers {
                return .failed(.invalidArgument("the server does not support headers (INFO headers:false)"))
            }
        }
        let before = s.outbound.count
        if let headers {
            Encoder.hpub(&s.outbound, subject: subject, reply: reply, headers: headers, payload: payload)
        } else {
            Encoder.pub(&s.outbound, subject: subject, reply: reply, payload: payload)
        }
        s.appendedTotal &+= UInt64(s.outbound.count - before)
        s.statistics.outMessages &+= 1
        s.statistics.outBytes &+= UInt64(size)
        if s.phase != .connected { s.bufferedMessages += 1 }
        return s.wakeForOutput() ? .queuedSignal : .queued
    }

    /// Suspends until the writer took the outbound buffer (or the connection changed).
    private func waitForRoom() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { s -> Bool in
                guard s.phase == .connected, s.outbound.count >= options.writeBufferLimit else { return false }
                s.backpressure.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
    }

    /// Sends a PING and waits for its PONG: afterwards the server has processed everything this
    /// client sent before the call.
    ///
    /// While reconnecting the PING waits in the reconnect buffer and is answered after the reconnect.
    /// - Throws: ``NATSError/timeout``, ``NATSError/disconnected`` if the connection dropped after
    ///   the PING was sent (earlier messages may be lost), ``NATSError/closed``, ``NATSError/cancelled``.
    public func flush(timeout: Duration = .seconds(10)) async throws(NATSError) {
        let deadline = monotonicNanos() &+ timeout.nanoseconds
        let id = requestTokens.wrappingAdd(1, ordering: .relaxed).oldValue
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let outcome = state.withLock { s -> (NATSError?, Bool, (Int32, [UInt8])?) in
                        guard s.phase != .closed else { return (.closed, false, nil) }
                        if Task.isCancelled { return (.cancelled, false, nil) }
                        s.queuePing(.flush(id: id))
                        s.flushWaiters[id] = continuation
                        s.timers.push(deadline, .flush(id))
                        var output = s.wakeForOutput()
                        var direct: (Int32, [UInt8])?
                        if output, let taken = s.takeDirectSend() {
                            s.writerParked = true
                            direct = taken
                            output = false
                        }
                        return (nil, s.wakeForTimer(deadline) || output, direct)
                    }
                    if let error = outcome.0 { continuation.resume(throwing: error) }
                    if let (fd, bytes) = outcome.2 { sendDirect(fd, bytes) }
                    if outcome.1 { wakeWriter.signal() }
                }
            } onCancel: {
                let waiter = state.withLock { $0.flushWaiters.removeValue(forKey: id) }
                waiter?.resume(throwing: NATSError.cancelled)
            }
        } catch {
            throw NATSError.from(error)
        }
    }

    // MARK: - Subscribing

    /// Subscribes to `subject`, optionally as a member of queue group `queue`.
    ///
    /// Messages arriving before you iterate are buffered up to ``Options/pendingMessageLimit`` and
    /// ``Options/pendingByteLimit`` (change them per subscription with ``Subscription/pendingLimits``).
    /// The server may still refuse the subscription (permissions): iteration then throws.
    /// - Throws: ``NATSError/invalidArgument(_:)`` for a bad subject or queue name, ``NATSError/closed``.
    public func subscribe(_ subject: String, queue: String? = nil) async throws(NATSError) -> Subscription {
        try makeSubscription(subject, queue: queue, handler: nil)
    }

    /// Subscribes to `subject` (optionally in queue group `queue`) with a handler that gets every
    /// message as soon as it is read, without a buffer or a task switch in between.
    ///
    /// The handler runs on the client's reader thread, one message at a time and in order; while it
    /// runs, the client reads nothing else, for any subscription or request. So it must return
    /// quickly and must not block (no locks held for long, no waiting on other tasks, no blocking
    /// I/O): hand long work to a task. To answer or publish from it, use ``Message/respondNow(_:headers:)``
    /// and ``publishNow(_:subject:reply:headers:)``, which never suspend; what they queue during one
    /// socket read goes out in one send once the read is handled.
    ///
    /// The returned subscription unsubscribes, drains and counts as any other. Once it has ended the
    /// handler is not called again (a call already under way finishes). Iterating it yields no
    /// messages; it ends when the subscription ends, or throws if the server refused it.
    /// ```swift
    /// let sub = try await client.subscribe("service.echo") { message in
    ///     try? message.respondNow(message.payload)
    /// }
    /// ```
    /// - Throws: ``NATSError/invalidArgument(_:)`` for a bad subject or queue name, ``NATSError/closed``.
    @discardableResult
    public func subscribe(_ subject: String, queue: String? = nil,
                          handler: @escaping @Sendable (Message) -> Void) async throws(NATSError) -> Subscription {
        try makeSubscription(subject, queue: queue, handler: handler)
    }

    /// - Throws: ``NATSError/invalidArgument(_:)``, ``NATSError/closed``.
    private func makeSubscription(_ subject: String, queue: String?,
                                  handler: (@Sendable (Message) -> Void)?) throws(NATSError) -> Subscription {
        var subjectCopy = subject
        guard subjectCopy.withUTF8({ Subject.isValid(UnsafeRawBufferPointer($0)) }) else {
            throw .invalidArgument("\"\(subject)\" is not a valid subject")
        }
        if var queueCopy = queue {
            guard queueCopy.withUTF8({ Subject.isValidQueue(UnsafeRawBufferPointer($0)) }) else {
                throw .invalidArgument("\"\(queueCopy)\" is not a valid queue group name")
            }
        }
        let limits = Subscription.PendingLimits(messages: options.pendingMessageLimit, bytes: options.pendingByteLimit)
        let outcome = state.withLock { s -> (Subscription?, Bool) in
            guard s.phase != .closed else { return (nil, false) }
            let sid = s.nextSid
            s.nextSid += 1
            let subscription = Subscription(subject: subject, queue: queue, sid: sid, client: self, limits: limits,
                                            handler: handler)
            s.subscriptions[sid] = ClientState.SubscriptionRecord(subscription: subscription, subject: subject, queue: queue)
            guard s.phase == .connected else { return (subscription, false) }
            let before = s.outbound.count
            Encoder.sub(&s.outbound, subject: subject, queue: queue, sid: sid)
            s.appendedTotal &+= UInt64(s.outbound.count - before)
            return (subscription, s.wakeForOutput())
        }
        guard let subscription = outcome.0 else { throw .closed }
        if outcome.1 { wakeWriter.signal() }
        return subscription
    }

    /// Removes interest now (`after == nil`) or after `after` messages in total. Any caller.
    func unsubscribe(sid: UInt64, after: Int?) {
        let outcome = state.withLock { s -> (Subscription?, Bool) in
            guard let record = s.subscriptions[sid] else { return (nil, false) }
            let connected = s.phase == .connected
            let before = s.outbound.count
            if let after, record.received < after {
                record.max = after
                if connected { Encoder.unsub(&s.outbound, sid: sid, max: after - record.baseline) }
                s.appendedTotal &+= UInt64(s.outbound.count - before)
                return (nil, connected && s.wakeForOutput())
            }
            s.subscriptions.removeValue(forKey: sid)
            if connected { Encoder.unsub(&s.outbound, sid: sid) }
            s.appendedTotal &+= UInt64(s.outbound.count - before)
            return (record.subscription, connected && s.wakeForOutput())
        }
        if outcome.1 { wakeWriter.signal() }
        outcome.0?.finish()
    }

    /// - Throws: ``NATSError/closed``, ``NATSError/timeout``, ``NATSError/disconnected``.
    func drainSubscription(sid: UInt64, timeout: Duration) async throws(NATSError) {
        let signal = state.withLock { s -> Bool in
            guard s.subscriptions[sid] != nil else { return false }
            s.subscriptions[sid]?.draining = true
            guard s.phase == .connected else { return false }
            let before = s.outbound.count
            Encoder.unsub(&s.outbound, sid: sid)
            s.appendedTotal &+= UInt64(s.outbound.count - before)
            return s.wakeForOutput()
        }
        if signal { wakeWriter.signal() }
        defer {
            let record = state.withLock { $0.subscriptions.removeValue(forKey: sid) }
            record?.subscription.finish()
        }
        try await flush(timeout: timeout)
    }

    // MARK: - Requests

    /// Publishes a request and waits for the first reply.
    ///
    /// All requests share one wildcard subscription `<inboxPrefix>.<random>.*`; each request
    /// gets its own token. A timeout or cancellation abandons only this wait.
    /// - Parameters:
    ///   - payload: the request body.
    ///   - subject: the subject responders listen on.
    ///   - headers: optional headers.
    ///   - timeout: how long to wait for the reply.
    /// - Returns: the reply message.
    /// - Throws: ``NATSError/noResponders(subject:)`` at once when nobody listens (status 503),
    ///   ``NATSError/timeout``, ``NATSError/invalidArgument(_:)``, ``NATSError/maxPayloadExceeded(size:limit:)``,
    ///   ``NATSError/reconnectBufferExceeded(limit:)``, ``NATSError/closed``, ``NATSError/cancelled``.
    public func request(_ payload: [UInt8], subject: String, headers: Headers? = nil,
                        timeout: Duration = .seconds(5)) async throws(NATSError) -> Message {
        try Self.validatePublishSubject(subject)
        let headerBytes = headers?.serialized()
        let token = requestTokens.wrappingAdd(1, ordering: .relaxed).oldValue
        let deadline = monotonicNanos() &+ timeout.nanoseconds
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message, any Error>) in
                    let outcome = state.withLock { s -> (NATSError?, Bool, (Int32, [UInt8])?) in
                        if Task.isCancelled { return (.cancelled, false, nil) }
                        guard s.phase != .closed else { return (.closed, false, nil) }
                        if s.muxSid == 0 {
                            s.muxSid = s.nextSid
                            s.nextSid += 1
                            s.muxPrefix = Array("\(options.inboxPrefix).\(NUID.next()).".utf8)
                            if s.phase == .connected {
                                let before = s.outbound.count
                                Encoder.sub(&s.outbound, subject: String(decoding: s.muxPrefix, as: UTF8.self) + "*", sid: s.muxSid)
                                s.appendedTotal &+= UInt64(s.outbound.count - before)
                            }
                        }
                        var reply = s.muxPrefix
                        reply.append(decimal: token)
                        let replySubject = String(decoding: reply, as: UTF8.self)
                        let appended = appendPublish(&s, subject: subject, reply: replySubject, headers: headerBytes,
                                                     payload: payload, mayWait: false)
                        var signal: Bool
                        switch appended {
                        case .failed(let error): return (error, false, nil)
                        case .queuedSignal: signal = true
                        case .queued, .mustWait, .direct: signal = false
                        }
                        s.requests[token] = ClientState.PendingRequest(continuation: continuation, subject: subject)
                        s.timers.push(deadline, .request(token))
                        var direct: (Int32, [UInt8])?
                        if signal, let taken = s.takeDirectSend() {
                            // The writer stays parked: re-arm it for the new deadline only if needed.
                            s.writerParked = true
                            direct = taken
                            signal = false
                        }
                        return (nil, s.wakeForTimer(deadline) || signal, direct)
                    }
                    if let error = outcome.0 { continuation.resume(throwing: error) }
                    if let (fd, bytes) = outcome.2 { sendDirect(fd, bytes) }
                    if outcome.1 { wakeWriter.signal() }
                }
            } onCancel: {
                let request = state.withLock { $0.requests.removeValue(forKey: token) }
                request?.continuation.resume(throwing: NATSError.cancelled)
            }
        } catch {
            throw NATSError.from(error)
        }
    }

    /// Sends the UTF-8 bytes of `text` as a request.
    ///
    /// - Throws: as ``request(_:subject:headers:timeout:)``.
    public func request(_ text: String, subject: String, headers: Headers? = nil,
                        timeout: Duration = .seconds(5)) async throws(NATSError) -> Message {
        try await request(Array(text.utf8), subject: subject, headers: headers, timeout: timeout)
    }

    /// Sends `value` as a JSON request and decodes the JSON reply as `Response`.
    ///
    /// - Throws: ``NATSError/json(_:)`` when encoding or decoding fails, and the errors of
    ///   ``request(_:subject:headers:timeout:)``.
    public func request<Request: Encodable, Response: Decodable>(
        json value: Request, subject: String, as type: Response.Type = Response.self,
        headers: Headers? = nil, timeout: Duration = .seconds(5)
    ) async throws(NATSError) -> Response {
        let reply = try await request(try JSONPayload.encode(value), subject: subject, headers: headers, timeout: timeout)
        return try reply.decode(Response.self)
    }

    // MARK: - Lifecycle

    /// Unsubscribes every subscription, waits for messages in flight, lets the consumers take
    /// what is buffered, flushes publishes and closes.
    ///
    /// - Parameter timeout: the bound on the whole drain; ``Options/drainTimeout`` when nil.
    /// - Throws: ``NATSError/timeout`` if it did not finish in time (the client is closed anyway),
    ///   ``NATSError/closed`` if it was already closed.
    public func drain(timeout: Duration? = nil) async throws(NATSError) {
        let limit = (timeout ?? options.drainTimeout).nanoseconds
        let deadline = monotonicNanos() &+ limit
        let signal = state.withLock { s -> Bool? in
            guard s.phase != .closed else { return nil }
            let before = s.outbound.count
            for sid in s.subscriptions.keys.sorted() {
                s.subscriptions[sid]?.draining = true
                if s.phase == .connected { Encoder.unsub(&s.outbound, sid: sid) }
            }
            s.appendedTotal &+= UInt64(s.outbound.count - before)
            return s.wakeForOutput()
        }
        guard let signal else { throw .closed }
        if signal { wakeWriter.signal() }
        var failure: NATSError?
        do {
            try await flush(timeout: .nanoseconds(Int(min(limit, UInt64(Int.max)))))
        } catch {
            failure = error
        }
        let subscriptions = state.withLock { s -> [Subscription] in
            let subs = s.subscriptions.values.map(\.subscription)
            s.subscriptions.removeAll()
            return subs
        }
        for subscription in subscriptions { subscription.finish() }
        // Let consumers take what is buffered (deadline-bounded).
        while failure == nil && subscriptions.contains(where: { !$0.isFinishedAndEmpty }) {
            if monotonicNanos() >= deadline {
                failure = .timeout
                break
            }
            try? await Task.sleep(for: .milliseconds(2))
        }
        if failure == nil {
            let left = deadline > monotonicNanos() ? deadline - monotonicNanos() : 0
            do {
                try await flush(timeout: .nanoseconds(Int(min(max(left, 1_000_000), UInt64(Int.max)))))
            } catch {
                failure = error
            }
        }
        await close()
        if let failure { throw failure }
    }

    /// Closes the connection: queued bytes are still sent, waiting requests and flushes fail with
    /// ``NATSError/closed``, subscriptions end after their buffered messages. Returns once both
    /// client threads have stopped. Calling it again does nothing.
    public func close() async {
        shutdown(reason: nil)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { s -> Bool in
                guard s.threadsRunning > 0 else { return false }
                s.exitWaiters.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
    }

    /// Moves to `.closed` and fails everything waiting. Any thread; never blocks.
    func shutdown(reason: NATSError?) {
        struct Leftovers {
            var subscriptions: [Subscription] = []
            var requests: [CheckedContinuation<Message, any Error>] = []
            var flushes: [CheckedContinuation<Void, any Error>] = []
            var backpressure: [CheckedContinuation<Void, Never>] = []
            var initial: CheckedContinuation<Void, any Error>?
            var listeners: [AsyncStream<Event>.Continuation] = []
            var discarded: (Int, Int)?
        }
        let leftovers = state.withLock { s -> Leftovers? in
            guard s.phase != .closed else { return nil }
            var left = Leftovers()
            if s.phase != .connected && s.bufferedMessages > 0 {
                left.discarded = (s.bufferedMessages, s.outbound.count)
                s.outbound.removeAll()
            }
            s.phase = .closed
            s.closeError = reason
            left.subscriptions = s.subscriptions.values.map(\.subscription)
            s.subscriptions.removeAll()
            left.requests = s.requests.values.map(\.continuation)
            s.requests.removeAll()
            left.flushes = Array(s.flushWaiters.values)
            s.flushWaiters.removeAll()
            left.backpressure = s.backpressure
            s.backpressure = []
            left.initial = s.initialConnect
            s.initialConnect = nil
            left.listeners = Array(s.listeners.values)
            s.listeners.removeAll()
            s.writerParked = false
            return left
        }
        wakeWriter.signal()
        wakeReader.signal()
        guard let leftovers else { return }
        for subscription in leftovers.subscriptions { subscription.finish() }
        for request in leftovers.requests { request.resume(throwing: NATSError.closed) }
        for flush in leftovers.flushes { flush.resume(throwing: NATSError.closed) }
        for waiter in leftovers.backpressure { waiter.resume() }
        leftovers.initial?.resume(throwing: reason ?? .closed)
        for listener in leftovers.listeners {
            if let discarded = leftovers.discarded {
                listener.yield(.bufferedPublishesDiscarded(messages: discarded.0, bytes: discarded.1))
            }
            listener.yield(.closed(reason))
            listener.finish()
        }
    }

    // MARK: - Validation

    /// Publish subjects: non-empty tokens, no whitespace, no wildcard tokens.
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)``.
    static func validatePublishSubject(_ subject: String, what: String = "subject") throws(NATSError) {
        var copy = subject
        let valid = copy.withUTF8 { buffer -> Bool in
            let raw = UnsafeRawBufferPointer(buffer)
            guard !raw.isEmpty, Subject.isValidLiteral(raw) else { return false }
            for byte in raw where byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C {
                return false
            }
            return true
        }
        if !valid { throw .invalidArgument("\"\(subject)\" is not a valid publish \(what) (empty token, wildcard or whitespace)") }
    }
}
