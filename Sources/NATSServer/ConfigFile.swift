import Formats
import NATSConfig
import NATSProtocol
import NKeys

// The nats.conf keys this broker implements, read into Options. Keys nats-server 2.9.10 knows
// but this broker does not implement are refused with their file:line and the reason; keys
// nats-server does not know are refused with its own words (`unknown field "x"`).

extension Options {
    /// Reads a nats.conf file into options, starting from the defaults.
    ///
    /// - Parameters:
    ///   - path: the configuration file (includes are relative to it).
    ///   - environment: where `$VAR` references not defined in the file are looked up.
    /// - Returns: the options the file describes; command-line flags are applied on top by the caller.
    /// - Throws: ``ConfigError`` (with `file:line:column`) for a syntax error, an unknown key, a key
    ///   this broker does not implement, a value of the wrong type or out of range, or an
    ///   inconsistent combination (a token together with a user).
    public static func load(
        configFile path: String, environment: [String: String]
    ) throws(ConfigError) -> Options {
        var options = Options()
        try options.apply(ConfigParser.parse(contentsOf: path, environment: environment))
        return options
    }

    /// Applies the settings of a parsed configuration on top of these options.
    ///
    /// - Throws: ``ConfigError`` as ``load(configFile:environment:)`` describes.
    public mutating func apply(_ config: ConfigMap) throws(ConfigError) {
        var noAuthUserLocation: SourceLocation?
        var accountsLocation: SourceLocation?
        for entry in config.settings {
            let key = entry.key.lowercased()
            let node = entry.node
            switch key {
            case "listen":
                let (host, port) = try Self.hostPort(node, key: entry.key)
                if let host { self.host = host }
                self.port = port
            case "host", "net", "addr":
                host = try node.string(for: entry.key)
            case "port":
                port = try Self.portValue(node, key: entry.key, allowRandom: true)
            case "server_name":
                serverName = try node.string(for: entry.key)
            case "debug":
                debug = try node.bool(for: entry.key)
            case "trace":
                trace = try node.bool(for: entry.key)
            case "logtime":
                logTime = try node.bool(for: entry.key)
            case "logfile", "log_file":
                logFile = try node.string(for: entry.key)
            case "pidfile", "pid_file":
                pidFile = try node.string(for: entry.key)
            case "ports_file_dir":
                portsFileDir = try node.string(for: entry.key)
            case "http":
                let (host, port) = try Self.hostPort(node, key: entry.key)
                if let host { httpHost = host }
                httpPort = port
            case "http_port", "monitor_port":
                httpPort = try Self.portValue(node, key: entry.key, allowRandom: true)
            case "max_payload":
                maxPayload = Int(try node.integer(for: entry.key, in: 1...Int64(Int32.max)))
            case "max_control_line":
                maxControlLine = Int(try node.integer(for: entry.key, in: 1...Int64(Int32.max)))
            case "max_pending":
                maxPending = Int(try node.integer(for: entry.key, in: 1...Int64.max))
            case "max_connections", "max_conn":
                maxConnections = Int(try node.integer(for: entry.key, in: 1...Int64(Int32.max)))
            case "max_subscriptions", "max_subs":
                maxSubscriptions = Int(try node.integer(for: entry.key, in: 0...Int64(Int32.max)))
            case "max_sub_tokens", "max_subscription_tokens":
                let tokens = try node.integer(for: entry.key, in: Int64.min...Int64.max)
                if tokens > 255 { throw ConfigError("\(entry.key) value is too big", at: entry.keyLocation) }
                if tokens <= 0 { throw ConfigError("\(entry.key) value can not be negative", at: entry.keyLocation) }
                maxSubTokens = Int(tokens)
            case "http_base_path":
                httpBasePath = try node.string(for: entry.key)
            case "client_advertise":
                let text = try node.string(for: entry.key)
                guard Self.advertisement(text, defaultPort: 0) != nil else {
                    throw ConfigError("invalid client_advertise \"\(text)\": expected host or host:port", at: node.location)
                }
                clientAdvertise = text
            case "server_tags":
                let tags: [String]
                if case .string(let one) = node.value { tags = [one] } else { tags = try node.stringList(for: entry.key) }
                for tag in tags {
                    let clean = Self.trimmed(tag).lowercased()
                    if !clean.isEmpty && !serverTags.contains(clean) { serverTags.append(clean) }
                }
            case "no_header_support":
                noHeaderSupport = try node.bool(for: entry.key)
            case "max_traced_msg_len":
                maxTracedMessageLength = Int(try node.integer(for: entry.key, in: Int64(Int32.min)...Int64(Int32.max)))
            case "trace_verbose":
                // 2.9.10 turns tracing on with it; its extra (system account traffic) does not exist here.
                trace = try node.bool(for: entry.key)
            case "disable_sublist_cache", "no_sublist_cache":
                disableSublistCache = try node.bool(for: entry.key)
            case "connect_error_reports", "reconnect_error_reports":
                // Counts of route, gateway and leaf node connect errors between reports: none here.
                _ = try node.integer(for: entry.key, in: Int64.min...Int64.max)
            case "syslog", "remote_syslog", "log_size_limit", "logfile_size_limit", "prof_port":
                try Self.acceptIfOff(node, key: entry.key)
            case "ping_interval":
                pingInterval = try Self.positive(node.duration(for: entry.key), node, key: entry.key)
            case "ping_max":
                maxPingsOut = Int(try node.integer(for: entry.key, in: 0...Int64(Int32.max)))
            case "write_deadline":
                writeDeadline = try Self.positive(node.duration(for: entry.key), node, key: entry.key)
            case "lame_duck_duration":
                let duration = try Self.positive(node.duration(for: entry.key), node, key: entry.key)
                guard duration >= .seconds(30) else {
                    throw ConfigError("invalid lame_duck_duration of \(Self.goDuration(duration)), minimum is 30 seconds",
                                      at: node.location)
                }
                lameDuckDuration = duration
            case "lame_duck_grace_period":
                let grace = try node.duration(for: entry.key)
                guard grace >= .zero else {
                    throw ConfigError("invalid lame_duck_grace_period, needs to be positive", at: node.location)
                }
                lameDuckGracePeriod = grace
            case "store_dir", "storedir":
                if storeDirectory != nil { throw ConfigError("Duplicate 'store_dir' configuration", at: node.location) }
                storeDirectory = try node.string(for: entry.key)
            case "jetstream":
                try applyJetStream(node, key: entry.key)
            case "authorization":
                try applyAuthorization(node.map(for: entry.key), at: entry.keyLocation)
            case "accounts":
                accountsLocation = entry.keyLocation
                try applyAccounts(node)
            case "system_account", "system":
                let name = try node.string(for: entry.key)
                // 2.9.10's system account is always `$SYS`; naming it is all this broker accepts.
                guard name == "$SYS" else {
                    throw ConfigError("\"\(entry.key)\": this broker's system account is always \"$SYS\"", at: node.location)
                }
            case "no_system_account", "no_system", "no_sys_acc":
                _ = try node.bool(for: entry.key)
            case "no_auth_user":
                noAuthUser = try node.string(for: entry.key)
                noAuthUserLocation = node.location
            default:
                if let reason = Self.unimplemented[key] {
                    throw ConfigError(
                        "\"\(entry.key)\" is a nats-server setting this broker does not implement: \(reason)",
                        at: entry.keyLocation)
                }
                throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
            }
        }
        if let accountsLocation {
            try checkAccounts(at: accountsLocation)
        }
        if let noAuthUser, !allUsers.contains(where: { $0.name == noAuthUser && $0.nkey == nil }) {
            throw ConfigError(
                "no_auth_user: \"\(noAuthUser)\" not present as user in authorization block or account configuration",
                at: noAuthUserLocation)
        }
    }

