// Connection options and server URL parsing.

import NKeys

extension NATSClient {
    /// How to connect, authenticate, keep alive and reconnect.
    ///
    /// Every field has a default that matches nats.go where one exists; change only what you need:
    /// ```swift
    /// var options = NATSClient.Options(servers: ["nats://127.0.0.1:4222"])
    /// options.name = "auth-service"
    /// let client = try await NATSClient.connect(options)
    /// ```
    public struct Options: Sendable {
        /// Server URLs tried in order: `nats://host:port`, `nats://user:pass@host:port`,
        /// `nats://token@host:port`, or plain `host:port`. The port defaults to 4222.
        public var servers: [String]
        /// Client name shown by the server's monitoring (`/connz`).
        public var name: String?
        /// User for user/password authentication (overrides credentials in a URL).
        public var user: String?
        /// Password for user/password authentication.
        public var password: String?
        /// Token for token authentication (overrides a token in a URL).
        public var token: String?
        /// A user nkey seed (`SU...`) for nkey authentication: CONNECT carries its public key and
        /// its signature of the nonce in the server's INFO. Set this or ``nkeySeedFile``, not both.
        public var nkeySeed: String?
        /// A file holding the user nkey seed (its first line that is a seed, as `nk -gen user`
        /// writes it or between `-----BEGIN USER NKEY SEED-----` markers), read when connecting.
        public var nkeySeedFile: String?
        /// Ask the server to acknowledge every operation with `+OK` (off by default).
        public var verbose: Bool = false
        /// Ask the server for extra checks (off by default).
        public var pedantic: Bool = false
        /// Deliver this client's own publishes to its own matching subscriptions (on by default).
        public var echo: Bool = true
        /// Ask for a status-503 reply when a request has no responders (on by default; needs headers).
        public var noResponders: Bool = true
        /// How long one connection attempt (TCP connect plus handshake) may take.
        public var connectTimeout: Duration = .seconds(2)
        /// Keep reconnecting after the connection is lost (on by default).
        public var allowReconnect: Bool = true
        /// Reconnect attempts per lost connection before giving up; `nil` means unlimited.
        public var maxReconnectAttempts: Int? = 60
        /// The first reconnect delay; each further round doubles it up to ``reconnectMaxWait``.
        public var reconnectWait: Duration = .milliseconds(100)
        /// The upper bound of the exponential reconnect delay.
        public var reconnectMaxWait: Duration = .seconds(5)
        /// Random extra delay added to each reconnect wait, as a fraction of it (0.0 ... 1.0).
        public var reconnectJitter: Double = 0.2
        /// Bytes of publishes kept while disconnected; a publish beyond it fails with
        /// ``NATSError/reconnectBufferExceeded(limit:)``.
        public var reconnectBufferSize: Int = 8 * 1024 * 1024
        /// Bytes queued for the socket while connected before ``NATSClient/publish(_:subject:reply:headers:)``
        /// suspends until the writer catches up.
        public var writeBufferLimit: Int = 4 * 1024 * 1024
        /// How long one socket write may stay blocked (server not reading) before the connection
        /// counts as dead and is re-established; zero means no limit.
        public var writeTimeout: Duration = .seconds(30)
        /// Interval between keep-alive PINGs.
        public var pingInterval: Duration = .seconds(120)
        /// Unanswered keep-alive PINGs after which the connection counts as stale and is re-established.
        public var maxPingsOutstanding: Int = 2
        /// Default per-subscription limit of buffered messages; overflow drops and reports a slow consumer.
        public var pendingMessageLimit: Int = 512 * 1024
        /// Default per-subscription limit of buffered payload bytes.
        public var pendingByteLimit: Int = 64 * 1024 * 1024
        /// Do not add servers announced by the server in INFO `connect_urls`.
        public var ignoreDiscoveredServers: Bool = false
        /// Prefix of reply subjects for requests (the default is `_INBOX`).
        public var inboxPrefix: String = "_INBOX"
        /// How long ``NATSClient/drain(timeout:)`` waits by default.
        public var drainTimeout: Duration = .seconds(30)
        /// Retry the initial connection with the reconnect policy instead of failing on the first round.
        public var retryOnFailedConnect: Bool = false

