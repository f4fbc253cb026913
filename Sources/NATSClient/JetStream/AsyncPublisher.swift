// Publishing with acks without waiting for each one: one reply subscription per publisher, a
// window of outstanding acks, and futures the acks resolve.

import Synchronization

/// Publishes without waiting for each ack, keeping at most `maxPending` acks outstanding.
///
/// ```swift
/// let publisher = try await js.asyncPublisher(maxPending: 256)
/// for index in 0..<10_000 { _ = try await publisher.publish("events.\(index)", payload: body) }
/// let failures = await publisher.waitForAll()
/// ```
/// All acks come back on one wildcard inbox. A reader task runs only while acks are outstanding
/// (it ends when the last one arrives or times out), so an idle publisher costs nothing; releasing
/// the publisher unsubscribes its inbox.
public final class AsyncPublisher: Sendable {
    let context: JetStreamContext
    /// The most publishes awaiting their ack at once.
    public let maxPending: Int
    let inbox: String
    let subscription: Subscription
    private let state = Mutex(State())

    struct Outstanding {
        let future: PubAckFuture
        let subject: String
        let deadline: UInt64
    }

    struct State {
        var nextToken: UInt64 = 1
        var outstanding: [UInt64: Outstanding] = [:]
        var failures = 0
        var readerRunning = false
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    init(context: JetStreamContext, maxPending: Int, inbox: String, subscription: Subscription) {
        self.context = context
        self.maxPending = maxPending
        self.inbox = inbox
        self.subscription = subscription
    }

    deinit {
        context.client.unsubscribe(sid: subscription.sid, after: nil)
    }

    /// Publishes awaiting their ack right now.
    public var pending: Int { state.withLock { $0.outstanding.count } }

    /// Publishes whose ack was an error or never came, since the publisher was created.
    public var failedCount: Int { state.withLock { $0.failures } }

    /// Sends a publish and returns at once with a handle to its ack; suspends first while
    /// ``maxPending`` acks are outstanding.
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for bad options or subject (nothing was
    ///   sent), ``JetStreamError/cancelled`` if the task was cancelled while waiting for room.
    ///   Failures after sending (an API error, no stream, no ack in time, the connection lost)
    ///   surface through the returned future.
    public func publish(_ subject: String, payload: [UInt8], headers: Headers? = nil,
                        options: PublishOptions = PublishOptions()) async throws(JetStreamError) -> PubAckFuture {
        let merged = try options.merged(into: headers)
        do {
            try NATSClient.validatePublishSubject(subject)
        } catch {
            throw .invalidArgument("\(error)")
        }
        let future = PubAckFuture()
        let deadline = monotonicNanos() &+ context.timeout.nanoseconds
        var token: UInt64 = 0
        var startReader = false
        while true {
            if Task.isCancelled { throw .cancelled }
            let admitted = state.withLock { s -> Bool in
                guard s.outstanding.count < maxPending else { return false }
                token = s.nextToken
                s.nextToken += 1
                s.outstanding[token] = Outstanding(future: future, subject: subject, deadline: deadline)
                if !s.readerRunning {
                    s.readerRunning = true
                    startReader = true
                }
                return true
            }
            if admitted { break }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let wait = state.withLock { s -> Bool in
                    guard s.outstanding.count >= maxPending else { return false }
                    s.roomWaiters.append(continuation)
                    return true
                }
                if !wait { continuation.resume() }
            }
        }
        if startReader {
            Task { await self.readAcks() }
        }
        do {
            try await context.client.publish(payload, subject: subject, reply: "\(inbox).\(token)", headers: merged)
        } catch {
            complete(token, with: .failure(JetStreamError.from(error, subject: subject)))
        }
        return future
    }

