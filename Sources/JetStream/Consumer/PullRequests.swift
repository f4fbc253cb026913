import Formats

/// One MSG.NEXT request waiting for messages (2.9.10's waitingRequest).
struct PullRequest {
    /// Where the messages and status replies go.
    var reply: String
    /// Messages still wanted (`n`); a request of 0 or less still takes one message.
    var batch: Int64
    /// Messages delivered so far (`d`).
    var delivered: Int64 = 0
    /// Bytes still allowed (`b`); 0 = no limit.
    var maxBytes: Int64
    /// When it expires (wall-clock ns); 0 = never.
    var expires: Int64
    /// When it arrived.
    var received: Int64
    /// Idle heartbeat interval (ns); 0 = none.
    var heartbeat: Int64
    /// When the next heartbeat is due; 0 = none.
    var nextHeartbeat: Int64
    var noWait: Bool
}

/// A parsed MSG.NEXT body.
struct PullRequestBody: Equatable {
    var batch: Int64 = 1
    var expires: Int64 = 0
    var maxBytes: Int64 = 0
    var noWait = false
    var heartbeat: Int64 = 0

    /// Parses a body as 2.9.10's nextReqFromMsg: empty = one message, an integer = a batch, a
    /// JSON object `{"batch","expires","max_bytes","no_wait","idle_heartbeat"}`; anything else
    /// is one message.
    /// - Throws: the text after `400 Bad Request - ` for JSON that does not decode or a
    ///   heartbeat more than half the expiry.
    static func parse(_ body: [UInt8]) throws(PullRequestError) -> PullRequestBody {
        var start = 0, end = body.count
        while start < end && isSpace(body[start]) { start += 1 }
        while end > start && isSpace(body[end - 1]) { end -= 1 }
        let trimmed = Array(body[start..<end])
        var result = PullRequestBody()
        if trimmed.isEmpty { return result }
        if trimmed[0] == UInt8(ascii: "{") {
            let document: JSON
            do { document = try JSON.parse(trimmed) } catch {
                throw PullRequestError(text: "invalid character in request: \(error.message)")
            }
            result.batch = 0
            for member in document.members ?? [] {
                if case .null = member.value { continue }
                let key = JetStreamJSON.folded(member.key)
                let field: String
                switch key {
                case "batch": field = "batch"
                case "expires": field = "expires"
                case "max_bytes": field = "max_bytes"
                case "idle_heartbeat": field = "idle_heartbeat"
                case "no_wait":
                    guard let b = member.value.boolValue else {
                        throw PullRequestError(text: "json: cannot unmarshal \(goType(member.value)) into Go struct field JSApiConsumerGetNextRequest.no_wait of type bool")
                    }
                    result.noWait = b
                    continue
                default: continue
                }
                guard case .int(let value) = member.value else {
                    let goField = field == "expires" || field == "idle_heartbeat" ? "time.Duration" : "int"
                    throw PullRequestError(text: "json: cannot unmarshal \(goType(member.value)) into Go struct field JSApiConsumerGetNextRequest.\(field) of type \(goField)")
                }
                switch field {
                case "batch": result.batch = value
                case "expires": result.expires = value
                case "max_bytes": result.maxBytes = value
                default: result.heartbeat = value
                }
            }
            if result.heartbeat > 0 && result.heartbeat * 2 > result.expires {
                throw PullRequestError(text: "heartbeat value too large")
            }
            return result
        }
        if let n = Int64(String(decoding: trimmed, as: UTF8.self)) { result.batch = n }
        return result
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C
    }

    /// The JSON type as Go's decoder names it in an unmarshal error.
    private static func goType(_ v: JSON) -> String {
        switch v {
        case .string: return "string"
        case .bool: return "bool"
        case .int, .double: return "number"
        case .array: return "array"
        case .object: return "object"
        case .null: return "null"
        }
    }
}

