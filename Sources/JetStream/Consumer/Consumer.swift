/// A delivered message not yet acknowledged: its delivery sequence and when it was (last) sent.
struct PendingDelivery: Equatable {
    var deliverySequence: UInt64
    var timestamp: Int64
}

/// One consumer's state machine (2.9.10's consumer, without its goroutines): events come in as
/// calls that take `now` (wall-clock ns) and give back the ``EngineAction``s to perform.
final class Consumer {
    let stream: StreamContext
    let name: String
    var config: ConsumerConfig
    /// Creation time (ns).
    let created: Int64
    let hasInterest: (String) -> Bool
    /// Whether a push consumer has its subscriber: (deliver subject, deliver group).
    let pushBound: (String, String) -> Bool

    // Sequences, as 2.9.10 names them.
    /// The next stream sequence to look at (`sseq`).
    var streamSequence: UInt64 = 1
    /// The next delivery sequence (`dseq`).
    var deliverySequence: UInt64 = 1
    /// Ack floor: delivery and stream sequence below which everything is acknowledged.
    var ackFloorDelivery: UInt64 = 0
    var ackFloorStream: UInt64 = 0
    /// Unacknowledged deliveries by stream sequence.
    var pending: [UInt64: PendingDelivery] = [:]
    /// Stream sequences waiting to be sent again, in order.
    var redeliverQueue: [UInt64] = []
    var redeliverSet: Set<UInt64> = []
    /// Redeliveries so far by stream sequence (`rdc`).
    var redelivered: [UInt64: UInt64] = [:]
    /// Deliver last per subject: the sequences still to send first, and where to go on after.
    var skipList: [UInt64] = []
    var skipResume: UInt64 = 0
    /// Cached num_pending (`npc`).
    var pendingCount: UInt64 = 0
    /// "$JS.ACK.<stream>.<consumer>.", the constant start of every ack reply subject.
    private lazy var ackReplyPrefix: [UInt8] = Array("$JS.ACK.\(stream.name).\(name).".utf8)

    // Pull.
    var waiting: PullQueue
    /// When pull requests next expire or owe a heartbeat.
    var waitingDeadline: Int64?

    // Push.
    /// Whether the deliver subject has interest (`active`).
    var active = true
    var nextHeartbeat: Int64?
    var nextInterestPoll: Int64?
    // Flow control (2.9.10: a window from 2 MiB up to 32 MiB, a request at half of it).
    var pendingBytes = 0
    var windowBytes = 0
    var windowLimit = 0
    var flowControlID = ""
    var flowControlSize = 0
    private var flowControlCounter: UInt64

    // Timers.
    /// When the ack-wait scan next runs (`ptmr`).
    var pendingCheck: Int64?
    /// When an inactive consumer is next checked for deletion (`dtmr`), and the threshold.
    var deleteCheck: Int64?
    var deleteThreshold: Int64 = 0

    // Replay original.
    var replaying = false
    var replayLastSequence: UInt64 = 0
    var lastReplayTime: Int64 = 0
    var held: (message: StoredMessage, dc: UInt64, subject: String, ackReply: String)?
    var heldUntil: Int64 = 0

    // rate_limit_bps: a token bucket of bytes (2.9.10's rate.Limiter, burst = max_msg_size or 1 MiB).
    var rateTokens: Double = -1
    var rateRefilled: Int64 = 0

    /// Last delivery and last ack (`ldt`, `lat`); 0 = never.
    var lastDelivered: Int64 = 0
    var lastAcked: Int64 = 0

    /// State changed since it was last written.
    var dirty = false
    var lastWrite: Int64 = 0
    var closed = false
    /// Set when this consumer should go (inactive ephemeral); the manager removes it.
    var expired = false
    /// The stream's consumers (interest retention asks them before removing a message).
    var siblings: (() -> [Consumer])?

    /// The advisory subject for max deliveries.
    var maxDeliveriesSubject: String { "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.\(stream.name).\(name)" }

