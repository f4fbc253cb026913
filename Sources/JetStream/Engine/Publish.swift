/// The publish path: a message on a stream subject, checked in 2.9.10's order
/// (processInboundJetStreamMsg, processJetStreamMsg), stored, acknowledged, republished and
/// handed to the consumers.
extension JetStreamEngine {
    func publish(_ message: InboundMessage, to stream: EngineStream, now: Int64) -> [EngineAction] {
        let config = stream.config
        let reply = message.reply
        // A sealed stream answers even with no_ack (2.9.10 checks it before anything else).
        if config.sealed {
            return reply.isEmpty ? [] : [.reply(reply, JetStreamAPIResponse.pubAckError(stream: stream.name, .streamSealed))]
        }
        let canRespond = !config.noAck && !reply.isEmpty
        func refuse(_ error: JetStreamAPIError) -> [EngineAction] {
            canRespond ? [.reply(reply, JetStreamAPIResponse.pubAckError(stream: stream.name, error))] : []
        }
        let headers = message.headers
        let store = stream.store
        var messageID = ""
        var rollup: Rollup = .none
        if !headers.isEmpty {
            if let expected = HeaderBlock.string("Nats-Expected-Stream", in: headers), expected != stream.name {
                return refuse(.streamNotMatch)
            }
            if let id = HeaderBlock.string("Nats-Msg-Id", in: headers) {
                messageID = id
                if let sequence = stream.dedupe.lookup(id, now: now, window: config.duplicateWindow) {
                    return canRespond ? [.reply(reply, JetStreamAPIResponse.pubAck(stream: stream.name, sequence: sequence,
                                                                                 domain: options.domain, duplicate: true))] : []
                }
            }
            if let expected = HeaderBlock.sequence("Nats-Expected-Last-Subject-Sequence", in: headers) {
                let last = (try? store.last(bySubject: message.subject))?.sequence ?? 0
                if last != expected { return refuse(.streamWrongLastSequence(last)) }
            }
            if let expected = HeaderBlock.sequence("Nats-Expected-Last-Sequence", in: headers) {
                let last = store.state.lastSequence
                if last != expected { return refuse(.streamWrongLastSequence(last)) }
            }
            if let expected = HeaderBlock.string("Nats-Expected-Last-Msg-Id", in: headers), expected != stream.lastMessageID {
                return refuse(.streamWrongLastMessageID(stream.lastMessageID))
            }
            if let value = HeaderBlock.string("Nats-Rollup", in: headers) {
                if !config.allowRollup || config.denyPurge { return refuse(.streamRollupFailed("rollup not permitted")) }
                switch value.lowercased() {
                case "sub": rollup = .subject
                case "all": rollup = .all
                default: return []   // 2.9.10 drops the message without an answer
                }
            }
        }
        if config.maxMessageSize >= 0 && headers.count + message.payload.count > Int(config.maxMessageSize) {
            return refuse(.messageExceedsMaximum)
        }
        if headers.count > Int(UInt16.max) { return refuse(.headerExceedsMaximum) }
        if config.storage == .memory ? usage(.memory).used > options.maxMemory : usage(.file).used > options.maxStore {
            return refuse(.insufficientResources)
        }

        if config.retention == .interest && !consumers.hasInterest(stream: stream.context, subject: message.subject) {
            // The sequence is used, nothing is stored, and the publisher gets its ack (2.9.10's SkipMsg;
            // its de-duplication entry for such a message names sequence 0).
            let sequence: UInt64
            do { sequence = try store.skip(timestamp: now) } catch { return refuse(error.apiError(in: .publish)) }
            stream.lastMessageID = messageID
            if !messageID.isEmpty { stream.dedupe.record(messageID, sequence: 0, timestamp: now) }
            return canRespond ? [.reply(reply, JetStreamAPIResponse.pubAck(stream: stream.name, sequence: sequence,
                                                                         domain: options.domain))] : []
        }

        var republishSubject: String?
        var lastOfSubject: UInt64 = 0
        if let transform = stream.republish, let destination = transform.apply(message.subject) {
            republishSubject = destination
            lastOfSubject = (try? store.last(bySubject: message.subject))?.sequence ?? 0
        }
        let sequence: UInt64
        do {
            sequence = try store.store(subject: message.subject, headers: headers, payload: message.payload, timestamp: now)
        } catch {
            return refuse(error.apiError(in: .publish))
        }
        stream.lastMessageID = messageID
        if !messageID.isEmpty { stream.dedupe.record(messageID, sequence: sequence, timestamp: now) }

        var actions: [EngineAction] = []
        switch rollup {
        case .none: break
        case .subject:
            _ = try? filteredPurge(stream, subject: message.subject, keep: 1)
            actions += consumers.streamChanged(stream: stream.context, now: now)
        case .all:
            _ = try? store.purge(keep: 1)
            actions += consumers.streamChanged(stream: stream.context, now: now)
        }
        if let destination = republishSubject, let settings = config.republish {
            actions.append(republished(message, stream: stream.name, sequence: sequence, lastOfSubject: lastOfSubject,
                                       to: destination, headersOnly: settings.headersOnly))
        }
        if canRespond {
            actions.append(.reply(reply, JetStreamAPIResponse.pubAck(stream: stream.name, sequence: sequence, domain: options.domain)))
        }
        actions += consumers.stored(stream: stream.context, sequence: sequence, subject: message.subject, now: now)
        return actions
    }

