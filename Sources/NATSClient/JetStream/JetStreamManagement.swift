// Stream and consumer management over `$JS.API.STREAM.*` and `$JS.API.CONSUMER.*`.

import Foundation

struct SuccessResponse: Decodable {
    var success: Bool
}

struct PurgeResponse: Decodable {
    var success: Bool
    var purged: UInt64?
}

struct NamesPage: Decodable {
    var total: Int
    var offset: Int
    var limit: Int
    var streams: [String]?
    var consumers: [String]?
}

struct StreamListPage: Decodable {
    var total: Int
    var offset: Int
    var limit: Int
    var streams: [StreamInfo]?
}

struct ConsumerListPage: Decodable {
    var total: Int
    var offset: Int
    var limit: Int
    var consumers: [ConsumerInfo]?
}

struct MessageGetResponse: Decodable {
    struct Stored: Decodable {
        var subject: String
        var seq: UInt64
        var hdrs: String?
        var data: String?
        var time: String?
    }
    var message: Stored
}

extension JetStreamContext {
    /// Stream and consumer names: not empty, no `.`, `*`, `>`, `/`, `\` or whitespace (the server's
    /// rules; such names would break the API subjects).
    ///
    /// - Throws: ``JetStreamError/invalidArgument(_:)``.
    static func validateName(_ name: String, what: String) throws(JetStreamError) {
        let bad: Set<Character> = [".", "*", ">", "/", "\\", " ", "\t", "\r", "\n"]
        if name.isEmpty || name.contains(where: { bad.contains($0) }) {
            throw .invalidArgument("\(what) name \"\(name)\" must be non-empty without '.', '*', '>', '/', '\\' or whitespace")
        }
    }

    // MARK: - Streams

    /// Creates a stream (an unchanged existing one is accepted as is).
    ///
    /// - Returns: the stream's info.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for a bad name;
    ///   ``JetStreamError/api(code:errCode:description:)`` (10058 name in use with another config,
    ///   10065 subjects overlap, 10052 invalid config...), and the errors of every API call.
    public func addStream(_ config: StreamConfig) async throws(JetStreamError) -> StreamInfo {
        try Self.validateName(config.name, what: "stream")
        return try await api("STREAM.CREATE.\(config.name)", json: config)
    }

    /// Replaces a stream's configuration.
    ///
    /// - Throws: as ``addStream(_:)``; 10059 when the stream does not exist.
    public func updateStream(_ config: StreamConfig) async throws(JetStreamError) -> StreamInfo {
        try Self.validateName(config.name, what: "stream")
        return try await api("STREAM.UPDATE.\(config.name)", json: config)
    }

    /// A stream's configuration and state.
    ///
    /// - Parameter subjectsFilter: also count messages per subject matching this filter
    ///   (``StreamState/subjects``).
    /// - Throws: ``JetStreamError/api(code:errCode:description:)`` with 10059 when the stream does
    ///   not exist, and the errors of every API call.
    public func streamInfo(_ name: String, subjectsFilter: String? = nil) async throws(JetStreamError) -> StreamInfo {
        try Self.validateName(name, what: "stream")
        if let subjectsFilter {
            return try await api("STREAM.INFO.\(name)", json: ["subjects_filter": subjectsFilter])
        }
        return try await api("STREAM.INFO.\(name)")
    }

    /// Deletes a stream and every message and consumer in it.
    ///
    /// - Throws: 10059 when it does not exist, and the errors of every API call.
    public func deleteStream(_ name: String) async throws(JetStreamError) {
        try Self.validateName(name, what: "stream")
        let _: SuccessResponse = try await api("STREAM.DELETE.\(name)")
    }

    /// Every stream name (sorted), optionally only the streams that capture `subject`.
    ///
    /// - Throws: the errors of every API call.
    public func streamNames(subject: String? = nil) async throws(JetStreamError) -> [String] {
        var names: [String] = []
        while true {
            struct Request: Encodable {
                var offset: Int
                var subject: String?
            }
            let page: NamesPage = try await api("STREAM.NAMES", json: Request(offset: names.count, subject: subject))
            let items = page.streams ?? []
            names.append(contentsOf: items)
            if items.isEmpty || names.count >= page.total { return names }
        }
    }

    /// Every stream's info.
    ///
    /// - Throws: the errors of every API call.
    public func streams() async throws(JetStreamError) -> [StreamInfo] {
        var infos: [StreamInfo] = []
        while true {
            let page: StreamListPage = try await api("STREAM.LIST", json: ["offset": infos.count])
            let items = page.streams ?? []
            infos.append(contentsOf: items)
            if items.isEmpty || infos.count >= page.total { return infos }
        }
    }

