import Formats
import POSIXFiles

/// The `$JS.API` stream calls, as 2.9.10's handlers answer them (jetstream_api.go).
extension JetStreamEngine {
    /// Most names NAMES returns at once (JSApiNamesLimit).
    static let namesLimit = 1024
    /// Most streams LIST returns at once (JSApiListLimit).
    static let listLimit = 256
    /// Most subjects STREAM.INFO's subjects_filter returns at once (JSMaxSubjectDetails).
    static let subjectDetailsLimit = 100_000

    /// Dispatches an API subject. A subject no handler takes gets no reply and is not counted.
    func api(_ message: InboundMessage, now: Int64) -> [EngineAction] {
        let tokens = message.subject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 3 else { return [] }
        switch tokens[2] {
        case "INFO" where tokens.count == 3:
            return accountInfo(message)
        case "STREAM" where tokens.count >= 4:
            return streamCall(tokens, message, now: now)
        case "CONSUMER":
            let actions = consumers.handle(message, streams: contexts, now: now)
            countConsumerResponses(actions, reply: message.reply)
            return actions
        case "DIRECT" where tokens.count >= 5 && tokens[3] == "GET":
            guard let stream = streams[String(tokens[4])], stream.config.allowDirect else { return [] }
            return directGet(message, stream: stream, subjectTokens: tokens)
        default:
            return []
        }
    }

    private func streamCall(_ tokens: [Substring], _ message: InboundMessage, now: Int64) -> [EngineAction] {
        switch (tokens[3], tokens.count) {
        case ("CREATE", 5): return createStream(String(tokens[4]), message, now: now)
        case ("UPDATE", 5): return updateStream(String(tokens[4]), message, now: now)
        case ("INFO", 5): return streamInfo(String(tokens[4]), message)
        case ("DELETE", 5): return deleteStream(String(tokens[4]), message)
        case ("PURGE", 5): return purgeStream(String(tokens[4]), message, now: now)
        case ("NAMES", 4): return streamNames(message)
        case ("LIST", 4): return streamList(message)
        case ("MSG", 6) where tokens[4] == "GET": return messageGet(String(tokens[5]), message)
        case ("MSG", 6) where tokens[4] == "DELETE": return messageDelete(String(tokens[5]), message, now: now)
        default: return []
        }
    }

    // MARK: Answering and counting

    /// A response counted in `api.total` (2.9.10's sendAPIResponse), sent when there is a reply subject.
    func answer(_ reply: String, _ payload: [UInt8]) -> [EngineAction] {
        apiTotal += 1
        return reply.isEmpty ? [] : [.reply(reply, payload)]
    }

    /// An error response, counted in `api.total` and `api.errors` (sendAPIErrResponse).
    func fail(_ reply: String, _ kind: String, _ error: JetStreamAPIError) -> [EngineAction] {
        apiErrors += 1
        return answer(reply, JetStreamAPIResponse.error(kind, error))
    }

