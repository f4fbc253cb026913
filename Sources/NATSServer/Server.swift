// Server: the public face of the broker (start, shutdown, statistics) and its running core.

import CSystem
import EventLoop
import Glibc
import NATSProtocol
import Synchronization

/// Why ``Server/start()`` failed.
public enum ServerStartError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The options are inconsistent (e.g. `max_payload` above `max_pending`).
    case invalidOptions(String)
    /// The client listener could not be bound.
    case listen(host: String, port: Int, reason: String)
    /// The monitoring listener could not be bound.
    case monitoring(host: String, port: Int, reason: String)
    /// The event loops could not be created.
    case eventLoops(String)
    /// The log file could not be opened.
    case logFile(path: String, errno: Int32)
    /// ``Server/start()`` was called twice.
    case alreadyStarted
    /// JetStream could not start: its store directory or a file in it (named in the message).
    case jetStream(String)

    /// A one-line explanation.
    public var description: String {
        switch self {
        case .invalidOptions(let message): return message
        case .listen(let host, let port, let reason):
            return "Error listening on port: \(host):\(port), \"\(reason)\""
        case .monitoring(let host, let port, let reason):
            return "Can't listen to the monitor port: \(host):\(port), \"\(reason)\""
        case .eventLoops(let reason): return "cannot create event loops: \(reason)"
        case .logFile(let path, let code): return "cannot open log file \(path): \(String(cString: strerror(code)))"
        case .alreadyStarted: return "server already started"
        case .jetStream(let reason): return "Could not start JetStream: \(reason)"
        }
    }
}

/// A NATS broker that behaves like nats-server 2.9.10 on the wire (core NATS and JetStream; no
/// clustering or TLS).
///
/// ```swift
/// var options = Options()
/// options.port = 0
/// let server = Server(options: options)
/// try server.start()
/// print(server.port)   // the bound port
/// server.shutdown()
/// ```
public final class Server: Sendable {
    /// The options the server was created with.
    public let options: Options
    /// This run's server id (56 characters, `N` + base32), as sent in INFO.
    public let serverID: String
    /// The server name: ``Options/serverName``, or the server id when none was given.
    public let serverName: String
    /// Where log lines go.
    public let logger: Logger

    private let core = Mutex<Broker?>(nil)
    private let started = Atomic<Bool>(false)

    /// The running broker; nil before ``start()`` and after ``shutdown()``.
    var runningBroker: Broker? { core.withLock { $0 } }

    /// Creates a server; nothing is bound until ``start()``.
    /// - Parameters:
    ///   - options: configuration; ``Options/noLog`` silences logging unless `logger` is given.
    ///   - logger: where to log; by default one built from `options` (standard error, or
    ///     disabled when the log file cannot be opened — the executable opens it itself first).
    public init(options: Options, logger: Logger? = nil) {
        self.options = options
        self.logger = logger ?? ((try? Logger(options: options)) ?? Logger.disabled)
        let id = ServerID.generate()
        self.serverID = id
        self.serverName = options.serverName.flatMap { $0.isEmpty ? nil : $0 } ?? id
    }

    /// Binds the client listener (and the monitoring one when configured), starts one event loop per
    /// CPU and begins accepting clients. Logs nats-server's start-up lines.
    /// - Throws: ``ServerStartError/invalidOptions(_:)``, ``ServerStartError/listen(host:port:reason:)``,
    ///   ``ServerStartError/monitoring(host:port:reason:)``, ``ServerStartError/eventLoops(_:)`` or
    ///   ``ServerStartError/alreadyStarted``.
    public func start() throws(ServerStartError) {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { throw .alreadyStarted }
        do {
            try validate(options)
            // Writes to closed sockets must fail with EPIPE, not kill the process.
            signal(SIGPIPE, SIG_IGN)
            let broker = try Broker(server: self)
            core.withLock { $0 = broker }
            try broker.run()
        } catch {
            let broker = core.withLock { core -> Broker? in
                let b = core
                core = nil
                return b
            }
            broker?.stop()
            started.store(false, ordering: .releasing)
            throw error
        }
    }