    /// Removes messages from a stream: all of them, those on `filter`, those below `sequence`, or
    /// all but the newest `keep` (per subject with `filter`).
    ///
    /// - Returns: how many messages were removed.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` when both `sequence` and `keep` are given;
    ///   10110 when the stream denies purges, 10059 when it does not exist, and the errors of every API call.
    @discardableResult
    public func purgeStream(_ name: String, filter: String? = nil, sequence: UInt64? = nil,
                            keep: UInt64? = nil) async throws(JetStreamError) -> UInt64 {
        try Self.validateName(name, what: "stream")
        if sequence != nil && keep != nil { throw .invalidArgument("purge takes either sequence or keep, not both") }
        struct Request: Encodable {
            var filter: String?
            var seq: UInt64?
            var keep: UInt64?
        }
        let response: PurgeResponse
        if filter == nil && sequence == nil && keep == nil {
            response = try await api("STREAM.PURGE.\(name)")
        } else {
            response = try await api("STREAM.PURGE.\(name)", json: Request(filter: filter, seq: sequence, keep: keep))
        }
        return response.purged ?? 0
    }

    /// The stored message with sequence `sequence`.
    ///
    /// - Throws: 10037 when there is none, 10059 when the stream does not exist, and the errors
    ///   of every API call.
    public func getMessage(_ stream: String, sequence: UInt64) async throws(JetStreamError) -> StoredMessage {
        try Self.validateName(stream, what: "stream")
        let response: MessageGetResponse = try await api("STREAM.MSG.GET.\(stream)", json: ["seq": sequence])
        return try Self.stored(response)
    }

    /// The newest stored message on `subject`.
    ///
    /// - Throws: as ``getMessage(_:sequence:)``.
    public func getLastMessage(_ stream: String, subject: String) async throws(JetStreamError) -> StoredMessage {
        try Self.validateName(stream, what: "stream")
        let response: MessageGetResponse = try await api("STREAM.MSG.GET.\(stream)", json: ["last_by_subj": subject])
        return try Self.stored(response)
    }

    /// Reads the newest message on `subject` (or the message at `sequence`) through the Direct Get
    /// API, which only streams with ``StreamConfig/allowDirect`` answer.
    ///
    /// - Returns: the message, or nil when there is none (`404 Message Not Found`).
    /// - Throws: ``JetStreamError/timeout`` when the stream does not allow direct gets (the server
    ///   does not answer), ``JetStreamError/noResponders(subject:)``, ``JetStreamError/status(code:description:)``
    ///   for another status, and the errors of every API call.
    public func directGet(_ stream: String, subject: String? = nil, sequence: UInt64? = nil)
        async throws(JetStreamError) -> StoredMessage? {
        try Self.validateName(stream, what: "stream")
        let full: String
        let body: [UInt8]
        if let subject, sequence == nil {
            full = "\(apiPrefix).DIRECT.GET.\(stream).\(subject)"
            body = []
        } else if let sequence {
            full = "\(apiPrefix).DIRECT.GET.\(stream)"
            body = try Self.encode(["seq": sequence])
        } else {
            throw .invalidArgument("direct get needs a subject or a sequence")
        }
        let reply: Message
        do {
            reply = try await client.request(body, subject: full, timeout: timeout)
        } catch {
            throw JetStreamError.from(error, subject: full)
        }
        let headers = reply.headers
        if let status = headers?.status {
            if status == 404 { return nil }
            throw .status(code: status, description: headers?.statusDescription ?? "")
        }
        guard let headers, let subject = headers["Nats-Subject"],
              let sequence = headers["Nats-Sequence"].flatMap({ UInt64($0) }) else {
            throw .invalidResponse("direct get reply on \(full) lacks Nats-Subject or Nats-Sequence")
        }
        let time = headers["Nats-Time-Stamp"].flatMap(RFC3339Nano.parse)
        return StoredMessage(subject: subject, sequence: sequence, headers: headers, payload: reply.payload, time: time)
    }

    /// - Throws: ``JetStreamError/invalidResponse(_:)`` for bad base64 or headers.
    static func stored(_ response: MessageGetResponse) throws(JetStreamError) -> StoredMessage {
        let message = response.message
        var headers: Headers?
        if let hdrs = message.hdrs, !hdrs.isEmpty {
            guard let data = Data(base64Encoded: hdrs) else { throw .invalidResponse("message headers are not base64") }
            do {
                headers = try Headers(parsing: [UInt8](data))
            } catch {
                throw .invalidResponse("message headers do not parse: \(error)")
            }
        }
        var payload: [UInt8] = []
        if let text = message.data, !text.isEmpty {
            guard let data = Data(base64Encoded: text) else { throw .invalidResponse("message data is not base64") }
            payload = [UInt8](data)
        }
        return StoredMessage(subject: message.subject, sequence: message.seq, headers: headers, payload: payload,
                             time: message.time.flatMap(RFC3339Nano.parse))
    }

