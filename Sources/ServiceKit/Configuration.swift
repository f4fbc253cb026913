import Foundation

/// Where a configuration value came from.
public enum ConfigSource: Sendable, Equatable, CustomStringConvertible {
    /// The setting's own default.
    case builtInDefault
    /// The JSON file at this path.
    case file(String)
    /// This environment variable.
    case environment(String)
    /// The command line.
    case arguments

    public var description: String {
        switch self {
        case .builtInDefault: return "built-in default"
        case .file(let path): return "file \(path)"
        case .environment(let name): return "environment variable \(name)"
        case .arguments: return "command line"
        }
    }
}

/// Raw input for a setting: text from the environment, or a JSON value from the file.
public enum ConfigInput: Sendable {
    /// An environment variable's text.
    case text(String)
    /// A value from the JSON file.
    case json(JSONValue)
}

/// Everything wrong with the configuration, all at once, each problem naming the key, where the
/// bad value came from and what was expected.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One bad key or source.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The key (file name of the setting, or the argument / file in question).
        public var key: String
        /// Where the bad value came from.
        public var source: ConfigSource
        /// What was wrong or what was expected.
        public var message: String
        public var description: String { "\(key) (from \(source)): \(message)" }
    }
    /// Every problem found, in a stable order (arguments, file keys sorted, then environment).
    public var problems: [Problem]
    public var description: String {
        "configuration: " + problems.map(\.description).joined(separator: "; ")
    }
}

/// One typed configuration setting: its file key, its environment variable, its default, what
/// it means, and how to parse and validate it.
public struct Setting<Value: Sendable>: Sendable {
    /// Key in the JSON file (snake_case).
    public let key: String
    /// Environment variable name.
    public let environment: String
    /// Value used when no source sets it.
    public let defaultValue: Value
    /// One line for the documentation table.
    public let meaning: String
    /// Shown in errors: what a valid value looks like.
    public let expected: String
    /// Secrets are never shown in errors or in ``Configuration/summary``.
    public let isSecret: Bool
    let parse: @Sendable (ConfigInput) -> Value?
    let render: @Sendable (Value) -> String

    /// A setting with a custom parser (`parse` returns nil for an invalid value).
    public init(key: String, environment: String, default defaultValue: Value, meaning: String, expected: String,
                isSecret: Bool = false, render: @escaping @Sendable (Value) -> String,
                parse: @escaping @Sendable (ConfigInput) -> Value?) {
        self.key = key; self.environment = environment; self.defaultValue = defaultValue; self.meaning = meaning
        self.expected = expected; self.isSecret = isSecret; self.parse = parse; self.render = render
    }
}

extension Setting where Value == String {
    /// A string; `validate` returns true for acceptable values (non-empty by default).
    public static func string(_ key: String, env: String, default value: String, meaning: String,
                              expected: String = "a non-empty string",
                              validate: @escaping @Sendable (String) -> Bool = { !$0.isEmpty }) -> Setting<String> {
        Setting(key: key, environment: env, default: value, meaning: meaning, expected: expected, render: { $0 }) { input in
            guard case let text? = input.text, validate(text) else { return nil }
            return text
        }
    }
}

extension Setting where Value == String? {
    /// An optional secret (no default); when given it must have at least `minimumLength` bytes.
    public static func secret(_ key: String, env: String, meaning: String, minimumLength: Int) -> Setting<String?> {
        Setting(key: key, environment: env, default: nil, meaning: meaning,
                expected: "a secret of at least \(minimumLength) bytes", isSecret: true, render: { $0 == nil ? "(none)" : "(set)" }) { input in
            guard case let text? = input.text, text.utf8.count >= minimumLength else { return nil }
            return text
        }
    }
}

extension Setting where Value == Int {
    /// An integer within `range` (a JSON number or decimal text).
    public static func integer(_ key: String, env: String, default value: Int, range: ClosedRange<Int>, meaning: String) -> Setting<Int> {
        Setting(key: key, environment: env, default: value, meaning: meaning,
                expected: "an integer in \(range.lowerBound)...\(range.upperBound)", render: { String($0) }) { input in
            let number: Int?
            switch input {
            case .text(let t): number = Int(t.trimmingCharacters(in: .whitespaces))
            case .json(.int(let i)): number = Int(exactly: i)
            default: number = nil
            }
            guard let number, range.contains(number) else { return nil }
            return number
        }
    }
}

extension Setting where Value == Bool {
    /// A boolean: JSON true/false, or text true/false/1/0/yes/no.
    public static func boolean(_ key: String, env: String, default value: Bool, meaning: String) -> Setting<Bool> {
        Setting(key: key, environment: env, default: value, meaning: meaning, expected: "true or false",
                render: { String($0) }) { input in
            switch input {
            case .json(.bool(let b)): return b
            case .text(let t):
                switch t.lowercased() {
                case "true", "1", "yes": return true
                case "false", "0", "no": return false
                default: return nil
                }
            default: return nil
            }
        }
    }
}

