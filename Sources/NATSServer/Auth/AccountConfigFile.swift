import JetStream
import NATSConfig

// The `accounts` block of nats.conf, read as 2.9.10's parseAccounts reads it: a list of names, or
// a map of accounts each with users, exports, imports and jetstream. Exports and imports are
// checked against each other once every account is known, with 2.9.10's messages.

extension Options {
    /// `accounts [A, B]` or `accounts { A { users, exports, imports, jetstream, default_permissions } }`.
    mutating func applyAccounts(_ node: ConfigNode) throws(ConfigError) {
        switch node.value {
        case .array(let items):
            var seen: Set<String> = []
            for item in items {
                let name = try item.string(for: "accounts")
                if Self.isReservedAccount(name) {
                    throw ConfigError("\"\(name)\" is a Reserved Account", at: item.location)
                }
                guard seen.insert(name).inserted else {
                    throw ConfigError("Duplicate Account Entry: \(name)", at: item.location)
                }
                accounts.append(AccountConfig(name: name))
            }
        case .map(let block):
            var names = Self.userNames(users)
            for entry in block.settings {
                guard case .map(let body) = entry.node.value else {
                    throw ConfigError("Expected map entries for accounts", at: entry.node.location)
                }
                if Self.isReservedAccount(entry.key) {
                    throw ConfigError("\"\(entry.key)\" is a Reserved Account", at: entry.node.location)
                }
                let account = try Self.account(named: entry.key, body)
                if !account.users.isEmpty {
                    let at = body.entry("users")?.node.location
                    if username != nil { throw ConfigError("Can not have a single user/pass and accounts", at: at) }
                    if authToken != nil { throw ConfigError("Can not have a token and accounts", at: at) }
                }
                // As 2.9.10: an account enters its nkey users first, then its password users.
                try Self.enter(account.users, into: &names, at: body.entry("users")?.keyLocation, nkeysFirst: true)
                accounts.append(account)
            }
        default:
            throw ConfigError("Expected map entries for accounts", at: node.location)
        }
    }

    /// 2.9.10 reserves the global and the system account's names.
    static func isReservedAccount(_ name: String) -> Bool { name == "$G" || name == "$SYS" }

    private static func account(named name: String, _ body: ConfigMap) throws(ConfigError) -> AccountConfig {
        var account = AccountConfig(name: name)
        var defaultPermissions: Permissions?
        for entry in body.settings {
            let node = entry.node
            switch entry.key.lowercased() {
            case "users":
                for item in try node.array(for: entry.key) {
                    var user = try user(item.map(for: entry.key))
                    user.account = name
                    account.users.append(user)
                }
            case "default_permissions":
                defaultPermissions = try permissions(node.map(for: entry.key))
            case "exports":
                guard case .array(let items) = node.value else {
                    throw ConfigError("Exports should be an array, got \(goType(node.value))", at: node.location)
                }
                for item in items { account.exports.append(try export(item)) }
            case "imports":
                guard case .array(let items) = node.value else {
                    throw ConfigError("Imports should be an array, got \(goType(node.value))", at: node.location)
                }
                var services: [String: AccountImport] = [:]
                for item in items {
                    let parsed = try accountImport(item)
                    if parsed.kind == .service {
                        let local = parsed.localSubject
                        if let earlier = services[local] {
                            throw ConfigError(
                                "Duplicate service import subject \"\(local)\", previously used in import for account \"\(earlier.account)\", subject \"\(earlier.subject)\"",
                                at: item.location)
                        }
                        services[local] = parsed
                    }
                    account.imports.append(parsed)
                }
            case "jetstream":
                account.jetStream = try accountJetStream(node)
            case "nkey", "mappings", "maps", "limits":
                throw ConfigError("\"\(entry.key)\" in an account is not implemented by this broker", at: entry.keyLocation)
            default:
                throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
            }
        }
        if let defaultPermissions {
            for index in account.users.indices where account.users[index].permissions == nil {
                account.users[index].permissions = defaultPermissions
            }
        }
        return account
    }

