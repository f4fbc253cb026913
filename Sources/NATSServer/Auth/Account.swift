// Account: one subject space of the running broker. Clients of different accounts never see each
// other's messages; exports and imports carry chosen subjects across, through subscriptions inside
// the broker (ImportRoute) that re-route a message into the other account.

import EventLoop
import Glibc
import JetStream
import NATSProtocol
import Synchronization

/// A running account: its subscriptions, the generation the loops' match caches compare, and the
/// replies of its service exports waiting for their responses.
final class Account: Sendable {
    /// `$G` for the global account.
    let name: String
    /// A small number identifying the account in the loops' match caches (0 is `$G`).
    let index: Int
    /// The configuration it was built from; nil for `$G`.
    let config: AccountConfig?
    /// Every subscription of the account. One lock; matches are copied out (retained arrays).
    let subscriptions = Mutex(SubjectTrie<Subscription>(cacheLimit: 4096))
    /// Bumped (under the trie lock) by every insert and remove; loops' match caches compare it.
    /// Starts at 1: 0 marks an empty cache slot.
    let generation = Atomic<UInt64>(1)
    /// Requests that came in through a service import and wait for their responses.
    let responses: ResponseMap
    /// Whether the account's clients may use JetStream (`$G` when JetStream is on and no account
    /// is configured; a configured account with its own `jetstream` block).
    let jetStreamEnabled: Bool

    init(name: String, index: Int, config: AccountConfig?, jetStreamEnabled: Bool) {
        self.name = name
        self.index = index
        self.config = config
        self.jetStreamEnabled = jetStreamEnabled
        responses = ResponseMap()
    }

    /// The subscriptions matching `subject`, under the trie lock (no loop cache).
    func match(_ subject: UnsafeRawBufferPointer) -> MatchResult<Subscription> {
        nonisolated(unsafe) var result = MatchResult<Subscription>()
        subscriptions.withLock { result = $0.match(subject) }
        return result
    }

    /// Runs `body` on the trie under its lock and invalidates every loop's cached matches of
    /// this account.
    @discardableResult
    func mutate<R>(_ body: (inout SubjectTrie<Subscription>) -> R) -> R {
        nonisolated(unsafe) var result: R?
        subscriptions.withLock { trie in
            result = body(&trie)
            generation.wrappingAdd(1, ordering: .releasing)
        }
        return result!
    }

    /// The number of client subscriptions (those of the broker's own routes not counted).
    var clientSubscriptionCount: Int {
        subscriptions.withLock { trie in trie.allSubscriptions().reduce(0) { $0 + ($1.value.importRoute == nil ? 1 : 0) } }
    }
}

/// The pending replies of requests that reached an account through a service import: the
/// `_R_.` subject the responders answer on, mapped back to the requester's account and reply.
/// Bounded in count (the oldest is dropped first) and expiring after the response threshold.
final class ResponseMap: Sendable {
    struct Entry {
        let account: Account
        let reply: [UInt8]
        let singleton: Bool
        var expires: UInt64
    }
    private struct State {
        var entries: [[UInt8]: Entry] = [:]
        /// Tokens in the order they were made (so in order of expiry).
        var order: [[UInt8]] = []
        var head = 0
    }

    /// 2.9.10's default response threshold: a streamed response may come this long after the request.
    static let threshold: UInt64 = 120_000_000_000
    /// At most this many replies wait at once; past it the oldest is forgotten.
    static let capacity = 100_000

    /// `_R_.<6 random characters>.`: this account's reply prefix.
    let prefix: [UInt8]
    private let state = Mutex(State())

    init() {
        prefix = Array("_R_.".utf8) + Self.randomToken(6) + [UInt8(ascii: ".")]
    }

    /// A new reply subject that leads back to `reply` in `account`.
    func register(account: Account, reply: UnsafeRawBufferPointer, singleton: Bool, now: UInt64) -> [UInt8] {
        let entry = Entry(account: account, reply: Array(reply), singleton: singleton, expires: now &+ Self.threshold)
        return state.withLock { state -> [UInt8] in
            Self.expire(&state, now: now)
            var subject = prefix + Self.randomToken(8)
            while state.entries[subject] != nil { subject = prefix + Self.randomToken(8) }
            state.entries[subject] = entry
            state.order.append(subject)
            return subject
        }
    }

