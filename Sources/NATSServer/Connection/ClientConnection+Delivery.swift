// ClientConnection, delivery: routing a publish to the matching subscriptions, encoding it into
// each receiver's outbound buffer, and the fast-producer stall of 2.9.10.

import EventLoop
import Glibc
import NATSProtocol
import Synchronization

extension ClientConnection {
    /// Delivers one published message to every plain subscription and one member per queue group.
    /// Publisher's loop thread only.
    func route(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        let result = context.match(subject, in: accountReference)
        if result.isEmpty {
            // 2.9.10's sublist matches nothing for a subject with an empty token (`foo..x`, `.foo`),
            // and such a publish gets no 503 either. The trie never matches one, so only an empty
            // result needs the scan.
            guard Self.hasNoEmptyToken(subject) else { return }
            if !reply.isEmpty && options.noResponders { sendNoResponders(reply: reply) }
            return
        }
        if !deliverMatches(result, subject: subject, reply: reply, headers: headers, payload: payload)
            && !reply.isEmpty && options.noResponders
        {
            sendNoResponders(reply: reply)
        }
    }

    /// Delivers a message that an import route carried into `account`. Publisher's loop thread.
    /// - Returns: whether some subscriber took it.
    func routeImported(in account: Account, subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        let result = context.match(subject, in: account)
        if result.isEmpty { return false }
        return deliverMatches(result, subject: subject, reply: reply, headers: headers, payload: payload)
    }

    /// Delivers to every plain subscription of `result` and one member of each queue group.
    /// - Returns: whether any subscriber took it.
    @inline(__always)
    func deliverMatches(_ result: MatchResult<Subscription>, subject: UnsafeRawBufferPointer,
                        reply: UnsafeRawBufferPointer, headers: UnsafeRawBufferPointer,
                        payload: UnsafeRawBufferPointer) -> Bool {
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
        return delivered
    }

    /// `emptyReplyField`: see ``MessageFrame/emptyReplyField``.
    @inline(__always)
    func deliver(_ sub: Subscription, subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                 headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                 emptyReplyField: Bool = false) -> Bool {
        if let sink = sub.sink {
            if let route = sub.importRoute {
                if context.deliveringStreamImport { return false }
                return forward(route, subject: subject, reply: reply, headers: headers, payload: payload)
            }
            if !sink.receive(subject: subject, reply: reply, headers: headers, payload: payload) {
                jetStreamBacklogged = true
            }
            return true
        }
        let receiver = sub.client
        if receiver === self && !options.echo { return false }
        if let check = sub.deliveryGuard, !check.admit(subject: subject, reply: reply) { return false }
        return receiver.enqueueMessage(sub, subject: subject, reply: reply, headers: headers,
                                       payload: payload, publisher: context, producer: self,
                                       emptyReplyField: emptyReplyField)
    }

    /// Encodes a message for this (receiving) connection into its outbound buffer. Called on the
    /// publisher's loop thread; `publisher` is that loop's context.
    /// - Returns: false when nothing was queued (closed, unsubscribed, over its limit, slow consumer).
    @inline(__always)
    func enqueueMessage(_ sub: Subscription, subject: UnsafeRawBufferPointer,
                        reply: UnsafeRawBufferPointer, headers: UnsafeRawBufferPointer,
                        payload: UnsafeRawBufferPointer, publisher: LoopContext,
                        producer: ClientConnection, emptyReplyField: Bool = false) -> Bool {
        let frame = MessageFrame(subject: subject, sid: sub.sidBytes, reply: reply, headers: headers,
                                 payload: payload, scratch: publisher.scratch, scratchCapacity: publisher.scratchCapacity,
                                 emptyReplyField: emptyReplyField)
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
            guard o.write.requestFlush() else {
                return EnqueueResult(outcome: .queued, bytes: body, requestRemoval: requestRemoval, stallPending: pending)
            }
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
            scheduleFlush(on: publisher)
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
    func pauseReading(for receiver: ClientConnection, pending: Int) -> Bool {
        if readPaused { return true }
        let maxPending = receiver.maxPending
        let registered = receiver.out.withLock { o -> Bool in
            if o.closed || o.buffer.pendingBytes <= maxPending / 2 { return false }
            o.stalledProducers.append(self)
            return true
        }
        guard registered else { return false }
        readPaused = true
        guard setInterest(waitingForWritable ? .writable : [], orClose: .readError) else { return true }
        let ttl = Self.stallDuration(pending: pending, maxPending: maxPending)
        stallTimer = context.loop.schedule(after: ttl) { [self] in
            stallTimer = nil
            if readPaused { broker.logger.debug("\(logPrefix) - Timed out of fast producer stall (\(goDuration(ttl)))") }
            resumeReading()
        }
        return true
    }

    /// Reads again after a stall. Loop thread only.
    func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        if let stallTimer { _ = context.loop.cancel(stallTimer) }
        stallTimer = nil
        guard state == .open else { return }
        setInterest(waitingForWritable ? [.readable, .writable] : .readable, orClose: .readError)
    }

    /// Resumes stalled publishers, each on its own loop. Any loop thread.
    static func resume(_ producers: [ClientConnection]) {
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
    func sendNoResponders(reply: UnsafeRawBufferPointer) {
        let result = account.match(reply)
        guard let sub = result.plain.first(where: { $0.client === self }) else { return }
        appendControl { buffer in
            buffer.append(ascii: "HMSG ")
            buffer.append(reply)
            buffer.append(byte: 0x20)
            sub.sid.withUnsafeBytes { buffer.append($0) }
            buffer.append(ascii: " 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")
        }
    }
}