    /// `jetstream: true|enabled|disabled` or `jetstream { store_dir, max_memory_store, max_file_store,
    /// domain, enabled, sync_interval }`, with 2.9.10's key aliases and messages.
    private mutating func applyJetStream(_ node: ConfigNode, key: String) throws(ConfigError) {
        switch node.value {
        case .bool(let on):
            jetStream = on
        case .string(let text):
            switch text.lowercased() {
            case "enabled", "enable": jetStream = true
            case "disabled", "disable": jetStream = false
            default:
                throw ConfigError("Expected 'enabled' or 'disabled' for string value, got '\(text)'", at: node.location)
            }
        case .map(let block):
            var enable = true
            for entry in block.settings {
                let item = entry.node
                switch entry.key.lowercased() {
                case "store", "store_dir", "storedir":
                    if storeDirectory != nil { throw ConfigError("Duplicate 'store_dir' configuration", at: item.location) }
                    storeDirectory = try item.string(for: entry.key)
                case "max_memory_store", "max_mem_store", "max_mem":
                    jetStreamMaxMemory = try Self.storageSize(item, label: "max_mem_store")
                case "max_file_store", "max_file":
                    jetStreamMaxStore = try Self.storageSize(item, label: "max_file_store")
                case "domain":
                    jetStreamDomain = try item.string(for: entry.key)
                case "enable", "enabled":
                    enable = try item.bool(for: entry.key)
                case "sync_interval", "sync":
                    if case .string(let text) = item.value, text.lowercased() == "always" {
                        jetStreamSyncAlways = true
                    } else {
                        jetStreamSyncInterval = try Self.positive(item.duration(for: entry.key), item, key: entry.key)
                    }
                case "key", "ek", "encryption_key", "cipher", "limits", "unique_tag", "max_outstanding_catchup",
                     "extension_hint":
                    throw ConfigError("\"\(entry.key)\" in jetstream is not implemented by this broker", at: entry.keyLocation)
                default:
                    throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
                }
            }
            jetStream = enable
        default:
            throw ConfigError("Expected map, bool or string to define JetStream", at: node.location)
        }
    }

