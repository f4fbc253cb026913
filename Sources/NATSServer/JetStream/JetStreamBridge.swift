// JetStreamBridge: the JetStream engine inside the broker. The engine runs on a loop thread of its
// own (it writes to disk, which the message loops must never wait for); publishers hand it copies
// of what they publish on captured subjects, and what it sends is routed like any publish.

import CSystem
import EventLoop
import Glibc
import JetStream
import NATSProtocol
import Synchronization

/// JetStream in the broker: captures subjects for the engine, feeds it on its own thread, performs
/// the actions it returns and runs its timers.
///
/// Threads: ``receive(subject:reply:headers:payload:)`` and ``park(_:)`` run on any publisher's loop
/// thread and touch only the `inbox` Mutex. Everything else (`engine`, `captures`, `timer`) is
/// confined to `loop`'s thread after ``start()``; the `@unchecked Sendable` rests on that.
final class JetStreamBridge: InternalSink, @unchecked Sendable {
    /// Messages waiting for the engine, with their size and the publishers paused until it drains.
    private struct Inbox {
        var messages: [InboundMessage] = []
        var bytes = 0
        var parked: [ClientConnection] = []
    }

    /// Above this many queued bytes, a publisher's reads pause until the engine catches up (the
    /// inbox is bounded, like 2.9.10's, which stores on the publisher's own goroutine).
    static let highWater = 8 << 20
    /// Parked publishers resume once the queue is below this.
    static let lowWater = 2 << 20

    let loop: EventLoop
    /// The engine's deliveries use this context's scratch space, match cache and flush batching.
    let context: LoopContext
    /// The client every capture belongs to (never registered with a socket).
    let system: ClientConnection
    let options: JetStreamOptions
    private let engine: JetStreamEngine
    private unowned(unsafe) let broker: Broker
    private let inbox = Mutex(Inbox())
    private var captures: [String: (subscription: Subscription, count: Int)] = [:]
    private var nextSid = 0
    private var timer: TimerID?
    private var timerDeadline: Int64 = .max
    private var thread: pthread_t?

    /// Creates the engine's loop and the engine (nothing is read from disk until ``start()``).
    /// - Throws: ``ServerStartError/eventLoops(_:)`` when the loop cannot be created.
    init(broker: Broker, options: JetStreamOptions) throws(ServerStartError) {
        do {
            loop = try EventLoop(name: "jetstream")
        } catch {
            throw .eventLoops(error.description)
        }
        self.broker = broker
        self.options = options
        context = LoopContext(loop: loop, index: -1, broker: broker)
        system = ClientConnection(cid: 0, fd: -1, peer: PeerAddress(ip: "127.0.0.1", port: 0), context: context,
                                  broker: broker)
        let consumers = ConsumerManager(
            hasInterest: { [unowned(unsafe) broker] subject in Self.hasInterest(broker: broker, subject: subject) },
            pushBound: { [unowned(unsafe) broker] subject, group in
                Self.isBound(broker: broker, subject: subject, group: group)
            })
        engine = JetStreamEngine(options: options, consumers: consumers)
    }

    /// Recovers the stores, captures the engine's subjects and starts the loop thread. Before any
    /// client connects.
    /// - Throws: ``ServerStartError/jetStream(_:)`` naming the file or directory at fault.
    func start() throws(ServerStartError) {
        let actions: [EngineAction]
        do {
            actions = try engine.start(now: wallClockNanoseconds())
        } catch {
            throw .jetStream("\(error)")
        }
        context.installHooks()
        perform(actions)
        thread = spawnThread(name: "jetstream") { [loop] in loop.run() }
        loop.execute { [self] in rearmTimer() }
    }

    /// Writes the engine's state and stops its loop. After every client is closed.
    func shutdown() {
        guard let thread else { return }
        self.thread = nil
        loop.execute { [self] in
            drain()
            engine.shutdown()
            loop.stop()
        }
        pthread_join(thread, nil)
    }

    /// The figures for /varz, /jsz and /metrics, read on the engine's loop. Not on that loop.
    var statistics: JetStreamStatistics { query { $0.statistics() } }

    // MARK: Publishers' side

    func receive(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                 headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        let message = InboundMessage(subject: String(decoding: subject, as: UTF8.self),
                                     reply: String(decoding: reply, as: UTF8.self),
                                     headers: Array(headers), payload: Array(payload))
        let size = subject.count + reply.count + headers.count + payload.count + 64
        let (wake, room) = inbox.withLock { box -> (Bool, Bool) in
            box.messages.append(message)
            box.bytes += size
            return (box.messages.count == 1, box.bytes <= Self.highWater)
        }
        if wake { loop.execute { [self] in drain() } }
        return room
    }

    /// Registers `producer` to be resumed once the inbox drains, if it is still over the low
    /// mark. Producer's loop thread.
    /// - Returns: true when the producer must stop reading now.
    func park(_ producer: ClientConnection) -> Bool {
        inbox.withLock { box in
            guard box.bytes > Self.lowWater else { return false }
            box.parked.append(producer)
            return true
        }
    }

    // MARK: The engine's loop

