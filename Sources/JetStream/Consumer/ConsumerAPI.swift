import Formats

/// `$JS.API.CONSUMER.*`: create (three forms), info, delete, names, list and MSG.NEXT, answered
/// as 2.9.10 answers them. Subjects no handler of 2.9.10 takes get no reply.
extension ConsumerManager {
    /// 2.9.10's JSApiNamesLimit and JSApiListLimit.
    static let namesLimit = 1024
    static let listLimit = 256

    func api(_ message: InboundMessage, streams: [String: StreamContext], now: Int64) -> [EngineAction] {
        let tokens = message.subject.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard tokens.count >= 5 else { return [] }
        let reply = message.reply
        func answer(_ bytes: [UInt8]) -> [EngineAction] { reply.isEmpty ? [] : [.reply(reply, bytes)] }
        switch tokens[3] {
        case "CREATE":
            return create(message, tokens: tokens, durableForm: false, streams: streams, now: now)
        case "DURABLE":
            guard tokens.count == 7, tokens[4] == "CREATE" else { return [] }
            return create(message, tokens: tokens, durableForm: true, streams: streams, now: now)
        case "INFO":
            guard tokens.count == 6 else { return [] }
            let kind = "consumer_info_response"
            if !ConsumerManager.isEmptyRequest(message.payload) {
                return answer(JetStreamAPIResponse.error(kind, .notEmptyRequest))
            }
            guard streams[tokens[4]] != nil else { return answer(JetStreamAPIResponse.error(kind, .streamNotFound)) }
            guard let consumer = consumers[tokens[4]]?[tokens[5]] else {
                return answer(JetStreamAPIResponse.error(kind, .consumerNotFound))
            }
            var out: [EngineAction] = []
            var w = JetStreamJSON.ObjectWriter()
            w.string("type", JetStreamAPIResponse.type(kind))
            consumer.writeInfo(into: &w, now: now, actions: &out)
            return out + answer(w.finished())
        case "DELETE":
            guard tokens.count == 6 else { return [] }
            let kind = "consumer_delete_response"
            if !ConsumerManager.isEmptyRequest(message.payload) {
                return answer(JetStreamAPIResponse.error(kind, .notEmptyRequest))
            }
            guard streams[tokens[4]] != nil else { return answer(JetStreamAPIResponse.error(kind, .streamNotFound)) }
            guard let consumer = consumers[tokens[4]]?[tokens[5]] else {
                return answer(JetStreamAPIResponse.error(kind, .consumerNotFound))
            }
            return remove(consumer, now: now) + answer(JetStreamAPIResponse.success(kind))
        case "NAMES", "LIST":
            guard tokens.count == 5 else { return [] }
            return page(message, list: tokens[3] == "LIST", stream: tokens[4], streams: streams, now: now)
        case "MSG":
            guard tokens.count == 7, tokens[4] == "NEXT", let consumer = consumers[tokens[5]]?[tokens[6]] else { return [] }
            return consumer.nextRequest(reply: reply, body: message.payload, now: now)
        default:
            return []
        }
    }

    /// 2.9.10's isEmptyRequest: nothing, `{}`, or a JSON object without members.
    static func isEmptyRequest(_ body: [UInt8]) -> Bool {
        if body.isEmpty { return true }
        guard let doc = try? JSON.parse(body), let members = doc.members else { return false }
        return members.isEmpty
    }

    // MARK: Create

