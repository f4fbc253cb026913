// ADR-32 Service API: endpoints as queue subscriptions, $SRV.PING/INFO/STATS responders,
// error headers, and discovery.

import Foundation
import Synchronization

/// A NATS micro-service (ADR-32): named, versioned endpoints plus discovery and statistics.
///
/// ```swift
/// let service = try await Service.start(client, .init(name: "auth", version: "1.0.0", description: "users"))
/// try await service.addEndpoint("get_user", subject: "auth.user.get") { request in
///     guard let user = lookup(request.payload) else {
///         try await request.respondError(code: 404, description: "user not found")
///         return
///     }
///     try await request.respond(json: user)
/// }
/// ```
/// Each endpoint is a queue subscription (group `q` unless configured otherwise), so instances
/// share the load. Every instance also answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`, on
/// the bare verb, `.<name>` and `.<name>.<id>`, with nats.go's JSON.
public final class Service: Sendable {
    /// What a service is called and how its endpoints subscribe.
    public struct Config: Sendable {
        /// The name: letters, digits, `-` and `_` only.
        public var name: String
        /// The version, a SemVer string such as `1.2.0`.
        public var version: String
        /// What the service does.
        public var description: String
        /// Free-form metadata returned by PING, INFO and STATS.
        public var metadata: [String: String]
        /// The queue group of endpoints that do not set one (`q` by default).
        public var queueGroup: QueueGroup
        /// The prefix of the discovery subjects (`$SRV`).
        public var apiPrefix: String

        /// A configuration with the default queue group `q` and prefix `$SRV`.
        public init(name: String, version: String, description: String = "", metadata: [String: String] = [:],
                    queueGroup: QueueGroup = .named("q"), apiPrefix: String = "$SRV") {
            self.name = name
            self.version = version
            self.description = description
            self.metadata = metadata
            self.queueGroup = queueGroup
            self.apiPrefix = apiPrefix
        }
    }

    /// How an endpoint joins a queue group.
    public enum QueueGroup: Sendable, Equatable {
        /// Use the group's or the service's setting.
        case inherit
        /// Join this queue group.
        case named(String)
        /// Plain subscription: every instance gets every request.
        case none
    }

    /// A request to handle a request on an endpoint. Throwing answers with code 500.
    public typealias Handler = @Sendable (ServiceRequest) async throws -> Void

    /// The service's client.
    public let client: NATSClient
    /// The configuration.
    public let config: Config
    /// This instance's unique id.
    public let id: String
    /// When the service started.
    public let started: Date

    let state = Mutex(ServiceState())

    struct ServiceState {
        var endpoints: [ServiceEndpoint] = []
        var monitors: [Subscription] = []
        var tasks: [Task<Void, Never>] = []
        var stopped = false
    }

    private init(client: NATSClient, config: Config) {
        self.client = client
        self.config = config
        self.id = NUID.next()
        self.started = Date()
    }

