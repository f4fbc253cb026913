// ClientConnection, protocol operations: CONNECT, PUB/HPUB checks, SUB, UNSUB, PING, PONG, INFO
// and -ERR from the client, and OpDispatch, which forwards the parser's callbacks to them.

import EventLoop
import Formats
import Glibc
import NATSProtocol
import Synchronization

extension ClientConnection {
    // MARK: Client operations

    func handleConnect(json: UnsafeRawBufferPointer) -> Bool {
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
        let settings = broker.settings
        // 2.9.10 negotiates headers only when the server supports them.
        if settings.options.noHeaderSupport { options.headers = false }
        let headers = options.headers
        out.withLock { $0.headers = headers }

        if settings.auth.authRequired {
            guard let auth = checkCredentials(settings) else { return false }
            permissions = auth.permissions.map(ConnectionPermissions.init)
            moveToAccount(broker.account(named: auth.account))
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

    func handlePub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
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

    static let gatewayReplyPrefix = Array("_GR_.".utf8)
    static let serviceReplyPrefix = Array("_R_.".utf8)
    static let jetStreamAckPrefix = Array("$JS.ACK.".utf8)

    /// True when `bytes` is longer than `prefix` and starts with it (2.9.10 needs at least one more byte).
    static func hasReservedPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: [UInt8]) -> Bool {
        bytes.count > prefix.count && bytes.starts(with: prefix)
    }

    /// 2.9.10's `isReservedReply`: service-import (`_R_.`), JetStream ack and gateway reply prefixes.
    static func isReservedReply(_ reply: UnsafeRawBufferPointer) -> Bool {
        hasReservedPrefix(reply, serviceReplyPrefix) || hasReservedPrefix(reply, jetStreamAckPrefix)
            || hasReservedPrefix(reply, gatewayReplyPrefix)
    }

    /// 2.9.10 refuses the queue group `_sys_` to every client, with or without permissions.
    static func isSystemQueue(_ queue: UnsafeRawBufferPointer) -> Bool {
        queue.elementsEqual("_sys_".utf8)
    }

    /// Sends a permissions -ERR, which keeps the connection open, and logs the violation as
    /// 2.9.10 does (`Publish Violation - User "bob", Subject "x"`). Error path only (allocates).
    func sendPermissionViolation(_ error: ServerError) {
        sendClientError(error)
        switch error {
        case .publishPermissionViolation(let subject):
            broker.logger.error("\(logPrefix) - Publish Violation - \(authUser), Subject \(ServerError.goQuoted(subject))")
        case .replyPermissionViolation(let reply):
            broker.logger.error("\(logPrefix) - Publish Violation - \(authUser), Reply \(ServerError.goQuoted(reply))")
        default:
            broker.logger.error("\(logPrefix) - \(error.text)")
        }
    }

    /// Refuses a SUB with 2.9.10's -ERR and log line (the connection stays). Error path only.
    func subscriptionViolation(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer,
                               sid: UnsafeRawBufferPointer) {
        let text = String(decoding: subject, as: UTF8.self)
        let queueText = queue.isEmpty ? nil : String(decoding: queue, as: UTF8.self)
        let queuePart = queueText.map { ", Queue: \(ServerError.goQuoted($0))" } ?? ""
        sendClientError(.subscriptionPermissionViolation(subject: text, queue: queueText))
        broker.logger.error("\(logPrefix) - Subscription Violation - \(authUser), Subject \(ServerError.goQuoted(text))"
                            + "\(queuePart), SID \(String(decoding: sid, as: UTF8.self))")
    }

    /// Writes an -ERR that keeps the connection open.
    private func sendClientError(_ error: ServerError) {
        if tracing { traceOut("-ERR '\(error.text)'") }
        appendControl(bytes: error.wireLine)
    }

    /// Who the client authenticated as, as 2.9.10's logs name it (`getAuthUser`).
    var authUser: String {
        if !options.nkey.isEmpty { return "Nkey \(ServerError.goQuoted(options.nkey))" }
        if !options.user.isEmpty { return "User \(ServerError.goQuoted(options.user))" }
        return "User \"N/A\""
    }

    /// Tokens of a SUB subject, empty ones included (`a..b` has three).
    static func tokenCount(_ subject: UnsafeRawBufferPointer) -> Int {
        var count = 1
        for byte in subject where byte == Subject.separator { count += 1 }
        return count
    }

    func handleHPub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                                headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        guard options.headers else {
            // 2.9.10 closes without an -ERR when headers were not negotiated.
            broker.logger.error("\(logPrefix) - Client parser ERROR: message headers not supported")
            closeAfterFlush(.protocolViolation)
            return false
        }
        return handlePub(subject: subject, reply: reply, headers: headers, payload: payload)
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

    func handleSub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer,
                               sid: UnsafeRawBufferPointer) -> Bool {
        activity = true
        if !(permissions?.canSubscribe(subject, queue: queue) ?? true) || Self.isSystemQueue(queue) {
            subscriptionViolation(subject: subject, queue: queue, sid: sid)
            return state == .open
        }
        let maxTokens = broker.options.maxSubTokens
        if maxTokens > 0 && Self.tokenCount(subject) > maxTokens {
            let text = String(decoding: subject, as: UTF8.self)
            sendClientError(.tooManySubscriptionTokens(subject: text))
            broker.logger.error("\(logPrefix) - Subscription Violation Too Many Tokens - \(authUser), Subject "
                                + "\(ServerError.goQuoted(text)), SID \(String(decoding: sid, as: UTF8.self))")
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
            let inserted = account.mutate { trie in
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

    func handleUnsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool {
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

    func remove(_ sub: Subscription, key: SidKey) {
        subscriptions[key] = nil
        out.withLock { _ in sub.removed = true }
        account.mutate { trie in
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

    func handlePing() -> Bool {
        clientPinged = true
        if tracing { traceOut("PONG") }
        appendControl { Encoder.pong(&$0) }
        return state == .open
    }

    func handlePong() -> Bool {
        if pingsOut > 0 { rttNanos = LoopContext.now() &- rttStart }
        pingsOut = 0
        rttKnown = true
        return true
    }

    func handleInfo(json: UnsafeRawBufferPointer) -> Bool {
        do {
            _ = try JSON.parse(json.assumingMemoryBound(to: UInt8.self))
            return true
        } catch {
            broker.logger.error("\(logPrefix) - Client parser ERROR: INFO: \(error.message)")
            closeAfterFlush(.protocolViolation)
            return false
        }
    }

    func handleClientError(message: UnsafeRawBufferPointer) -> Bool {
        broker.logger.error("\(logPrefix) - Client Error \(String(decoding: message, as: UTF8.self))")
        closeAfterFlush(.clientClosed)
        return false
    }
}

extension ClientConnection {
    /// A CONNECT's JSON as 2.9.10 traces it: the value after the first `pass...` key replaced by
    /// `[REDACTED]` (its removePassFromTrace pattern; an `auth_token` stays as sent, as there).
    static func redactingPassword(_ json: String) -> String {
        guard json.contains("pass"),
              let pattern = try? Regex(#""?\s*pass\S*?"?\s*[:=]\s*"?(([^",\r\n}])*)"#).asciiOnlyWhitespace(),
              let match = try? pattern.firstMatch(in: json), match.output.count > 1,
              let range = match.output[1].range
        else { return json }
        var result = json
        result.replaceSubrange(range, with: "[REDACTED]")
        return result
    }
}

/// Forwards parsed ops to the connection. A struct so the generic parser specialises on it.
struct OpDispatch: ClientOpHandler {
    unowned(unsafe) let connection: ClientConnection

    mutating func connect(json: UnsafeRawBufferPointer) -> Bool {
        if connection.tracing { connection.traceIn("CONNECT", ClientConnection.redactingPassword(text(json))) }
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
