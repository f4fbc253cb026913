// Command-line parsing for the `nats` tool: positionals, `--flag value`, `--flag=value`, switches.

/// Parsed command-line arguments.
struct Arguments {
    /// Flags that take a value (long and short spellings map to the long name).
    static let valueFlags: [String: String] = [
        "--server": "server", "-s": "server", "--user": "user", "--password": "password",
        "--password-file": "password-file", "--token": "token",
        "--nkey": "nkey",
        "--count": "count", "-H": "header", "--header": "header", "--queue": "queue", "--timeout": "timeout",
        "--pub": "pub", "--sub": "sub", "--msgs": "msgs", "--size": "size", "--name": "name",
        // JetStream (natscli's names).
        "--subjects": "subjects", "--storage": "storage", "--retention": "retention", "--discard": "discard",
        "--max-msgs": "max-msgs", "--max-bytes": "max-bytes", "--max-age": "max-age", "--max-msg-size": "max-msg-size",
        "--max-msgs-per-subject": "max-msgs-per-subject", "--max-consumers": "max-consumers", "--dupe-window": "dupe-window",
        "--replicas": "replicas", "--description": "description", "--subject": "subject", "--seq": "seq", "--keep": "keep",
        "--target": "target", "--deliver-group": "deliver-group", "--filter": "filter", "--ack": "ack", "--replay": "replay",
        "--deliver": "deliver", "--max-deliver": "max-deliver", "--max-pending": "max-pending", "--wait": "wait",
        "--heartbeat": "heartbeat", "--history": "history", "--ttl": "ttl", "--max-value-size": "max-value-size",
        "--stream": "stream", "--pubbatch": "pubbatch", "--pullbatch": "pullbatch",
    ]
    /// Flags without a value.
    static let switchFlags: [String: String] = [
        "--request": "request", "-h": "help", "--help": "help", "--raw": "raw", "--json": "json",
        "--defaults": "defaults", "-f": "force", "--force": "force", "--names": "names", "-n": "names", "--pull": "pull",
        "--ephemeral": "ephemeral", "--no-ack": "no-ack", "--flow-control": "flow-control", "--allow-rollup": "allow-rollup",
        "--deny-delete": "deny-delete", "--deny-purge": "deny-purge", "--allow-direct": "allow-direct",
        "--js": "js", "--syncpub": "syncpub", "--push": "push",
    ]

    var positional: [String] = []
    var values: [String: [String]] = [:]
    var switches: Set<String> = []

    /// Parses `arguments` (without the program name).
    ///
    /// - Throws: ``CLIError/usage(_:)`` for an unknown flag or a flag missing its value.
    init(_ arguments: [String]) throws(CLIError) {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                positional.append(contentsOf: arguments[index...])
                break
            }
            guard argument.hasPrefix("-"), argument.count > 1 else {
                positional.append(argument)
                continue
            }
            var name = argument
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            if let key = Self.switchFlags[name] {
                switches.insert(key)
            } else if let key = Self.valueFlags[name] {
                if let inline {
                    values[key, default: []].append(inline)
                } else {
                    guard index < arguments.count else { throw .usage("\(name) needs a value") }
                    values[key, default: []].append(arguments[index])
                    index += 1
                }
            } else {
                throw .usage("unknown flag \(name)")
            }
        }
    }

    func value(_ key: String) -> String? { values[key]?.last }

    func all(_ key: String) -> [String] { values[key] ?? [] }

    /// An integer flag, `fallback` when absent.
    ///
    /// - Throws: ``CLIError/usage(_:)`` when it is not a number within `range`.
    func int(_ key: String, default fallback: Int, range: ClosedRange<Int> = 0...Int.max) throws(CLIError) -> Int {
        guard let text = value(key) else { return fallback }
        guard let number = Self.parseCount(text), range.contains(number) else {
            throw .usage("--\(key) must be a number in \(range.lowerBound)...\(range.upperBound), got \(text)")
        }
        return number
    }

    /// A duration flag like `500ms`, `2s`, `1m` (plain numbers are seconds).
    ///
    /// - Throws: ``CLIError/usage(_:)``.
    func duration(_ key: String, default fallback: Duration) throws(CLIError) -> Duration {
        guard let text = value(key) else { return fallback }
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000001), ("s", 1), ("m", 60)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let number = Double(text.dropLast(suffix.count)), number >= 0 {
                return .nanoseconds(Int64(number * scale * 1e9))
            }
        }
        if let seconds = Double(text), seconds >= 0 { return .nanoseconds(Int64(seconds * 1e9)) }
        throw .usage("--\(key) must be a duration such as 500ms or 2s, got \(text)")
    }

    /// `1000`, `1_000`, `10K` (x1000), `1M` (x1000000), and sizes `1KB`/`1MB` (x1024).
    static func parseCount(_ text: String) -> Int? {
        let cleaned = text.replacingOccurrences(of: "_", with: "").replacingOccurrences(of: ",", with: "")
        let upper = cleaned.uppercased()
        let suffixes: [(String, Int)] = [("KIB", 1024), ("MIB", 1 << 20), ("KB", 1024), ("MB", 1 << 20), ("K", 1000), ("M", 1_000_000)]
        for (suffix, scale) in suffixes where upper.hasSuffix(suffix) {
            guard let base = Int(upper.dropLast(suffix.count)) else { return nil }
            let (value, overflow) = base.multipliedReportingOverflow(by: scale)
            return overflow ? nil : value
        }
        return Int(upper)
    }
}

/// A failure the tool reports on stderr with exit status 1 (usage: 2).
enum CLIError: Error, CustomStringConvertible {
    case usage(String)
    case failed(String)

    var description: String {
        switch self {
        case .usage(let text): return text
        case .failed(let text): return text
        }
    }
}