        /// Options for the given servers, with every other field at its default.
        public init(servers: [String] = ["nats://127.0.0.1:4222"]) {
            self.servers = servers
        }

        /// Options for one server URL.
        public init(url: String) {
            self.servers = [url]
        }
    }
}

/// One parsed server URL.
struct ServerAddress: Sendable, Equatable {
    var host: String
    var port: Int
    var user: String?
    var password: String?
    var token: String?
    /// Announced by a server (INFO connect_urls) rather than configured.
    var discovered = false

    var hostPort: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `nats://[user[:pass]@]host[:port]`, `host[:port]`, IPv6 `[addr]:port`.
    ///
    /// - Throws: ``NATSError/invalidURL(_:)`` naming what is wrong.
    init(parsing text: String) throws(NATSError) {
        var rest = Substring(text.trimmingSpaces())
        if rest.isEmpty { throw .invalidURL("empty URL") }
        if let range = rest.range(of: "://") {
            let scheme = rest[..<range.lowerBound].lowercased()
            guard scheme == "nats" else {
                throw .invalidURL("\(text): scheme \(scheme) is not supported (use nats://)")
            }
            rest = rest[range.upperBound...]
        }
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[slash...]
            guard path == "/" else { throw .invalidURL("\(text): a path is not allowed") }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = Self.percentDecoded(userInfo[..<colon])
                password = Self.percentDecoded(userInfo[userInfo.index(after: colon)...])
                if user?.isEmpty ?? true { throw .invalidURL("\(text): empty user name") }
            } else {
                guard !userInfo.isEmpty else { throw .invalidURL("\(text): empty token before @") }
                token = Self.percentDecoded(userInfo)
            }
        }
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .invalidURL("\(text): unterminated IPv6 address") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidURL("\(text): unexpected text after ]") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            portText = rest[rest.index(after: colon)...]
        } else {
            host = String(rest)
        }
        if host.isEmpty { throw .invalidURL("\(text): missing host") }
        if host.contains(where: { $0 == " " || $0 == "\t" }) { throw .invalidURL("\(text): host contains whitespace") }
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .invalidURL("\(text): port must be a number from 1 to 65535")
            }
            port = value
        } else {
            port = 4222
        }
    }

    init(host: String, port: Int, discovered: Bool) {
        self.host = host
        self.port = port
        self.discovered = discovered
    }

    private static func percentDecoded(_ text: Substring) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
               let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    func trimmingSpaces() -> Substring {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view = view.dropFirst() }
        while let last = view.last, last.isWhitespace { view = view.dropLast() }
        return view
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to be non-negative.
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let whole = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if whole.overflow { return UInt64.max / 2 }
        return whole.partialValue &+ UInt64(attoseconds / 1_000_000_000)
    }
}

extension NATSClient.Options {
    /// The key pair of ``nkeySeed`` or ``nkeySeedFile``; nil when neither is set.
    ///
    /// - Throws: ``NATSError/invalidArgument(_:)`` when both are set, the file cannot be read,
    ///   or the text is not a seed (the nkeys error says why: encoding, checksum, prefix).
    func nkeyPair() throws(NATSError) -> NKeyPair? {
        switch (nkeySeed, nkeySeedFile) {
        case (nil, nil):
            return nil
        case (.some, .some):
            throw .invalidArgument("set nkeySeed or nkeySeedFile, not both")
        case (let seed?, nil):
            do {
                return try NKeyPair.fromSeedText(seed)
            } catch {
                throw .invalidArgument("nkeySeed is not an nkey seed (\(error))")
            }
        case (nil, let path?):
            do {
                return try NKeyPair.fromSeedFile(path)
            } catch {
                throw .invalidArgument("nkeySeedFile \(path): \(error)")
            }
        }
    }
}