extension Setting where Value == LogLevel {
    /// A log level name.
    public static func logLevel(_ key: String, env: String, default value: LogLevel, meaning: String) -> Setting<LogLevel> {
        Setting(key: key, environment: env, default: value, meaning: meaning,
                expected: "one of " + LogLevel.allCases.map(\.description).joined(separator: ", "),
                render: { $0.description }) { input in
            guard case let text? = input.text else { return nil }
            return LogLevel(name: text)
        }
    }
}

extension ConfigInput {
    /// The text of `.text` or of a JSON string.
    var text: String? {
        switch self {
        case .text(let t): return t
        case .json(.string(let s)): return s
        default: return nil
        }
    }
    var shown: String {
        switch self {
        case .text(let t): return "\"\(t)\""
        case .json(let v): return String(decoding: v.serialized, as: UTF8.self)
        }
    }
}

/// The settings every service has.
public enum StandardSettings {
    /// `NATS_URL`: comma-separated `nats://host:port` URLs (scheme optional).
    public static let natsURL = Setting<String>.string(
        "nats_url", env: "NATS_URL", default: "nats://127.0.0.1:4222",
        meaning: "NATS broker URL(s), comma-separated", expected: "nats://host:port[,nats://host:port...]",
        validate: isValidNATSURLList)
    /// `HTTP_PORT`: 0 picks a free port.
    public static let httpPort = Setting<Int>.integer(
        "http_port", env: "HTTP_PORT", default: 8080, range: 0...65535,
        meaning: "HTTP listen port (0 picks a free one)")
    /// `DATA_DIR`: the service's own storage folder.
    public static let dataDirectory = Setting<String>.string(
        "data_dir", env: "DATA_DIR", default: "./data", meaning: "folder for the service's durable store")
    /// `LOG_LEVEL`.
    public static let logLevel = Setting<LogLevel>.logLevel(
        "log_level", env: "LOG_LEVEL", default: .info, meaning: "minimum level of log lines")
    /// `JWT_SECRET`: the one token-signing secret every service reads.
    public static let jwtSecret = Setting<String?>.secret(
        "jwt_secret", env: "JWT_SECRET",
        meaning: "HS256 signing key shared by all services (auth-service generates one in DATA_DIR when unset)",
        minimumLength: JWTAuthority.minimumSecretLength)

    /// `SERVICE_NAME`, defaulting to `name`.
    public static func serviceName(default name: String) -> Setting<String> {
        .string("service_name", env: "SERVICE_NAME", default: name, meaning: "name in logs, metrics and $SRV discovery",
                 expected: "letters, digits, '-' or '_'") { name in
            !name.isEmpty && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f
            }
        }
    }

    /// Every standard setting, for ``Configuration/load(_:arguments:environment:workingDirectory:)``
    /// and the README table; a service appends its own.
    public static func all(serviceName: String) -> [AnySetting] {
        [AnySetting(natsURL), AnySetting(natsUser), AnySetting(natsPassword), AnySetting(natsPasswordFile), AnySetting(httpPort), AnySetting(dataDirectory), AnySetting(logLevel),
         AnySetting(jwtSecret), AnySetting(self.serviceName(default: serviceName)), AnySetting(deliveryMode)]
    }

    static func isValidNATSURLList(_ text: String) -> Bool {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        return !entries.isEmpty && entries.allSatisfy { entry in
            var rest = Substring(entry)
            if let scheme = rest.range(of: "://") {
                guard ["nats", "tls"].contains(rest[..<scheme.lowerBound].lowercased()) else { return false }
                rest = rest[scheme.upperBound...]
            }
            if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
            guard let colon = rest.lastIndex(of: ":") else { return !rest.isEmpty && !rest.contains("/") }
            let host = rest[..<colon], port = rest[rest.index(after: colon)...]
            guard !host.isEmpty, let p = Int(port), (1...65535).contains(p) else { return false }
            return true
        }
    }
}

/// A type-erased view of a ``Setting`` (for loading and documenting a list of them).
public struct AnySetting: Sendable {
    /// See ``Setting/key``.
    public let key: String
    /// See ``Setting/environment``.
    public let environment: String
    /// See ``Setting/meaning``.
    public let meaning: String
    /// See ``Setting/expected``.
    public let expected: String
    /// See ``Setting/isSecret``.
    public let isSecret: Bool
    /// The default as shown in the documentation table.
    public let renderedDefault: String
    let defaultValue: any Sendable
    let parse: @Sendable (ConfigInput) -> (any Sendable)?
    let render: @Sendable (any Sendable) -> String

    /// Erases `setting`.
    public init<Value>(_ setting: Setting<Value>) {
        key = setting.key; environment = setting.environment; meaning = setting.meaning
        expected = setting.expected; isSecret = setting.isSecret
        renderedDefault = setting.render(setting.defaultValue)
        defaultValue = setting.defaultValue
        parse = { input in setting.parse(input).map { $0 as any Sendable } }
        render = { value in (value as? Value).map(setting.render) ?? "?" }
    }
}