    /// Validates `config`, subscribes the PING/INFO/STATS responders and returns the running service.
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` for a bad name, version, queue group or prefix;
    ///   ``NATSError/closed``; the errors of ``NATSClient/flush(timeout:)`` (the subscriptions are
    ///   confirmed before this returns).
    public static func start(_ client: NATSClient, _ config: Config) async throws(NATSError) -> Service {
        guard isValidName(config.name) else {
            throw .invalidArgument("service name \"\(config.name)\" must match ^[A-Za-z0-9\\-_]+$")
        }
        guard isValidSemVer(config.version) else {
            throw .invalidArgument("service version \"\(config.version)\" is not SemVer (for example 1.0.0)")
        }
        if case .named(let group) = config.queueGroup, group.isEmpty || group.contains(where: \.isWhitespace) {
            throw .invalidArgument("queue group \"\(group)\" is not valid")
        }
        guard !config.apiPrefix.isEmpty, !config.apiPrefix.contains(where: { $0.isWhitespace || $0 == "*" || $0 == ">" }) else {
            throw .invalidArgument("API prefix \"\(config.apiPrefix)\" is not valid")
        }
        let service = Service(client: client, config: config)
        do {
            for verb in ["PING", "INFO", "STATS"] {
                for subject in service.controlSubjects(verb) {
                    let sub = try await client.subscribe(subject)
                    let task = Task { [service] in await service.answerMonitor(verb: verb, subscription: sub) }
                    service.state.withLock {
                        $0.monitors.append(sub)
                        $0.tasks.append(task)
                    }
                }
            }
            try await client.flush()
        } catch {
            await service.stop()
            throw error
        }
        return service
    }

    /// `$SRV.<verb>`, `$SRV.<verb>.<name>`, `$SRV.<verb>.<name>.<id>`.
    func controlSubjects(_ verb: String) -> [String] {
        let base = "\(config.apiPrefix).\(verb)"
        return [base, "\(base).\(config.name)", "\(base).\(config.name).\(id)"]
    }

    /// Adds an endpoint on `subject` (the name when nil).
    ///
    /// - Parameters:
    ///   - name: endpoint name (letters, digits, `-`, `_`).
    ///   - subject: the subject to listen on; defaults to `name`.
    ///   - queueGroup: `.inherit` uses the service's queue group.
    ///   - metadata: endpoint metadata shown by INFO.
    ///   - handler: called once per request, one request at a time.
    /// - Throws: ``NATSError/invalidArgument(_:)`` for a bad name, subject or queue group,
    ///   ``NATSError/closed`` after ``stop()``, and the errors of ``NATSClient/subscribe(_:queue:)``.
    public func addEndpoint(_ name: String, subject: String? = nil, queueGroup: QueueGroup = .inherit,
                            metadata: [String: String]? = nil, handler: @escaping Handler) async throws(NATSError) {
        try await addEndpoint(name, subject: subject ?? name, queueGroup: queueGroup, inherited: config.queueGroup,
                              metadata: metadata, handler: handler)
    }

    func addEndpoint(_ name: String, subject: String, queueGroup: QueueGroup, inherited: QueueGroup,
                     metadata: [String: String]?, handler: @escaping Handler) async throws(NATSError) {
        guard Self.isValidName(name) else { throw .invalidArgument("endpoint name \"\(name)\" must match ^[A-Za-z0-9\\-_]+$") }
        let effective = queueGroup == .inherit ? inherited : queueGroup
        let queue: String?
        switch effective {
        case .named(let group): queue = group
        case .none, .inherit: queue = nil
        }
        if state.withLock({ $0.stopped }) { throw .closed }
        let sub = try await client.subscribe(subject, queue: queue)
        let endpoint = ServiceEndpoint(name: name, subject: subject, queueGroup: queue ?? "", metadata: metadata,
                                       subscription: sub)
        let task = Task { [self] in await self.serve(endpoint, handler: handler) }
        state.withLock {
            $0.endpoints.append(endpoint)
            $0.tasks.append(task)
        }
    }

    /// A group whose endpoints' subjects start with `<name>.`.
    ///
    /// - Parameters:
    ///   - name: the subject prefix (dot-separated tokens).
    ///   - queueGroup: `.inherit` uses the service's queue group.
    public func addGroup(_ name: String, queueGroup: QueueGroup = .inherit) -> ServiceGroup {
        ServiceGroup(service: self, prefix: name, queueGroup: queueGroup == .inherit ? config.queueGroup : queueGroup)
    }

    /// Stops the service: drains every endpoint (requests in flight are still answered) and
    /// removes the discovery responders. The client stays open.
    public func stop() async {
        let (endpoints, monitors) = state.withLock { s -> ([ServiceEndpoint], [Subscription]) in
            s.stopped = true
            return (s.endpoints, s.monitors)
        }
        for endpoint in endpoints { try? await endpoint.subscription.drain(timeout: .seconds(10)) }
        for monitor in monitors { await monitor.unsubscribe() }
        let tasks = state.withLock { $0.tasks }
        for task in tasks { await task.value }
    }

    /// The PING response of this instance.
    public var ping: ServicePing {
        ServicePing(name: config.name, id: id, version: config.version, metadata: config.metadata, type: ServicePing.responseType)
    }

    /// The INFO response of this instance.
    public var info: ServiceInfo {
        let endpoints = state.withLock { $0.endpoints }
        return ServiceInfo(
            name: config.name, id: id, version: config.version, metadata: config.metadata, type: ServiceInfo.responseType,
            description: config.description,
            endpoints: endpoints.map {
                ServiceEndpointInfo(name: $0.name, subject: $0.subject, queueGroup: $0.queueGroup, metadata: $0.metadata)
            })
    }

    /// The STATS response of this instance.
    public var stats: ServiceStats {
        let endpoints = state.withLock { $0.endpoints }
        return ServiceStats(
            name: config.name, id: id, version: config.version, metadata: config.metadata, type: ServiceStats.responseType,
            started: RFC3339.string(from: started), endpoints: endpoints.map { $0.snapshot })
    }

    /// Resets every endpoint's counters.
    public func resetStats() {
        for endpoint in state.withLock({ $0.endpoints }) { endpoint.reset() }
    }

    private func serve(_ endpoint: ServiceEndpoint, handler: Handler) async {
        do {
            for try await message in endpoint.subscription {
                let start = ContinuousClock.now
                let request = ServiceRequest(message: message, endpoint: endpoint)
                do {
                    try await handler(request)
                } catch {
                    if !request.answered {
                        try? await request.respondError(code: 500, description: "\(error)")
                    }
                }
                endpoint.record(ContinuousClock.now - start)
            }
        } catch {
            // The subscription ended with an error (for example refused after a reconnect): the
            // client already reported it as an event.
        }
    }

    private func answerMonitor(verb: String, subscription: Subscription) async {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        do {
            for try await message in subscription {
                guard message.reply != nil else { continue }
                let body: Data
                do {
                    switch verb {
                    case "PING": body = try encoder.encode(ping)
                    case "INFO": body = try encoder.encode(info)
                    default: body = try encoder.encode(stats)
                    }
                } catch {
                    var headers = Headers()
                    try? headers.append(name: "Nats-Service-Error", value: "\(error)")
                    try? headers.append(name: "Nats-Service-Error-Code", value: "500")
                    try? await message.respond([], headers: headers)
                    continue
                }
                try? await message.respond([UInt8](body))
            }
        } catch {
            // Ended by stop() or by the client closing.
        }
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }

    /// The official SemVer 2.0.0 grammar: MAJOR.MINOR.PATCH[-prerelease][+build].
    static func isValidSemVer(_ version: String) -> Bool {
        var core = Substring(version)
        var build: Substring?
        if let plus = core.firstIndex(of: "+") {
            build = core[core.index(after: plus)...]
            core = core[..<plus]
        }
        var prerelease: Substring?
        if let dash = core.firstIndex(of: "-") {
            prerelease = core[core.index(after: dash)...]
            core = core[..<dash]
        }
        func isNumeric(_ part: Substring) -> Bool {
            !part.isEmpty && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber) && (part == "0" || part.first != "0")
        }
        func isIdentifier(_ part: Substring) -> Bool {
            !part.isEmpty && part.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D
            }
        }
        let numbers = core.split(separator: ".", omittingEmptySubsequences: false)
        guard numbers.count == 3, numbers.allSatisfy(isNumeric) else { return false }
        if let prerelease {
            for part in prerelease.split(separator: ".", omittingEmptySubsequences: false) {
                guard isIdentifier(part) else { return false }
                if part.allSatisfy(\.isNumber) && !isNumeric(part) { return false }
            }
        }
        if let build {
            guard build.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(isIdentifier) else { return false }
        }
        return true
    }
}

/// Endpoints under a common subject prefix.
public struct ServiceGroup: Sendable {
    /// The service the group belongs to.
    public let service: Service
    /// The subject prefix (without the trailing dot).
    public let prefix: String
    let queueGroup: Service.QueueGroup

    /// Adds an endpoint on `<prefix>.<subject ?? name>`.
    ///
    /// - Throws: as ``Service/addEndpoint(_:subject:queueGroup:metadata:handler:)``.
    public func addEndpoint(_ name: String, subject: String? = nil, queueGroup: Service.QueueGroup = .inherit,
                            metadata: [String: String]? = nil, handler: @escaping Service.Handler) async throws(NATSError) {
        try await service.addEndpoint(name, subject: "\(prefix).\(subject ?? name)", queueGroup: queueGroup,
                                      inherited: self.queueGroup, metadata: metadata, handler: handler)
    }

    /// A nested group `<prefix>.<name>`.
    public func addGroup(_ name: String, queueGroup: Service.QueueGroup = .inherit) -> ServiceGroup {
        ServiceGroup(service: service, prefix: "\(prefix).\(name)", queueGroup: queueGroup == .inherit ? self.queueGroup : queueGroup)
    }
}

/// One endpoint: its subscription and its statistics.
final class ServiceEndpoint: Sendable {
    let name: String
    let subject: String
    let queueGroup: String
    let metadata: [String: String]?
    let subscription: Subscription
    private let counters: Mutex<ServiceEndpointStats>

    init(name: String, subject: String, queueGroup: String, metadata: [String: String]?, subscription: Subscription) {
        self.name = name
        self.subject = subject
        self.queueGroup = queueGroup
        self.metadata = metadata
        self.subscription = subscription
        self.counters = Mutex(ServiceEndpointStats(name: name, subject: subject, queueGroup: queueGroup))
    }

    var snapshot: ServiceEndpointStats { counters.withLock { $0 } }

    func record(_ elapsed: Duration) {
        let (seconds, attoseconds) = elapsed.components
        let nanos = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        counters.withLock { stats in
            stats.numRequests += 1
            stats.processingTime += nanos
            stats.averageProcessingTime = stats.processingTime / Int64(stats.numRequests)
        }
    }

    func recordError(code: Int, description: String) {
        counters.withLock { stats in
            stats.numErrors += 1
            stats.lastError = "\(code):\(description)"
        }
    }

    func reset() {
        counters.withLock { $0 = ServiceEndpointStats(name: name, subject: subject, queueGroup: queueGroup) }
    }
}

/// A request received by a service endpoint.
public struct ServiceRequest: Sendable {
    /// The underlying message.
    public let message: Message
    let endpoint: ServiceEndpoint
    private let answeredFlag = AnsweredFlag()

    init(message: Message, endpoint: ServiceEndpoint) {
        self.message = message
        self.endpoint = endpoint
    }

    /// The subject the request was sent to.
    public var subject: String { message.subject }
    /// The request body.
    public var payload: [UInt8] { message.payload }
    /// The request headers, if any.
    public var headers: Headers? { message.headers }
    /// The name of the endpoint that received it.
    public var endpointName: String { endpoint.name }

    var answered: Bool { answeredFlag.value.load(ordering: .relaxed) }

    /// Decodes the body as JSON.
    ///
    /// - Throws: ``NATSError/json(_:)``.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws(NATSError) -> T { try message.decode(T.self) }

    /// Answers with `payload`.
    ///
    /// - Throws: the errors of ``Message/respond(_:headers:)``.
    public func respond(_ payload: [UInt8], headers: Headers? = nil) async throws(NATSError) {
        answeredFlag.value.store(true, ordering: .relaxed)
        try await message.respond(payload, headers: headers)
    }

    /// Answers with `value` encoded as JSON.
    ///
    /// - Throws: ``NATSError/json(_:)`` and the errors of ``Message/respond(_:headers:)``.
    public func respond<T: Encodable>(json value: T, headers: Headers? = nil) async throws(NATSError) {
        try await respond(try JSONPayload.encode(value), headers: headers)
    }

    /// Answers with an error: headers `Nats-Service-Error: <description>` and
    /// `Nats-Service-Error-Code: <code>`, and `data` as the body. Counts it in the endpoint's stats.
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` if `description` holds CR or LF, and the errors
    ///   of ``Message/respond(_:headers:)``.
    public func respondError(code: Int, description: String, data: [UInt8] = [], headers: Headers? = nil) async throws(NATSError) {
        var all = headers ?? Headers()
        do {
            try all.set(name: "Nats-Service-Error", value: description)
            try all.set(name: "Nats-Service-Error-Code", value: String(code))
        } catch {
            throw .invalidArgument("error description cannot be sent as a header: \(error)")
        }
        endpoint.recordError(code: code, description: description)
        try await respond(data, headers: all)
    }
}