    private func validate(_ options: Options) throws(ServerStartError) {
        if options.maxPayload <= 0 { throw .invalidOptions("max_payload must be positive") }
        if options.maxControlLine <= 0 { throw .invalidOptions("max_control_line must be positive") }
        if options.maxPending <= 0 { throw .invalidOptions("max_pending must be positive") }
        if options.maxPayload > options.maxPending {
            throw .invalidOptions("max_payload (\(options.maxPayload)) cannot be higher than max_pending (\(options.maxPending))")
        }
        if options.maxPingsOut < 1 { throw .invalidOptions("ping_max must be at least 1") }
        if options.pingInterval <= .zero { throw .invalidOptions("ping_interval must be positive") }
        if options.port < -1 || options.port > 65_535 { throw .invalidOptions("invalid port \(options.port)") }
        if options.password != nil && options.username == nil {
            throw .invalidOptions("a password requires a user")
        }
        if options.accounts.filter(\.jetStream).count > 1 {
            throw .invalidOptions("JetStream in more than one account is not supported by this broker")
        }
    }

    /// Applies a changed configuration as 2.9.10's reload does (SIGHUP): logging flags at once;
    /// limits and the INFO `max_payload` for new connections; credentials and permissions re-checked on every open
    /// connection (those no longer valid get `-ERR 'Authorization Violation'` and are closed).
    /// Logs "Reloaded server configuration". The running configuration stays on error.
    /// - Throws: ``ServerStartError/invalidOptions(_:)`` when `fresh` is inconsistent or changes
    ///   the listen host/port or monitoring host/port (those need a restart).
    public func reload(_ fresh: Options) throws(ServerStartError) {
        try validate(fresh)
        guard let broker = core.withLock({ $0 }) else { throw .invalidOptions("server is not running") }
        try broker.reload(fresh)
        do {
            try logger.apply(fresh)
        } catch {
            logger.error("Failed to apply the new log file: \(error.description)")
        }
        logger.notice("Reloaded server configuration")
    }

    /// The bound client port (the actual one when a random port was requested); 0 before ``start()``.
    public var port: Int {
        core.withLock { $0?.port ?? 0 }
    }

    /// The bound monitoring port, or nil when monitoring is off or the server is not started.
    public var monitoringPort: Int? {
        core.withLock { $0?.monitoringPort }
    }

    /// A snapshot of the counters (the /varz numbers).
    public func statistics() -> ServerStatistics {
        core.withLock { $0 }?.statistics() ?? ServerStatistics()
    }

    /// Enters lame duck mode as nats-server 2.9.10 does on SIGUSR2: closes the listener at once,
    /// sends protocol-1 clients an INFO with `"ldm":true`, waits ``Options/lameDuckGracePeriod``,
    /// closes the clients one by one spread over ``Options/lameDuckDuration`` (at most a second
    /// apart), then shuts down. Blocks until then; returns at once when the server is not running
    /// or already in lame duck mode. A ``shutdown()`` from another thread cuts the waits short.
    /// Must not be called from an event loop thread of this server.
    public func enterLameDuckMode() {
        guard let broker = core.withLock({ $0 }) else { return }
        guard broker.runLameDuckMode() else { return }
        shutdown()
    }

    /// True once ``enterLameDuckMode()`` has started.
    public var isInLameDuckMode: Bool {
        core.withLock { $0 }?.inLameDuckMode ?? false
    }

    /// Stops accepting, writes what is queued to each client (bounded by a short deadline), closes
    /// every connection and stops the event loops. Idempotent. Must not be called from an event
    /// loop thread of this server.
    public func shutdown() {
        let broker = core.withLock { core -> Broker? in
            let b = core
            core = nil
            return b
        }
        guard let broker else { return }
        broker.shutdown()
        started.store(false, ordering: .releasing)
    }
}