/// Resolved, validated configuration: built-in defaults, then a JSON file, then environment
/// variables (later sources win).
///
/// The file is `--config PATH` when given (it must exist), else `config/default.json` under the
/// working directory if present. It must be one JSON object whose keys are setting keys; unknown
/// keys are errors. An environment variable set to the empty string counts as unset.
public struct Configuration: Sendable {
    private var values: [String: any Sendable]
    private var sources: [String: ConfigSource]
    private let settings: [AnySetting]

    /// Loads `settings` from the sources above.
    /// - Parameters:
    ///   - settings: every setting the service reads (see ``StandardSettings``), keys unique.
    ///   - arguments: command-line arguments without the program name; only `--config PATH` and
    ///     `--config=PATH` are understood, anything else is a problem.
    ///   - environment: the process environment.
    ///   - workingDirectory: where `config/default.json` is looked for.
    /// - Throws: ``ConfigurationError`` listing every problem: unreadable or invalid file, unknown
    ///   file key, invalid value (naming key, source and what was expected), unknown argument.
    public static func load(_ settings: [AnySetting], arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            workingDirectory: String = FileManager.default.currentDirectoryPath) throws(ConfigurationError) -> Configuration {
        var problems: [ConfigurationError.Problem] = []
        var config = Configuration(values: [:], sources: [:], settings: settings)
        for s in settings {
            config.values[s.key] = s.defaultValue
            config.sources[s.key] = .builtInDefault
        }

        // --config
        var explicitFile: String?
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            if arg == "--config" {
                if i + 1 < arguments.count { explicitFile = arguments[i + 1]; i += 2; continue }
                problems.append(.init(key: "--config", source: .arguments, message: "expected a file path after --config"))
            } else if arg.hasPrefix("--config=") {
                explicitFile = String(arg.dropFirst("--config=".count))
            } else {
                problems.append(.init(key: arg, source: .arguments, message: "unknown argument (only --config PATH is accepted)"))
            }
            i += 1
        }
        let conventional = workingDirectory + "/config/default.json"
        let filePath = explicitFile ?? (FileManager.default.fileExists(atPath: conventional) ? conventional : nil)

        // File.
        if let filePath {
            let source = ConfigSource.file(filePath)
            if let data = FileManager.default.contents(atPath: filePath) {
                switch JSONValue.parse(Array(data)) {
                case .object(let members)?:
                    for key in members.keys.sorted() {
                        guard let setting = settings.first(where: { $0.key == key }) else {
                            let known = settings.map(\.key).joined(separator: ", ")
                            problems.append(.init(key: key, source: source, message: "unknown key (known keys: \(known))"))
                            continue
                        }
                        config.apply(setting, .json(members[key] ?? .null), from: source, problems: &problems)
                    }
                case .some:
                    problems.append(.init(key: filePath, source: source, message: "expected a JSON object at the top level"))
                case nil:
                    problems.append(.init(key: filePath, source: source, message: "not valid JSON"))
                }
            } else {
                problems.append(.init(key: filePath, source: source, message: "cannot read the file"))
            }
        }

        // Environment.
        for setting in settings {
            guard let text = environment[setting.environment], !text.isEmpty else { continue }
            config.apply(setting, .text(text), from: .environment(setting.environment), problems: &problems)
        }
        if !problems.isEmpty { throw ConfigurationError(problems: problems) }
        return config
    }

    private mutating func apply(_ setting: AnySetting, _ input: ConfigInput, from source: ConfigSource,
                                problems: inout [ConfigurationError.Problem]) {
        if let value = setting.parse(input) {
            values[setting.key] = value
            sources[setting.key] = source
        } else {
            let shown = setting.isSecret ? "(secret, \(input.text?.utf8.count ?? 0) bytes)" : input.shown
            let key: String
            if case .environment = source { key = setting.environment } else { key = setting.key }
            problems.append(.init(key: key, source: source, message: "invalid value \(shown): expected \(setting.expected)"))
        }
    }

    /// The value of `setting` (its default if no source set it). A setting that was not passed to
    /// ``load(_:arguments:environment:workingDirectory:)`` yields its default.
    public subscript<Value>(_ setting: Setting<Value>) -> Value {
        (values[setting.key] as? Value) ?? setting.defaultValue
    }

    /// Where the value of the setting with file key `key` came from.
    public func source(of key: String) -> ConfigSource? { sources[key] }

    /// Every setting's value as text, secrets redacted, for a start-up log line.
    public var summary: [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for s in settings {
            guard let value = values[s.key] else { continue }
            out[s.key] = .string(s.isSecret ? (s.render(value) == "(none)" ? "(none)" : "(set)") : s.render(value))
        }
        return out
    }

    /// A Markdown table documenting `settings` (key, environment variable, default, meaning) for
    /// the README.
    public static func documentationTable(_ settings: [AnySetting]) -> String {
        func cell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
        var lines = ["| Key (file) | Environment | Default | Meaning |", "|---|---|---|---|"]
        for s in settings {
            lines.append("| `\(cell(s.key))` | `\(cell(s.environment))` | `\(cell(s.renderedDefault))` | \(cell(s.meaning)); \(cell(s.expected)) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