    init(stream: StreamContext, name: String, config: ConsumerConfig, created: Int64, now: Int64,
         hasInterest: @escaping (String) -> Bool, pushBound: @escaping (String, String) -> Bool) {
        self.pushBound = pushBound
        self.stream = stream
        self.name = name
        self.config = config
        self.created = created
        self.hasInterest = hasInterest
        self.waiting = PullQueue(capacity: Int(clamping: config.maxWaiting), now: now)
        self.flowControlCounter = UInt64(truncatingIfNeeded: now) ^ UInt64(truncatingIfNeeded: name.hashValue)
        updateInactiveThreshold()
    }

    var isPush: Bool { config.isPush }
    var isPull: Bool { !config.isPush }

    // MARK: Start

    /// 2.9.10's selectStartingSeqNo for a new consumer.
    func selectStart() {
        let state = stream.store.state
        if config.optStartSequence == 0 {
            switch config.deliverPolicy {
            case .all:
                streamSequence = state.firstSequence
            case .last:
                streamSequence = state.lastSequence
                if !config.filterSubject.isEmpty {
                    streamSequence = stream.store.pending(filter: config.filterSubject, from: 1).last
                }
            case .lastPerSubject:
                let lasts = stream.store.lastSequences(filter: config.filterSubject)
                if !lasts.isEmpty {
                    skipList = lasts.values.sorted()
                    skipResume = state.lastSequence
                    streamSequence = skipList[0]
                } else {
                    streamSequence = state.lastSequence
                }
            case .byStartTime:
                streamSequence = stream.store.firstSequence(atOrAfter: config.optStartTime ?? 0)
            case .new, .byStartSequence:
                streamSequence = state.lastSequence + 1
            }
        } else {
            streamSequence = config.optStartSequence
        }
        if state.firstSequence == 0 {
            streamSequence = 1
        } else if streamSequence < state.firstSequence {
            streamSequence = state.firstSequence
        } else if streamSequence > state.lastSequence {
            streamSequence = state.lastSequence + 1
        }
        deliverySequence = 1
        // 2.9.10 sets the floor to sseq - 1 here, then reads back the consumer store's state,
        // whose ack floor is still zero: a new consumer reports an ack floor of 0.
        ackFloorDelivery = 0
        ackFloorStream = 0
    }

    /// 2.9.10's setLeader: arms the timers and finds the push interest; ``deliver(now:into:)``
    /// then sends what is there.
    func start(now: Int64) {
        recomputePending()
        if !skipList.isEmpty && streamSequence >= skipResume { skipList = [] }
        if config.flowControl {
            windowLimit = 32 * 1024 * 1024
            windowBytes = windowLimit / 16
        }
        if isPush {
            active = pushBound(config.deliverSubject, config.deliverGroup)
            nextInterestPoll = now.adding(Consumer.interestPollInterval)
            if config.heartbeat > 0 { nextHeartbeat = now.adding(config.heartbeat) }
        }
        if deleteThreshold > 0 && (isPull || !active) { deleteCheck = now.adding(deleteThreshold) }
        if config.replayPolicy != .instant {
            replaying = true
            replayLastSequence = stream.store.state.lastSequence
        }
        if !pending.isEmpty && pendingCheck == nil {
            pendingCheck = now.adding(min(config.ackWait.adding(1_000_000), 500_000_000))
        }
    }

    /// How often a push consumer asks whether its deliver subject has gained or lost interest.
    static let interestPollInterval: Int64 = 100_000_000

    /// 2.9.10's updateInactiveThreshold (without its random jitter: the host's timer is exact).
    func updateInactiveThreshold() {
        if !config.isDurable && config.inactiveThreshold <= 0 {
            deleteThreshold = ConsumerConfig.defaultInactiveThreshold
            config.inactiveThreshold = ConsumerConfig.defaultInactiveThreshold
        } else if config.inactiveThreshold > 0 {
            deleteThreshold = config.inactiveThreshold
        } else {
            deleteThreshold = 0
        }
    }

