// Command-line flags with nats-server 2.9.10's names and Go `flag` package syntax:
// `-name value`, `-name=value`, `--name value`, `--name=value`; boolean flags take no value
// unless written `-name=false`. Flags this broker does not implement are refused, never ignored.
// With `-c FILE` the file is read first and the flags are applied on top of it, as nats-server does.

import NATSConfig

/// What the command line asks the executable to do.
public enum CommandLineAction: Equatable, Sendable {
    /// Run the broker with these options.
    case run(Options)
    /// Print ``ServerCommandLine/usage`` and exit 0.
    case help
    /// Print ``ServerCommandLine/versionLine`` and exit 0.
    case version
    /// `-t`: the configuration file at this path is valid; print so and exit 0.
    case configurationValid(String)
    /// `--signal`/`-sl`: send a signal to a running broker and exit.
    case signal(SignalCommand)
}

/// A command line the broker cannot honour: an unknown flag, an unsupported one, or a bad value.
public struct CommandLineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// One line saying what is wrong, without the program name.
    public let message: String
    /// Creates an error with its message.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// Parses nats-server's command-line flags.
public enum ServerCommandLine {
    /// The line printed by `-v`/`--version`.
    public static let versionLine =
        "nats-server: v\(ServerVersion.own) (Swift broker, wire-compatible with nats-server \(ServerVersion.compatible))"

    private enum Kind: Sendable {
        case string(@Sendable (inout Options, String) -> Void)
        case int(@Sendable (inout Options, Int) throws(CommandLineError) -> Void)
        case bool(@Sendable (inout Options, Bool) -> Void)
        case help
        case version
        case config
        case testConfig
        case signal
        case refused(String)
    }

    private static func portSetter(_ flag: String, _ apply: @escaping @Sendable (inout Options, Int) -> Void)
        -> @Sendable (inout Options, Int) throws(CommandLineError) -> Void
    {
        return { (options: inout Options, value: Int) throws(CommandLineError) in
            guard value >= -1, value <= 65_535 else {
                throw CommandLineError("invalid value \"\(value)\" for flag -\(flag): port must be between -1 and 65535")
            }
            apply(&options, value)
        }
    }

    private static let flags: [String: Kind] = {
        var table: [String: Kind] = [:]
        func add(_ names: [String], _ kind: Kind) { for name in names { table[name] = kind } }

        add(["a", "addr", "net"], .string { $0.host = $1 })
        add(["p", "port"], .int(portSetter("port") { $0.port = $1 }))
        add(["n", "name", "server_name"], .string { $0.serverName = $1 })
        add(["P", "pid"], .string { $0.pidFile = $1 })
        add(["m", "http_port"], .int(portSetter("http_port") { $0.httpPort = $1 }))
        add(["ports_file_dir"], .string { $0.portsFileDir = $1 })
        add(["l", "log"], .string { $0.logFile = $1 })
        add(["T", "logtime"], .bool { $0.logTime = $1 })
        add(["D", "debug"], .bool { $0.debug = $1 })
        add(["V", "trace", "VV"], .bool { $0.trace = $1 })
        add(["DV", "DVV"], .bool { $0.debug = $1; $0.trace = $1 })
        add(["user"], .string { $0.username = $1 })
        add(["pass"], .string { $0.password = $1 })
        add(["auth"], .string { $0.authToken = $1 })
        add(["h", "help"], .help)
        add(["v", "version"], .version)

        add(["c", "config"], .config)
        add(["t"], .testConfig)
        add(["ms", "https_port", "tls", "tlscert", "tlskey", "tlsverify", "tlscacert", "help_tls"],
            .refused("TLS is not supported by this broker"))
        add(["routes", "cluster", "cluster_name", "no_advertise", "cluster_advertise", "connect_retries",
             "cluster_listen", "client_advertise"],
            .refused("clustering is not supported by this broker"))
        add(["js", "jetstream"], .bool { $0.jetStream = $1 })
        add(["sd", "store_dir"], .string { $0.storeDirectory = $1 })
        add(["sl", "signal"], .signal)
        add(["s", "syslog", "r", "remote_syslog"], .refused("syslog logging is not supported; use -l <file>"))
        add(["log_size_limit"], .refused("log rotation is not supported"))
        add(["max_traced_msg_len"], .refused("limiting traced message length is not supported"))
        add(["profile"], .refused("the profiling port is not supported"))
        return table
    }()