/// The running broker: loops, listener, subscriptions, connections and counters. Created by
/// ``Server/start()``; everything a connection needs on the hot path is a `let` here.
final class Broker: Sendable {
    /// The options and INFO template in force, replaced as one value by a reload.
    final class Settings: Sendable {
        let options: Options
        let info: InfoTemplate
        /// The users of `options` arranged for CONNECT, built with them.
        let auth: AuthIndex
        init(options: Options, info: InfoTemplate) {
            self.options = options
            self.info = info
            auth = AuthIndex(options)
        }
    }
    private let current: Mutex<Settings>
    /// The settings in force (a reload swaps them). Not for the per-message path.
    var settings: Settings { current.withLock { $0 } }
    /// The options in force (a snapshot; a reload swaps them). Not for the per-message path.
    var options: Options { current.withLock { $0 }.options }
    /// The INFO template in force (its `max_payload` follows reloads).
    var info: InfoTemplate { current.withLock { $0 }.info }
    let logger: Logger
    let serverID: String
    let serverName: String
    let group: EventLoopGroup
    /// One per loop. Written once in `run()` before any loop thread starts, read-only afterwards.
    nonisolated(unsafe) private(set) var contexts: [LoopContext]
    /// JetStream, when enabled. Written once in `run()` before any loop thread starts.
    nonisolated(unsafe) private(set) var jetStream: JetStreamBridge?
    /// The owner of the import routes' subscriptions (never registered with a socket). Written
    /// once in `run()` before any loop thread starts.
    nonisolated(unsafe) var importClient: ClientConnection?
    let listener: Listener
    let port: Int
    let startTime: WallClock
    let monitor: Monitor?

    /// The global account `$G`: every client's when no account is configured, and that of users
    /// outside any account.
    let globalAccount: Account
    /// Every account by name (`$G` and the configured ones), fixed at start.
    let accounts: [String: Account]
    /// The accounts in the order /accountz lists them: `$G`, then as configured.
    let accountList: [Account]
    /// The account JetStream serves (see ``Account/jetStreamEnabled``).
    let jetStreamAccount: Account
    /// Open connections by cid.
    let connections = Mutex<[UInt64: ClientConnection]>([:])
    let connectionCount = Atomic<Int>(0)
    let totalConnections = Atomic<Int>(0)
    let slowConsumers = Atomic<Int>(0)
    /// The most recently closed connections, for /connz?state=closed (bounded as nats-server's).
    let closedConnections = ClosedConnections(capacity: 10_000)
    let nextClientID = Atomic<UInt64>(0)
    private let accepting = Atomic<Bool>(true)
    private let acceptor: Acceptor
    private let listenerClosed = Atomic<Bool>(false)
    private let lameDuck = Atomic<Bool>(false)
    /// Set by shutdown: cuts a lame duck wait short.
    private let stopping = Atomic<Bool>(false)

    var inLameDuckMode: Bool { lameDuck.load(ordering: .acquiring) }

    var monitoringPort: Int? { monitor?.port }

