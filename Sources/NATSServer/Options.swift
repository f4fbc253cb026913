// Options: every setting of the broker in one value, with nats-server 2.9.10's defaults.

/// The broker's configuration. Defaults are those of nats-server 2.9.10 (`server/const.go`).
///
/// Tests shrink the limits (`maxPending`, `pingInterval`, ...) to exercise them quickly.
public struct Options: Sendable, Equatable {
    /// Address to bind the client listener to (`-a`). nats-server's default is all interfaces.
    public var host: String = "0.0.0.0"
    /// Client port (`-p`). `0` or `-1` picks a random free port; read the actual one from
    /// ``Server/port`` after ``Server/start()``.
    public var port: Int = 4222
    /// Server name (`-n`); `nil` means "use the server id", as nats-server does.
    public var serverName: String?
    /// File to write the process id to (`-P`). Written by the `nats-server` executable.
    public var pidFile: String?
    /// Monitoring port (`-m`); `nil` or `0` disables monitoring, `-1` picks a random port.
    public var httpPort: Int?
    /// Address for the monitoring listener; `nil` means the client ``host``.
    public var httpHost: String?
    /// `http_base_path`: the path the monitoring endpoints are served under; /varz reports it as written.
    public var httpBasePath: String?
    /// Directory for the `<exe>_<pid>.ports` file (`--ports_file_dir`). Written by the executable.
    public var portsFileDir: String?

    /// Log file (`-l`); `nil` logs to standard error.
    public var logFile: String?
    /// Timestamp log lines (`-T`, default true).
    public var logTime: Bool = true
    /// Debug logging (`-D`).
    public var debug: Bool = false
    /// Protocol tracing (`-V`).
    public var trace: Bool = false
    /// Discard every log line (embedding in tests).
    public var noLog: Bool = false

    /// User required in CONNECT (`--user`); authentication is on when this or ``authToken`` is set.
    public var username: String?
    /// Password required with ``username`` (`--pass`).
    public var password: String?
    /// Token required in CONNECT `auth_token` (`--auth`).
    public var authToken: String?
    /// `authorization { users = [...] }`: each user with its password and permissions.
    public var users: [User] = []
    /// `accounts { ... }`: the configured accounts (their users are listed in ``AccountConfig/users``,
    /// each with ``User/account`` set). Users outside any account belong to the global account `$G`.
    public var accounts: [AccountConfig] = []
    /// `no_auth_user`: the user a client sending no credentials becomes; must name one of ``users``
    /// or a user of an account.
    public var noAuthUser: String?
    /// Time a client has to send CONNECT when authentication is required (2s).
    public var authTimeout: Duration = .seconds(2)

    /// Largest PUB/HPUB payload (headers included), in bytes (1MB).
    public var maxPayload: Int = 1_048_576
    /// Largest control line (the arguments of an op), in bytes (4096).
    public var maxControlLine: Int = 4096
    /// Largest number of client connections (64K).
    public var maxConnections: Int = 65_536
    /// Largest number of subscriptions per connection; `0` means unlimited.
    public var maxSubscriptions: Int = 0
    /// `client_advertise`: the `host` or `host:port` INFO and /varz announce instead of the listen
    /// address (a missing, 0 or -1 port means the one listened on).
    public var clientAdvertise: String?
    /// `server_tags`: lower-cased, listed as /varz `tags`.
    public var serverTags: [String] = []
    /// `max_sub_tokens`: a SUB subject with more tokens is refused; `0` means unlimited.
    public var maxSubTokens: Int = 0
    /// `no_header_support`: INFO says `"headers":false` and no client may send or receive headers.
    public var noHeaderSupport: Bool = false
    /// `disable_sublist_cache`: /subsz reports no cache, as 2.9.10 without its match cache does.
    public var disableSublistCache: Bool = false
    /// `max_traced_msg_len`: payloads traced longer than this are cut (with `...`); `0` means whole.
    public var maxTracedMessageLength: Int = 0
    /// Largest number of bytes queued for one client before it is closed as a slow consumer (64MB).
    public var maxPending: Int = 64 * 1024 * 1024
    /// Longest a client may leave queued bytes unread before it is closed as a slow consumer (10s).
    public var writeDeadline: Duration = .seconds(10)
    /// Interval of the server's keep-alive PINGs (2m).
    public var pingInterval: Duration = .seconds(120)
    /// Unanswered server PINGs allowed before `Stale Connection` (2).
    public var maxPingsOut: Int = 2