/// Why a MSG.NEXT body was refused; `text` follows `Bad Request - `.
struct PullRequestError: Error {
    var text: String
}

/// The FIFO of waiting pull requests, at most `capacity` long (2.9.10's waitQueue). A request
/// that still wants more after a delivery moves to the back, so requests take turns.
struct PullQueue {
    private(set) var requests: [PullRequest] = []
    let capacity: Int
    /// When the consumer last saw pull activity (a request, a delivery, a 404/408 answer).
    var last: Int64

    init(capacity: Int, now: Int64) {
        self.capacity = max(capacity, 0)
        self.last = now
    }

    var isEmpty: Bool { requests.isEmpty }
    var isFull: Bool { requests.count >= capacity }
    var count: Int { requests.count }

    /// Adds a request; false when the queue is full.
    mutating func add(_ request: PullRequest) -> Bool {
        if isFull { return false }
        requests.append(request)
        last = request.received
        return true
    }

    var head: PullRequest? { requests.first }

    mutating func setHead(_ request: PullRequest) { requests[0] = request }

    /// Takes one message for the head request and returns it as it is after the delivery.
    mutating func pop() -> PullRequest? {
        guard var request = requests.first else { return nil }
        request.delivered += 1
        request.batch -= 1
        requests.removeFirst()
        if request.batch > 0 {
            requests.append(request)
        }
        return request
    }

    mutating func removeHead() {
        if !requests.isEmpty { requests.removeFirst() }
    }

    mutating func remove(at index: Int) { requests.remove(at: index) }

    mutating func update(at index: Int, _ request: PullRequest) { requests[index] = request }

    /// Takes every request out (the consumer is going away).
    mutating func drain() -> [PullRequest] {
        defer { requests = [] }
        return requests
    }
}

extension Consumer {
    /// A header-only status message, `NATS/1.0 <code> <text>` plus `extra` header lines.
    static func status(_ subject: String, _ code: Int, _ text: String, _ extra: [(String, String)] = []) -> EngineAction {
        var block = "NATS/1.0 \(code) \(text)\r\n"
        for (k, v) in extra { block += "\(k): \(v)\r\n" }
        block += "\r\n"
        return .send(subject: subject, displaySubject: nil, reply: "", headers: Array(block.utf8), payload: [])
    }

    private static func pendingHeaders(_ r: PullRequest) -> [(String, String)] {
        [("Nats-Pending-Messages", String(r.batch)), ("Nats-Pending-Bytes", String(r.maxBytes))]
    }

    /// 2.9.10's processNextMsgRequest: a MSG.NEXT (or `+NXT`) asking for messages on `reply`.
    func nextRequest(reply: String, body: [UInt8], now: Int64) -> [EngineAction] {
        guard !reply.isEmpty, !closed else { return [] }
        var out: [EngineAction] = []
        if isPush {
            return [Consumer.status(reply, 409, "Consumer is push based")]
        }
        let request: PullRequestBody
        do { request = try PullRequestBody.parse(body) } catch {
            return [Consumer.status(reply, 400, "Bad Request - " + error.text)]
        }
        let expires = request.expires > 0 ? now + request.expires : 0
        if config.maxRequestBatch > 0 && request.batch > config.maxRequestBatch {
            return [Consumer.status(reply, 409, "Exceeded MaxRequestBatch of \(config.maxRequestBatch)")]
        }
        if expires != 0 && config.maxRequestExpires > 0 && expires > now + config.maxRequestExpires {
            return [Consumer.status(reply, 409, "Exceeded MaxRequestExpires of \(GoDuration.string(config.maxRequestExpires))")]
        }
        if request.maxBytes > 0 && config.maxRequestMaxBytes > 0 && request.maxBytes > config.maxRequestMaxBytes {
            return [Consumer.status(reply, 409, "Exceeded MaxRequestMaxBytes of \(config.maxRequestMaxBytes)")]
        }
        if waiting.isFull { _ = processWaiting(endOfStream: false, now: now, into: &out) }
        if request.noWait {
            let available = pendingCount + UInt64(redeliverQueue.count)
            if available == 0 && expires == 0 {
                waiting.last = now
                out.append(Consumer.status(reply, 404, "No Messages"))
                return out
            }
            if available > 0 {
                let wanted = processWaiting(endOfStream: false, now: now, into: &out).batchPending
                if available < UInt64(clamping: wanted) {
                    waiting.last = now
                    out.append(Consumer.status(reply, 408, "Requests Pending"))
                    return out
                }
            }
        }
        let entry = PullRequest(reply: reply, batch: request.batch, maxBytes: request.maxBytes, expires: expires,
                                received: now, heartbeat: request.heartbeat,
                                nextHeartbeat: request.heartbeat > 0 ? now + request.heartbeat : 0, noWait: request.noWait)
        guard waiting.add(entry) else {
            out.append(Consumer.status(reply, 409, "Exceeded MaxWaiting"))
            return out
        }
        deliver(now: now, into: &out)
        return out
    }