    /// 2.9.10's jsConsumerCreateRequest and addConsumer, checks in their order.
    private func create(_ message: InboundMessage, tokens: [String], durableForm: Bool,
                        streams: [String: StreamContext], now: Int64) -> [EngineAction] {
        let kind = "consumer_create_response"
        let reply = message.reply
        func fail(_ error: JetStreamAPIError) -> [EngineAction] {
            reply.isEmpty ? [] : [.reply(reply, JetStreamAPIResponse.error(kind, error))]
        }
        var request: (stream: String, config: ConsumerConfig)
        do { request = try ConsumerConfig.decodeRequest(message.payload) } catch { return fail(error) }

        let streamName: String
        var consumerName = ""
        var filter = ""
        enum Form { case legacyEphemeral, legacyDurable, named }
        let form: Form
        if durableForm {
            form = .legacyDurable
            streamName = tokens[5]
            consumerName = tokens[6]
        } else if tokens.count == 5 {
            form = .legacyEphemeral
            streamName = tokens[4]
        } else {
            form = .named
            streamName = tokens[4]
            consumerName = tokens[5]
            if tokens.count > 6 { filter = tokens[6...].joined(separator: ".") }
        }
        if streamName != request.stream { return fail(.streamMismatch) }
        if consumerName.contains(where: { $0 == "/" || $0 == "\\" }) { return fail(.consumerNameContainsPathSeparators) }
        switch form {
        case .legacyDurable:
            if request.config.durable.isEmpty { return fail(.consumerDurableNameNotSet) }
            if consumerName != request.config.durable { return fail(.consumerDurableNameMismatch) }
        case .named:
            if !request.config.durable.isEmpty && consumerName != request.config.durable {
                return fail(.consumerDurableNameMismatch)
            }
            request.config.name = consumerName
        case .legacyEphemeral:
            if !request.config.durable.isEmpty { return fail(.consumerEphemeralWithDurableName) }
        }
        if !filter.isEmpty && request.config.filterSubject != filter { return fail(.consumerCreateFilterSubjectMismatch) }
        if request.config.replicas > 1 { return fail(.replicasNotSupported) }
        guard let stream = streams[streamName] else { return fail(.streamNotFound) }

        let config = request.config.withDefaults()
        do { try config.check(stream: stream.config) } catch { return fail(error) }

        let group = consumers[streamName] ?? [:]
        let wanted = config.isDurable ? config.durable : config.name
        if !wanted.isEmpty, let existing = group[wanted] {
            return update(existing, to: config, reply: reply, now: now)
        }
        let limit = stream.config.maxConsumers
        if limit > 0 && group.values.filter({ !$0.config.direct }).count >= Int(limit) { return fail(.maximumConsumers) }
        if stream.config.retention == .workqueue && !config.direct {
            if config.ackPolicy != .explicit { return fail(.workQueueRequiresExplicitAck) }
            if !group.isEmpty {
                if config.filterSubject.isEmpty { return fail(.workQueueMultipleUnfiltered) }
                let unique = group.values.allSatisfy { other in
                    !other.config.filterSubject.isEmpty
                        && !ConsumerConfig.isSubsetMatch(config.filterSubject, other.config.filterSubject)
                        && !ConsumerConfig.isSubsetMatch(other.config.filterSubject, config.filterSubject)
                }
                if !unique { return fail(.workQueueConsumerNotUnique) }
            }
            if config.deliverPolicy != .all { return fail(.workQueueConsumerNotDeliverAll) }
        }
        let name: String
        if config.isDurable {
            if config.durable.utf8.count > ConsumerConfig.maxNameLength {
                return fail(.consumerNameTooLong(ConsumerConfig.maxNameLength))
            }
            name = config.durable
        } else if !config.name.isEmpty {
            name = config.name
        } else {
            // 2.9.10 leaves a generated name out of the config it reports.
            var candidate = ConsumerManager.generatedName()
            while group[candidate] != nil { candidate = ConsumerManager.generatedName() }
            name = candidate
        }
        if !StreamConfig.isValidName(name) { return fail(.consumerBadDurableName) }

        let consumer = Consumer(stream: stream, name: name, config: config, created: now, now: now, hasInterest: hasInterest,
                                pushBound: pushBound)
        consumer.selectStart()
        do { try writeConfig(of: consumer) } catch {
            // 2.9.10 answers with this generic text (it logs the cause; this half has no log).
            return fail(.consumerCreate("error creating store for consumer"))
        }
        register(consumer)
        consumer.start(now: now)
        var out: [EngineAction] = [consumer.actionAdvisory("create", now: now)]
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type(kind))
        consumer.writeInfo(into: &w, now: now, actions: &out)
        if !reply.isEmpty { out.append(.reply(reply, w.finished())) }
        consumer.deliver(now: now, into: &out)
        return out
    }

    /// A create naming an existing consumer: 2.9.10's updateConfig.
    private func update(_ consumer: Consumer, to new: ConsumerConfig, reply: String, now: Int64) -> [EngineAction] {
        let kind = "consumer_create_response"
        var config = new
        do {
            try consumer.config.checkUpdate(to: config, deliverInterest: consumer.isPush && pushBound(consumer.config.deliverSubject, consumer.config.deliverGroup))
        } catch {
            return reply.isEmpty ? [] : [.reply(reply, JetStreamAPIResponse.error(kind, error))]
        }
        if config.deliverSubject != consumer.config.deliverSubject && consumer.isPush {
            // A new deliver subject: everything pending goes out again there.
            for seq in consumer.pending.keys.sorted() where !consumer.redeliverSet.contains(seq) {
                consumer.addToRedeliverQueue([seq])
            }
            consumer.active = pushBound(config.deliverSubject, config.deliverGroup)
        }
        let thresholdChanged = config.inactiveThreshold != consumer.config.inactiveThreshold
        if config.isDurable == false && config.inactiveThreshold <= 0 { config.inactiveThreshold = consumer.config.inactiveThreshold }
        consumer.config = config
        if thresholdChanged {
            consumer.updateInactiveThreshold()
            consumer.deleteCheck = consumer.deleteThreshold > 0 ? now.adding(consumer.deleteThreshold) : nil
        }
        try? writeConfig(of: consumer)
        var out: [EngineAction] = []
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type(kind))
        consumer.writeInfo(into: &w, now: now, actions: &out)
        if !reply.isEmpty { out.append(.reply(reply, w.finished())) }
        consumer.deliver(now: now, into: &out)
        return out
    }

    /// 2.9.10's createConsumerName: 8 characters of URL-safe base64.
    /// Eight characters from 2.9.10's base-62 digits (its `createConsumerName`).
    static func generatedName() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        return String(decoding: (0..<8).map { _ in alphabet[Int.random(in: 0..<62)] }, as: UTF8.self)
    }

    // MARK: Names and list

    private func page(_ message: InboundMessage, list: Bool, stream: String, streams: [String: StreamContext],
                      now: Int64) -> [EngineAction] {
        let kind = list ? "consumer_list_response" : "consumer_names_response"
        let reply = message.reply
        func respond(error: JetStreamAPIError?, total: Int, offset: Int, limit: Int, items: [UInt8]) -> [EngineAction] {
            var w = JetStreamJSON.ObjectWriter()
            w.string("type", JetStreamAPIResponse.type(kind))
            if let error {
                var e: [UInt8] = []
                error.write(to: &e)
                w.raw("error", e)
            }
            w.int("total", Int64(total))
            w.int("offset", Int64(offset))
            w.int("limit", Int64(limit))
            w.raw("consumers", items)
            return reply.isEmpty ? [] : [.reply(reply, w.finished())]
        }
        var offset = 0
        if !ConsumerManager.isEmptyRequest(message.payload) {
            guard let doc = try? JSON.parse(message.payload), let members = doc.members else {
                return respond(error: .invalidJSON, total: 0, offset: 0, limit: 0, items: Array("[]".utf8))
            }
            for m in members where JetStreamJSON.folded(m.key) == "offset" {
                if case .null = m.value { continue }
                guard case .int(let n) = m.value, let v = Int(exactly: n) else {
                    return respond(error: .invalidJSON, total: 0, offset: 0, limit: 0, items: Array("[]".utf8))
                }
                offset = v
            }
        }
        guard streams[stream] != nil else {
            return respond(error: .streamNotFound, total: 0, offset: 0, limit: 0, items: Array("[]".utf8))
        }
        let all = (consumers[stream] ?? [:]).values.filter { !$0.config.direct }.sorted { $0.name < $1.name }
        let limit = list ? ConsumerManager.listLimit : ConsumerManager.namesLimit
        offset = max(0, min(offset, all.count))
        var items: [UInt8] = [UInt8(ascii: "[")]
        var out: [EngineAction] = []
        for (k, consumer) in all[offset...].prefix(limit).enumerated() {
            if k > 0 { items.append(UInt8(ascii: ",")) }
            if list {
                var w = JetStreamJSON.ObjectWriter()
                consumer.writeInfo(into: &w, now: now, actions: &out)
                items.append(contentsOf: w.finished())
            } else {
                JetStreamJSON.appendString(consumer.name, to: &items)
            }
        }
        items.append(UInt8(ascii: "]"))
        return out + respond(error: nil, total: all.count, offset: offset, limit: limit, items: items)
    }
}
