import Formats

/// The numbers an ack subject carries: `$JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<cseq>.<ts>.<pending>`.
struct AckSubject: Equatable {
    var stream: String
    var consumer: String
    var deliveries: UInt64
    var streamSequence: UInt64
    var deliverySequence: UInt64

    /// Parses a 9-token ack subject as 2.9.10's ackReplyInfo; a number that is not all digits
    /// reads as 2.9.10 reads it (-1, so a huge value that matches nothing).
    init?(_ subject: String) {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count == 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        func number(_ t: Substring) -> UInt64 {
            guard !t.isEmpty, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt64(t) else { return UInt64.max }
            return n
        }
        stream = String(tokens[2])
        consumer = String(tokens[3])
        deliveries = number(tokens[4])
        streamSequence = number(tokens[5])
        deliverySequence = number(tokens[6])
    }
}

extension Consumer {
    /// 2.9.10's processAck: `""`/`+ACK`/`+OK`, `+NXT [n|json]`, `-NAK [delay]`, `+WPI`, `+TERM`;
    /// an ack with a reply subject gets an empty message there (not `+NXT`, whose reply gets messages).
    func processAck(_ ack: AckSubject, reply: String, body: [UInt8], now: Int64) -> [EngineAction] {
        var out: [EngineAction] = []
        var skipReply = ack.streamSequence == 0
        let sseq = ack.streamSequence, dseq = ack.deliverySequence
        if body.isEmpty || body == Array("+ACK".utf8) || body == Array("+OK".utf8) {
            acknowledge(sseq, dseq, now: now, into: &out)
        } else if body.starts(with: "+NXT".utf8) {
            acknowledge(sseq, dseq, now: now, into: &out)
            out.append(contentsOf: nextRequest(reply: reply, body: Array(body.dropFirst(4)), now: now))
            skipReply = true
        } else if body.starts(with: "-NAK".utf8) {
            nak(sseq, dseq, argument: Array(body.dropFirst(4)), now: now, into: &out)
        } else if body == Array("+WPI".utf8) {
            if var p = pending[sseq] {
                p.timestamp = now
                pending[sseq] = p
                lastDelivered = now
                dirty = true
            }
        } else if body == Array("+TERM".utf8) {
            acknowledge(sseq, dseq, now: now, into: &out)
        }
        if !reply.isEmpty && !skipReply {
            out.append(.reply(reply, []))
        }
        deliver(now: now, into: &out)
        return out
    }

    /// 2.9.10's processAckMsg.
    func acknowledge(_ sseq: UInt64, _ dseqIn: UInt64, now: Int64, into out: inout [EngineAction]) {
        var dseq = dseqIn
        var gap: UInt64 = 0
        switch config.ackPolicy {
        case .explicit:
            if let p = pending.removeValue(forKey: sseq) {
                dseq = p.deliverySequence
            }
            if pending.isEmpty {
                ackFloorDelivery = deliverySequence - 1
                ackFloorStream = streamSequence - 1
            } else if dseq == ackFloorDelivery + 1 {
                ackFloorDelivery = dseq
                ackFloorStream = sseq
                if sseq < UInt64.max {
                    var ss = sseq + 1
                    while ss < streamSequence {
                        if let p = pending[ss] {
                            if p.deliverySequence > 0 {
                                ackFloorDelivery = p.deliverySequence - 1
                                ackFloorStream = ss - 1
                            }
                            break
                        }
                        ss += 1
                    }
                }
            }
            redelivered[sseq] = nil
            removeFromRedeliverQueue(sseq)
        case .all:
            if dseq <= ackFloorDelivery || sseq <= ackFloorStream { return }
            gap = sseq - ackFloorStream
            ackFloorDelivery = dseq
            ackFloorStream = sseq
            var seq = sseq
            while seq > sseq - gap {
                pending[seq] = nil
                redelivered[seq] = nil
                removeFromRedeliverQueue(seq)
                seq -= 1
            }
        case .none:
            return
        }
        lastAcked = now
        dirty = true
        if stream.config.retention != .limits {
            if gap > 1 {
                var seq = sseq
                while seq > sseq - gap { removeIfUnwanted(seq); seq -= 1 }
            } else {
                removeIfUnwanted(sseq)
            }
        }
    }