    init(server: Server) throws(ServerStartError) {
        let options = server.options
        logger = server.logger
        serverID = server.serverID
        serverName = server.serverName
        startTime = WallClock.now()

        let limits = EventLoop.raiseFileDescriptorLimit()
        do {
            group = try EventLoopGroup(loopCount: options.eventLoopCount, busyPoll: options.busyPoll)
        } catch {
            throw .eventLoops(error.description)
        }
        contexts = []
        // One account has JetStream: the configured account with a `jetstream` block, else `$G`.
        let jetStreamName = options.accounts.first(where: \.jetStream)?.name ?? "$G"
        globalAccount = Account(name: "$G", index: 0, config: nil,
                                jetStreamEnabled: options.jetStream && jetStreamName == "$G")
        var list = [globalAccount]
        for (i, config) in options.accounts.enumerated() {
            list.append(Account(name: config.name, index: i + 1, config: config,
                                jetStreamEnabled: options.jetStream && config.name == jetStreamName))
        }
        accountList = list
        accounts = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        jetStreamAccount = accounts[jetStreamName] ?? globalAccount

        let requestedPort = options.port < 0 ? 0 : options.port
        do {
            listener = try Listener.bind(host: options.host, port: requestedPort)
        } catch {
            throw .listen(host: options.host, port: options.port, reason: "\(error)")
        }
        port = listener.port
        current = Mutex(Settings(options: options, info: InfoTemplate(
            serverID: serverID, serverName: serverName, host: options.advertised(port: port).host,
            port: options.advertised(port: port).port, authRequired: options.authRequired, maxPayload: options.maxPayload,
            jetStream: options.jetStream, domain: options.jetStreamDomain, headers: !options.noHeaderSupport)))
        acceptor = Acceptor()

        if let httpPort = options.httpPort, httpPort != 0 {
            monitor = Monitor(host: options.httpHost ?? options.host, port: httpPort < 0 ? 0 : httpPort,
                              basePath: options.httpBasePath)
        } else {
            monitor = nil
        }

        logger.notice("Starting nats-server")
        logger.notice("  Version:  \(ServerVersion.compatible) (Swift broker \(ServerVersion.own))")
        logger.notice("  Git:      [not set]")
        logger.debug("  Go build: \(ServerVersion.runtime)")
        logger.notice("  Name:     \(serverName)")
        logger.notice("  ID:       \(serverID)")
        // As 2.9.10 (which has no other line about the kind of authentication): a warning when
        // a password is in the options, which are plain text here (bcrypt is not read).
        if options.password?.isEmpty == false || options.allUsers.contains(where: { $0.nkey == nil }) {
            logger.warning("Plaintext passwords detected, use nkeys or bcrypt")
        }
        if limits.new != limits.old {
            logger.notice("File descriptor limit raised from \(limits.old) to \(limits.new)")
        } else {
            logger.notice("File descriptor limit: \(limits.new)")
        }
        logger.debug("Event loops: \(group.loops.count)")
    }

    /// Installs hooks and handlers, then starts the loop threads. Before any loop runs.
    func run() throws(ServerStartError) {
        contexts = group.loops.enumerated().map { LoopContext(loop: $1, index: $0, broker: self) }
        for context in contexts { context.installHooks() }
        installImportRoutes()
        acceptor.broker = self
        do {
            try group.loops[0].register(fd: listener.fd, interest: .readable, handler: acceptor)
        } catch {
            listener.close()
            throw .listen(host: options.host, port: port, reason: error.description)
        }
        if let monitor {
            monitor.broker = self
            do {
                try monitor.start()
            } catch {
                group.loops[0].deregister(fd: listener.fd)
                listener.close()
                throw .monitoring(host: options.httpHost ?? options.host, port: options.httpPort ?? 0,
                                  reason: "\(error)")
            }
            logger.notice("Starting http monitor on \(hostPort(options.httpHost ?? options.host, monitor.port))")
        }
        if options.jetStream {
            do {
                try startJetStream()
            } catch {
                monitor?.shutdown()
                group.loops[0].deregister(fd: listener.fd)
                listener.close()
                throw error
            }
        }
        group.start()
        logger.notice("Listening for client connections on \(hostPort(options.host, port))")
        logger.notice("Server is ready")
    }

