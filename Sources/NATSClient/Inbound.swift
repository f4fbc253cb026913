// What the reader thread does with each server operation.

#if canImport(Glibc)
import Glibc
#endif
import NATSProtocol
import Synchronization

/// Receives parsed server operations on the reader thread. During the handshake it only
/// records INFO, PONG and -ERR; afterwards it hands each op to the client.
struct InboundHandler: ServerOpHandler {
    let client: NATSClient
    let fd: Int32
    var handshaking = true
    var handshakeDone = false
    var handshakeError: NATSError?
    var info: ServerInfo?
    /// Subscriptions whose waiting consumer gets its message after the current read.
    var wakeups: [Subscription] = []

    init(client: NATSClient, fd: Int32) {
        self.client = client
        self.fd = fd
    }

    mutating func info(json: UnsafeRawBufferPointer) -> Bool {
        do {
            let parsed = try ServerInfo.parse(json)
            info = parsed
            if !handshaking { client.serverInfoChanged(parsed) }
        } catch {
            if handshaking {
                handshakeError = error
                return false
            }
            client.emit(.serverError(error))
        }
        return true
    }

    mutating func msg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool {
        if !handshaking, let wake = client.deliver(subject: subject, sid: sid, reply: reply, headers: nil, payload: payload) {
            wakeups.append(wake)
        }
        return true
    }

    /// Resumes the consumers that were waiting when their messages arrived. Reader thread only.
    mutating func wakeConsumers() {
        if wakeups.isEmpty { return }
        for subscription in wakeups { subscription.wakeConsumer() }
        wakeups.removeAll(keepingCapacity: true)
    }

    mutating func hmsg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        if !handshaking, let wake = client.deliver(subject: subject, sid: sid, reply: reply, headers: headers, payload: payload) {
            wakeups.append(wake)
        }
        return true
    }

    mutating func ping() -> Bool {
        if handshaking {
            // The writer does not own the socket yet: answer directly.
            _ = pongBytes.withUnsafeBytes { TCPSocket.sendAll(fd, $0) }
        } else {
            client.queuePong()
        }
        return true
    }

    mutating func pong() -> Bool {
        if handshaking {
            handshakeDone = true
        } else {
            client.pongReceived()
        }
        return true
    }

    mutating func ok() -> Bool { true }

    mutating func err(message: UnsafeRawBufferPointer) -> Bool {
        let text = String(decoding: message, as: UTF8.self)
        if handshaking {
            handshakeError = NATSError.fromServer(text)
            return false
        }
        client.serverError(text)
        return true
    }
}

extension NATSClient {
    /// Routes one MSG/HMSG to its subscription or waiting request. Reader thread only.
    /// Returns a subscription whose waiting consumer must be woken after this read.
    func deliver(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                 headers: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer) -> Subscription? {
        guard let sidValue = parseDecimal(sid) else { return nil }
        let size = payload.count + (headers?.count ?? 0)
        enum Target {
            case none
            case subscription(Subscription, finish: Bool)
            case request(ClientState.PendingRequest)
        }
        let target = state.withLock { s -> Target in
            s.statistics.inMessages &+= 1
            s.statistics.inBytes &+= UInt64(size)
            if sidValue == s.muxSid {
                guard let token = Self.token(of: subject, prefix: s.muxPrefix),
                      let request = s.requests.removeValue(forKey: token) else { return .none }
                return .request(request)
            }
            guard let record = s.subscriptions[sidValue] else { return .none }
            record.received += 1
            if let max = record.max, record.received >= max {
                s.subscriptions.removeValue(forKey: sidValue)
                return .subscription(record.subscription, finish: true)
            }
            return .subscription(record.subscription, finish: false)
        }
        let headerBytes = headers.map { [UInt8]($0) }
        switch target {
        case .none:
            return nil
        case .request(let request):
            if let headers, HeaderStatus.code(in: headers) == 503 {
                request.continuation.resume(throwing: NATSError.noResponders(subject: request.subject))
                return nil
            }
            let message = Message(
                subject: String(decoding: subject, as: UTF8.self),
                reply: reply.isEmpty ? nil : String(decoding: reply, as: UTF8.self),
                headerBytes: headerBytes, payload: [UInt8](payload), client: self)
            request.continuation.resume(returning: message)
            return nil
        case .subscription(let subscription, let finish):
            let message = Message(
                subject: String(decoding: subject, as: UTF8.self),
                reply: reply.isEmpty ? nil : String(decoding: reply, as: UTF8.self),
                headerBytes: headerBytes, payload: [UInt8](payload), client: self)
            if let handler = subscription.handler {
                subscription.handle(message, handler: handler)
                if finish { subscription.finish() }
                return nil
            }
            let result = subscription.enqueue(message)
            if case .droppedFirst(let dropped) = result {
                emit(.slowConsumer(subject: subscription.subject, dropped: dropped))
            }
            if finish {
                // Hand over what is buffered first, then end iteration behind it.
                subscription.wakeConsumer()
                subscription.finish()
                return nil
            }
            if case .queuedWakeNeeded = result { return subscription }
            return nil
        }
    }

