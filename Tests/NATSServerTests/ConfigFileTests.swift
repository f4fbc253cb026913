import Foundation
import NATSConfig
import Testing

@testable import NATSServer

private func options(_ text: String, env: [String: String] = [:]) throws -> Options {
    var options = Options()
    try options.apply(ConfigParser.parse(text, file: "nats.conf", environment: env))
    return options
}

private func configError(_ text: String) -> ConfigError? {
    do {
        _ = try options(text)
        return nil
    } catch let error as ConfigError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite("nats.conf keys the broker implements")
struct ConfigFileTests {
    @Test func listenHttpLimitsAndLoggingTakeEffect() throws {
        let o = try options(
            """
            listen: 127.0.0.1:14222
            http: 127.0.0.1:18222
            server_name: "research-a"
            max_payload: 1KB
            max_connections: 3
            max_control_line: 512
            max_pending: 64KB
            max_subscriptions: 10
            ping_interval: "1s"
            ping_max: 2
            write_deadline: "2s"
            debug: true
            trace: on
            logtime: false
            logfile: "/tmp/nats.log"
            pid_file: "/tmp/nats.pid"
            """)
        #expect(o.host == "127.0.0.1")
        #expect(o.port == 14222)
        #expect(o.httpHost == "127.0.0.1")
        #expect(o.httpPort == 18222)
        #expect(o.serverName == "research-a")
        #expect(o.maxPayload == 1024)
        #expect(o.maxConnections == 3)
        #expect(o.maxControlLine == 512)
        #expect(o.maxPending == 65536)
        #expect(o.maxSubscriptions == 10)
        #expect(o.pingInterval == .seconds(1))
        #expect(o.maxPingsOut == 2)
        #expect(o.writeDeadline == .seconds(2))
        #expect(o.debug && o.trace && !o.logTime)
        #expect(o.logFile == "/tmp/nats.log")
        #expect(o.pidFile == "/tmp/nats.pid")
    }

    @Test func portAndHttpPortAcceptPlainNumbers() throws {
        let o = try options("port: 4333\nhttp: 8333\nhost: 127.0.0.2")
        #expect(o.port == 4333)
        #expect(o.httpPort == 8333)
        #expect(o.host == "127.0.0.2")
        #expect(try options("listen: 4444").port == 4444)
    }

    @Test func authorizationTokenOrUserWithTimeout() throws {
        let token = try options("TOKEN = s3cr3t\nauthorization { token: $TOKEN, timeout: 0.5 }")
        #expect(token.authToken == "s3cr3t")
        #expect(token.authTimeout == .milliseconds(500))
        #expect(token.authRequired)
        let user = try options("authorization {\n  user: alice\n  password: \"p w\"\n}")
        #expect(user.username == "alice")
        #expect(user.password == "p w")
    }

    @Test func aVariableFromTheEnvironmentSetsTheLimit() throws {
        #expect(try options("max_payload: $MAXP", env: ["MAXP": "2MB"]).maxPayload == 2 << 20)
    }

    @Test func anUnknownKeyIsFatalWithNatsServersWordsAndItsLocation() throws {
        let error = try #require(configError("port: 4222\nfoo: 1"))
        #expect(error.description == "nats.conf:2:1: unknown field \"foo\"")
        let nested = try #require(configError("authorization {\n  tokn: x\n}"))
        #expect(nested.description == "nats.conf:2:3: unknown field \"tokn\"")
    }

    @Test func anUnusedVariableIsAnUnknownFieldAsInNatsServer() throws {
        #expect(configError("X = 5\nport: 4222")?.description == "nats.conf:1:1: unknown field \"X\"")
    }

    @Test("a key nats-server knows but this broker does not implement is refused, naming it", arguments: [
        "cluster { name: demo, listen: 127.0.0.1:6222 }", "default_js_domain: {}", "tls { cert_file: x }",
        "mappings { a: b }", "websocket { port: 1 }", "mqtt { port: 1 }", "leafnodes { port: 1 }",
        "gateway { name: g }", "operator: x", "resolver: MEMORY", "ws { port: 1 }",
    ])
    func unimplementedKeysAreRefused(line: String) throws {
        let error = try #require(configError("port: 1\n" + line))
        let key = String(line.prefix { $0 != " " && $0 != ":" })
        #expect(error.location == SourceLocation(file: "nats.conf", line: 2, column: 1))
        #expect(error.message.hasPrefix("\"\(key)\" is a nats-server setting this broker does not implement"))
    }

    @Test func queuePermissionEntriesAreReadAndBadOnesRefusedWith2_9_10sWords() throws {
        let parsed = try options(#"authorization { users [ {user: a, password: b, permissions: {"#
                                 + #"subscribe: {allow: ["foo v1", "bar.*  v.*", "plain"], deny: ["x.> q"]}, publish: ["p v1"]}} ] }"#)
        let permissions = try #require(parsed.users.first?.permissions)
        #expect(permissions.subscribe?.allow == ["foo v1", "bar.*  v.*", "plain"])
        #expect(permissions.subscribe?.deny == ["x.> q"])
        #expect(permissions.publish?.allow == ["p v1"])
        func refused(_ entry: String) -> String? {
            configError(#"authorization { users [ {user: a, password: b, permissions: {subscribe: [""#
                        + entry + #""]}} ] }"#)?.message
        }
        #expect(refused("foo bar baz") == #"subject "foo bar baz" is not a valid subject"#)
        #expect(refused("a..b v1") == #"subject "a..b" is not a valid subject"#)
        #expect(refused("a.>.b") == #"subject "a.>.b" is not a valid subject"#)
    }

    @Test func maxSubTokensIsReadWithItsAliasAndBoundsAs2_9_10() throws {
        #expect(try options("max_sub_tokens: 3").maxSubTokens == 3)
        #expect(try options("max_subscription_tokens: 255").maxSubTokens == 255)
        #expect(configError("max_sub_tokens: 256")?.description == "nats.conf:1:1: max_sub_tokens value is too big")
        #expect(configError("max_sub_tokens: 0")?.description == "nats.conf:1:1: max_sub_tokens value can not be negative")
    }

    @Test func settingsWithNothingToDoHereOrAnEffectWeHaveAreAccepted() throws {
        let parsed = try options("""
            no_header_support: true
            max_traced_msg_len: 8
            trace_verbose: true
            disable_sublist_cache: true
            connect_error_reports: 3
            reconnect_error_reports: 4
            max_conn: 10
            max_subs: 5
            syslog: false
            remote_syslog: ""
            log_size_limit: 0
            prof_port: 0
            """)
        #expect(parsed.noHeaderSupport && parsed.trace && parsed.disableSublistCache)
        #expect(parsed.maxTracedMessageLength == 8)
        #expect(parsed.maxConnections == 10 && parsed.maxSubscriptions == 5)
    }

    @Test("a logging or profiling setting we cannot honour is refused unless it is off",
          arguments: ["syslog: true", #"remote_syslog: "udp://127.0.0.1:514""#, "log_size_limit: 1000", "prof_port: 6060"])
    func loggingWeCannotHonourIsRefused(line: String) throws {
        let error = try #require(configError(line))
        #expect(error.message.contains("does not implement"))
    }

    @Test func clientAdvertiseAndServerTagsAreReadAs2_9_10ReadsThem() throws {
        let parsed = try options(#"client_advertise: "example.com:5555"\#nserver_tags: ["a:1", " B ", "b", ""]"#)
        #expect(try options(#"http_base_path: "/mon""#).httpBasePath == "/mon")
        #expect(parsed.clientAdvertise == "example.com:5555")
        #expect(parsed.serverTags == ["a:1", "b"])
        #expect(parsed.advertised(port: 4222) == ("example.com", 5555))
        #expect(try options(#"server_tags: "Solo""#).serverTags == ["solo"])
        #expect(Options.advertisement("h", defaultPort: 4222)! == ("h", 4222))
        #expect(Options.advertisement("h:0", defaultPort: 4222)! == ("h", 4222))
        #expect(Options.advertisement("[::1]:7", defaultPort: 4222)! == ("::1", 7))
        #expect(Options.advertisement("::1", defaultPort: 4222) == nil)
        #expect(configError(#"client_advertise: "h:port""#)?.message.contains("client_advertise") == true)
    }

    @Test func noAdvertiseIsNotATopLevelKeyIn2_9_10() throws {
        #expect(configError("no_advertise: true")?.description == "nats.conf:1:1: unknown field \"no_advertise\"")
    }

    @Test func wrongTypesAndRangesNameTheKeyAndLine() throws {
        #expect(configError("max_payload: \"1MB\"")?.location?.line == 1)
        #expect(configError("port: 70000")?.message.contains("\"port\"") == true)
        #expect(configError("ping_interval: \"soon\"")?.message.contains("ping_interval") == true)
        #expect(configError("max_connections: 0")?.message.contains("max_connections") == true)
        #expect(configError("listen: nohostport")?.message.contains("listen") == true)
    }

    @Test func aTokenWithAUserIsRefusedAsNatsServerDoes() throws {
        #expect(configError("authorization { token: abc, user: a, password: b }")?.message == "Cannot have a user/pass and token")
    }

    @Test func bcryptPasswordsAreRefusedNeverComparedAsText() throws {
        let error = try #require(configError(
            "authorization { user: a, password: $2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG }"))
        #expect(error.message.contains("bcrypt"))
    }

    @Test func usersWithEveryPermissionFormParse() throws {
        let o = try options(
            """
            authorization {
              users = [
                {user: a, password: b}
                {user: c, pass: d, permissions: {publish: {allow: "x.>", deny: ["x.y", "x.z"]}, subscribe: ["s.*", "_INBOX.>"]}}
                {username: e, password: f, permissions: {pub: "p", sub: {deny: "q.>"}, allow_responses: true}}
                {user: g, password: h, permissions: {allow_responses: {max: 3, expires: "1m"}}}
              ]
            }
            no_auth_user: a
            """)
        #expect(o.authRequired)
        #expect(o.noAuthUser == "a")
        #expect(o.users.map(\.name) == ["a", "c", "e", "g"])
        #expect(o.users[0].permissions == nil)
        #expect(o.users[1].password == "d")
        #expect(o.users[1].permissions?.publish == SubjectPermission(allow: ["x.>"], deny: ["x.y", "x.z"]))
        #expect(o.users[1].permissions?.subscribe == SubjectPermission(allow: ["s.*", "_INBOX.>"]))
        #expect(o.users[2].permissions?.publish == SubjectPermission(allow: ["p"]))
        #expect(o.users[2].permissions?.subscribe == SubjectPermission(deny: ["q.>"]))
        #expect(o.users[2].permissions?.response == ResponsePermission(maxMessages: 1, expires: .zero))
        #expect(o.users[3].permissions?.response == ResponsePermission(maxMessages: 3, expires: .seconds(60)))
    }

    @Test func defaultPermissionsApplyToUsersWithoutTheirOwn() throws {
        let o = try options(
            """
            authorization {
              default_permissions: {publish: {deny: "admin.>"}}
              users = [ {user: a, password: b}, {user: c, password: d, permissions: {publish: "x"}} ]
            }
            """)
        #expect(o.users[0].permissions?.publish == SubjectPermission(deny: ["admin.>"]))
        #expect(o.users[1].permissions?.publish == SubjectPermission(allow: ["x"]))
    }

    @Test func noAuthUserMustNameAUserWithItsLine() throws {
        let error = try #require(configError("authorization {\n  users = [ {user: a, password: b} ]\n}\nno_auth_user: c"))
        #expect(error.location?.line == 4)
        #expect(error.message == "no_auth_user: \"c\" not present as user in authorization block or account configuration")
        #expect(configError("no_auth_user: c")?.location?.line == 1)
    }

    @Test func badUserEntriesAreRefusedAsNatsServerDoes() throws {
        let invalid = try #require(configError(
            "authorization {\n  users = [ {user: a, password: b, permissions: {publish: {allow: \"a..b\"}}} ]\n}"))
        #expect(invalid.message == "subject \"a..b\" is not a valid subject")
        #expect(invalid.location?.line == 2)
        #expect(configError("authorization { user: x, password: y, users = [ {user: a, password: b} ] }")?.message
                == "Can not have a single user/pass and a users array")
        #expect(configError("authorization { users = [ {user: a, password: b, permissions: {publish: {allo: x}}} ] }")?
                    .message.contains("allo") == true)
        #expect(configError("authorization { users = [ {password: b} ] }") != nil)
        let bcrypt = try #require(configError(
            "authorization { users = [ {user: a, password: $2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG} ] }"))
        #expect(bcrypt.message.contains("bcrypt"))
    }
}