    private func hostPort(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Starts the JetStream engine on its own thread (recovering its streams), logging its limits
    /// as 2.9.10 does.
    /// - Throws: ``ServerStartError/jetStream(_:)`` or ``ServerStartError/eventLoops(_:)``.
    private func startJetStream() throws(ServerStartError) {
        var settings = JetStreamSettings(options)
        settings.engineOptions.account = jetStreamAccount.name
        logger.notice("Starting JetStream")
        let bridge = try JetStreamBridge(broker: self, options: settings.engineOptions)
        try bridge.start()
        jetStream = bridge
        logger.notice("---------------- JETSTREAM ----------------")
        logger.notice("  Max Memory:      \(JetStreamSettings.friendlyBytes(settings.engineOptions.maxMemory))")
        logger.notice("  Max Storage:     \(JetStreamSettings.friendlyBytes(settings.engineOptions.maxStore))")
        logger.notice("  Store Directory: \"\(settings.engineOptions.storeDirectory)\"")
        if !options.jetStreamDomain.isEmpty { logger.notice("  Domain:          \(options.jetStreamDomain)") }
        logger.notice("-------------------------------------------")
    }

    /// Stops the loops after a failed start (nothing was accepted yet).
    func stop() {
        jetStream?.shutdown()
        group.shutdown()
    }

    // MARK: Accepting

    /// Accepts pending connections. Accept loop thread only.
    fileprivate func acceptPending() {
        for _ in 0..<128 {
            switch listener.accept() {
            case .accepted(let fd, let peer):
                adopt(fd: fd, peer: peer)
            case .wouldBlock:
                return
            case .error(let code):
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    logger.error("Temporary Client Accept Error(accept: \(String(cString: strerror(code)))), sleeping 10ms")
                    pauseAccepting()
                    return
                }
                // ECONNABORTED and friends: that client is gone; keep going.
                continue
            }
        }
    }

    /// Stops watching the listener for a moment (EMFILE/ENFILE: the pending connection stays
    /// queued and the listener readable). When even that fails (the kernel is out of memory) the
    /// listener is still watched, so there is nothing to resume: the next turns accept again
    /// without a pause until a descriptor or memory frees up. Accept loop thread only.
    private func pauseAccepting() {
        let loop = group.loops[0]
        do {
            try loop.setInterest(fd: listener.fd, [])
        } catch {
            logger.debug("Pausing the client listener failed: \(error.description)")
            return
        }
        resumeAccepting(on: loop)
    }

    /// Watches the listener again after 10 ms; a failure is retried, since giving up would stop
    /// the broker from accepting for good.
    private func resumeAccepting(on loop: EventLoop) {
        loop.schedule(after: .milliseconds(10)) { [self] in
            guard accepting.load(ordering: .acquiring) else { return }
            do {
                try loop.setInterest(fd: listener.fd, .readable)
            } catch {
                logger.error("Resuming the client listener failed: \(error); retrying")
                resumeAccepting(on: loop)
            }
        }
    }

    private func adopt(fd: Int32, peer: PeerAddress) {
        let cid = nextClientID.wrappingAdd(1, ordering: .relaxed).newValue
        totalConnections.wrappingAdd(1, ordering: .relaxed)
        guard accepting.load(ordering: .acquiring) else {
            IO.close(fd)
            return
        }
        if connectionCount.load(ordering: .relaxed) >= options.maxConnections {
            // As 2.9.10: INFO, then the error, then close.
            var bytes = info.line(clientID: cid, clientIP: peer.ip,
                                  nonce: settings.auth.nonceRequired ? NKeyAuthentication.makeNonce() : nil)
            bytes.append(contentsOf: ServerError.maxConnectionsExceeded.wireLine)
            _ = bytes.withUnsafeBytes { IO.write(fd, $0) }
            IO.close(fd)
            logger.error("\(peer) - cid:\(cid) - maximum connections exceeded")
            return
        }
        connectionCount.wrappingAdd(1, ordering: .relaxed)
        let context = contexts[Int(cid % UInt64(contexts.count))]
        context.loop.execute { [self] in
            let connection = ClientConnection(cid: cid, fd: fd, peer: peer, context: context, broker: self)
            guard accepting.load(ordering: .acquiring) else {
                IO.close(fd)
                connectionCount.wrappingAdd(-1, ordering: .relaxed)
                return
            }
            connections.withLock { $0[cid] = connection }
            do {
                try connection.start()
            } catch {
                logger.error("\(connection.logPrefix) - cannot register connection: \(error)")
                connections.withLock { $0[cid] = nil }
                IO.close(fd)
                connectionCount.wrappingAdd(-1, ordering: .relaxed)
                return
            }
            logger.debug("\(connection.logPrefix) - Client connection created")
        }
    }