    enum Rollup { case none, subject, all }

    /// The copy 2.9.10 republishes: the original headers (or a new block) plus Nats-Stream,
    /// Nats-Subject, Nats-Sequence and Nats-Last-Sequence, and Nats-Msg-Size without the payload
    /// for headers_only.
    private func republished(_ message: InboundMessage, stream: String, sequence: UInt64, lastOfSubject: UInt64,
                             to destination: String, headersOnly: Bool) -> EngineAction {
        var block = HeaderBlock.appending("Nats-Stream", stream, to: message.headers)
        block = HeaderBlock.appending("Nats-Subject", message.subject, to: block)
        block = HeaderBlock.appending("Nats-Sequence", String(sequence), to: block)
        block = HeaderBlock.appending("Nats-Last-Sequence", String(lastOfSubject), to: block)
        if headersOnly {
            block = HeaderBlock.appending("Nats-Msg-Size", String(message.payload.count), to: block)
            return .send(subject: destination, displaySubject: nil, reply: "", headers: block, payload: [])
        }
        return .send(subject: destination, displaySubject: nil, reply: "", headers: block, payload: message.payload)
    }
}

/// A republish mapping: a source pattern and a destination with `{{wildcard(n)}}` tokens and a
/// trailing `>` (2.9.10's subject transform, for the rules StreamConfig validates).
struct SubjectTransform {
    private enum Token {
        case literal(Substring)
        case wildcard(Int)
        case rest
    }

    private let source: [Substring]
    private let destination: [Token]

    init?(source: String, destination: String) {
        self.source = source.split(separator: ".", omittingEmptySubsequences: false)
        var tokens: [Token] = []
        for token in destination.split(separator: ".", omittingEmptySubsequences: false) {
            if token == ">" {
                tokens.append(.rest)
            } else if token.hasPrefix("{{") && token.hasSuffix("}}") {
                let inner = token.dropFirst(2).dropLast(2).filter { $0 != " " }
                guard inner.lowercased().hasPrefix("wildcard("), inner.hasSuffix(")"),
                      let n = Int(inner.dropFirst("wildcard(".count).dropLast()) else { return nil }
                tokens.append(.wildcard(n))
            } else {
                tokens.append(.literal(token))
            }
        }
        self.destination = tokens
    }

    /// The destination for `subject`, or nil when `subject` does not match the source.
    func apply(_ subject: String) -> String? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        var wildcards: [Substring] = []
        var rest: ArraySlice<Substring> = []
        var i = 0
        for (k, pattern) in source.enumerated() {
            if pattern == ">" {
                guard k == source.count - 1, i < tokens.count else { return nil }
                rest = tokens[i...]
                i = tokens.count
                break
            }
            guard i < tokens.count else { return nil }
            if pattern == "*" {
                wildcards.append(tokens[i])
            } else if pattern != tokens[i] {
                return nil
            }
            i += 1
        }
        guard i == tokens.count else { return nil }
        var out: [Substring] = []
        for token in destination {
            switch token {
            case .literal(let text): out.append(text)
            case .wildcard(let n):
                guard n >= 1, n <= wildcards.count else { return nil }
                out.append(wildcards[n - 1])
            case .rest: out.append(contentsOf: rest)
            }
        }
        return out.joined(separator: ".")
    }
}