    /// `{stream: "s.>", accounts: [B]}` or `{service: "req.>", accounts: [...], response_type: singleton}`.
    private static func export(_ item: ConfigNode) throws(ConfigError) -> AccountExport {
        guard case .map(let map) = item.value else {
            throw ConfigError("Export Items should be a map with type entry, got \(goType(item.value))", at: item.location)
        }
        var stream: String?
        var service: String?
        var responseType: ServiceResponseType?
        var responseLocation: SourceLocation?
        var accounts: [String]?
        for entry in map.settings {
            let node = entry.node
            switch entry.key.lowercased() {
            case "stream":
                if service != nil {
                    throw ConfigError("Detected stream \"\(describe(node.value))\" but already saw a service", at: node.location)
                }
                guard case .string(let subject) = node.value else {
                    throw ConfigError("Expected stream name to be string, got \(goType(node.value))", at: node.location)
                }
                stream = subject
            case "service":
                if stream != nil {
                    throw ConfigError("Detected service \"\(describe(node.value))\" but already saw a stream", at: node.location)
                }
                guard case .string(let subject) = node.value else {
                    throw ConfigError("Expected service name to be string, got \(goType(node.value))", at: node.location)
                }
                service = subject
            case "response", "response_type":
                if responseType != nil { throw ConfigError("Duplicate response type definition", at: node.location) }
                guard case .string(let text) = node.value else {
                    throw ConfigError("Expected response type to be string, got \(goType(node.value))", at: node.location)
                }
                switch text.lowercased() {
                case "single", "singleton": responseType = .singleton
                case "stream": responseType = .stream
                case "chunk", "chunked": responseType = .chunked
                default: throw ConfigError("Unknown response type: \"\(text)\"", at: node.location)
                }
                responseLocation = node.location
            case "accounts":
                accounts = try node.stringList(for: entry.key)
            case "threshold", "response_threshold", "response_max_time", "response_time", "latency",
                 "account_token_position":
                throw ConfigError("\"\(entry.key)\" in an export is not implemented by this broker", at: entry.keyLocation)
            default:
                throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
            }
        }
        if let stream {
            if let responseLocation { throw ConfigError("Detected response directive on non-service", at: responseLocation) }
            try checkSubject(stream, at: item.location)
            return AccountExport(subject: stream, kind: .stream, accounts: accounts)
        }
        if let service {
            try checkSubject(service, at: item.location)
            return AccountExport(subject: service, kind: .service(responseType ?? .singleton), accounts: accounts)
        }
        throw ConfigError("Export Items should have a stream or a service entry", at: item.location)
    }

    /// `{stream: {account, subject}, prefix | to}` or `{service: {account, subject}, to}`.
    private static func accountImport(_ item: ConfigNode) throws(ConfigError) -> AccountImport {
        guard case .map(let map) = item.value else {
            throw ConfigError("Import Items should be a map with type entry, got \(goType(item.value))", at: item.location)
        }
        var result: AccountImport?
        var prefix = ""
        var to = ""
        var toLocation: SourceLocation?
        for entry in map.settings {
            let node = entry.node
            switch entry.key.lowercased() {
            case "stream", "service":
                let isStream = entry.key.lowercased() == "stream"
                if result != nil {
                    throw ConfigError(isStream ? "Detected stream but already saw a service"
                                               : "Detected service but already saw a stream", at: node.location)
                }
                guard case .map(let source) = node.value else {
                    throw ConfigError("\(isStream ? "Stream" : "Service") entry should be an account map, got \(goType(node.value))",
                                      at: node.location)
                }
                var account = ""
                var subject = ""
                for field in source.settings {
                    switch field.key.lowercased() {
                    case "account": account = try field.node.string(for: field.key)
                    case "subject": subject = try field.node.string(for: field.key)
                    default: throw ConfigError("unknown field \"\(field.key)\"", at: field.keyLocation)
                    }
                }
                if account.isEmpty || subject.isEmpty {
                    throw ConfigError("Expect an account name and a subject", at: node.location)
                }
                try checkSubject(subject, at: node.location)
                result = AccountImport(kind: isStream ? .stream : .service, account: account, subject: subject)
            case "prefix":
                prefix = try node.string(for: entry.key)
            case "to":
                to = try node.string(for: entry.key)
                toLocation = node.location
            case "share":
                _ = try node.bool(for: entry.key)
            default:
                throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
            }
        }
        guard var result else {
            throw ConfigError("Import Items should have a stream or a service entry", at: item.location)
        }
        if result.kind == .stream {
            if !prefix.isEmpty && !to.isEmpty {
                throw ConfigError("Stream import can not have a 'prefix' and a 'to' property", at: toLocation)
            }
            result.prefix = prefix
        }
        result.to = to
        if !to.isEmpty { try checkSubject(to, at: toLocation) }
        return result
    }