    /// The requester a response on `subject` goes to; a singleton's entry (or a stream's at its
    /// empty end-of-response message) is removed.
    func resolve(_ subject: UnsafeRawBufferPointer, endOfStream: Bool, now: UInt64) -> Entry? {
        let key = Array(subject)
        return state.withLock { state -> Entry? in
            guard var entry = state.entries[key] else { return nil }
            if entry.expires <= now {
                state.entries[key] = nil
                return nil
            }
            if entry.singleton || endOfStream {
                state.entries[key] = nil
            } else {
                entry.expires = now &+ Self.threshold
                state.entries[key] = entry
            }
            return entry
        }
    }

    /// Forgets a reply (its request reached no responder).
    func remove(_ subject: [UInt8]) {
        _ = state.withLock { $0.entries.removeValue(forKey: subject) }
    }

    /// Replies waiting (for /accountz and tests).
    var count: Int { state.withLock { $0.entries.count } }

    private static func expire(_ state: inout State, now: UInt64) {
        while state.head < state.order.count {
            let token = state.order[state.head]
            if let entry = state.entries[token] {
                // Tokens are in order of creation; a streamed reply answered lately keeps its place.
                if entry.expires > now && state.entries.count < capacity { break }
                state.entries[token] = nil
            }
            state.head += 1
        }
        if state.head > 1024 && state.head * 2 > state.order.count {
            state.order.removeFirst(state.head)
            state.head = 0
        }
        // Resolved and removed replies leave their tokens behind a live one at the head: once the
        // dead outnumber the live by far, keep only the live, in their order.
        let live = state.entries.count
        if state.order.count - state.head > 3 * live + 1024 {
            state.order = state.order[state.head...].filter { state.entries[$0] != nil }
            state.head = 0
        }
    }

    /// Tokens kept for expiry, live or dead (for tests: bounded by the live count).
    var trackedTokens: Int { state.withLock { $0.order.count } }

    private static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)

    private static func randomToken(_ length: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
    }
}

/// What a subscription of the broker's own does with the messages it matches: carry them into
/// another account.
final class ImportRoute: InternalSink {
    enum Kind {
        /// In the exporting account, on the imported subject: delivers into `target` on the
        /// mapped subject.
        case stream(target: Account, from: [[UInt8]], to: [[UInt8]])
        /// In the importing account, on the local subject: delivers into the exporter on the
        /// exported subject, with a reply that leads back.
        case service(exporter: Account, from: [[UInt8]], to: [[UInt8]], responseType: ServiceResponseType)
        /// In an exporting account, on its `_R_.` prefix: carries responses back to the requester.
        case responses(owner: Account)
        /// In an account without JetStream while JetStream runs, on `$JS.API.>`: answers 2.9.10's
        /// "JetStream not enabled for account" (10039).
        case jetStreamDisabled
    }
    let kind: Kind
    /// The account whose subscriptions hold this route (a service import's requesting account).
    let owner: Account

    init(_ kind: Kind, owner: Account) {
        self.kind = kind
        self.owner = owner
    }

    /// Never called: ``ClientConnection/deliver`` hands import routes to ``ClientConnection/forward``.
    func receive(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                 headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool { true }
}

extension ClientConnection {
    /// Makes `target` this connection's account, its subscriptions with it: a later CONNECT as a
    /// user of another account never leaves the new permissions working in the old subject space.
    /// (2.9.10 leaves the existing subscriptions behind in the old account; moving them keeps the
    /// client out of a space its user has no right to.) Loop thread only.
    func moveToAccount(_ target: Account) {
        guard target !== account else { return }
        let all = Array(subscriptions.values)
        if !all.isEmpty {
            account.mutate { trie in
                for sub in all { _ = trie.remove(subject: sub.subject, queue: sub.queue, value: sub) }
            }
            target.mutate { trie in
                for sub in all { _ = trie.insert(subject: sub.subject, queue: sub.queue, value: sub) }
            }
        }
        account = target
    }

    /// Imports routing into imports routing into ... stops here (a cycle of imports).
    static let maxImportDepth = 8