    /// A size as 2.9.10's `getStorageSize` reads it: an integer, or a string ending in K, M, G or T
    /// (powers of 1024).
    private static func storageSize(_ node: ConfigNode, label: String) throws(ConfigError) -> Int64 {
        if case .string(let text) = node.value {
            if text.isEmpty { return 0 }
            let shifts: [Character: Int64] = ["K": 10, "M": 20, "G": 30, "T": 40]
            guard let shift = shifts[text.last!] else {
                throw ConfigError("\(label) sizes defined as strings must end in K, M, G, T", at: node.location)
            }
            guard let number = Int64(text.dropLast()) else {
                throw ConfigError("\(label) strconv.ParseInt: parsing \"\(text.dropLast())\": invalid syntax", at: node.location)
            }
            return number << shift
        }
        return try node.integer(for: label, in: 0...Int64.max)
    }

    private mutating func applyAuthorization(_ block: ConfigMap, at location: SourceLocation?) throws(ConfigError) {
        var sawUser: SourceLocation?
        var sawToken: SourceLocation?
        var sawUsers: SourceLocation?
        var defaultPermissions: Permissions?
        for entry in block.settings {
            let node = entry.node
            switch entry.key.lowercased() {
            case "user", "username":
                username = try node.string(for: entry.key)
                sawUser = entry.keyLocation
            case "password", "pass":
                password = try Self.plainPassword(node, key: entry.key)
            case "token":
                authToken = try Self.plainPassword(node, key: entry.key)
                sawToken = entry.keyLocation
            case "timeout":
                authTimeout = .milliseconds(Int64((try node.seconds(for: entry.key) * 1000).rounded()))
            case "users":
                sawUsers = entry.keyLocation
                for item in try node.array(for: entry.key) {
                    users.append(try Self.user(item.map(for: entry.key)))
                }
            case "default_permissions":
                defaultPermissions = try Self.permissions(node.map(for: entry.key))
            case "nkeys", "permissions", "auth_callout":
                throw ConfigError(
                    "\"\(entry.key)\" in authorization is not implemented by this broker yet: use user/password or token",
                    at: entry.keyLocation)
            default:
                throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
            }
        }
        if let sawToken, sawUser != nil {
            throw ConfigError("Cannot have a user/pass and token", at: sawToken)
        }
        if password != nil, username == nil {
            throw ConfigError("authorization has a password but no user", at: nil)
        }
        if let sawUsers {
            if sawUser != nil { throw ConfigError("Can not have a single user/pass and a users array", at: sawUsers) }
            if sawToken != nil { throw ConfigError("Can not have a token and a users array", at: sawUsers) }
        }
        // As 2.9.10: user names and nkeys share one set of names, with the users of accounts read
        // before this block; password users are entered first, then nkey users.
        var names = Self.userNames(accounts.flatMap(\.users))
        try Self.enter(users, into: &names, at: location)
        if let defaultPermissions {
            for index in users.indices where users[index].permissions == nil {
                users[index].permissions = defaultPermissions
            }
        }
    }