    /// The subscriptions of JetStream's account matching `subject`, from its trie under its lock
    /// (no loop cache: for control paths, not for routing).
    func matchSubscriptions(_ subject: UnsafeRawBufferPointer) -> MatchResult<Subscription> {
        jetStreamAccount.match(subject)
    }

    /// Runs `body` on JetStream's account's trie under its lock and invalidates every loop's cached
    /// matches of it.
    @discardableResult
    func mutateSubscriptions<R>(_ body: (inout SubjectTrie<Subscription>) -> R) -> R {
        jetStreamAccount.mutate(body)
    }

    /// A connection finished closing. Its loop thread.
    func connectionClosed(_ connection: ClientConnection, reason: CloseReason) {
        closedConnections.append(connection.snapshot(now: WallClock.now(), details: true, closedReason: reason))
        connections.withLock { $0[connection.cid] = nil }
        connectionCount.wrappingAdd(-1, ordering: .relaxed)
        logger.debug("\(connection.logPrefix) - Client connection closed: \(reason.rawValue)")
    }

    /// Checks CONNECT's credentials against the settings in force: single user, token, or the
    /// configured users (password users by name, nkey users by their signature of `nonce`). A client
    /// sending no credentials becomes `no_auth_user` when one is set. Names and secrets are compared
    /// as bytes, secrets in constant time, as 2.9.10 compares them.
    /// - Returns: the user, account and permissions, or the refusal with the nkey check's reason
    ///   (2.9.10's debug words) when CONNECT named a configured nkey user.
    func authenticate(_ connect: ConnectOptions, nonce: [UInt8]?, settings: Settings) -> AuthOutcome {
        let options = settings.options
        let auth = settings.auth
        guard auth.hasUsers else {
            return credentialsAccepted(connect, options)
                ? .accepted(AuthResult(user: nil, account: "$G", permissions: nil)) : .refused(reason: nil)
        }
        func result(_ user: User) -> AuthOutcome {
            .accepted(AuthResult(user: user, account: user.account ?? "$G", permissions: user.permissions))
        }
        // As 2.9.10: CONNECT's nkey is looked at only when nkey users are configured.
        if !connect.nkey.isEmpty, auth.nonceRequired {
            guard let nkeyUser = auth.nkeyUsers[Array(connect.nkey.utf8)] else { return .refused(reason: nil) }
            if let reason = NKeyAuthentication.failure(user: nkeyUser, nonce: nonce ?? [], signature: connect.sig) {
                return .refused(reason: reason)
            }
            return result(nkeyUser.user)
        }
        if connect.user.isEmpty && connect.pass.isEmpty && connect.authToken.isEmpty, let noAuth = options.noAuthUser,
           let user = auth.passwordUsers[Array(noAuth.utf8)]
        {
            return result(user)
        }
        guard let user = auth.passwordUsers[Array(connect.user.utf8)],
              Credentials.secretsMatch(user.password, connect.pass)
        else {
            return .refused(reason: nil)
        }
        return result(user)
    }

    func credentialsAccepted(_ connect: ConnectOptions, _ options: Options) -> Bool {
        if let user = options.username {
            return Credentials.sameBytes(connect.user, user)
                && Credentials.secretsMatch(options.password ?? "", connect.pass)
        }
        if let token = options.authToken {
            return Credentials.secretsMatch(token, connect.authToken)
        }
        return true
    }