    private func drain() {
        var batch: [InboundMessage] = []
        // Everything queued now is this batch, so its size is what the queue held.
        let batchBytes = inbox.withLock { box -> Int in
            swap(&batch, &box.messages)
            return box.bytes
        }
        for message in batch {
            perform(engine.handle(message, now: wallClockNanoseconds()), apiReply: Self.apiReply(to: message))
        }
        let resumed = inbox.withLock { box -> [ClientConnection] in
            box.bytes -= batchBytes
            guard box.bytes <= Self.lowWater, !box.parked.isEmpty else { return [] }
            let all = box.parked
            box.parked.removeAll()
            return all
        }
        if !resumed.isEmpty { ClientConnection.resume(resumed) }
        // Deliveries to the engine's own subjects are not publishers to pause.
        system.jetStreamBacklogged = false
        system.stalledOn = nil
        rearmTimer()
    }

    private func tick() {
        timer = nil
        timerDeadline = .max
        perform(engine.tick(now: wallClockNanoseconds()))
        rearmTimer()
    }

    /// Keeps one timer, for the engine's earliest deadline.
    private func rearmTimer() {
        guard let deadline = engine.nextDeadline else {
            if let timer { _ = loop.cancel(timer) }
            timer = nil
            timerDeadline = .max
            return
        }
        if timer != nil && deadline >= timerDeadline { return }
        if let timer { _ = loop.cancel(timer) }
        let delay = max(0, deadline - wallClockNanoseconds())
        timerDeadline = deadline
        timer = loop.schedule(after: .nanoseconds(delay)) { [self] in tick() }
    }

    // MARK: Actions

    /// The reply subject of an API request whose answer 2.9.10 routes back through the account's
    /// import of `$JS.API.>`, which drops the empty reply field; nil for everything else (a pull
    /// request's deliveries and statuses, Direct Get answers, PubAcks), which 2.9.10 sends from a
    /// stream's queue with an empty reply field, written as two spaces in the MSG line.
    static func apiReply(to message: InboundMessage) -> String? {
        let subject = message.subject
        guard !message.reply.isEmpty, subject.hasPrefix("$JS.API."),
              !subject.hasPrefix("$JS.API.CONSUMER.MSG.NEXT."), !subject.hasPrefix("$JS.API.DIRECT.GET.")
        else { return nil }
        return message.reply
    }

    fileprivate func perform(_ actions: [EngineAction], apiReply: String? = nil) {
        for action in actions {
            switch action {
            case .send(let subject, let display, let reply, let headers, let payload):
                send(subject: subject, display: display ?? subject, reply: reply, headers: headers, payload: payload,
                     emptyReplyField: reply.isEmpty && subject != apiReply)
            case .capture(let subject):
                capture(subject)
            case .release(let subject):
                release(subject)
            }
        }
    }

    private func capture(_ subject: String) {
        if let existing = captures[subject] {
            captures[subject] = (existing.subscription, existing.count + 1)
            return
        }
        nextSid += 1
        let subscription = Subscription(subject: Array(subject.utf8), queue: nil, sid: Array("\(nextSid)".utf8),
                                        client: system, sink: self)
        let inserted = broker.mutateSubscriptions { trie in
            trie.insert(subject: subscription.subject, queue: nil, value: subscription)
        }
        guard inserted else {
            broker.logger.error("JetStream could not capture subject \"\(subject)\"")
            return
        }
        captures[subject] = (subscription, 1)
    }

    private func release(_ subject: String) {
        guard let existing = captures[subject] else { return }
        if existing.count > 1 {
            captures[subject] = (existing.subscription, existing.count - 1)
            return
        }
        captures[subject] = nil
        system.out.withLock { _ in existing.subscription.removed = true }
        broker.mutateSubscriptions { trie in
            _ = trie.remove(subject: existing.subscription.subject, queue: nil, value: existing.subscription)
        }
    }

    /// Routes one message of the engine: matched on `subject`, shown as `display` in the MSG line.
    private func send(subject: String, display: String, reply: String, headers: [UInt8], payload: [UInt8],
                      emptyReplyField: Bool) {
        var subject = subject
        var display = display
        var reply = reply
        subject.withUTF8 { subjectBytes in
            display.withUTF8 { displayBytes in
                reply.withUTF8 { replyBytes in
                    headers.withUnsafeBytes { headerBytes in
                        payload.withUnsafeBytes { payloadBytes in
                            route(match: UnsafeRawBufferPointer(subjectBytes), display: UnsafeRawBufferPointer(displayBytes),
                                  reply: UnsafeRawBufferPointer(replyBytes), headers: headerBytes, payload: payloadBytes,
                                  emptyReplyField: emptyReplyField)
                        }
                    }
                }
            }
        }
    }

    private func route(match subject: UnsafeRawBufferPointer, display: UnsafeRawBufferPointer,
                       reply: UnsafeRawBufferPointer, headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                       emptyReplyField: Bool) {
        deliver(context.match(subject), match: subject, display: display, reply: reply, headers: headers,
                payload: payload, emptyReplyField: emptyReplyField)
    }