    /// One `{user, password, permissions}` or `{nkey, permissions}` map of `users = [...]`.
    static func user(_ map: ConfigMap) throws(ConfigError) -> User {
        var name: String?
        var password = ""
        var permissions: Permissions?
        var nkey: String?
        var nkeyLocation: SourceLocation?
        for entry in map.settings {
            switch entry.key.lowercased() {
            case "user", "username":
                name = try entry.node.string(for: entry.key)
            case "pass", "password":
                password = try plainPassword(entry.node, key: entry.key)
            case "permission", "permissions", "authorization":
                permissions = try Self.permissions(entry.node.map(for: entry.key))
            case "nkey":
                nkey = try entry.node.string(for: entry.key)
                nkeyLocation = entry.keyLocation
            case "account", "allowed_connection_types", "connection_types", "clients":
                throw ConfigError("\"\(entry.key)\" in a user is not implemented by this broker", at: entry.keyLocation)
            default:
                throw ConfigError("Unknown field \"\(entry.key)\" parsing users", at: entry.keyLocation)
            }
        }
        // As 2.9.10: a user key (`U...`, CRC checked), and then no user name or password beside it.
        if let nkey, !nkey.isEmpty {
            guard NKeyPublicKey.isValid(nkey, prefix: .user) else {
                throw ConfigError("Not a valid public nkey for a user", at: nkeyLocation)
            }
            if name?.isEmpty == false || !password.isEmpty {
                // 2.9.10 reports the last key it visited in the map (Go's map order varies, the
                // last one written is what it reports most often).
                throw ConfigError("Nkey users do not take usernames or passwords", at: map.settings.last?.keyLocation)
            }
            return User(name: nkey, password: "", permissions: permissions, nkey: nkey)
        }
        guard let name, !name.isEmpty else {
            throw ConfigError("User entry requires a user", at: map.settings.first?.keyLocation)
        }
        return User(name: name, password: password, permissions: permissions)
    }

    /// The bytes of every user's name (an nkey user's name is its nkey), as 2.9.10's one set of
    /// names compares them.
    static func userNames(_ users: [User]) -> Set<[UInt8]> {
        Set(users.map { Array($0.name.utf8) })
    }

    /// Enters `users` into `names` as 2.9.10 does, password users first, then nkey users.
    /// - Throws: ``ConfigError`` `Duplicate user "x" detected` or `Duplicate nkey "U..." detected`
    ///   at `location` for the first name already in `names`.
    static func enter(_ users: [User], into names: inout Set<[UInt8]>, at location: SourceLocation?,
                      nkeysFirst: Bool = false) throws(ConfigError) {
        for pass in nkeysFirst ? [true, false] : [false, true] {
            for user in users where (user.nkey != nil) == pass {
                guard names.insert(Array(user.name.utf8)).inserted else {
                    let kind = pass ? "nkey" : "user"
                    throw ConfigError("Duplicate \(kind) \(ServerError.goQuoted(user.name)) detected", at: location)
                }
            }
        }
    }

    /// `{publish, subscribe, allow_responses}` (also `pub`, `sub`, `import`, `export`).
    static func permissions(_ map: ConfigMap) throws(ConfigError) -> Permissions {
        var result = Permissions()
        for entry in map.settings {
            switch entry.key.lowercased() {
            case "pub", "publish", "import":
                result.publish = try subjectPermission(entry.node, key: entry.key)
            case "sub", "subscribe", "export":
                result.subscribe = try subjectPermission(entry.node, key: entry.key)
            case "publish_allow_responses", "allow_responses":
                switch entry.node.value {
                case .bool(let on): result.response = on ? ResponsePermission() : nil
                case .map(let block):
                    var response = ResponsePermission()
                    for item in block.settings {
                        switch item.key.lowercased() {
                        case "max", "max_msgs", "max_messages", "max_responses":
                            response.maxMessages = Int(try item.node.integer(for: item.key, in: 0...Int64(Int32.max)))
                        case "expires", "expiration", "ttl":
                            response.expires = try item.node.duration(for: item.key)
                        default:
                            throw ConfigError("Unknown field \"\(item.key)\" parsing allow_responses", at: item.keyLocation)
                        }
                    }
                    result.response = response
                default:
                    throw entry.node.mismatch(entry.key, expected: "true, false or a map { max, expires }")
                }
            default:
                throw ConfigError("Unknown field \"\(entry.key)\" parsing permissions", at: entry.keyLocation)
            }
        }
        return result
    }