    /// Resolves the future of `token` and frees its slot in the window.
    private func complete(_ token: UInt64, with result: Result<PubAck, JetStreamError>) {
        let outcome = state.withLock { s -> (Outstanding, [CheckedContinuation<Void, Never>])? in
            guard let entry = s.outstanding.removeValue(forKey: token) else { return nil }
            if case .failure = result { s.failures += 1 }
            var wake: [CheckedContinuation<Void, Never>] = []
            if !s.roomWaiters.isEmpty { wake.append(s.roomWaiters.removeFirst()) }
            if s.outstanding.isEmpty {
                wake.append(contentsOf: s.idleWaiters)
                s.idleWaiters = []
            }
            return (entry, wake)
        }
        guard let (entry, wake) = outcome else { return }
        entry.future.resolve(result)
        for waiter in wake { waiter.resume() }
    }

    /// Takes acks from the inbox until none is outstanding; fails those past their deadline.
    private func readAcks() async {
        let prefixCount = inbox.utf8.count + 1
        var nextExpiryScan = monotonicNanos() &+ 100_000_000
        while true {
            let wait: SubscriptionWait
            do {
                wait = try await subscription.next(timeout: .milliseconds(100))
            } catch {
                wait = .ended
            }
            switch wait {
            case .message(let message):
                let tokenText = message.subject.utf8.dropFirst(prefixCount)
                guard let token = UInt64(String(decoding: tokenText, as: UTF8.self)) else { break }
                let subject = state.withLock { $0.outstanding[token]?.subject } ?? ""
                if message.status == 503 {
                    complete(token, with: .failure(.noResponders(subject: subject)))
                } else if let ack = PubAck(fastParsing: message.payload) {
                    complete(token, with: .success(ack))
                } else {
                    do {
                        complete(token, with: .success(try JetStreamContext.decodeAPI(message.payload, as: PubAck.self, subject: subject)))
                    } catch {
                        complete(token, with: .failure(error))
                    }
                }
            case .timedOut:
                break
            case .ended:
                let tokens = state.withLock { Array($0.outstanding.keys) }
                for token in tokens { complete(token, with: .failure(.client(.closed))) }
            }
            let now = monotonicNanos()
            if now >= nextExpiryScan {
                nextExpiryScan = now &+ 100_000_000
                let expired = state.withLock { s in s.outstanding.filter { $0.value.deadline <= now }.map(\.key) }
                for token in expired { complete(token, with: .failure(.timeout)) }
            }
            let done = state.withLock { s -> Bool in
                guard s.outstanding.isEmpty else { return false }
                s.readerRunning = false
                return true
            }
            if done { return }
        }
    }

    /// Waits until every publish sent so far has its ack (or failed).
    ///
    /// - Returns: ``failedCount`` at that point.
    @discardableResult
    public func waitForAll() async -> Int {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { s -> Bool in
                guard !s.outstanding.isEmpty else { return false }
                s.idleWaiters.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
        return failedCount
    }
}

/// The acknowledgement of an asynchronous publish, once it comes.
public final class PubAckFuture: Sendable {
    private let state = Mutex<(result: Result<PubAck, JetStreamError>?, waiters: [CheckedContinuation<Result<PubAck, JetStreamError>, Never>])>((nil, []))

    init() {}

    func resolve(_ result: Result<PubAck, JetStreamError>) {
        let waiters = state.withLock { s -> [CheckedContinuation<Result<PubAck, JetStreamError>, Never>] in
            guard s.result == nil else { return [] }
            s.result = result
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }

    /// The ack if it came already, else nil.
    public var result: Result<PubAck, JetStreamError>? { state.withLock { $0.result } }

    /// Waits for the ack (every publish gets one, an error, or a timeout after the context's timeout).
    ///
    /// - Throws: the errors of ``JetStreamContext/publish(_:payload:headers:options:timeout:)``.
    public func value() async throws(JetStreamError) -> PubAck {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<PubAck, JetStreamError>, Never>) in
            let ready = state.withLock { s -> Result<PubAck, JetStreamError>? in
                if let result = s.result { return result }
                s.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        return try result.get()
    }
}