    // MARK: Pending count

    /// num_pending as 2.9.10's streamNumPending computes it: the filter's messages from the next
    /// sequence on, or for last_per_subject the subjects whose last message is still ahead.
    @discardableResult
    func recomputePending() -> UInt64 {
        if config.deliverPolicy == .lastPerSubject {
            pendingCount = UInt64(stream.store.lastSequences(filter: config.filterSubject).values
                .filter { $0 >= streamSequence }.count)
        } else {
            pendingCount = stream.store.pending(filter: config.filterSubject, from: streamSequence).count
        }
        return pendingCount
    }

    // MARK: Delivery

    /// 2.9.10's loopAndGatherMsgs, run until it would wait: delivers what the consumer may
    /// deliver now, then settles the pull requests.
    func deliver(now: Int64, into out: inout [EngineAction]) {
        guard !closed else { return }
        var stalledByAckPending = false
        while true {
            if let h = held {
                if now < heldUntil { break }
                held = nil
                send(h.message, dc: h.dc, to: h.subject, ackReply: h.ackReply, now: now, into: &out)
                continue
            }
            if isPush {
                if !active || (windowBytes > 0 && pendingBytes > windowBytes) { break }
            } else if waiting.isEmpty {
                break
            }
            let next = nextMessage(now: now, into: &out)
            guard case .message(let stored, let dc) = next else {
                if case .maxAckPending = next { stalledByAckPending = true }
                break
            }
            if dc == 1 && pendingCount > 0 { pendingCount -= 1 }
            let ackReply = ackReply(dc: dc, streamSequence: stored.sequence, timestamp: stored.timestamp)
            var message = stored
            if config.headersOnly { Consumer.convertToHeadersOnly(&message) }
            let size = message.subject.utf8.count + ackReply.utf8.count + message.headers.count + message.payload.count
            let subject: String
            if isPush {
                subject = config.deliverSubject
            } else if let request = nextWaiting(size: size, now: now, into: &out) {
                subject = request.reply
                if request.batch > 0 && request.heartbeat > 0 {
                    var moved = request
                    moved.nextHeartbeat = now.adding(request.heartbeat)
                    waiting.update(at: waiting.count - 1, moved)
                }
            } else {
                // Nobody to give it to after all: take it back.
                if dc == 1 {
                    streamSequence = stored.sequence
                    pendingCount += 1
                } else {
                    redeliverQueue.insert(stored.sequence, at: 0)
                    redeliverSet.insert(stored.sequence)
                    redelivered[stored.sequence, default: 1] -= 1
                    if redelivered[stored.sequence] == 0 { redelivered[stored.sequence] = nil }
                }
                break
            }
            if replaying && lastReplayTime > 0 {
                let delay = message.timestamp.subtracting(lastReplayTime)
                if delay > 1_000_000 {
                    lastReplayTime = message.timestamp
                    held = (message, dc, subject, ackReply)
                    heldUntil = now.adding(delay)
                    break
                }
            }
            lastReplayTime = message.timestamp
            if config.rateLimit > 0 {
                let delay = rateDelay(size: size, now: now)
                if delay > 0 {
                    held = (message, dc, subject, ackReply)
                    heldUntil = now.adding(delay)
                    break
                }
            }
            send(message, dc: dc, to: subject, ackReply: ackReply, now: now, into: &out)
        }
        if replaying && streamSequence > replayLastSequence && held == nil { replaying = false }
        if isPull {
            waitingDeadline = processWaiting(endOfStream: !stalledByAckPending, now: now, into: &out).deadline
        }
    }