    /// Deletes one message; with `erase` its bytes are overwritten on disk.
    ///
    /// - Throws: 10057 when there is no such message or the stream denies deletes, and the errors
    ///   of every API call.
    public func deleteMessage(_ stream: String, sequence: UInt64, erase: Bool = false) async throws(JetStreamError) {
        try Self.validateName(stream, what: "stream")
        struct Request: Encodable {
            var seq: UInt64
            var no_erase: Bool?
        }
        let _: SuccessResponse = try await api("STREAM.MSG.DELETE.\(stream)",
                                               json: Request(seq: sequence, no_erase: erase ? nil : true))
    }

    // MARK: - Consumers

    /// Creates a consumer, or updates it when one with the same name exists.
    ///
    /// Named (durable or not) consumers use `CONSUMER.CREATE.<stream>.<name>` as nats.py does for
    /// 2.9 servers; an unnamed one the ephemeral `CONSUMER.CREATE.<stream>`.
    /// - Throws: ``JetStreamError/invalidArgument(_:)`` for bad names or a `name` differing from
    ///   `durableName`; ``JetStreamError/api(code:errCode:description:)`` (10059 no stream, 10012
    ///   an immutable field changed...), and the errors of every API call.
    public func addConsumer(_ stream: String, config: ConsumerConfig) async throws(JetStreamError) -> ConsumerInfo {
        try Self.validateName(stream, what: "stream")
        struct Request: Encodable {
            var stream_name: String
            var config: ConsumerConfig
        }
        if let durable = config.durableName, let name = config.name, durable != name {
            throw .invalidArgument("consumer name \(name) differs from its durable name \(durable)")
        }
        let request = Request(stream_name: stream, config: config)
        if let name = config.name ?? config.durableName {
            try Self.validateName(name, what: "consumer")
            return try await api("CONSUMER.CREATE.\(stream).\(name)", json: request)
        }
        return try await api("CONSUMER.CREATE.\(stream)", json: request)
    }

    /// Updates an existing consumer (the same request as ``addConsumer(_:config:)``).
    ///
    /// - Throws: as ``addConsumer(_:config:)``.
    public func updateConsumer(_ stream: String, config: ConsumerConfig) async throws(JetStreamError) -> ConsumerInfo {
        try await addConsumer(stream, config: config)
    }

    /// A consumer's configuration and counters.
    ///
    /// - Throws: 10014 when it does not exist, 10059 when the stream does not, and the errors of
    ///   every API call.
    public func consumerInfo(_ stream: String, name: String) async throws(JetStreamError) -> ConsumerInfo {
        try Self.validateName(stream, what: "stream")
        try Self.validateName(name, what: "consumer")
        return try await api("CONSUMER.INFO.\(stream).\(name)")
    }

    /// Deletes a consumer.
    ///
    /// - Throws: 10014 when it does not exist, and the errors of every API call.
    public func deleteConsumer(_ stream: String, name: String) async throws(JetStreamError) {
        try Self.validateName(stream, what: "stream")
        try Self.validateName(name, what: "consumer")
        let _: SuccessResponse = try await api("CONSUMER.DELETE.\(stream).\(name)")
    }

    /// The names of a stream's consumers (sorted).
    ///
    /// - Throws: 10059 when the stream does not exist, and the errors of every API call.
    public func consumerNames(_ stream: String) async throws(JetStreamError) -> [String] {
        try Self.validateName(stream, what: "stream")
        var names: [String] = []
        while true {
            let page: NamesPage = try await api("CONSUMER.NAMES.\(stream)", json: ["offset": names.count])
            let items = page.consumers ?? []
            names.append(contentsOf: items)
            if items.isEmpty || names.count >= page.total { return names }
        }
    }

    /// Every consumer's info on a stream.
    ///
    /// - Throws: as ``consumerNames(_:)``.
    public func consumers(_ stream: String) async throws(JetStreamError) -> [ConsumerInfo] {
        try Self.validateName(stream, what: "stream")
        var infos: [ConsumerInfo] = []
        while true {
            let page: ConsumerListPage = try await api("CONSUMER.LIST.\(stream)", json: ["offset": infos.count])
            let items = page.consumers ?? []
            infos.append(contentsOf: items)
            if items.isEmpty || infos.count >= page.total { return infos }
        }
    }
}