    /// The request token after the mux prefix, if `subject` is `<prefix><digits>`.
    static func token(of subject: UnsafeRawBufferPointer, prefix: [UInt8]) -> UInt64? {
        guard subject.count > prefix.count else { return nil }
        for index in 0..<prefix.count where subject[index] != prefix[index] { return nil }
        return parseDecimal(UnsafeRawBufferPointer(rebasing: subject[prefix.count...]))
    }

    /// Answers a server PING. Reader thread only.
    func queuePong() {
        let signal = state.withLock { s -> Bool in
            guard s.phase == .connected else { return false }
            s.outbound.append(contentsOf: pongBytes)
            s.appendedTotal &+= UInt64(pongBytes.count)
            return s.wakeForOutput()
        }
        if signal { wakeWriter.signal() }
    }

    /// Matches a PONG to the oldest outstanding PING. Reader thread only.
    func pongReceived() {
        let purpose = state.withLock { s -> (ClientState.PongPurpose?, CheckedContinuation<Void, any Error>?) in
            s.pingsOutstanding = 0
            guard let entry = s.pongQueue.popFirst() else { return (nil, nil) }
            s.confirmedPosition = max(s.confirmedPosition, entry.position)
            if case .keepAlive = entry.purpose { s.keepAlivePongs &+= 1 }
            if case .flush(let id) = entry.purpose {
                return (entry.purpose, s.flushWaiters.removeValue(forKey: id))
            }
            return (entry.purpose, nil)
        }
        purpose.1?.resume()
        if case .resubscribed(let server)? = purpose.0 { emit(.reconnected(server: server)) }
    }

    /// Applies an async INFO: max_payload, discovered servers, lame duck. Reader thread only.
    func serverInfoChanged(_ info: ServerInfo) {
        let (added, server) = state.withLock { s -> ([String], String?) in
            s.info = info
            var added: [String] = []
            if !options.ignoreDiscoveredServers {
                for url in info.connectURLs {
                    guard var address = try? ServerAddress(parsing: url) else { continue }
                    if s.servers.contains(where: { $0.host == address.host && $0.port == address.port }) { continue }
                    address.discovered = true
                    // Announced addresses carry no credentials: reuse those of the server we are on.
                    if address.user == nil && address.token == nil, let current = s.server {
                        address.user = current.user
                        address.password = current.password
                        address.token = current.token
                    }
                    s.servers.append(address)
                    added.append(address.hostPort)
                }
            }
            return (added, s.server?.hostPort)
        }
        if !added.isEmpty { emit(.discoveredServers(added)) }
        if info.lameDuckMode { emit(.lameDuck(server: server ?? "")) }
    }

    /// Handles a `-ERR` after the handshake. Reader thread only.
    func serverError(_ text: String) {
        let error = NATSError.fromServer(text)
        guard case .permissionViolation = error, text.lowercased().contains("subscription"),
              let subject = Self.quoted(in: text) else {
            emit(.serverError(error))
            return
        }
        // The server refused a SUB: end the matching subscriptions loudly.
        let (refused, resubscribing) = state.withLock { s -> ([Subscription], Bool) in
            var refused: [Subscription] = []
            for (sid, record) in s.subscriptions where record.subject == subject {
                refused.append(record.subscription)
                s.subscriptions.removeValue(forKey: sid)
            }
            var resubscribing = false
            if let first = s.pongQueue.first, case .resubscribed = first.purpose { resubscribing = true }
            return (refused, resubscribing)
        }
        emit(.serverError(error))
        for subscription in refused {
            if resubscribing {
                subscription.finish(error: .resubscribeFailed(subject: subject, reason: text))
                emit(.resubscribeFailed(subject: subject, reason: text))
            } else {
                subscription.finish(error: error)
            }
        }
    }

    /// The text between the first pair of double quotes.
    static func quoted(in text: String) -> String? {
        guard let open = text.firstIndex(of: "\"") else { return nil }
        let rest = text[text.index(after: open)...]
        guard let close = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<close])
    }
}

/// Parses a non-negative decimal without allocating; nil if empty, not all digits, or too large.
func parseDecimal(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
    guard !bytes.isEmpty, bytes.count <= 19 else { return nil }
    var value: UInt64 = 0
    for byte in bytes {
        let digit = byte &- 0x30
        guard digit < 10 else { return nil }
        value = value &* 10 &+ UInt64(digit)
    }
    return value
}