    /// Delivers to the subscriptions of `result` (one member per queue group). A stream import
    /// route given a message shown under another subject (a push delivery) hands it to the
    /// importing account's clients subscribed to `subject` as mapped there, still shown as
    /// `display` (2.9.10's shadow subscriptions); no further import. Other routes forward as usual.
    private func deliver(_ result: MatchResult<Subscription>, match subject: UnsafeRawBufferPointer,
                         display: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                         headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                         emptyReplyField: Bool, imported: Bool = false) {
        for sub in result.plain {
            if imported && sub.importRoute != nil { continue }
            if let route = sub.importRoute, case .stream(let target, let from, let to) = route.kind,
               !subject.elementsEqual(display)
            {
                let mapped = SubjectMapping.map(Array(subject), from: from, to: to)
                mapped.withUnsafeBytes { m in
                    deliver(target.match(m), match: m, display: display, reply: reply, headers: headers,
                            payload: payload, emptyReplyField: emptyReplyField, imported: true)
                }
                continue
            }
            if imported && sub.sink != nil { continue }
            _ = system.deliver(sub, subject: display, reply: reply, headers: headers, payload: payload,
                               emptyReplyField: emptyReplyField)
        }
        for group in result.queues where !group.isEmpty {
            let count = group.count
            let start = count == 1 ? 0 : context.random(below: count)
            for i in 0..<count {
                let index = (start + i) % count
                if system.deliver(group[index], subject: display, reply: reply, headers: headers, payload: payload,
                                  emptyReplyField: emptyReplyField) {
                    break
                }
            }
        }
    }

    /// Whether a client (not JetStream itself) subscribes to something matching `subject`; a
    /// client of an account importing it as a stream counts, as 2.9.10's shadow subscriptions do.
    private static func hasInterest(broker: Broker, subject: String) -> Bool {
        let bytes = Array(subject.utf8)
        let result = bytes.withUnsafeBytes { broker.matchSubscriptions($0) }
        return result.plain.contains { $0.sink == nil || importedInterest($0, subject: bytes, exact: false) }
            || result.queues.contains { !$0.isEmpty }
    }

    /// Whether `sub` is a stream import route whose importing account has a client subscription
    /// matching `subject` as mapped there (of exactly that subject when `exact`).
    private static func importedInterest(_ sub: Subscription, subject: [UInt8], exact: Bool) -> Bool {
        guard let route = sub.importRoute, case .stream(let target, let from, let to) = route.kind else { return false }
        let mapped = SubjectMapping.map(subject, from: from, to: to)
        let result = mapped.withUnsafeBytes { target.match($0) }
        if exact { return result.plain.contains { $0.sink == nil && $0.subject == mapped } }
        return result.plain.contains { $0.sink == nil } || result.queues.contains { !$0.isEmpty }
    }

    /// Whether a client subscribes to exactly `subject` (a wildcard covering it does not count),
    /// with a queue subscription of `group` when one is given: 2.9.10's test for a push consumer.
    private static func isBound(broker: Broker, subject: String, group: String) -> Bool {
        let bytes = Array(subject.utf8)
        let result = bytes.withUnsafeBytes { broker.matchSubscriptions($0) }
        if group.isEmpty {
            return result.plain.contains { ($0.sink == nil && $0.subject == bytes) || importedInterest($0, subject: bytes, exact: true) }
        }
        let queue = Array(group.utf8)
        return result.queues.contains { members in members.contains { $0.subject == bytes && $0.queue == queue } }
    }
}

extension ClientConnection {
    /// Stops reading from this publisher when JetStream's inbox is still over its limit; the
    /// bridge resumes it once the engine has caught up. Loop thread only.
    /// - Returns: true when reads were paused.
    func waitForJetStream() -> Bool {
        if readPaused { return true }
        guard let bridge = broker.jetStream, bridge.park(self) else { return false }
        readPaused = true
        setInterest(waitingForWritable ? .writable : [], orClose: .readError)
        return true
    }
}

extension JetStreamBridge {
    /// The ConsumerInfo objects of `stream`'s consumers (for /jsz). Not on the engine's loop.
    func consumerInfos(stream: String) -> [[UInt8]] {
        query { [self] engine in
            let (infos, actions) = engine.consumerInfos(stream: stream, now: wallClockNanoseconds())
            perform(actions)
            return infos
        }
    }

    /// Runs `body` with the engine on its loop and returns its result; the caller's thread waits.
    /// Not on the engine's loop; for monitoring requests.
    func query<T: Sendable>(_ body: @escaping @Sendable (JetStreamEngine) -> T) -> T {
        let box = QueryBox<T>()
        loop.execute { [self] in box.put(body(engine)) }
        return box.take()
    }
}

/// One result handed from the engine's loop to a waiting thread.
private final class QueryBox<T: Sendable>: @unchecked Sendable {
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    private let value = Mutex<T?>(nil)

    init() { sem_init(semaphore, 0, 0) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func put(_ result: T) {
        value.withLock { $0 = result }
        sem_post(semaphore)
    }

    func take() -> T {
        while sem_wait(semaphore) != 0 && errno == EINTR {}
        return value.withLock { $0! }
    }
}