final class AnsweredFlag: Sendable {
    let value = Atomic(false)
}

extension Message {
    /// The `Nats-Service-Error-Code` and `Nats-Service-Error` of a service error reply, if this is one.
    public var serviceError: (code: Int, description: String)? {
        guard let headers, let codeText = headers["Nats-Service-Error-Code"] else { return nil }
        return (Int(codeText) ?? 0, headers["Nats-Service-Error"] ?? "")
    }
}

// MARK: - Discovery

extension Service {
    /// A discovery verb.
    public enum Verb: String, Sendable {
        /// `$SRV.PING`: liveness and identity.
        case ping = "PING"
        /// `$SRV.INFO`: description and endpoints.
        case info = "INFO"
        /// `$SRV.STATS`: per-endpoint request statistics.
        case stats = "STATS"
    }

    /// Sends `$SRV.<verb>[.<name>[.<id>]]` and collects every reply until `timeout` passes
    /// (or `maxReplies` arrived).
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` for an id without a name, ``NATSError/closed``,
    ///   and the errors of ``NATSClient/publish(_:subject:reply:headers:)``.
    public static func discover(_ client: NATSClient, verb: Verb, name: String? = nil, id: String? = nil,
                                timeout: Duration = .seconds(1), maxReplies: Int? = nil,
                                apiPrefix: String = "$SRV") async throws(NATSError) -> [Message] {
        if id != nil && name == nil { throw .invalidArgument("discovery by id needs the service name") }
        var subject = "\(apiPrefix).\(verb.rawValue)"
        if let name { subject += ".\(name)" }
        if let id { subject += ".\(id)" }
        let inbox = "\(client.options.inboxPrefix).\(NUID.next())"
        let sub = try await client.subscribe(inbox)
        if let maxReplies { try await sub.unsubscribe(after: maxReplies) }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            await sub.unsubscribe()
        }
        defer { timer.cancel() }
        do {
            try await client.publish([], subject: subject, reply: inbox)
        } catch {
            await sub.unsubscribe()
            throw error
        }
        var replies: [Message] = []
        do {
            for try await message in sub {
                if message.status == 503 { continue }
                replies.append(message)
            }
        } catch {
            throw NATSError.from(error)
        }
        return replies
    }

    /// Pings every instance (of `name`, when given) and decodes the replies.
    ///
    /// - Throws: as ``discover(_:verb:name:id:timeout:maxReplies:apiPrefix:)``; replies that do not decode are skipped.
    public static func ping(_ client: NATSClient, name: String? = nil, timeout: Duration = .seconds(1)) async throws(NATSError) -> [ServicePing] {
        try await discover(client, verb: .ping, name: name, timeout: timeout).compactMap { try? $0.decode(ServicePing.self) }
    }

    /// Asks every instance (of `name`, when given) for its INFO.
    ///
    /// - Throws: as ``discover(_:verb:name:id:timeout:maxReplies:apiPrefix:)``; replies that do not decode are skipped.
    public static func info(_ client: NATSClient, name: String? = nil, timeout: Duration = .seconds(1)) async throws(NATSError) -> [ServiceInfo] {
        try await discover(client, verb: .info, name: name, timeout: timeout).compactMap { try? $0.decode(ServiceInfo.self) }
    }

    /// Asks every instance (of `name`, when given) for its STATS.
    ///
    /// - Throws: as ``discover(_:verb:name:id:timeout:maxReplies:apiPrefix:)``; replies that do not decode are skipped.
    public static func stats(_ client: NATSClient, name: String? = nil, timeout: Duration = .seconds(1)) async throws(NATSError) -> [ServiceStats] {
        try await discover(client, verb: .stats, name: name, timeout: timeout).compactMap { try? $0.decode(ServiceStats.self) }
    }
}