/// The same files given to Debian's nats-server 2.9.10 (`-t`) and to this broker must be judged
/// alike: valid files are valid for both, and an unknown field is reported at the same line.
@Suite("nats.conf judged like nats-server 2.9.10")
struct ConfigFileCompatibilityTests {
    static let reference = ProcessInfo.processInfo.environment["NATS_REFERENCE_BIN"] ?? "/usr/sbin/nats-server"

    static func referenceVerdict(_ text: String) throws -> (valid: Bool, output: String)? {
        guard FileManager.default.isExecutableFile(atPath: reference) else {
            if ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1" {
                Issue.record("nats-server 2.9.10 is required at \(reference)")
            }
            return nil
        }
        let dir = NSTemporaryDirectory() + "conf-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/nats.conf"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: reference)
        process.arguments = ["-t", "-c", file]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        return (output.contains("is valid"), output)
    }

    static let validConfigs = [
        "listen: 127.0.0.1:14222\nhttp: 127.0.0.1:18222\nmax_payload: 1KB\nmax_pending: 64KB\nping_interval: \"1s\"",
        "{\n  \"port\": 4222, // json with comments\n  \"max_connections\": 100\n}",
        "P = 4333\nport: $P\nwrite_deadline: \"500ms\"",
        "authorization { user: a, password: b, timeout: 1.5 }\ndebug: yes\ntrace: off",
        "authorization { token: \"abc\" }\nmax_control_line: 2KB\nmax_subscriptions: 1000",
        "server_name: srv; logtime: false, ping_max: 5",
    ]

    @Test("files valid for nats-server are valid here", arguments: validConfigs)
    func validForBoth(text: String) throws {
        guard let verdict = try Self.referenceVerdict(text) else { return }
        #expect(verdict.valid, "nats-server rejected a test file: \(verdict.output)")
        #expect(throws: Never.self) { try options(text) }
    }

    static let unknownFieldConfigs = [
        ("port: 4222\nfoo: 1", 2), ("X = 5\nport: 4222", 1), ("max_payload: 1KB\n\nbogus_key true", 3),
    ]

    @Test("an unknown field is reported at the same line", arguments: unknownFieldConfigs)
    func unknownFieldSameLine(text: String, line: Int) throws {
        guard let verdict = try Self.referenceVerdict(text) else { return }
        #expect(!verdict.valid)
        #expect(verdict.output.contains("nats.conf:\(line):"), "\(verdict.output)")
        #expect(verdict.output.contains("unknown field"))
        let ours = try #require(configError(text))
        #expect(ours.location?.line == line)
        #expect(ours.message.hasPrefix("unknown field"))
    }
}