    /// A per-account JetStream limit this broker would not enforce: refused rather than ignored.
    private static func limitNotImplemented(_ entry: ConfigEntry) -> ConfigError {
        ConfigError("\"\(entry.key)\" in an account's jetstream is not implemented by this broker (only -1, no limit)",
                    at: entry.keyLocation)
    }

    /// `jetstream: enabled|disabled|true|false` or `{max_mem, max_file, max_streams, max_consumers, ...}`
    /// (the limits are refused unless they say none: -1, or false for max_bytes_required).
    private static func accountJetStream(_ node: ConfigNode) throws(ConfigError) -> Bool {
        switch node.value {
        case .bool(let on): return on
        case .string(let text):
            switch text.lowercased() {
            case "enabled", "enable": return true
            case "disabled", "disable": return false
            default:
                throw ConfigError("Expected 'enabled' or 'disabled' for string value, got '\(text)'", at: node.location)
            }
        case .map(let block):
            for entry in block.settings {
                switch entry.key.lowercased() {
                case "max_memory", "max_mem", "mem", "memory", "max_store", "max_file", "max_disk", "store", "disk",
                     "max_streams", "streams", "max_consumers", "consumers", "mem_max_stream_bytes",
                     "memory_max_stream_bytes", "disk_max_stream_bytes", "store_max_stream_bytes", "max_ack_pending":
                    guard case .integer(let limit) = entry.node.value else {
                        throw ConfigError("Expected a parseable size for \"\(entry.key)\", got \(describe(entry.node.value))",
                                          at: entry.node.location)
                    }
                    if limit != -1 { throw limitNotImplemented(entry) }
                case "max_bytes_required", "max_stream_bytes", "max_bytes":
                    guard case .bool(let required) = entry.node.value else {
                        throw ConfigError("Expected a parseable bool for \"\(entry.key)\", got \(describe(entry.node.value))",
                                          at: entry.node.location)
                    }
                    if required { throw limitNotImplemented(entry) }
                default:
                    throw ConfigError("unknown field \"\(entry.key)\"", at: entry.keyLocation)
                }
            }
            return true
        default:
            throw ConfigError("Expected map, bool or string to define JetStream", at: node.location)
        }
    }

