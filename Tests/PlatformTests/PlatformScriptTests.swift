import Foundation
import NATSClient
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `scripts/platform`, the one command that runs the platform locally, run on the binaries built
/// next to the tests (BIN_DIR) with free ports and a temporary data folder.
@Suite struct PlatformScriptTests {
    static let script = repositoryRoot + "/scripts/platform"

    /// The script's environment: free ports (or `ports`), BIN_DIR, nothing inherited that a service reads.
    static func environment(_ ports: [String: Int]) throws -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for key in ServiceProcess.standardVariables + ["NATS_PORT", "NATS_MONITOR_PORT", "AUTH_PORT", "NOTIFICATION_PORT",
                                                       "DATA_PROCESSING_PORT", "ANALYTICS_PORT", "BUILD_PATH",
                                                       "NATS_USER", "NATS_PASSWORD", "NATS_PASSWORD_FILE"]
            + Array(Identities.passwordVariables.values) { env[key] = nil }
        env["BIN_DIR"] = URL(fileURLWithPath: try builtExecutable("nats-server")).deletingLastPathComponent().path
        for (key, port) in ports { env[key] = String(port) }
        env["PASSWORD_ITERATIONS"] = "1000"   // the services inherit it: cheap hashing in tests
        return env
    }

    static func freePorts() throws -> [String: Int] {
        var ports: [String: Int] = [:]
        for key in ["NATS_PORT", "NATS_MONITOR_PORT", "AUTH_PORT", "NOTIFICATION_PORT", "DATA_PROCESSING_PORT", "ANALYTICS_PORT"] {
            ports[key] = try freePort()
        }
        return ports
    }

    /// Whether something accepts connections on the loopback port.
    static func listening(_ port: Int) -> Bool {
        (try? rawHTTP(port: port, method: "GET", path: "/healthz")) != nil
    }

    /// A loopback listener on a free port (closed by the caller).
    static func occupy() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 8) == 0 else { close(fd); throw TestFailure("bind/listen failed: errno \(errno)") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// SIGKILL for any component a failed test left running (their pid files in DATA/run).
    /// - Returns: per component killed, its pid and how /proc described it once the wait ended.
    @discardableResult
    static func killLeftovers(_ data: String) -> [String: (pid: Int32, state: String)] {
        var killed: [String: (pid: Int32, state: String)] = [:]
        for name in ["nats-server"] + Contract.services {
            guard let text = try? String(contentsOfFile: "\(data)/run/\(name).pid", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
                  let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
                  name.hasPrefix(comm.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
            kill(pid, SIGKILL)
            // Until it is gone or a zombie (its new parent reaps it when it gets to it), at most 10 s.
            let deadline = ContinuousClock.now + .seconds(10)
            while kill(pid, 0) == 0 && !isZombie(pid) && ContinuousClock.now < deadline { usleep(1_000) }
            killed[name] = (pid, describe([(name, pid)]))
        }
        return killed
    }

    /// `name pid: State ..., PPid ..., comm ...` from /proc, or `gone`.
    static func describe(_ processes: [(String, Int32)]) -> String {
        processes.map { name, pid in
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let fields = status.split(separator: "\n").filter { $0.hasPrefix("State:") || $0.hasPrefix("PPid:") || $0.hasPrefix("Name:") }
            return "\(name) \(pid): " + (fields.isEmpty ? "gone" : fields.joined(separator: ", "))
        }.joined(separator: "; ")
    }

    static func isZombie(_ pid: Int32) -> Bool {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").contains { $0.hasPrefix("State:") && $0.contains("Z") }
    }

    @Test func componentsLeftByAKilledRunAreNamedAndStalePidFilesAreIgnored() async throws {
        let data = try temporaryDirectory("platform-killed")
        defer {
            Self.killLeftovers(data)
            removeTemporary(data)
        }
        let environment = try Self.environment(try Self.freePorts())
        let killed = try await startWithSignals(Self.script, arguments: ["--no-build", "--data", data], environment: environment)
        do {
            _ = try await killed.waitForLine("the platform-is-up banner", seconds: 90) { $0.contains("The platform is up.") }
        } catch {
            await killed.stop()
            throw error
        }
        // SIGKILL: no trap runs. Its lock goes with it (the kernel closes its files at exit);
        // not waited for, as Foundation notices the exit of a killed child only seconds later.
        kill(killed.process.processIdentifier, SIGKILL)

        // The components outlive a SIGKILLed script; the next run names them instead of failing on ports.
        let refused = try await runCommand(Self.script, ["--no-build", "--data", data], environment: environment, timeout: 60)
        #expect(refused.status == 1)
        #expect(refused.error.contains("still running from an earlier run with this data folder"), "stderr: \(refused.error)")
        for name in ["nats-server"] + Contract.services { #expect(refused.error.contains("\(name) (pid ")) }

        // Once they are gone, their pid files are stale and the platform starts again.
        let killedState = Self.killLeftovers(data)
        let again = try await startWithSignals(Self.script, arguments: ["--no-build", "--data", data], environment: environment)
        do {
            _ = try await again.waitForLine("the platform-is-up banner after the leftovers were stopped", seconds: 90) { $0.contains("The platform is up.") }
        } catch {
            await again.stop()
            // This failed once in CI (a killed auth-service still reported running): say what each
            // leftover looked like after the kill and what its pid looks like now.
            let now = Self.describe(killedState.keys.sorted().map { ($0, killedState[$0]!.pid) })
            throw TestFailure("\(error)\nafter SIGKILL: \(killedState.keys.sorted().map { "\($0): \(killedState[$0]!.state)" })\nnow: \(now)")
        }
        again.process.terminate()
        let status = try await waitForExit(again.process, seconds: 60)
        #expect(status == 0, "exit status after SIGTERM: \(status.map(String.init) ?? "still running after 60 s")")
        if status == nil { await again.stop() }
    }

    /// `scripts/platform | tee log`, then Ctrl-C: the terminal's SIGINT ends `tee` first, so the pipe
    /// is closed by the time the script writes "SIGINT received". That write must fail rather than
    /// kill the script (SIGPIPE), which would leave every component running.
    @Test func stopsEverythingOnCtrlCAfterTheReaderOfItsOutputExited() async throws {
        guard Curl.path != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
            return
        }
        let data = try temporaryDirectory("platform-pipe")
        defer {
            Self.killLeftovers(data)
            removeTemporary(data)
        }
        let ports = try Self.freePorts()
        var environment = try Self.environment(ports)
        environment["PLATFORM_SCRIPT"] = Self.script
        environment["PLATFORM_DATA"] = data
        // The reader passes lines on up to the banner and exits; its group then closes its copy of
        // the pipe too before saying so, and the shell's status is the platform's.
        let shell = """
            "$PLATFORM_SCRIPT" --no-build --data "$PLATFORM_DATA" \
                | { sed '/The platform is up\\./q'; exec 0<&-; echo "reader gone"; }
            exit "${PIPESTATUS[0]}"
            """
        let run = try await startWithSignals("/bin/bash", arguments: ["-c", shell], environment: environment)
        var components: [(String, Int32)] = []
        let platform: Int32
        do {
            _ = try await run.waitForLine("the platform-is-up banner", seconds: 90) { $0.contains("The platform is up.") }
            _ = try await run.waitForLine("the reader's exit", seconds: 30) { $0 == "reader gone" }
            func pid(_ name: String) throws -> Int32 {
                let text = try String(contentsOfFile: "\(data)/run/\(name).pid", encoding: .utf8)
                guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else {
                    throw TestFailure("\(data)/run/\(name).pid holds no pid: '\(text)'")
                }
                return pid
            }
            platform = try pid("platform")
            components = try (["nats-server"] + Contract.services).map { ($0, try pid($0)) }
        } catch {
            await run.stop()
            throw error
        }

        kill(platform, SIGINT)
        let scriptGone = await eventually(60) { kill(platform, 0) != 0 || Self.isZombie(platform) }
        #expect(scriptGone, "scripts/platform still runs 60 s after SIGINT")
        let pids = components
        let gone = await eventually(30) { pids.allSatisfy { kill($0.1, 0) != 0 || Self.isZombie($0.1) } }
        #expect(gone, "still running after the platform ended: \(Self.describe(pids.filter { kill($0.1, 0) == 0 && !Self.isZombie($0.1) }))")
        // Foundation sees the shell exit only once every process that inherited its descriptors is
        // gone, leftovers included: stop those before reading the status.
        Self.killLeftovers(data)
        let status = try await waitForExit(run.process, seconds: 30)
        if status == nil { kill(run.process.processIdentifier, SIGKILL) }
        #expect(status == 0, "the platform's exit status after Ctrl-C: \(status.map(String.init) ?? "unknown (the shell did not end)")")
        for (_, port) in ports { #expect(!Self.listening(port), "port \(port) still served after the stop") }
        // The component logs go on to DATA/logs once the terminal side is gone: the broker's last line is there.
        let brokerLog = (try? String(contentsOfFile: "\(data)/logs/nats-server.log", encoding: .utf8)) ?? ""
        #expect(brokerLog.contains("Server Exiting"), "the broker's shutdown is missing from its log:\n\(brokerLog.suffix(500))")
    }

    @Test func aPortInUseIsNamedWithTheVariableThatMovesItAndNothingStarts() async throws {
        let data = try temporaryDirectory("platform-busy")
        defer { removeTemporary(data) }
        let (fd, busy) = try Self.occupy()
        defer { close(fd) }
        var ports = try Self.freePorts()
        ports["AUTH_PORT"] = busy
        let result = try await runCommand(Self.script, ["--no-build", "--data", data], environment: try Self.environment(ports), timeout: 60)
        #expect(result.status == 1)
        #expect(result.error.contains("port \(busy) (auth-service) is already in use"), "stderr: \(result.error)")
        #expect(result.error.contains("AUTH_PORT="))
        #expect(!Self.listening(ports["NATS_PORT"] ?? 0), "the broker was started although a port was taken")
    }

    @Test func usageErrorsExitWithStatusTwo() async throws {
        let unknown = try await runCommand(Self.script, ["--bogus"], environment: try Self.environment([:]), timeout: 30)
        #expect(unknown.status == 2 && unknown.error.contains("unknown argument '--bogus'"))
        let badPort = try await runCommand(Self.script, ["--no-build"], environment: try Self.environment(["AUTH_PORT": 70000]), timeout: 30)
        #expect(badPort.status == 2 && badPort.error.contains("bad port '70000'"))
        var badMode = try Self.environment([:])
        badMode["EVENT_DELIVERY"] = "exactly-once"
        let mode = try await runCommand(Self.script, ["--no-build"], environment: badMode, timeout: 30)
        #expect(mode.status == 2 && mode.error.contains("EVENT_DELIVERY must be at-least-once or at-most-once"), "stderr: \(mode.error)")
        let help = try await runCommand(Self.script, ["--help"], environment: try Self.environment([:]), timeout: 30)
        #expect(help.status == 0 && help.output.contains("Usage: scripts/platform [--no-build] [--data DIR]"))
        #expect(help.output.contains("--at-most-once") && help.output.contains("--reference-broker"))
        // The defaults it documents are the contract's ports.
        for (variable, port) in [("NATS_PORT", 4222), ("NATS_MONITOR_PORT", 8222), ("AUTH_PORT", 8081), ("NOTIFICATION_PORT", 8082),
                                 ("DATA_PROCESSING_PORT", 8083), ("ANALYTICS_PORT", 8084)] {
            #expect(help.output.contains("\(variable)=\(port)"), "--help does not document \(variable)=\(port)")
            #expect(try String(contentsOfFile: Self.script, encoding: .utf8).contains("${\(variable):-\(port)}"),
                    "scripts/platform does not default \(variable) to \(port)")
        }
    }

    @Test func startsEverythingRefusesASecondCopyStopsInOrderOnCtrlCAndRunsAgainOnTheSameData() async throws {
        guard Curl.path != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl is missing") }
            return
        }
        let data = try temporaryDirectory("platform-script")
        defer {
            Self.killLeftovers(data)
            removeTemporary(data)
        }
        let ports = try Self.freePorts()
        let environment = try Self.environment(ports)
        let auth = "http://127.0.0.1:\(ports["AUTH_PORT"] ?? 0)"
        let email = uniqueEmail("script")

        // First run: up, usable, logs prefixed on the terminal and raw in data/logs.
        let first = try await startWithSignals(Self.script, arguments: ["--no-build", "--data", data], environment: environment)
        do {
            _ = try await first.waitForLine("the platform-is-up banner", seconds: 90) { $0.contains("The platform is up.") }
            let register = try await Curl.post(auth + "/v1/users", json: jsonText(["email": email, "password": "correct horse 9", "name": "Script User"]))
            #expect(register.status == 201)
            #expect(first.output.contains { $0.hasPrefix("auth-service            | {") })
            #expect(first.output.contains { $0.hasPrefix("nats-server             | ") })
            for name in ["nats-server"] + Contract.services {
                let log = (try? String(contentsOfFile: "\(data)/logs/\(name).log", encoding: .utf8)) ?? ""
                #expect(!log.isEmpty, "\(data)/logs/\(name).log is empty")
                #expect(FileManager.default.fileExists(atPath: "\(data)/run/\(name).pid"))
            }
            for name in Contract.services {
                #expect(FileManager.default.fileExists(atPath: "\(data)/\(name)"), "no data folder for \(name)")
            }
            // The broker runs with JetStream, its store in the data folder (so streams survive the next run).
            let varz = try await Curl.get("http://127.0.0.1:\(ports["NATS_MONITOR_PORT"] ?? 0)/varz")
            let jetStream = (varz.json["jetstream"] as? [String: Any])?["config"] as? [String: Any]
            // (<store_dir>/jetstream holds the streams, as in nats-server 2.9.10.)
            #expect(jetStream?["store_dir"] as? String == data + "/nats-server/jetstream", "/varz jetstream: \(varz.json["jetstream"] ?? "none")")
            #expect(first.output.contains { $0.contains("events at-least-once") }, "the services do not run at-least-once by default")
            let secret = try String(contentsOfFile: data + "/jwt-secret", encoding: .utf8)
            #expect(secret.utf8.count >= 32)
            let permissions = try FileManager.default.attributesOfItem(atPath: data + "/jwt-secret")[.posixPermissions] as? Int
            #expect(permissions == 0o600, "jwt-secret mode \(String(permissions ?? 0, radix: 8))")
            #expect((try? String(contentsOfFile: data + "/.gitignore", encoding: .utf8))?.contains("\n*\n") == true,
                    "the data folder keeps itself out of git")
            #expect(first.output.contains { $0.contains("micro ls") } && first.output.contains { $0.contains("/varz") })

            // A second copy on the same data is refused at once, naming the running one.
            let second = try await runCommand(Self.script, ["--no-build", "--data", data], environment: environment, timeout: 60)
            #expect(second.status == 1)
            #expect(second.error.contains("already running with the data folder"), "stderr: \(second.error)")
            // ... and on other data, the ports in use are named.
            let otherData = try temporaryDirectory("platform-other")
            let third = try await runCommand(Self.script, ["--no-build", "--data", otherData], environment: environment, timeout: 60)
            removeTemporary(otherData)
            #expect(third.status == 1 && third.error.contains("port \(ports["NATS_PORT"] ?? 0) (nats-server clients) is already in use"))
        } catch {
            await first.stop()
            throw error
        }

        // Ctrl-C: services stop first, the broker last, everything exits, status 0.
        let pids = Contract.services.compactMap { try? String(contentsOfFile: "\(data)/run/\($0).pid", encoding: .utf8) }
            .compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        first.process.interrupt()
        let status = try await waitForExit(first.process, seconds: 60)
        #expect(status == 0, "exit status after Ctrl-C: \(status.map(String.init) ?? "still running after 60 s")\n\(first.output.suffix(20).joined(separator: "\n"))")
        if status == nil { await first.stop() }
        let lines = first.output
        let brokerStopped = lines.firstIndex { $0.contains("platform: nats-server stopped") }
        for name in Contract.services {
            let stopped = lines.firstIndex { $0.contains("platform: \(name) stopped") }
            #expect(stopped != nil && brokerStopped != nil && stopped! < brokerStopped!, "\(name) did not stop before the broker")
        }
        #expect(pids.count == 4 && pids.allSatisfy { kill($0, 0) != 0 }, "a service process outlived the platform")
        for (_, port) in ports { #expect(!Self.listening(port), "port \(port) still served after the stop") }

        // Run twice: the same data, secret and NATS passwords, so the user registered before can log in.
        let adminPassword = try? String(contentsOfFile: data + "/credentials/admin", encoding: .utf8)
        let again = try await startWithSignals(Self.script, arguments: ["--no-build", "--data", data], environment: environment)
        do {
            _ = try await again.waitForLine("the platform-is-up banner of the second run", seconds: 90) { $0.contains("The platform is up.") }
            let login = try await Curl.post(auth + "/v1/login", json: jsonText(["email": email, "password": "correct horse 9"]))
            #expect(login.status == 200)
            #expect(adminPassword != nil && (try? String(contentsOfFile: data + "/credentials/admin", encoding: .utf8)) == adminPassword,
                    "the NATS passwords were not kept across runs")
        } catch {
            await again.stop()
            throw error
        }
        again.process.terminate()
        let secondStatus = try await waitForExit(again.process, seconds: 60)
        #expect(secondStatus == 0, "exit status after SIGTERM: \(secondStatus.map(String.init) ?? "still running after 60 s")\n\(again.output.suffix(20).joined(separator: "\n"))")
        if secondStatus == nil { await again.stop() }
    }

    /// The identities: a password per identity generated into DATA/credentials (folder 700, files
    /// 600), a broker configuration (600) that includes the matrix, no anonymous access, `admin`
    /// for people and tools, and a login's whole path (auth, notification, data-processing,
    /// analytics) inside the matrix: the broker logs no permission violation (2.9.10 logs them).
    @Test(arguments: BrokerKind.allCases)
    func eachServiceRunsAsItsOwnIdentityInsideTheMatrix(_ broker: BrokerKind) async throws {
        guard Curl.path != nil, broker.executable != nil else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but curl or \(broker) is missing") }
            return
        }
        let data = try temporaryDirectory("platform-identities")
        defer {
            Self.killLeftovers(data)
            removeTemporary(data)
        }
        let ports = try Self.freePorts()
        let arguments = ["--no-build", "--data", data] + (broker == .reference ? ["--reference-broker"] : [])
        let run = try await startWithSignals(Self.script, arguments: arguments, environment: try Self.environment(ports))
        do {
            _ = try await run.waitForLine("the platform-is-up banner", seconds: 90) { $0.contains("The platform is up.") }
            func mode(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
            #expect(mode(data + "/credentials") == 0o700)
            var passwords: [String: String] = [:]
            for identity in Identities.all {
                let file = data + "/credentials/" + identity
                #expect(mode(file) == 0o600, "\(file) mode \(String(mode(file), radix: 8))")
                passwords[identity] = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .newlines)
                #expect((passwords[identity]?.count ?? 0) >= 32)
            }
            #expect(Set(passwords.values).count == Identities.all.count, "two identities share a password")
            let config = data + "/nats-server/nats.conf"
            #expect(mode(config) == 0o600)
            #expect(try String(contentsOfFile: config, encoding: .utf8).contains("nats-server/permissions.conf\""))
            // No password on any command line (ps shows them to everyone).
            for name in ["nats-server"] + Contract.services {
                let pid = try String(contentsOfFile: "\(data)/run/\(name).pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
                for password in passwords.values { #expect(!commandLine.contains(password), "\(name)'s command line holds a password") }
            }
            // The banner shows how to use admin with the nats CLI, the password read from its file
            // (never on the command line), and that command works.
            #expect(run.output.contains { $0.contains("--user admin --password-file '\(data)/credentials/admin'") })
            #expect(!run.output.contains { $0.contains("--password ") })

            let natsPort = ports["NATS_PORT"] ?? 0
            let cli = try builtExecutable("nats")
            let listed = try await runCommand(cli, ["-s", "nats://127.0.0.1:\(natsPort)", "--user", "admin",
                                                    "--password-file", data + "/credentials/admin", "stream", "ls", "--names"])
            #expect(listed.status == 0 && listed.output.contains("USER_EVENTS"), "nats --password-file: \(listed.output) \(listed.error)")
            let refused = try await runCommand(cli, ["-s", "nats://127.0.0.1:\(natsPort)", "--user", "admin",
                                                     "--password-file", data + "/credentials/auth-service", "stream", "ls"])
            #expect(refused.status != 0 && refused.error.contains("uthorization"), "another identity's file: \(refused.error)")
            let anonymous = try await rawSession(port: natsPort, user: nil, password: nil, [])
            #expect(anonymous.contains("-ERR 'Authorization Violation'"), "anonymous: \(anonymous)")
            var options = NATSClient.Options(url: "nats://127.0.0.1:\(natsPort)")
            options.user = "admin"
            options.password = passwords["admin"]
            let admin = try await NATSClient.connect(options)
            let streams = try await admin.jetStream().streamNames()
            await admin.close()
            #expect(streams.contains("USER_EVENTS"), "admin sees the streams: \(streams)")

            // A login's whole path: the notification and the counts.
            let auth = "http://127.0.0.1:\(ports["AUTH_PORT"] ?? 0)"
            let email = uniqueEmail("identities")
            let register = try await Curl.post(auth + "/v1/users", json: jsonText(["email": email, "password": "correct horse 9", "name": "Ida"]))
            #expect(register.status == 201)
            let login = try await Curl.post(auth + "/v1/login", json: jsonText(["email": email, "password": "correct horse 9"]))
            let token = try #require(login.string("access_token"))
            let notified = await eventually(20) {
                let history = try? await Curl.get("http://127.0.0.1:\(ports["NOTIFICATION_PORT"] ?? 0)/v1/notifications",
                                                  headers: ["Authorization": "Bearer \(token)"])
                return history?.body.contains("Ida") == true
            }
            #expect(notified, "no notification for the login")
            let counted = await eventually(20) {
                let stats = try? await Curl.get("http://127.0.0.1:\(ports["ANALYTICS_PORT"] ?? 0)" + Contract.statsPath)
                return stats?.body.contains("user.logged_in") == true
            }
            #expect(counted, "analytics did not count the login")
        } catch {
            await run.stop()
            throw error
        }
        run.process.terminate()
        let status = try await waitForExit(run.process, seconds: 60)
        if status == nil { await run.stop() }
        for name in ["nats-server"] + Contract.services {
            let log = (try? String(contentsOfFile: "\(data)/logs/\(name).log", encoding: .utf8)) ?? ""
            let violations = Identities.violations(log.split(separator: "\n").map(String.init))
            #expect(violations.isEmpty, "\(name) logged permission violations:\n\(violations.prefix(10).joined(separator: "\n"))")
        }
    }
}