    /// Parses the arguments that follow the program name.
    ///
    /// - Parameters:
    ///   - arguments: `CommandLine.arguments.dropFirst()`.
    ///   - environment: where `$VAR` references of a configuration file are looked up,
    ///     `NATS_BUSY_POLL_US` (``Options/busyPoll`` in microseconds, 0 = off) and
    ///     `NATS_EVENT_LOOPS` (``Options/eventLoopCount``).
    /// - Returns: what to do: run, print help, print the version, or report a valid `-t` check.
    /// - Throws: ``CommandLineError`` for an unknown flag, a flag this broker does not support
    ///   (TLS, clustering, ...), a missing or malformed value, an unexpected positional
    ///   argument, a configuration file that does not load (its message starts with `file:line:column`),
    ///   a `NATS_BUSY_POLL_US` that is not a number of microseconds from 0 to 1000000, or a
    ///   `NATS_EVENT_LOOPS` that is not a number from 1 to 1024.
    public static func parse<C: Collection>(
        _ arguments: C, environment: [String: String] = ProcessEnvironment.current
    ) throws(CommandLineError) -> CommandLineAction
    where C.Element == String {
        // Flags are applied to scratch options at once (so bad values fail here), and recorded so
        // they can be applied again on top of a configuration file's options.
        var options = Options()
        var flagSetters: [(inout Options) -> Void] = []
        var configPath: String?
        var testOnly = false
        var action: CommandLineAction?
        let args = Array(arguments)
        var index = 0
        while index < args.count {
            let arg = args[index]
            index += 1
            if arg == "--" {
                if index < args.count { throw CommandLineError("unexpected argument \"\(args[index])\"") }
                break
            }
            guard arg.hasPrefix("-"), arg != "-" else {
                throw CommandLineError("unexpected argument \"\(arg)\"")
            }
            var body = Substring(arg.dropFirst())
            if body.hasPrefix("-") { body = body.dropFirst() }
            var name = String(body)
            var inlineValue: String?
            if let equals = body.firstIndex(of: "=") {
                name = String(body[..<equals])
                inlineValue = String(body[body.index(after: equals)...])
            }
            guard !name.isEmpty, !name.hasPrefix("-") else { throw CommandLineError("bad flag syntax: \(arg)") }
            guard let kind = flags[name] else { throw CommandLineError("flag provided but not defined: -\(name)") }

            func value() throws(CommandLineError) -> String {
                if let inlineValue { return inlineValue }
                guard index < args.count else { throw CommandLineError("flag needs an argument: -\(name)") }
                index += 1
                return args[index - 1]
            }

            switch kind {
            case .string(let apply):
                let text = try value()
                apply(&options, text)
                flagSetters.append { apply(&$0, text) }
            case .int(let apply):
                let text = try value()
                guard let number = Int(text) else {
                    throw CommandLineError("invalid value \"\(text)\" for flag -\(name): parse error")
                }
                try apply(&options, number)
                flagSetters.append { try? apply(&$0, number) }
            case .bool(let apply):
                var flag = true
                if let inlineValue {
                    guard let parsed = parseBool(inlineValue) else {
                        throw CommandLineError("invalid boolean value \"\(inlineValue)\" for -\(name): parse error")
                    }
                    flag = parsed
                }
                apply(&options, flag)
                flagSetters.append { apply(&$0, flag) }
            case .config:
                configPath = try value()
            case .testConfig:
                testOnly = true
            case .signal:
                let request = try SignalCommand(parsing: try value())
                if action == nil { action = .signal(request) }
            case .help:
                if action == nil { action = .help }
            case .version:
                if action == nil { action = .version }
            case .refused(let reason):
                throw CommandLineError("flag -\(name) is not supported: \(reason)")
            }
        }
        if let action { return action }
        if let configPath {
            do {
                options = try Options.load(configFile: configPath, environment: environment)
            } catch {
                throw CommandLineError(error.description)
            }
            for setter in flagSetters { setter(&options) }
            if testOnly { return .configurationValid(configPath) }
        } else if testOnly {
            throw CommandLineError("-t needs a configuration file to test: -t -c <file>")
        }
        if options.password != nil && options.username == nil {
            throw CommandLineError("--pass requires --user")
        }
        if options.username != nil && options.authToken != nil {
            throw CommandLineError("--auth cannot be combined with --user/--pass")
        }
        if options.host.isEmpty { throw CommandLineError("-a needs a host address") }
        if let text = environment["NATS_BUSY_POLL_US"] {
            guard let micros = Int(text), micros >= 0, micros <= 1_000_000 else {
                throw CommandLineError("invalid NATS_BUSY_POLL_US \"\(text)\": microseconds from 0 (off) to 1000000")
            }
            options.busyPoll = .microseconds(micros)
        }
        if let text = environment["NATS_EVENT_LOOPS"] {
            guard let count = Int(text), count >= 1, count <= 1024 else {
                throw CommandLineError("invalid NATS_EVENT_LOOPS \"\(text)\": a number of event-loop threads from 1 to 1024")
            }
            options.eventLoopCount = count
        }
        return .run(options)
    }