    /// Carries a message matched by an import route into the other account. Publisher's loop thread.
    /// - Returns: whether some subscriber of the other account took it (always true for a service
    ///   import, as 2.9.10 counts it).
    func forward(_ route: ImportRoute, subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                 headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        guard context.importDepth < Self.maxImportDepth else { return false }
        context.importDepth += 1
        defer { context.importDepth -= 1 }
        switch route.kind {
        case .stream(let target, let from, let to):
            let mapped = SubjectMapping.map(Array(subject), from: from, to: to)
            context.deliveringStreamImport = true
            defer { context.deliveringStreamImport = false }
            return mapped.withUnsafeBytes { routeImported(in: target, subject: $0, reply: reply, headers: headers, payload: payload) }
        case .service(let exporter, let from, let to, let responseType):
            let mapped = SubjectMapping.map(Array(subject), from: from, to: to)
            let infoHeaders = Self.requestInfoHeaders(headers, account: route.owner.name, rtt: rttNanos)
            guard !reply.isEmpty else {
                _ = mapped.withUnsafeBytes { m in
                    infoHeaders.withUnsafeBytes { h in routeImported(in: exporter, subject: m, reply: reply, headers: h, payload: payload) }
                }
                return true
            }
            let newReply = exporter.responses.register(account: route.owner, reply: reply,
                                                       singleton: responseType == .singleton, now: LoopContext.now())
            let delivered = mapped.withUnsafeBytes { m in
                newReply.withUnsafeBytes { r in
                    infoHeaders.withUnsafeBytes { h in routeImported(in: exporter, subject: m, reply: r, headers: h, payload: payload) }
                }
            }
            if !delivered { exporter.responses.remove(newReply) }
            // 2.9.10 counts the import itself as a delivery: the requester gets no 503.
            return true
        case .jetStreamDisabled:
            guard !reply.isEmpty, let answer = Self.jetStreamNotEnabled(subject) else { return true }
            _ = answer.withUnsafeBytes { body in
                routeImported(in: route.owner, subject: reply, reply: UnsafeRawBufferPointer(start: nil, count: 0),
                              headers: UnsafeRawBufferPointer(start: nil, count: 0), payload: body)
            }
            return true
        case .responses(let owner):
            let end = headers.isEmpty && payload.isEmpty
            guard let entry = owner.responses.resolve(subject, endOfStream: end, now: LoopContext.now()) else { return false }
            return entry.reply.withUnsafeBytes {
                routeImported(in: entry.account, subject: $0, reply: reply, headers: headers, payload: payload)
            }
        }
    }

    /// Where `needle` first occurs in `bytes` at or after `from`.
    private static func firstIndex(of needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, bytes.count >= needle.count else { return nil }
        var i = from
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0] && bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// 2.9.10's answer to a JetStream API request in an account without JetStream, typed after the
    /// request; nil for a subject that gets none.
    static func jetStreamNotEnabled(_ subject: UnsafeRawBufferPointer) -> [UInt8]? {
        let text = String(decoding: subject, as: UTF8.self)
        guard text.hasPrefix("$JS.API.") else { return nil }
        let api = text.dropFirst("$JS.API.".count)
        let kinds: [(String, String, String?)] = [
            ("INFO", "account_info_response", nil),
            ("STREAM.CREATE.", "stream_create_response", nil), ("STREAM.UPDATE.", "stream_update_response", nil),
            ("STREAM.INFO.", "stream_info_response", nil), ("STREAM.DELETE.", "stream_delete_response", nil),
            ("STREAM.PURGE.", "stream_purge_response", nil), ("STREAM.NAMES", "stream_names_response", "streams"),
            ("STREAM.LIST", "stream_list_response", "streams"), ("STREAM.MSG.GET.", "stream_msg_get_response", nil),
            ("STREAM.MSG.DELETE.", "stream_msg_delete_response", nil),
            ("CONSUMER.CREATE.", "consumer_create_response", nil),
            ("CONSUMER.DURABLE.CREATE.", "consumer_create_response", nil),
            ("CONSUMER.INFO.", "consumer_info_response", nil), ("CONSUMER.DELETE.", "consumer_delete_response", nil),
            ("CONSUMER.NAMES.", "consumer_names_response", "consumers"),
            ("CONSUMER.LIST.", "consumer_list_response", "consumers"),
        ]
        guard let (_, kind, list) = kinds.first(where: { $0.2 == nil ? ($0.0.hasSuffix(".") ? api.hasPrefix($0.0) : api == $0.0)
                                                                      : api.hasPrefix($0.0) })
        else { return nil }
        var body = JetStreamAPIResponse.error(kind, .notEnabledForAccount)
        if let list {
            // List answers keep their paging fields, empty, after the error.
            body.removeLast()
            body.append(contentsOf: ",\"total\":0,\"offset\":0,\"limit\":0,\"\(list)\":null}".utf8)
        }
        return body
    }