    /// 2.9.10's nextWaiting: the request the next message (of `size` bytes) goes to. A request
    /// whose max_bytes it would pass is closed with `409 Message Size Exceeds MaxBytes`; expired
    /// ones and ones whose reply lost its interest are dropped.
    func nextWaiting(size: Int, now: Int64, into out: inout [EngineAction]) -> PullRequest? {
        while var r = waiting.head {
            if r.maxBytes > 0 {
                if Int64(size) <= r.maxBytes {
                    r.maxBytes -= Int64(size)
                    if r.maxBytes == 0 { r.batch = 1 }
                    waiting.setHead(r)
                } else {
                    out.append(Consumer.status(r.reply, 409, "Message Size Exceeds MaxBytes", Consumer.pendingHeaders(r)))
                    waiting.removeHead()
                    continue
                }
            }
            if (r.expires == 0 || now < r.expires) && hasInterest(r.reply) {
                return waiting.pop()
            }
            waiting.removeHead()
        }
        return nil
    }

    /// 2.9.10's processWaiting: answers expired requests with `408 Request Timeout` (and, at
    /// the end of the stream, no_wait requests that got something), drops those without
    /// interest, sends due heartbeats. Returns how many requests wait, the messages they still
    /// want, and the next time something is due.
    @discardableResult
    func processWaiting(endOfStream: Bool, now: Int64, into out: inout [EngineAction])
        -> (count: Int, batchPending: Int64, deadline: Int64?) {
        var wanted: Int64 = 0
        var deadline: Int64?
        var index = 0
        while index < waiting.count {
            var r = waiting.requests[index]
            if (endOfStream && r.noWait && r.delivered > 0) || (r.expires != 0 && now > r.expires) {
                out.append(Consumer.status(r.reply, 408, "Request Timeout", Consumer.pendingHeaders(r)))
                waiting.remove(at: index)
                continue
            }
            if hasInterest(r.reply) {
                wanted += r.batch
                if r.nextHeartbeat != 0 {
                    if now > r.nextHeartbeat {
                        out.append(idleHeartbeat(to: r.reply))
                        r.nextHeartbeat = now + r.heartbeat
                        waiting.update(at: index, r)
                    }
                    // Due strictly after the time, so the timer asks a nanosecond later.
                    deadline = min(deadline ?? r.nextHeartbeat + 1, r.nextHeartbeat + 1)
                }
                if r.expires != 0 { deadline = min(deadline ?? r.expires + 1, r.expires + 1) }
                index += 1
                continue
            }
            waiting.remove(at: index)
        }
        return (waiting.count, wanted, deadline)
    }

    /// The consumer goes away: waiting requests get `409 Consumer Deleted`.
    func releaseWaiting() -> [EngineAction] {
        waiting.drain().map { Consumer.status($0.reply, 409, "Consumer Deleted") }
    }
}