    /// Go's `strconv.ParseBool` spellings.
    private static func parseBool(_ text: String) -> Bool? {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True": return true
        case "0", "f", "F", "false", "FALSE", "False": return false
        default: return nil
        }
    }

    /// The `-h` text: nats-server's layout, listing only the flags this broker supports.
    public static let usage = """
        Usage: nats-server [options]

        Server Options:
            -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
            -p, --port <port>                Use port for clients (default: 4222, -1 for random)
            -n, --name
                --server_name <server_name>  Server name (default: auto)
            -P, --pid <file>                 File to store PID
            -m, --http_port <port>           Use port for http monitoring (/varz, /healthz)
            -c, --config <file>              Configuration file (flags override it)
            -t                               Test configuration and exit
            -sl,--signal <signal>[=<pid>]    Send signal to nats-server process (ldm, stop, quit, term, reopen, reload)
                                             <pid> is a process id or the path of a pid file (-P)
                --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).

        Logging Options:
            -l, --log <file>                 File to redirect log output
            -T, --logtime                    Timestamp log entries (default: true)
            -D, --debug                      Enable debugging output
            -V, --trace                      Trace the raw protocol
            -VV                              Same as -V (there is no system account)
            -DV                              Debug and trace
            -DVV                             Same as -DV

        JetStream Options:
            -js, --jetstream                 Enable JetStream functionality
            -sd, --store_dir <dir>           Set the storage directory

        Authorization Options:
                --user <user>                User required for connections
                --pass <password>            Password required for connections
                --auth <token>               Authorization token required for connections

        Common Options:
            -h, --help                       Show this message
            -v, --version                    Show version

        Not supported (refused with exit code 1): TLS, clustering, syslog,
        --profile. In configuration files, keys for those features are refused with file:line.

        """
}

/// Version strings.
public enum ServerVersion {
    /// This broker's own version.
    public static let own = "0.1.0"
    /// The nats-server version whose wire behaviour this broker matches (sent in INFO and /varz).
    public static let compatible = "2.9.10"
    /// What INFO and /varz put in `go`: the runtime that built this broker.
    public static let runtime = "swift6.3"
}