    /// Applies reloaded options: refuses listen changes, swaps the settings new connections
    /// use, and has every open connection re-check its credentials and permissions on its loop.
    /// - Throws: ``ServerStartError/invalidOptions(_:)`` naming a setting that needs a restart.
    func reload(_ fresh: Options) throws(ServerStartError) {
        let old = options
        func refuse(_ field: String, _ was: String, _ now: String) -> ServerStartError {
            .invalidOptions("config reload not supported for \(field): old=\(was), new=\(now)")
        }
        if fresh.host != old.host { throw refuse("Host", old.host, fresh.host) }
        if fresh.port != old.port { throw refuse("Port", "\(old.port > 0 ? old.port : port)", "\(fresh.port)") }
        if fresh.httpPort != old.httpPort {
            throw refuse("HTTPPort", "\(old.httpPort ?? 0)", "\(fresh.httpPort ?? 0)")
        }
        if fresh.httpHost != old.httpHost {
            throw refuse("HTTPHost", old.httpHost ?? "", fresh.httpHost ?? "")
        }
        // Settings 2.9.10 cannot reload either (its field names, as it reports them).
        if fresh.httpBasePath != old.httpBasePath {
            throw refuse("HTTPBasePath", old.httpBasePath ?? "", fresh.httpBasePath ?? "")
        }
        if fresh.maxSubTokens != old.maxSubTokens { throw refuse("MaxSubTokens", "\(old.maxSubTokens)", "\(fresh.maxSubTokens)") }
        if fresh.noHeaderSupport != old.noHeaderSupport {
            throw refuse("NoHeaderSupport", "\(old.noHeaderSupport)", "\(fresh.noHeaderSupport)")
        }
        if fresh.disableSublistCache != old.disableSublistCache {
            throw refuse("NoSublistCache", "\(old.disableSublistCache)", "\(fresh.disableSublistCache)")
        }
        if fresh.jetStream != old.jetStream || fresh.storeDirectory != old.storeDirectory
            || fresh.jetStreamDomain != old.jetStreamDomain
        {
            throw refuse("JetStream", old.jetStream ? "enabled" : "disabled", fresh.jetStream ? "enabled" : "disabled")
        }
        if Self.accountStructure(fresh.accounts) != Self.accountStructure(old.accounts) {
            throw .invalidOptions("config reload not supported for accounts: their names, exports, imports and jetstream need a restart")
        }
        let info = InfoTemplate(serverID: serverID, serverName: serverName, host: fresh.advertised(port: port).host,
                                port: fresh.advertised(port: port).port, authRequired: fresh.authRequired, maxPayload: fresh.maxPayload,
                                jetStream: fresh.jetStream, domain: fresh.jetStreamDomain,
                                headers: !fresh.noHeaderSupport)
        current.withLock { $0 = Settings(options: fresh, info: info) }
        let open = connections.withLock { Array($0.values) }
        for connection in open {
            connection.context.loop.execute { connection.applyReload() }
        }
    }

    // MARK: Statistics

    func statistics() -> ServerStatistics {
        var stats = ServerStatistics()
        for context in contexts + (jetStream.map { [$0.context] } ?? []) {
            stats.inMsgs &+= context.counters.inMsgs.load(ordering: .relaxed)
            stats.inBytes &+= context.counters.inBytes.load(ordering: .relaxed)
            stats.outMsgs &+= context.counters.outMsgs.load(ordering: .relaxed)
            stats.outBytes &+= context.counters.outBytes.load(ordering: .relaxed)
        }
        stats.slowConsumers = slowConsumers.load(ordering: .relaxed)
        stats.connections = connectionCount.load(ordering: .relaxed)
        stats.totalConnections = totalConnections.load(ordering: .relaxed)
        stats.subscriptions = accountList.reduce(0) { sum, account in sum + account.subscriptions.withLock { $0.count } }
        return stats
    }

    // MARK: Shutdown

    /// Stops accepting and closes the client listener (on the accept loop). Idempotent.
    private func closeListener() {
        accepting.store(false, ordering: .releasing)
        guard !listenerClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let acceptLoop = group.loops[0]
        let listener = self.listener
        let acceptor = self.acceptor
        acceptLoop.execute {
            acceptLoop.deregister(fd: listener.fd)
            listener.close()
            acceptor.broker = nil
        }
    }