    /// An error of a response that embeds the paging fields without omitempty (INFO, NAMES, LIST):
    /// 2.9.10 writes them as zeros after the error, then `streams` as `null` for NAMES or `[]` for LIST.
    func failPaged(_ reply: String, _ kind: String, _ error: JetStreamAPIError, streams: String? = nil) -> [EngineAction] {
        apiErrors += 1
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type(kind))
        var e: [UInt8] = []
        error.write(to: &e)
        w.raw("error", e)
        w.int("total", 0)
        w.int("offset", 0)
        w.int("limit", 0)
        if let streams { w.raw("streams", Array(streams.utf8)) }
        return answer(reply, w.finished())
    }

    /// Counts the consumer half's API answers: a reply to the request whose JSON is a consumer
    /// response, an error when it carries one.
    private func countConsumerResponses(_ actions: [EngineAction], reply: String) {
        guard !reply.isEmpty else { return }
        let marker = Array(#"{"type":"io.nats.jetstream.api.v1.consumer_"#.utf8)
        let errorMarker = Array(#","error":{"#.utf8)
        for action in actions {
            guard case .send(let subject, _, _, let headers, let payload) = action, subject == reply, headers.isEmpty,
                  payload.starts(with: marker) else { continue }
            apiTotal += 1
            if contains(payload, errorMarker) { apiErrors += 1 }
        }
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }

    // MARK: Account

    private func accountInfo(_ message: InboundMessage) -> [EngineAction] {
        var memory: UInt64 = 0
        var storage: UInt64 = 0
        var consumerTotal = 0
        for stream in streams.values {
            let bytes = stream.store.state.bytes
            if stream.config.storage == .memory { memory += bytes } else { storage += bytes }
            consumerTotal += consumers.consumerCount(stream: stream.name)
        }
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type("account_info_response"))
        w.uint("memory", memory)
        w.uint("storage", storage + unreleasedStorage)
        w.int("streams", Int64(streams.count))
        w.int("consumers", Int64(consumerTotal))
        var limits = JetStreamJSON.ObjectWriter()
        for key in ["max_memory", "max_storage", "max_streams", "max_consumers", "max_ack_pending",
                    "memory_max_stream_bytes", "storage_max_stream_bytes"] {
            limits.int(key, -1)
        }
        limits.bool("max_bytes_required", false)
        w.raw("limits", limits.finished())
        if !options.domain.isEmpty { w.string("domain", options.domain) }
        var api = JetStreamJSON.ObjectWriter()
        api.uint("total", apiTotal)
        api.uint("errors", apiErrors)
        w.raw("api", api.finished())
        return answer(message.reply, w.finished())
    }

    // MARK: Create and update

    private func createStream(_ name: String, _ message: InboundMessage, now: Int64) -> [EngineAction] {
        let kind = "stream_create_response"
        let body = message.payload
        // 2.9.10 checks the account and server limits after the name and seal checks and before
        // validating the configuration.
        if let request = try? StreamConfig.decode(body), request.name == name,
           !name.contains(where: { $0 == "/" || $0 == "\\" }), !request.sealed, !request.mirrorDirect,
           let error = reservationError(storage: request.storage, addBytes: request.maxBytes, reserved: nil) {
            return fail(message.reply, kind, error)
        }
        let config: StreamConfig
        let existed: Bool
        do {
            (config, existed) = try StreamConfig.checkCreate(subjectName: name, body: body,
                                                            existing: streams.keys.sorted().compactMap { streams[$0]?.config })
        } catch {
            return fail(message.reply, kind, error)
        }
        if existed, let stream = streams[name] {
            return answer(message.reply, info(stream, kind: kind, domain: false, didCreate: true))
        }
        let directory = streamsDirectory + "/" + name
        let created = now
        let stream: EngineStream
        do {
            try BlockIO.makeDirectories(directory)
            try StreamCatalog.writeAtomically(StreamCatalog.encode(config: config, created: created),
                                              to: directory + "/" + StreamCatalog.metaFile, directory: directory)
            stream = try openStream(config: config, created: created, directory: directory, now: now)
        } catch {
            try? StreamCatalog.removeTree(directory)
            return fail(message.reply, kind, .streamCreate(error.description))
        }
        register(stream)
        var actions = config.subjects.map { EngineAction.capture($0) }
        actions += answer(message.reply, info(stream, kind: kind, domain: false, didCreate: true))
        return actions
    }

    /// 2.9.10's checkBytesLimits for a non-clustered server: the stream's max_bytes (1 when it has
    /// none) on top of what the other streams of its storage type reserve must fit max_memory or
    /// max_store. `reserved` overrides the current reservation (an update leaves its own stream out).
    func reservationError(storage: StorageType, addBytes: Int64, reserved: Int64?) -> JetStreamAPIError? {
        let add = addBytes < 0 ? 1 : addBytes
        let current = reserved ?? usage(storage).reserved
        switch storage {
        case .memory: return current + add > options.maxMemory ? .memoryResourcesExceeded : nil
        case .file: return current + add > options.maxStore ? .storageResourcesExceeded : nil
        }
    }

    private func updateStream(_ name: String, _ message: InboundMessage, now: Int64) -> [EngineAction] {
        let kind = "stream_update_response"
        var config: StreamConfig
        do {
            config = try StreamConfig.decode(message.payload).validated()
        } catch {
            return fail(message.reply, kind, error)
        }
        guard config.name == name else { return fail(message.reply, kind, .streamMismatch) }
        guard let stream = streams[name] else { return fail(message.reply, kind, .streamNotFound) }
        let old = stream.config
        func invalid(_ text: String) -> [EngineAction] { fail(message.reply, kind, .streamInvalidConfig(text)) }
        if config.maxConsumers != old.maxConsumers { return invalid("stream configuration update can not change MaxConsumers") }
        if config.storage != old.storage { return invalid("stream configuration update can not change storage type") }
        if config.retention != old.retention { return invalid("stream configuration update can not change retention policy") }
        if !old.templateOwner.isEmpty { return invalid("stream configuration update not allowed on template owned stream") }
        if !config.templateOwner.isEmpty { return invalid("stream configuration update can not be owned by a template") }
        if !config.sealed && old.sealed { return invalid("stream configuration update can not unseal a sealed stream") }
        if !config.denyDelete && old.denyDelete { return invalid("stream configuration update can not cancel deny message deletes") }
        if !config.denyPurge && old.denyPurge { return invalid("stream configuration update can not cancel deny purge") }
        if config.republish != old.republish { return invalid("stream configuration update can not change RePublish") }
        if config.sealed {
            config.maxAge = 0
            config.discard = .new
            config.denyDelete = true
            config.denyPurge = true
            config.allowRollup = false
        }
        // Only growth of max_bytes needs room (2.9.10 checks the difference against the server's reservation).
        let grow = max(0, config.maxBytes - old.maxBytes)
        if let error = reservationError(storage: config.storage, addBytes: grow, reserved: nil) {
            return fail(message.reply, kind, error)
        }
        for other in streams.values where other !== stream {
            for mine in config.subjects where other.config.subjects.contains(where: { StreamConfig.subjectsCollide($0, mine) }) {
                return fail(message.reply, kind, .streamSubjectOverlap)
            }
        }
        do {
            try StreamCatalog.writeAtomically(StreamCatalog.encode(config: config, created: stream.context.created),
                                              to: stream.directory + "/" + StreamCatalog.metaFile, directory: stream.directory)
            try stream.store.update(limits: config.limits)
        } catch {
            return fail(message.reply, kind, .streamUpdate(error.description))
        }
        var actions: [EngineAction] = []
        for subject in config.subjects where !old.subjects.contains(subject) { actions.append(.capture(subject)) }
        for subject in old.subjects where !config.subjects.contains(subject) { actions.append(.release(subject)) }
        stream.context.config = config
        stream.configure()
        routes.removeAll()
        actions += answer(message.reply, info(stream, kind: kind, domain: true))
        return actions
    }

    /// A StreamInfo response for `stream`.
    func info(_ stream: EngineStream, kind: String, domain: Bool, didCreate: Bool = false, paging: APIPaging? = nil,
              subjects: [(String, UInt64)]? = nil, deleted: [UInt64]? = nil) -> [UInt8] {
        var state = StreamInfoState(stream.store.state, consumers: consumers.consumerCount(stream: stream.name))
        state.subjectDetails = subjects
        state.deletedDetails = deleted
        return JetStreamAPIResponse.streamInfo(kind, config: stream.config, created: stream.context.created, state: state,
                                               paging: paging, domain: domain ? options.domain : "", didCreate: didCreate)
    }

    // MARK: Info, names, list

    private func streamInfo(_ name: String, _ message: InboundMessage) -> [EngineAction] {
        let kind = "stream_info_response"
        func failed(_ error: JetStreamAPIError) -> [EngineAction] { failPaged(message.reply, kind, error) }
        let request: StreamInfoRequest
        do { request = try StreamInfoRequest(message.payload) } catch { return failed(error) }
        guard let stream = streams[name] else { return failed(.streamNotFound) }
        var paging = APIPaging()
        var details: [(String, UInt64)]?
        if !request.subjectsFilter.isEmpty {
            let counts = stream.store.subjectCounts(filter: request.subjectsFilter)
            if !counts.isEmpty {
                let sorted = counts.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                let offset = min(max(request.offset, 0), sorted.count)
                let end = min(offset + JetStreamEngine.subjectDetailsLimit, sorted.count)
                if end > offset { details = sorted[offset..<end].map { ($0, counts[$0] ?? 0) } }
                paging = APIPaging(total: counts.count, offset: offset, limit: JetStreamEngine.subjectDetailsLimit)
            }
        }
        let deleted = request.deletedDetails ? stream.store.deletedSequences : nil
        return answer(message.reply, info(stream, kind: kind, domain: true, paging: paging, subjects: details,
                                          deleted: deleted?.isEmpty == true ? nil : deleted))
    }

    /// The streams a NAMES or LIST request selects, by name.
    private func selected(_ request: StreamListRequest) -> [EngineStream] {
        streams.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.compactMap { streams[$0] }.filter { stream in
            request.subject.isEmpty || stream.config.subjects.contains { StreamConfig.subjectsCollide(request.subject, $0) }
        }
    }

    private func streamNames(_ message: InboundMessage) -> [EngineAction] {
        let kind = "stream_names_response"
        let request: StreamListRequest
        do { request = try StreamListRequest(message.payload) } catch {
            return failPaged(message.reply, kind, error, streams: "null")
        }
        let all = selected(request)
        let offset = min(max(request.offset, 0), all.count)
        let page = all[offset...].prefix(JetStreamEngine.namesLimit)
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type(kind))
        w.int("total", Int64(all.count))
        w.int("offset", Int64(offset))
        w.int("limit", Int64(JetStreamEngine.namesLimit))
        if page.isEmpty {
            // Go writes a nil slice as null.
            w.raw("streams", Array("null".utf8))
        } else {
            var list: [UInt8] = [UInt8(ascii: "[")]
            for (k, stream) in page.enumerated() {
                if k > 0 { list.append(UInt8(ascii: ",")) }
                JetStreamJSON.appendString(stream.name, to: &list)
            }
            list.append(UInt8(ascii: "]"))
            w.raw("streams", list)
        }
        return answer(message.reply, w.finished())
    }

    private func streamList(_ message: InboundMessage) -> [EngineAction] {
        let kind = "stream_list_response"
        let request: StreamListRequest
        do { request = try StreamListRequest(message.payload) } catch {
            return failPaged(message.reply, kind, error, streams: "[]")
        }
        let all = selected(request)
        let offset = min(max(request.offset, 0), all.count)
        let page = all[offset...].prefix(JetStreamEngine.listLimit)
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type(kind))
        w.int("total", Int64(all.count))
        w.int("offset", Int64(offset))
        w.int("limit", Int64(JetStreamEngine.listLimit))
        var list: [UInt8] = [UInt8(ascii: "[")]
        for (k, stream) in page.enumerated() {
            if k > 0 { list.append(UInt8(ascii: ",")) }
            var item = JetStreamJSON.ObjectWriter()
            var c: [UInt8] = []
            stream.config.write(to: &c)
            item.raw("config", c)
            item.time("created", stream.context.created)
            var s: [UInt8] = []
            StreamInfoState(stream.store.state, consumers: consumers.consumerCount(stream: stream.name)).write(to: &s)
            item.raw("state", s)
            if !options.domain.isEmpty { item.string("domain", options.domain) }
            list.append(contentsOf: item.finished())
        }
        list.append(UInt8(ascii: "]"))
        w.raw("streams", list)
        return answer(message.reply, w.finished())
    }

    // MARK: Delete and purge

    private func deleteStream(_ name: String, _ message: InboundMessage) -> [EngineAction] {
        let kind = "stream_delete_response"
        guard APIRequest.isEmpty(message.payload) else { return fail(message.reply, kind, .notEmptyRequest) }
        guard let stream = streams[name] else { return fail(message.reply, kind, .streamNotFound) }
        var actions = consumers.streamDeleted(stream: stream.context)
        stream.store.close()
        unregister(stream)
        for subject in stream.config.subjects { actions.append(.release(subject)) }
        do {
            // meta.json first: a crash part-way leaves a directory that start-up skips.
            try BlockIO.remove(stream.directory + "/" + StreamCatalog.metaFile)
            try StreamCatalog.removeTree(stream.directory)
        } catch {
            return actions + fail(message.reply, kind, .streamDelete(error.description))
        }
        return actions + answer(message.reply, JetStreamAPIResponse.success(kind))
    }

    private func purgeStream(_ name: String, _ message: InboundMessage, now: Int64) -> [EngineAction] {
        func failed(_ error: JetStreamAPIError) -> [EngineAction] {
            apiErrors += 1
            return answer(message.reply, JetStreamAPIResponse.purgeError(error))
        }
        let request: PurgeRequest
        do { request = try PurgeRequest(message.payload) } catch { return failed(error) }
        if request.sequence > 0 && request.keep > 0 { return failed(.badRequest) }
        guard let stream = streams[name] else { return failed(.streamNotFound) }
        if stream.config.sealed { return failed(.streamSealed) }
        if stream.config.denyPurge { return failed(.streamPurgeFailed("stream purge not permitted")) }
        let purged: UInt64
        do {
            purged = try filteredPurge(stream, subject: request.filter, upTo: request.sequence, keep: request.keep)
        } catch {
            // 2.9.10 sends a purge the store refused as a plain response (counted, not as an error).
            return answer(message.reply, JetStreamAPIResponse.purgeError(error.apiError(in: .purge)))
        }
        var actions = consumers.streamChanged(stream: stream.context, now: now)
        actions += answer(message.reply, JetStreamAPIResponse.purge(purged: purged))
        return actions
    }

    // MARK: Messages

    private func messageGet(_ name: String, _ message: InboundMessage) -> [EngineAction] {
        let kind = "stream_msg_get_response"
        if APIRequest.isEmpty(message.payload) { return fail(message.reply, kind, .badRequest) }
        let request: MessageGetRequest
        do { request = try MessageGetRequest(message.payload) } catch { return fail(message.reply, kind, error) }
        guard request.isValid else { return fail(message.reply, kind, .badRequest) }
        guard let stream = streams[name] else { return fail(message.reply, kind, .streamNotFound) }
        let stored: StoredMessage
        do { stored = try request.load(from: stream.store) } catch { return fail(message.reply, kind, .noMessageFound) }
        var m = JetStreamJSON.ObjectWriter()
        m.string("subject", stored.subject)
        m.uint("seq", stored.sequence)
        if !stored.headers.isEmpty { m.key("hdrs"); m.appendBase64(stored.headers) }
        if !stored.payload.isEmpty { m.key("data"); m.appendBase64(stored.payload) }
        m.time("time", stored.timestamp)
        var w = JetStreamJSON.ObjectWriter()
        w.string("type", JetStreamAPIResponse.type(kind))
        w.raw("message", m.finished())
        // 2.9.10 sends a found message outside its API accounting.
        return message.reply.isEmpty ? [] : [.reply(message.reply, w.finished())]
    }

    private func messageDelete(_ name: String, _ message: InboundMessage, now: Int64) -> [EngineAction] {
        let kind = "stream_msg_delete_response"
        if APIRequest.isEmpty(message.payload) { return fail(message.reply, kind, .badRequest) }
        let request: MessageDeleteRequest
        do { request = try MessageDeleteRequest(message.payload) } catch { return fail(message.reply, kind, error) }
        guard let stream = streams[name] else { return fail(message.reply, kind, .streamNotFound) }
        if stream.config.sealed { return fail(message.reply, kind, .streamSealed) }
        if stream.config.denyDelete { return fail(message.reply, kind, .streamMessageDeleteFailed("message delete not permitted")) }
        do {
            try stream.store.remove(request.sequence)
        } catch .notFound {
            let state = stream.store.state
            let error = JetStreamAPIError.messageDeleteMissing(sequence: request.sequence, firstSequence: state.firstSequence,
                                                               lastSequence: state.lastSequence,
                                                               storage: stream.config.storage)
            return answer(message.reply, JetStreamAPIResponse.error(kind, error))
        } catch {
            return answer(message.reply, JetStreamAPIResponse.error(kind, error.apiError(in: .messageDelete)))
        }
        var actions = consumers.streamChanged(stream: stream.context, now: now)
        actions += answer(message.reply, JetStreamAPIResponse.success(kind))
        return actions
    }
}