    /// Time over which lame duck mode closes the clients (`lame_duck_duration`, 2m). The config
    /// file refuses less than 30s, as 2.9.10 does; embedding code and tests may set any value.
    public var lameDuckDuration: Duration = .seconds(120)
    /// Wait between the lame duck INFO and the first client closed (`lame_duck_grace_period`, 10s).
    public var lameDuckGracePeriod: Duration = .seconds(10)

    /// Number of event loops; `nil` means one per CPU in the process's affinity mask. Not a
    /// nats-server setting (its counterpart is GOMAXPROCS): the executable reads it from
    /// `NATS_EVENT_LOOPS` when that is set.
    public var eventLoopCount: Int?
    /// How long an event loop keeps polling (without sleeping) after a batch that handled client
    /// I/O, so a quick reply is read without a wake-up; `.zero` turns it off. Not a nats-server
    /// setting: the executable reads it from `NATS_BUSY_POLL_US` (microseconds) when that is set.
    /// Idle loops never spin (see ``EventLoop``).
    public var busyPoll: Duration = .microseconds(50)

    /// JetStream on (`-js`, `jetstream: enabled` or a `jetstream {}` block).
    public var jetStream: Bool = false
    /// `-sd`/`store_dir`: the directory under which `jetstream/` is kept; nil means nats-server's
    /// default, `$TMPDIR/nats` (`/tmp/nats`).
    public var storeDirectory: String?
    /// `max_memory_store`/`max_mem`: bytes of memory storage; nil means 75% of the machine's memory.
    public var jetStreamMaxMemory: Int64?
    /// `max_file_store`/`max_file`: bytes of file storage; nil means the free space of the store's disk.
    public var jetStreamMaxStore: Int64?
    /// `domain` of the `jetstream {}` block ("" for none).
    public var jetStreamDomain: String = ""
    /// How often file stores are fsynced (2.9.10: every two minutes). Not a 2.9.10 setting:
    /// `sync_interval` in the `jetstream {}` block (a duration, or `always`), as later nats-servers call it.
    public var jetStreamSyncInterval: Duration = .seconds(120)
    /// `sync_interval: always`: fsync a stream's file before its PubAck is sent.
    public var jetStreamSyncAlways: Bool = false

    /// Creates options with nats-server 2.9.10's defaults.
    public init() {}

    /// True when clients must authenticate in CONNECT.
    public var authRequired: Bool {
        (username != nil) || (authToken != nil) || !allUsers.isEmpty
    }

    /// Every configured user: `authorization { users }` first, then each account's users.
    public var allUsers: [User] {
        accounts.isEmpty ? users : users + accounts.flatMap(\.users)
    }
}

extension Options {
    /// The host and port clients are told about: ``clientAdvertise`` when set, else the listen
    /// host and `listening`, the port actually bound.
    func advertised(port listening: Int) -> (host: String, port: Int) {
        guard let clientAdvertise, let parsed = Self.advertisement(clientAdvertise, defaultPort: listening) else {
            return (host, listening)
        }
        return parsed
    }

    /// `host`, `host:port` or `[v6]:port` as 2.9.10's `parseHostPort` reads it; nil when malformed.
    static func advertisement(_ text: String, defaultPort: Int) -> (host: String, port: Int)? {
        var host = Substring(text)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                portText = rest.dropFirst()
            }
        } else if let colon = host.firstIndex(of: ":") {
            // Go refuses a second colon outside brackets ("too many colons").
            if host[host.index(after: colon)...].contains(":") { return nil }
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        var port = defaultPort
        if let portText {
            guard let number = Int(trimmed(portText)) else { return nil }
            port = number == 0 || number == -1 ? defaultPort : number
        }
        return (trimmed(host), port)
    }

    /// `text` without leading and trailing white space (Go's `strings.TrimSpace`).
    static func trimmed<S: StringProtocol>(_ text: S) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}

extension Duration {
    /// Whole nanoseconds of a duration (saturating), as /varz reports intervals.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? Int64.min : Int64.max }
        return scaled &+ attoseconds / 1_000_000_000
    }

    /// The duration in (fractional) seconds.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