    /// Checks exports and imports once every account is known, as 2.9.10 does after parsing:
    /// accounts named by exports and imports must exist, and an import must be permitted by an
    /// export of its kind.
    func checkAccounts(at location: SourceLocation) throws(ConfigError) {
        let byName = Dictionary(accounts.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for account in accounts {
            for export in account.exports {
                let kind = export.kind == .stream ? "stream" : "service"
                for name in export.accounts ?? [] where byName[name] == nil {
                    throw ConfigError("\"\(name)\" account not defined for \(kind) export", at: location)
                }
            }
        }
        for account in accounts {
            for item in account.imports {
                let kind = item.kind == .stream ? "stream" : "service"
                guard let exporter = byName[item.account] else {
                    throw ConfigError("\"\(item.account)\" account not defined for \(kind) import", at: location)
                }
                let permitted = exporter.exports.contains { export in
                    let sameKind: Bool
                    switch (export.kind, item.kind) {
                    case (.stream, .stream), (.service, .service): sameKind = true
                    default: sameKind = false
                    }
                    return sameKind && export.permits(account.name, subject: item.subject)
                }
                if !permitted {
                    throw ConfigError("Error adding \(kind) import \"\(item.subject)\": \(kind) import not authorized",
                                      at: location)
                }
            }
        }
        try Self.checkImportCycles(accounts, at: location)
    }

    /// Refuses imports that lead back to the importing account, as 2.9.10 does while adding them:
    /// stream imports first, then service imports, each checked against those added before it.
    private static func checkImportCycles(_ accounts: [AccountConfig], at location: SourceLocation) throws(ConfigError) {
        let byName = Dictionary(accounts.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for kind in [AccountImport.Kind.stream, .service] {
            var added: [String: [AccountImport]] = [:]
            for account in accounts {
                for item in account.imports where item.kind == kind {
                    let cycle = kind == .stream
                        ? streamCycle(from: item.account, subject: item.localSubject, visited: [account.name],
                                      added: added, byName: byName)
                        : serviceCycle(from: item.account, subject: item.localSubject, visited: [account.name],
                                       added: added)
                    if cycle {
                        let name = kind == .stream ? "stream" : "service"
                        throw ConfigError("Error adding \(name) import \"\(item.subject)\": import forms a cycle", at: location)
                    }
                    added[account.name, default: []].append(item)
                }
            }
        }
    }

    /// Whether `subject`, exported as a stream by `name`, reaches an account of `visited` through
    /// the stream imports `added` so far.
    private static func streamCycle(from name: String, subject: String, visited: Set<String>,
                                    added: [String: [AccountImport]], byName: [String: AccountConfig]) -> Bool {
        guard visited.count < 1024, let account = byName[name],
              account.exports.contains(where: { $0.kind == .stream && SubjectMapping.isSubset(subject, of: $0.subject) })
        else { return false }
        var visited = visited
        var subject = subject
        for item in added[name] ?? [] where StreamConfig.subjectsCollide(subject, item.localSubject) {
            if visited.contains(item.account) { return true }
            visited.insert(name)
            if SubjectMapping.isSubset(item.localSubject, of: subject) { subject = item.localSubject }
            if streamCycle(from: item.account, subject: subject, visited: visited, added: added, byName: byName) { return true }
        }
        return false
    }

    /// Whether a service request on `subject` in `name` reaches an account of `visited` through
    /// the service imports `added` so far.
    private static func serviceCycle(from name: String, subject: String, visited: Set<String>,
                                     added: [String: [AccountImport]]) -> Bool {
        guard visited.count < 1024 else { return false }
        var visited = visited
        var subject = subject
        for item in added[name] ?? [] where StreamConfig.subjectsCollide(subject, item.subject) {
            if visited.contains(item.account) { return true }
            visited.insert(name)
            if SubjectMapping.isSubset(item.localSubject, of: subject) { subject = item.localSubject }
            if serviceCycle(from: item.account, subject: subject, visited: visited, added: added) { return true }
        }
        return false
    }

    private static func checkSubject(_ subject: String, at location: SourceLocation?) throws(ConfigError) {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        for (i, token) in tokens.enumerated() {
            if token.isEmpty || token.contains(where: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" })
                || (token == ">" && i != tokens.count - 1)
            {
                throw ConfigError("subject \"\(subject)\" is not a valid subject", at: location)
            }
        }
    }

    /// The Go type name 2.9.10's messages show for a value of the wrong kind.
    private static func goType(_ value: ConfigValue) -> String {
        switch value {
        case .string: return "string"
        case .integer: return "int64"
        case .float: return "float64"
        case .bool: return "bool"
        case .datetime: return "time.Time"
        case .array: return "[]interface {}"
        case .map: return "map[string]interface {}"
        }
    }

    private static func describe(_ value: ConfigValue) -> String {
        switch value {
        case .string(let text): return text
        case .integer(let n): return "\(n)"
        case .float(let d): return "\(d)"
        case .bool(let b): return "\(b)"
        case .datetime(let text): return text
        case .array: return "[...]"
        case .map: return "map[...]"
        }
    }
}