    /// The 9-token ack reply subject of the delivery about to be sent, written into the String's
    /// own storage (interpolating its five numbers took a tenth of a push delivery's time).
    private func ackReply(dc: UInt64, streamSequence sseq: UInt64, timestamp: Int64) -> String {
        let prefix = ackReplyPrefix
        let numbers = (dc, sseq, deliverySequence, timestamp, pendingCount)
        return String(unsafeUninitializedCapacity: prefix.count + 5 * 21) { buffer in
            var at = 0
            for byte in prefix {
                buffer[at] = byte
                at += 1
            }
            func put(_ value: UInt64, negative: Bool = false, last: Bool = false) {
                if negative {
                    buffer[at] = UInt8(ascii: "-")
                    at += 1
                }
                var digits = 1
                var rest = value / 10
                while rest > 0 {
                    digits += 1
                    rest /= 10
                }
                var v = value
                for k in stride(from: at + digits - 1, through: at, by: -1) {
                    buffer[k] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
                at += digits
                if !last {
                    buffer[at] = UInt8(ascii: ".")
                    at += 1
                }
            }
            put(numbers.0)
            put(numbers.1)
            put(numbers.2)
            put(numbers.3.magnitude, negative: numbers.3 < 0)
            put(numbers.4, last: true)
            return at
        }
    }

    enum Next {
        case message(StoredMessage, dc: UInt64)
        case none
        case maxAckPending
    }

    /// 2.9.10's getNextMsg: redeliveries first, then the skip list, then the next new message
    /// (unless max_ack_pending is reached).
    func nextMessage(now: Int64, into out: inout [EngineAction]) -> Next {
        while let seq = redeliverQueue.first {
            redeliverQueue.removeFirst()
            redeliverSet.remove(seq)
            redelivered[seq, default: 0] += 1
            let dc = redelivered[seq]! + 1
            if config.maxDeliver > 0 && dc > UInt64(config.maxDeliver) {
                if dc == UInt64(config.maxDeliver) + 1 {
                    out.append(maxDeliveriesAdvisory(sequence: seq, deliveries: dc - 1, now: now))
                }
                pending[seq] = nil
                dirty = true
                continue
            }
            guard let message = try? stream.store.load(seq) else { continue }
            return .message(message, dc: dc)
        }
        if config.maxAckPending > 0 && pending.count >= Int(clamping: config.maxAckPending) {
            return .maxAckPending
        }
        var start = streamSequence
        if !skipList.isEmpty {
            start = skipList.removeFirst()
            if skipList.isEmpty { streamSequence = skipResume }
        }
        let last = stream.store.state.lastSequence
        if start > last {
            // Caught up (the common case after an ack): no store scan.
            if last >= streamSequence { streamSequence = last + 1 }
            return .none
        }
        do {
            let message = try stream.store.next(bySubject: config.filterSubject, from: start)
            if message.sequence >= streamSequence { streamSequence = message.sequence + 1 }
            return .message(message, dc: 1)
        } catch {
            let last = stream.store.state.lastSequence
            if last >= streamSequence { streamSequence = last + 1 }
            return .none
        }
    }

    /// 2.9.10's deliverMsg.
    private func send(_ message: StoredMessage, dc: UInt64, to subject: String, ackReply: String, now: Int64,
                      into out: inout [EngineAction]) {
        let dseq = deliverySequence
        deliverySequence += 1
        let size = subject.utf8.count + ackReply.utf8.count + message.headers.count + message.payload.count
        if windowBytes > 0 { pendingBytes += size }
        out.append(.send(subject: subject, displaySubject: message.subject, reply: ackReply,
                         headers: message.headers, payload: message.payload))
        switch config.ackPolicy {
        case .explicit, .all:
            trackPending(message.sequence, deliverySequence: dseq, now: now)
        case .none:
            ackFloorDelivery = dseq
            ackFloorStream = message.sequence
        }
        if windowBytes > 0 && needFlowControl(size: size) { sendFlowControl(into: &out) }
        if isPull && deleteThreshold > 0 { waiting.last = now }
        lastDelivered = now
        dirty = true
        if isPush && config.heartbeat > 0 { nextHeartbeat = now.adding(config.heartbeat) }
        if config.ackPolicy == .none && stream.config.retention != .limits {
            removeIfUnwanted(message.sequence)
        }
    }

    /// Takes `size` bytes from the rate limiter and returns how long the delivery must wait
    /// (0 = now): the bucket may go below zero, and the wait is until it is back at zero.
    private func rateDelay(size: Int, now: Int64) -> Int64 {
        let bytesPerSecond = Double(config.rateLimit / 8)
        guard bytesPerSecond > 0 else { return 0 }
        let burst = Double(stream.config.maxMessageSize > 0 ? Int(stream.config.maxMessageSize) : 1 << 20)
        if rateTokens < 0 && rateRefilled == 0 {
            rateTokens = burst
        } else {
            rateTokens = min(burst, rateTokens + Double(max(now - rateRefilled, 0)) / 1e9 * bytesPerSecond)
        }
        rateRefilled = now
        rateTokens -= Double(size)
        if rateTokens >= 0 { return 0 }
        return Int64(min(-rateTokens / bytesPerSecond * 1e9, 9e18))
    }

    static func convertToHeadersOnly(_ message: inout StoredMessage) {
        var headers: [UInt8]
        if message.headers.isEmpty {
            headers = Array("NATS/1.0\r\n".utf8)
        } else {
            headers = message.headers
            if headers.count >= 2 { headers.removeLast(2) }
        }
        headers.append(contentsOf: "Nats-Msg-Size: \(message.payload.count)\r\n\r\n".utf8)
        message.headers = headers
        message.payload = []
    }

    private func trackPending(_ sequence: UInt64, deliverySequence dseq: UInt64, now: Int64) {
        if pendingCheck == nil { pendingCheck = now.adding(ackWaitDelay(0)) }
        if pending[sequence] != nil {
            pending[sequence]!.timestamp = now
        } else {
            pending[sequence] = PendingDelivery(deliverySequence: dseq, timestamp: now)
        }
    }

    /// 2.9.10's ackWait: the timer fires a millisecond after the deadline, so bursts go together.
    func ackWaitDelay(_ next: Int64) -> Int64 {
        (next > 0 ? next : config.ackWait).adding(1_000_000)
    }

    // MARK: Flow control and heartbeats

    private func needFlowControl(size: Int) -> Bool {
        if flowControlID.isEmpty && pendingBytes > windowBytes / 2 { return true }
        if !flowControlID.isEmpty && pendingBytes - flowControlSize >= windowBytes { flowControlSize += size }
        return false
    }

    private func sendFlowControl(into out: inout [EngineAction]) {
        guard isPush else { return }
        let reply = flowControlReply()
        flowControlSize = pendingBytes
        flowControlID = reply
        out.append(.send(subject: config.deliverSubject, displaySubject: nil, reply: reply,
                         headers: Array("NATS/1.0 100 FlowControl Request\r\n\r\n".utf8), payload: []))
    }

    /// `$JS.FC.<stream>.<consumer>.<4 random base-62 characters>`.
    private func flowControlReply() -> String {
        let digits = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        flowControlCounter = flowControlCounter &* 6364136223846793005 &+ 1442695040888963407
        var n = flowControlCounter >> 16
        var suffix: [UInt8] = []
        for _ in 0..<4 { suffix.append(digits[Int(n % 62)]); n /= 62 }
        return "$JS.FC.\(stream.name).\(name).\(String(decoding: suffix, as: UTF8.self))"
    }

    /// A flow-control answer on `subject`: only the latest request counts; the window grows.
    func flowControlAnswered(_ subject: String, now: Int64) -> [EngineAction] {
        guard subject == flowControlID else { return [] }
        if windowBytes < windowLimit { windowBytes = min(windowBytes * 2, windowLimit) }
        pendingBytes = max(pendingBytes - flowControlSize, 0)
        flowControlID = ""
        flowControlSize = 0
        var out: [EngineAction] = []
        deliver(now: now, into: &out)
        return out
    }

    /// `100 Idle Heartbeat` with the last sequences (and the stalled flow-control reply).
    func idleHeartbeat(to subject: String) -> EngineAction {
        var text = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: \(deliverySequence - 1)\r\nNats-Last-Stream: \(streamSequence - 1)\r\n"
        if !flowControlID.isEmpty { text += "Nats-Consumer-Stalled: \(flowControlID)\r\n" }
        text += "\r\n"
        return .send(subject: subject, displaySubject: nil, reply: "", headers: Array(text.utf8), payload: [])
    }

    // MARK: Advisories

    /// An advisory as 2.9.10 writes one: type, id, timestamp, stream, consumer, then `fields`.
    func advisory(_ kind: String, type: String, now: Int64, sequence: UInt64 = 0,
                  fields: (inout JetStreamJSON.ObjectWriter) -> Void = { _ in }) -> EngineAction {
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", "io.nats.jetstream.advisory.v1." + type)
        w.string("id", Consumer.eventID(now: now, sequence: sequence))
        w.time("timestamp", now)
        w.string("stream", stream.name)
        w.string("consumer", name)
        fields(&w)
        return .reply("$JS.EVENT.ADVISORY.CONSUMER.\(kind).\(stream.name).\(name)", w.finished())
    }

    private func maxDeliveriesAdvisory(sequence: UInt64, deliveries: UInt64, now: Int64) -> EngineAction {
        advisory("MAX_DELIVERIES", type: "max_deliver", now: now, sequence: sequence) { w in
            w.uint("stream_seq", sequence)
            w.uint("deliveries", deliveries)
        }
    }

    /// `MSG_NAKED` and `MSG_TERMINATED`: consumer_seq, stream_seq, deliveries.
    func deliveryAdvisory(_ kind: String, type: String, ack: AckSubject, now: Int64) -> EngineAction {
        advisory(kind, type: type, now: now, sequence: ack.streamSequence) { w in
            w.uint("consumer_seq", ack.deliverySequence)
            w.uint("stream_seq", ack.streamSequence)
            w.uint("deliveries", ack.deliveries)
        }
    }

    /// `CREATED` / `DELETED`: a consumer_action advisory.
    func actionAdvisory(_ action: String, now: Int64) -> EngineAction {
        advisory(action == "create" ? "CREATED" : "DELETED", type: "consumer_action", now: now) { w in
            w.string("action", action)
        }
    }

    /// An advisory id: 22 base-62 characters like a NUID, unique enough per event.
    static func eventID(now: Int64, sequence: UInt64) -> String {
        let digits = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        var a = UInt64(truncatingIfNeeded: now) ^ 0x9E37_79B9_7F4A_7C15
        var b = sequence &* 0xC2B2_AE3D_27D4_EB4F ^ UInt64.random(in: 0...UInt64.max)
        var out: [UInt8] = []
        for k in 0..<22 {
            if k < 11 { out.append(digits[Int(a % 62)]); a /= 62 } else { out.append(digits[Int(b % 62)]); b /= 62 }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: Timers and interest

extension Consumer {
    /// The earliest time ``tick(now:)`` has work, or nil.
    func deadline(persistEvery: Int64?) -> Int64? {
        var times: [Int64] = []
        if let t = pendingCheck { times.append(t) }
        if let t = nextInterestPoll { times.append(t) }
        if let t = nextHeartbeat { times.append(t) }
        if let t = deleteCheck { times.append(t) }
        if let t = waitingDeadline { times.append(t) }
        if held != nil { times.append(heldUntil) }
        if dirty, let every = persistEvery { times.append(lastWrite.adding(every)) }
        return times.min()
    }

    /// Runs what is due at `now`: the ack-wait scan, interest polling, heartbeats, deletion of an
    /// inactive consumer, replay delays and pull expiries.
    func tick(now: Int64) -> [EngineAction] {
        guard !closed else { return [] }
        var out: [EngineAction] = []
        if let t = pendingCheck, now >= t { checkPending(now: now, into: &out) }
        if isPush {
            if let t = nextInterestPoll, now >= t {
                nextInterestPoll = now.adding(Consumer.interestPollInterval)
                let interest = pushBound(config.deliverSubject, config.deliverGroup)
                if interest != active { updateDeliveryInterest(interest, now: now) }
            }
            if let t = nextHeartbeat, now >= t {
                if active { out.append(idleHeartbeat(to: config.deliverSubject)) }
                nextHeartbeat = now.adding(config.heartbeat)
            }
        }
        if let t = deleteCheck, now >= t { deleteIfInactive(now: now, into: &out) }
        if expired { return out }
        deliver(now: now, into: &out)
        return out
    }

    /// 2.9.10's updateDeliveryInterest for a push consumer.
    func updateDeliveryInterest(_ interest: Bool, now: Int64) {
        guard isPush else { return }
        active = interest
        if deleteCheck != nil && deleteThreshold > 0 && !interest { return }
        deleteCheck = nil
        if !interest && deleteThreshold > 0 { deleteCheck = now.adding(deleteThreshold) }
    }

    /// 2.9.10's deleteNotActive: a push consumer without interest, or a pull consumer without
    /// requests or deliveries for the threshold, is marked ``expired``.
    private func deleteIfInactive(now: Int64, into out: inout [EngineAction]) {
        deleteCheck = nil
        if isPush {
            if active { return }
        } else {
            let elapsed = now.subtracting(waiting.last)
            if elapsed <= config.inactiveThreshold {
                deleteCheck = now.adding(max(deleteThreshold.subtracting(elapsed), 1))
                return
            }
            if processWaiting(endOfStream: true, now: now, into: &out).count > 0 {
                deleteCheck = now.adding(deleteThreshold)
                return
            }
        }
        expired = true
    }

    /// The stream lost messages (purge, removal): 2.9.10's purge moves the consumer past what is gone.
    func streamChanged(now: Int64) -> [EngineAction] {
        let state = stream.store.state
        let first = state.messages == 0 ? state.lastSequence + 1 : state.firstSequence
        if first > streamSequence || first > ackFloorStream + 1 {
            if streamSequence < first { streamSequence = first }
            if ackFloorStream < first {
                ackFloorStream = first - 1
                ackFloorDelivery = deliverySequence - 1
            }
            pending = pending.filter { $0.key >= first }
            let queued = redeliverQueue
            redeliverQueue = []
            redeliverSet = []
            addToRedeliverQueue(queued.filter { $0 >= streamSequence })
            redelivered = redelivered.filter { $0.key >= first }
            if !skipList.isEmpty { skipList = skipList.filter { $0 >= first } }
            dirty = true
        }
        var out: [EngineAction] = []
        for (seq, p) in pending where stream.store.subject(at: seq) == nil {
            // Gone from the middle of the stream: 2.9.10 treats it as terminated.
            acknowledge(seq, p.deliverySequence, now: now, into: &out)
        }
        recomputePending()
        deliver(now: now, into: &out)
        return out
    }

    /// A message was stored: the cached count grows, and a waiting consumer delivers.
    func stored(sequence: UInt64, subject: String, now: Int64) -> [EngineAction] {
        guard !closed, config.selects(subject) else { return [] }
        if sequence >= streamSequence { pendingCount += 1 }
        var out: [EngineAction] = []
        deliver(now: now, into: &out)
        return out
    }
}

extension Int64 {
    /// `self + other`, held at the ends of the range instead of trapping: durations in requests
    /// and configs may be anything a client sends.
    func adding(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, held at the ends of the range instead of trapping.
    func subtracting(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }
}