    /// Lame duck mode up to the last client closed (see ``Server/enterLameDuckMode()``). Returns
    /// false when it had already started. Not on a loop thread.
    func runLameDuckMode() -> Bool {
        guard !lameDuck.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        logger.notice("Entering lame duck mode, stop accepting new clients")
        closeListener()
        for connection in connections.withLock({ Array($0.values) }) {
            connection.context.loop.execute { connection.sendLameDuckInfo() }
        }
        let grace = max(options.lameDuckGracePeriod, .zero)
        guard sleepUnlessStopping(grace) else { return true }
        logger.notice("Closing existing clients")
        let remaining = connections.withLock { Array($0.values) }.sorted { $0.cid < $1.cid }
        guard !remaining.isEmpty else { return true }
        // As 2.9.10: spread the closes over the duration left after the grace period, at most a
        // second apart; batch them when the interval would round down to nothing.
        var spread = (options.lameDuckDuration - grace).nanoseconds
        if spread <= 0 { spread = 1_000_000_000 }
        let count = Int64(remaining.count)
        var interval = spread / count
        var batch = 1
        if interval < 1 {
            interval = 1
            batch = Int(count / spread)
        } else if interval > 1_000_000_000 {
            interval = 1_000_000_000
        }
        var index = 0
        while index < remaining.count {
            if stopping.load(ordering: .acquiring) { return true }
            for connection in remaining[index..<min(index + batch, remaining.count)] {
                connection.context.loop.execute { connection.closeAfterFlush(.serverShutdown) }
            }
            index += batch
            if index < remaining.count {
                guard sleepUnlessStopping(.nanoseconds(interval)) else { return true }
            }
        }
        return true
    }

    /// Sleeps for `duration` in short steps; false when shutdown started meanwhile.
    private func sleepUnlessStopping(_ duration: Duration) -> Bool {
        let deadline = csys_monotonic_ns() &+ UInt64(max(duration.nanoseconds, 0))
        while true {
            let now = csys_monotonic_ns()
            if now >= deadline { break }
            if stopping.load(ordering: .acquiring) { return false }
            let left = deadline - now
            usleep(useconds_t(min(left / 1000, 10_000)))
        }
        return !stopping.load(ordering: .acquiring)
    }

    /// Stops accepting, drains and closes every connection, stops the loops. Not on a loop thread.
    func shutdown() {
        logger.notice("Initiating Shutdown...")
        stopping.store(true, ordering: .releasing)
        accepting.store(false, ordering: .releasing)
        closeListener()
        monitor?.shutdown()
        let open = connections.withLock { Array($0.values) }
        for connection in open {
            connection.context.loop.execute { connection.closeAfterFlush(.serverShutdown) }
        }
        // Draining is bounded by each connection's drain timer (at most 2s); wait a little longer.
        let deadline = csys_monotonic_ns() + 3_000_000_000
        while connectionCount.load(ordering: .relaxed) > 0 && csys_monotonic_ns() < deadline {
            usleep(1000)
        }
        if let jetStream {
            logger.notice("Initiating JetStream Shutdown...")
            jetStream.shutdown()
            logger.notice("JetStream Shutdown")
        }
        group.shutdown()
        logger.notice("Server Exiting..")
    }
}

/// The listener's handler on the accept loop.
///
/// `@unchecked Sendable`: `broker` is set before the loop starts and cleared on the accept loop.
private final class Acceptor: IOHandler, @unchecked Sendable {
    unowned(unsafe) var broker: Broker?

    func readable() { broker?.acceptPending() }
    func writable() {}
    func hangup() {}
}

/// Wall-clock time with microseconds, for /varz `start` and `now`.
struct WallClock: Sendable {
    let seconds: Int
    let nanoseconds: Int

    static func now() -> WallClock {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallClock(seconds: ts.tv_sec, nanoseconds: ts.tv_nsec)
    }

    /// RFC 3339 in UTC with nanoseconds, as Go's `time.Time` marshals: `2026-11-23T12:53:19.232476344Z`.
    var rfc3339: String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var text = "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
        text += "T\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
        if nanoseconds > 0 {
            var fraction = pad(nanoseconds, 9)
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text + "Z"
    }
}