    /// 2.9.10's processNak: with a delay (ns as `{"delay":n}` or Go duration text) the message is
    /// sent again once the delay has passed; without one, at once.
    private func nak(_ sseq: UInt64, _ dseq: UInt64, argument: [UInt8], now: Int64, into out: inout [EngineAction]) {
        if dseq <= ackFloorDelivery || dseq > deliverySequence { return }
        if !pending.isEmpty && pending[sseq] == nil { return }
        let text = String(decoding: argument, as: UTF8.self).trimmingASCIIWhitespace()
        if !text.isEmpty {
            var delay: Int64?
            if text.hasPrefix("{") {
                if let doc = try? JSON.parse(text), let members = doc.members {
                    delay = 0
                    for m in members where JetStreamJSON.folded(m.key) == "delay" {
                        if case .int(let d) = m.value { delay = d } else if case .null = m.value {} else { delay = nil }
                    }
                }
            } else {
                delay = GoDuration.parse(text)
            }
            if let delay {
                removeFromRedeliverQueue(sseq)
                if var p = pending[sseq] {
                    p.timestamp = now - config.ackWait + delay
                    pending[sseq] = p
                    dirty = true
                    let soon = now + 10_000_000
                    pendingCheck = min(pendingCheck ?? soon, soon)
                }
                return
            }
        }
        if !redeliverSet.contains(sseq) { addToRedeliverQueue([sseq]) }
    }

    func addToRedeliverQueue(_ sequences: [UInt64]) {
        redeliverQueue.append(contentsOf: sequences)
        redeliverSet.formUnion(sequences)
    }

    func removeFromRedeliverQueue(_ sseq: UInt64) {
        guard redeliverSet.remove(sseq) != nil else { return }
        if let i = redeliverQueue.firstIndex(of: sseq) { redeliverQueue.remove(at: i) }
    }

    /// 2.9.10's checkPending: deliveries past ack_wait (or their backoff step) go on the
    /// redelivery queue, oldest first; returns when to look again.
    func checkPending(now: Int64, into out: inout [EngineAction]) {
        let firstSequence = stream.store.state.firstSequence
        let ttl = config.ackWait
        var next = ackWaitDelay(0)
        if let last = config.backoff.last { next = last }
        var expiredSequences: [UInt64] = []
        for (seq, p) in pending {
            if seq < firstSequence {
                pending[seq] = nil
                redelivered[seq] = nil
                removeFromRedeliverQueue(seq)
                dirty = true
                continue
            }
            let elapsed = now - p.timestamp
            var deadline = ttl
            if !config.backoff.isEmpty {
                var dc = Int(clamping: redelivered[seq] ?? 0)
                var nextIndex = dc + 1
                if dc + 1 >= config.backoff.count {
                    dc = config.backoff.count - 1
                    nextIndex = dc
                }
                deadline = config.backoff[dc]
                if config.backoff[nextIndex] < next { next = config.backoff[nextIndex] }
            }
            if elapsed >= deadline {
                if !redeliverSet.contains(seq) { expiredSequences.append(seq) }
            } else if deadline - elapsed < next {
                next = deadline - elapsed
            }
        }
        if !expiredSequences.isEmpty {
            expiredSequences.sort()
            addToRedeliverQueue(expiredSequences)
            let offset = now - (pending[expiredSequences[0]]?.timestamp ?? now)
            for seq in expiredSequences { pending[seq]?.timestamp += offset }
        }
        pendingCheck = pending.isEmpty ? nil : now + ackWaitDelay(next)
    }

    // MARK: Interest and work-queue retention

    /// 2.9.10's needAck: whether this consumer still owes an ack for `sseq` (stored under `subject`).
    func needsAck(_ sseq: UInt64, subject: String) -> Bool {
        if isFiltered && !config.selects(subject) { return false }
        switch config.ackPolicy {
        case .none, .all:
            return sseq > ackFloorStream
        case .explicit:
            guard sseq > ackFloorStream else { return false }
            return sseq >= streamSequence || pending[sseq] != nil
        }
    }

    /// Whether the filter narrows the stream (a filter equal to the stream's only subject does not).
    var isFiltered: Bool {
        if config.filterSubject.isEmpty { return false }
        if stream.config.subjects.count == 1 { return config.filterSubject != stream.config.subjects[0] }
        return true
    }

    /// 2.9.10's stream ackMsg: a work-queue stream drops an acknowledged message; an interest
    /// stream drops it once no other consumer still needs it.
    func removeIfUnwanted(_ sseq: UInt64) {
        let state = stream.store.state
        guard sseq >= state.firstSequence else { return }
        var remove = true
        if stream.config.retention == .interest {
            let subject = stream.store.subject(at: sseq) ?? ""
            remove = !(siblings?() ?? []).contains { $0 !== self && $0.needsAck(sseq, subject: subject) }
        }
        if remove { try? stream.store.remove(sseq) }
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        var bytes = Array(utf8)[...]
        while let b = bytes.first, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { bytes = bytes.dropFirst() }
        while let b = bytes.last, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