    /// `headers` with 2.9.10's `Nats-Request-Info: {"acc":"B","rtt":N}` set (a new header block
    /// when there is none). A `Nats-Request-Info` the publisher sent is dropped first, as 2.9.10's
    /// setHeader does: the first occurrence of the name, when it starts a line and a colon follows.
    static func requestInfoHeaders(_ headers: UnsafeRawBufferPointer, account: String, rtt: UInt64) -> [UInt8] {
        var info = GoJSONObject()
        info.add("acc", account)
        if rtt > 0 { info.add("rtt", Int(truncatingIfNeeded: rtt)) }
        let statusLine = Array("NATS/1.0\r\n".utf8)
        var result: [UInt8]
        if headers.count >= 4 && headers.suffix(4).elementsEqual("\r\n\r\n".utf8) {
            result = Array(headers.dropLast(2))
            let key = Array("Nats-Request-Info".utf8)
            if let start = firstIndex(of: key, in: result, from: 0), start > 0, result[start - 1] == UInt8(ascii: "\n"),
               start + key.count < result.count, result[start + key.count] == UInt8(ascii: ":"),
               let end = firstIndex(of: Array("\r\n".utf8), in: result, from: start)
            {
                result.removeSubrange(start..<(end + 2))
                if result.count <= statusLine.count { result = statusLine }
            }
        } else {
            result = statusLine
        }
        result.append(contentsOf: "Nats-Request-Info: ".utf8)
        result.append(contentsOf: info.finished())
        result.append(contentsOf: "\r\n\r\n".utf8)
        return result
    }
}

extension Broker {
    /// The account of `name`, `$G` when there is none of that name.
    func account(named name: String) -> Account {
        accounts[name] ?? globalAccount
    }

    /// The parts of the accounts a reload cannot change (everything but their users).
    static func accountStructure(_ configs: [AccountConfig]) -> [AccountConfig] {
        configs.map { config in
            var copy = config
            copy.users = []
            return copy
        }
    }

    /// Subscribes the import routes: a stream import in the exporting account on the imported
    /// subject, a service import in the importing account on its local subject, and each
    /// account exporting a service on its `_R_.` reply prefix. Before any loop runs.
    func installImportRoutes() {
        let configured = accountList.filter { $0.config != nil }
        guard !configured.isEmpty, let firstContext = contexts.first else { return }
        let client = ClientConnection(cid: 0, fd: -1, peer: PeerAddress(ip: "127.0.0.1", port: 0),
                                      context: firstContext, broker: self)
        importClient = client
        var sid = 0
        func subscribe(_ account: Account, _ subject: String, _ route: ImportRoute) {
            sid += 1
            let sub = Subscription(subject: Array(subject.utf8), queue: nil, sid: Array("\(sid)".utf8), client: client,
                                   importRoute: route)
            account.mutate { $0.insert(subject: sub.subject, queue: nil, value: sub) }
        }
        for account in accountList where options.jetStream && !account.jetStreamEnabled {
            // An account that imports the JetStream API from another gets its answers there only.
            let importsAPI = account.config?.imports.contains {
                $0.kind == .service && StreamConfig.subjectsCollide($0.localSubject, "$JS.API.>")
            } ?? false
            if importsAPI { continue }
            subscribe(account, "$JS.API.>", ImportRoute(.jetStreamDisabled, owner: account))
        }
        for account in configured {
            guard let config = account.config else { continue }
            if config.exports.contains(where: { if case .service = $0.kind { true } else { false } }) {
                let prefix = String(decoding: account.responses.prefix, as: UTF8.self)
                subscribe(account, prefix + ">", ImportRoute(.responses(owner: account), owner: account))
            }
            for item in config.imports {
                guard let exporter = accounts[item.account] else { continue }
                let local = item.localSubject
                switch item.kind {
                case .stream:
                    let route = ImportRoute(.stream(target: account, from: SubjectMapping.tokens(item.subject),
                                                    to: SubjectMapping.tokens(local)), owner: exporter)
                    subscribe(exporter, item.subject, route)
                case .service:
                    let export = exporter.config?.exports.first { export in
                        if case .service = export.kind { return export.permits(account.name, subject: item.subject) }
                        return false
                    }
                    var responseType = ServiceResponseType.singleton
                    if case .service(let type)? = export?.kind { responseType = type }
                    let route = ImportRoute(.service(exporter: exporter, from: SubjectMapping.tokens(local),
                                                     to: SubjectMapping.tokens(item.subject), responseType: responseType),
                                            owner: account)
                    subscribe(account, local, route)
                }
            }
        }
    }
}