@Suite("-c and -t on the command line")
struct ConfigCommandLineTests {
    static func writeConfig(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "nats-\(UUID().uuidString).conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func busyPollComesFromTheEnvironment() throws {
        guard case .run(let defaults) = try ServerCommandLine.parse([String](), environment: [:]) else {
            Issue.record("expected .run")
            return
        }
        #expect(defaults.busyPoll == .microseconds(50))
        guard case .run(let off) = try ServerCommandLine.parse([String](), environment: ["NATS_BUSY_POLL_US": "0"]),
              case .run(let set) = try ServerCommandLine.parse([String](), environment: ["NATS_BUSY_POLL_US": "120"]) else {
            Issue.record("expected .run")
            return
        }
        #expect(off.busyPoll == .zero)
        #expect(set.busyPoll == .microseconds(120))
        for bad in ["-1", "fast", "", "1000001"] {
            #expect(throws: CommandLineError.self) {
                try ServerCommandLine.parse([String](), environment: ["NATS_BUSY_POLL_US": bad])
            }
        }
    }

    @Test func eventLoopCountComesFromTheEnvironment() throws {
        guard case .run(let defaults) = try ServerCommandLine.parse([String](), environment: [:]),
              case .run(let three) = try ServerCommandLine.parse([String](), environment: ["NATS_EVENT_LOOPS": "3"]) else {
            Issue.record("expected .run")
            return
        }
        #expect(defaults.eventLoopCount == nil)
        #expect(three.eventLoopCount == 3)
        for bad in ["0", "-2", "many", "", "1025"] {
            #expect(throws: CommandLineError.self) {
                try ServerCommandLine.parse([String](), environment: ["NATS_EVENT_LOOPS": bad])
            }
        }
    }

    @Test func flagsOverrideTheFileWhateverTheirOrder() throws {
        let path = try Self.writeConfig("listen: 127.0.0.1:4999\nmax_payload: 2KB\ndebug: true")
        defer { try? FileManager.default.removeItem(atPath: path) }
        for args in [["-p", "5001", "-c", path, "-D=false"], ["-c", path, "-p", "5001", "-D=false"]] {
            guard case .run(let o) = try ServerCommandLine.parse(args, environment: [:]) else {
                Issue.record("expected .run for \(args)")
                continue
            }
            #expect(o.port == 5001)
            #expect(o.host == "127.0.0.1")
            #expect(o.maxPayload == 2048)
            #expect(!o.debug)
        }
    }

    @Test func dashTReportsAValidFileAndRefusesABadOneWithItsLine() throws {
        let good = try Self.writeConfig("port: 4333\n")
        let bad = try Self.writeConfig("port: 4333\nrouts: []\n")
        defer {
            try? FileManager.default.removeItem(atPath: good)
            try? FileManager.default.removeItem(atPath: bad)
        }
        #expect(try ServerCommandLine.parse(["-t", "-c", good], environment: [:]) == .configurationValid(good))
        #expect {
            try ServerCommandLine.parse(["-t", "-c", bad], environment: [:])
        } throws: { error in
            (error as? CommandLineError)?.message == "\(bad):2:1: unknown field \"routs\""
        }
        #expect(throws: CommandLineError.self) { try ServerCommandLine.parse(["-t"], environment: [:]) }
    }

    @Test func aConfigVariableComesFromTheGivenEnvironment() throws {
        let path = try Self.writeConfig("port: $CLIENT_PORT\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard case .run(let o) = try ServerCommandLine.parse(["-c", path], environment: ["CLIENT_PORT": "4777"]) else {
            Issue.record("expected .run")
            return
        }
        #expect(o.port == 4777)
    }
}