    /// A subject list (`"a"` or `["a", "b"]`, which means allow) or `{allow, deny}`.
    private static func subjectPermission(_ node: ConfigNode, key: String) throws(ConfigError) -> SubjectPermission {
        var result = SubjectPermission()
        if case .map(let block) = node.value {
            for entry in block.settings {
                switch entry.key.lowercased() {
                case "allow": result.allow = try subjects(entry.node, key: entry.key)
                case "deny": result.deny = try subjects(entry.node, key: entry.key)
                default:
                    throw ConfigError("Unknown field name \"\(entry.key)\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                                      at: entry.keyLocation)
                }
            }
        } else {
            result.allow = try subjects(node, key: key)
        }
        return result
    }

    /// An empty list means no list at all (2.9.10 reads `[]` as nil: nothing restricted). An entry
    /// is a subject, or a subject and a queue group separated by white space (`"foo v1"`), as
    /// 2.9.10's `checkPermSubjectArray` accepts them.
    private static func subjects(_ node: ConfigNode, key: String) throws(ConfigError) -> [String]? {
        let list = try node.stringList(for: key)
        if list.isEmpty { return nil }
        for subject in list where !isValidSubject(subject) {
            let fields = SubscribeRules.fields(subject)
            guard fields.count == 2 else {
                throw ConfigError("subject \(ServerError.goQuoted(subject)) is not a valid subject", at: node.location)
            }
            if !isValidSubject(fields[0]) {
                throw ConfigError("subject \(ServerError.goQuoted(fields[0])) is not a valid subject", at: node.location)
            }
        }
        return list
    }

    private static func isValidSubject(_ subject: String) -> Bool {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        for (i, token) in tokens.enumerated() {
            if token.isEmpty || token.unicodeScalars.contains(where: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\u{0C}" }) {
                return false
            }
            if token == ">" && i != tokens.count - 1 { return false }
        }
        return true
    }

    /// Refuses bcrypt hashes: comparing one as plain text would let the hash itself log in.
    private static func plainPassword(_ node: ConfigNode, key: String) throws(ConfigError) -> String {
        let text = try node.string(for: key)
        if text.hasPrefix("$2a$") || text.hasPrefix("$2b$") || text.hasPrefix("$2y$") {
            throw ConfigError(
                "\"\(key)\" is a bcrypt hash, which this broker cannot verify yet: write the password in plain text",
                at: node.location)
        }
        return text
    }

    /// `port`, `"host:port"`, `host:port` or `"host"`: nats-server's listen/http forms.
    private static func hostPort(_ node: ConfigNode, key: String) throws(ConfigError) -> (String?, Int) {
        switch node.value {
        case .integer:
            return (nil, try portValue(node, key: key, allowRandom: true))
        case .string(let text):
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigError("invalid value for \"\(key)\": expected host:port, found \"\(text)\"", at: node.location)
            }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard let port = Int(text[text.index(after: colon)...]), (-1...65_535).contains(port) else {
                throw ConfigError("invalid port in \"\(key)\": \"\(text)\"", at: node.location)
            }
            return (host.isEmpty ? nil : host, port)
        default:
            throw node.mismatch(key, expected: "a port or host:port")
        }
    }

    private static func portValue(_ node: ConfigNode, key: String, allowRandom: Bool) throws(ConfigError) -> Int {
        Int(try node.integer(for: key, in: (allowRandom ? -1 : 0)...65_535))
    }

    private static func positive(_ d: Duration, _ node: ConfigNode, key: String) throws(ConfigError) -> Duration {
        guard d > .zero else { throw ConfigError("invalid value for \"\(key)\": must be greater than zero", at: node.location) }
        return d
    }

    /// A duration as Go's `time.Duration.String` prints it (`6s`, `1m30s`, `500ms`), for messages.
    static func goDuration(_ d: Duration) -> String { GoDuration.string(d.nanoseconds) }

    /// Accepts a logging or profiling key set to its off value (`false`, `""`, `0`), which changes
    /// nothing; refuses any other value, whose effect (syslog, log rotation, a Go profiling port)
    /// this broker does not have.
    private static func acceptIfOff(_ node: ConfigNode, key: String) throws(ConfigError) {
        let off: Bool
        switch node.value {
        case .bool(let on): off = !on
        case .string(let text): off = text.isEmpty
        case .integer(let number): off = number == 0
        default: off = false
        }
        guard !off else { return }
        let reason = key.lowercased() == "prof_port"
            ? "Go's profiling port does not exist here" : "only logfile (without rotation) and standard error are supported"
        throw ConfigError("\"\(key)\" is a nats-server setting this broker does not implement: \(reason)", at: node.location)
    }

    /// nats-server 2.9.10 top-level keys this broker refuses, with why.
    static let unimplemented: [String: String] = {
        var table: [String: String] = [:]
        for key in ["cluster", "gateway", "leafnodes", "leaf"] {
            table[key] = "clustering, gateways and leaf nodes are not supported"
        }
        table["default_js_domain"] = "JetStream domains of other accounts are not supported"
        for key in ["tls", "https", "https_port", "ocsp", "allow_non_tls"] { table[key] = "TLS is not supported" }
        for key in ["websocket", "ws", "mqtt"] { table[key] = "only the NATS client protocol is served" }
        for key in ["operator", "operators", "roots", "root", "root_operators", "root_operator", "resolver",
                    "account_resolver", "accounts_resolver", "resolver_tls", "resolver_preload",
                    "resolver_pinned_accounts", "trusted_keys", "trusted",
                    "mappings", "maps"]
        {
            table[key] = "operator (JWT) mode and subject mappings are not supported"
        }
        return table
    }()
}
