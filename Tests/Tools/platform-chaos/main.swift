// platform-chaos: the platform (a JetStream broker and the four services, as processes) under
// logins and jobs while its components are SIGKILLed and restarted at random moments; at the end it
// checks that no promise was broken: every login that got a 200 has exactly one notification in the
// user's history (in every notification instance) and is counted exactly once by every analytics
// instance, every accepted job has its result, and every component is ready again.
//
//   platform-chaos [--duration 30] [--seed 1] [--instances 1|2] [--clients 4] [--users 5]
//                  [--kill-every 4] [--job-every 2] [--settle 120] [--bin DIR]
//                  [--reference-broker | --broker PATH] [--permissions FILE] [--work DIR] [--keep]
//
// --duration   seconds of logins and kills        --seed       the kill plan's random seed
// --instances  notification and analytics instances (2: one of each is killed during the run)
// --clients    concurrent login clients           --users      users per client
// --kill-every mean seconds between kills         --job-every  mean seconds between job submissions
// --settle     seconds the end waits for every event to arrive before it counts losses
// --bin        folder of the built executables (default: this tool's folder)
// --reference-broker  /usr/sbin/nats-server 2.9.10 -js as the broker (--broker: any executable)
// --permissions the permission matrix the broker runs with (default nats-server/permissions.conf
//              under the current folder): each service connects as its own user with a password
//              made for the run, the tool as admin; a permission violation in any log fails the run
// --work       folder for the stores and logs (default: a new temporary one, removed after a pass)
// --keep       keep the work folder after a pass too
//
// It prints its progress, then the figures, then one line `chaos-summary: {json}` for programs.
// Exit status: 0 when nothing was lost or duplicated and everything recovered; 1 when something was
// (or the platform could not start); 2 for a usage error.
//
// A login counts as ok only on a 200. A login that was sent but got no answer (the connection broke
// while auth-service was killed) may or may not have happened: it is "uncertain", and a
// notification or count for it is neither a loss nor a duplicate. A login refused before it was
// sent (auth down) or answered with an error is "failed".

import Foundation
import NATSClient
import Synchronization
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

// MARK: Options

struct Options {
    var duration = 30.0
    var seed: UInt64 = 1
    var instances = 1
    var clients = 4
    var usersPerClient = 5
    var killEvery = 4.0
    var jobEvery = 2.0
    var settle = 120.0
    var bin: String?
    var broker: String?
    var work: String?
    var keep = false
    var permissions = "nats-server/permissions.conf"
}

func usage() -> String {
    """
    usage: platform-chaos [--duration S] [--seed N] [--instances 1|2] [--clients N] [--users N]
                          [--kill-every S] [--job-every S] [--settle S] [--bin DIR]
                          [--reference-broker | --broker PATH] [--permissions FILE] [--work DIR] [--keep]
    """
}

func parseOptions(_ arguments: [String]) -> Result<Options, ChaosFailure> {
    var options = Options()
    var rest = arguments[...]
    func value(_ flag: String) -> Result<String, ChaosFailure> {
        guard let v = rest.popFirst() else { return .failure(ChaosFailure(description: "\(flag) needs a value")) }
        return .success(v)
    }
    func number(_ flag: String, _ range: ClosedRange<Double>) -> Result<Double, ChaosFailure> {
        value(flag).flatMap { text in
            guard let n = Double(text), range.contains(n) else {
                return .failure(ChaosFailure(description: "\(flag) must be a number in \(range.lowerBound)...\(range.upperBound), not '\(text)'"))
            }
            return .success(n)
        }
    }
    func integer(_ flag: String, _ range: ClosedRange<Int>) -> Result<Int, ChaosFailure> {
        value(flag).flatMap { text in
            guard let n = Int(text), range.contains(n) else {
                return .failure(ChaosFailure(description: "\(flag) must be a whole number in \(range.lowerBound)...\(range.upperBound), not '\(text)'"))
            }
            return .success(n)
        }
    }
    while let flag = rest.popFirst() {
        do throws(ChaosFailure) {
            switch flag {
            case "--duration": options.duration = try number(flag, 1...86_400).get()
            case "--seed":
                let text = try value(flag).get()
                guard let seed = UInt64(text) else { return .failure(ChaosFailure(description: "--seed must be a whole number, not '\(text)'")) }
                options.seed = seed
            case "--instances": options.instances = try integer(flag, 1...2).get()
            case "--clients": options.clients = try integer(flag, 1...64).get()
            case "--users": options.usersPerClient = try integer(flag, 1...1000).get()
            case "--kill-every": options.killEvery = try number(flag, 0.2...3600).get()
            case "--job-every": options.jobEvery = try number(flag, 0.05...3600).get()
            case "--settle": options.settle = try number(flag, 1...3600).get()
            case "--bin": options.bin = try value(flag).get()
            case "--broker": options.broker = try value(flag).get()
            case "--reference-broker": options.broker = "/usr/sbin/nats-server"
            case "--work": options.work = try value(flag).get()
            case "--permissions": options.permissions = try value(flag).get()
            case "--keep": options.keep = true
            case "-h", "--help":
                print(usage())
                exit(0)
            default: return .failure(ChaosFailure(description: "unknown argument '\(flag)'"))
            }
        } catch {
            return .failure(error)
        }
    }
    return .success(options)
}

/// One line on standard output at once (unbuffered: a reader of a pipe sees progress as it happens).
/// A write that fails (the reader went away) is dropped: the run goes on and still stops what it started.
func out(_ line: String) {
    var bytes = Array((line + "\n").utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

func say(_ line: String) { out("chaos: " + line) }

/// When the run began, for the log lines.
enum RunClock {
    static let began = monotonicSeconds()
}
func stamp() -> String { String(format: "%6.1fs", monotonicSeconds() - RunClock.began) }

struct User: Sendable {
    var email: String
    var password: String
}

/// What each user's logins came to.
struct Tally: Sendable {
    var ok = 0
    var uncertain = 0
    var failed = 0
    var token: String?
}

/// Every user's tally, the reasons logins were not ok, and the flag that ends the load.
final class Ledger: Sendable {
    let tallies = Mutex<[String: Tally]>([:])
    let stopping = Atomic<Bool>(false)
    let failures = Mutex<[String: Int]>([:])

    func record(_ email: String, _ change: (inout Tally) -> Void) {
        tallies.withLock { change(&$0[email, default: Tally()]) }
    }

    func failure(_ why: String) { failures.withLock { $0[why, default: 0] += 1 } }
}

/// A short reason for an outcome that is not a 200 (the figures group them).
func reason(_ outcome: HTTPOutcome) -> String {
    switch outcome {
    case .response(let status, _): return "HTTP \(status)"
    case .notSent: return "not sent"
    case .noAnswer: return "no answer"
    }
}

/// Registers `user` through `client`, retrying while auth-service is away (a 409 means an earlier
/// attempt whose answer was lost did register it). Returns whether it is registered.
func register(_ user: User, _ client: HTTPClient, name: String, deadline: Double) -> Bool {
    let body = jsonText(["email": user.email, "password": user.password, "name": name])
    while monotonicSeconds() < deadline {
        switch client.request("POST", "/v1/users", json: body) {
        case .response(201, _), .response(409, _): return true
        default: usleep(100_000)
        }
    }
    return false
}

func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

/// A small job for data.jobs.submit (the data-processing tests' kind of pipeline).
enum JobRequest {
    static let body = #"""
{"format":"csv","csv":"user,ms\nann,120\nbo,30\nann,80\ncy,\nbo,70\n",
 "pipeline":[{"op":"filter","where":"not is_null(ms)"},
             {"op":"group","by":["user"],"aggregates":[{"fn":"count"},{"fn":"max","field":"ms"}]},
             {"op":"sort","by":["user"]}]}
"""#
}

/// The service error code of a NATS reply (`Nats-Service-Error-Code`), nil for a success.
func serviceErrorCode(_ message: Message) -> Int? {
    guard let headers = message.headerBytes else { return nil }
    let text = String(decoding: headers, as: UTF8.self)
    for line in text.split(separator: "\r\n") where line.lowercased().hasPrefix("nats-service-error-code:") {
        return Int(line.dropFirst("nats-service-error-code:".count).trimmingCharacters(in: .whitespaces))
    }
    return message.status.flatMap { $0 >= 400 ? $0 : nil }
}

/// Job ids the service accepted, and the refusals by reason.
final class Jobs: Sendable {
    let accepted = Mutex<[String]>([])
    let refused = Mutex<[String: Int]>([:])
}

/// One SIGKILL and its recovery.
struct Kill: Sendable {
    var component: String
    var kind: String
    var at: Double
    var down: Double
    /// Seconds from the SIGKILL until it (and, for the broker, every service) was ready again; nil if never.
    var recovered: Double?
}

/// A user's history as one notification instance lists it: the source event ids, one per notification.
func history(_ instance: Component, token: String) -> [String]? {
    let client = HTTPClient(port: instance.port)
    var sources: [String] = []
    var cursor: String?
    for _ in 0..<1000 {
        let path = "/v1/notifications?limit=100" + (cursor.map { "&before=\($0)" } ?? "")
        guard case .response(200, let body) = client.request("GET", path, headers: ["Authorization": "Bearer \(token)"]),
              let object = jsonObject(body), let items = object["notifications"] as? [[String: Any]] else { return nil }
        sources += items.map { $0["source_event_id"] as? String ?? "(none)" }
        guard let next = object["next_before"] as? String, !items.isEmpty else { break }
        cursor = next
    }
    return sources
}

/// `by_type["user.logged_in"]` of an analytics instance's all-time counts (public, unlike
/// `GET /v1/stats`, which names users and needs a token).
func countedLogins(_ instance: Component) -> Int? {
    let client = HTTPClient(port: instance.port)
    guard case .response(200, let body) = client.request("GET", "/v1/stats/counts?window=all"),
          let byType = jsonObject(body)?["by_type"] as? [String: Any] else { return nil }
    return (byType["user.logged_in"] as? Int) ?? 0
}

/// What one instance lost and duplicated (`unreadable`: users whose history could not be read).
struct Check: Sendable {
    var lost = 0
    var duplicated = 0
    var unreadable = 0
}

/// The whole run; its exit status.
func chaos(_ options: Options) async -> Int32 {
    // MARK: The platform

    let binDirectory = options.bin ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    let brokerExecutable = options.broker ?? binDirectory + "/nats-server"
    let serviceKinds = ["auth-service", "notification-service", "analytics-service", "data-processing-service"]
    for path in [brokerExecutable] + serviceKinds.map({ binDirectory + "/" + $0 }) where !FileManager.default.isExecutableFile(atPath: path) {
        FileHandle.standardError.write(Data("platform-chaos: \(path) is missing (build it, or give --bin / --broker)\n".utf8))
        exit(2)
    }

    let work: String
    do {
        work = options.work ?? NSTemporaryDirectory() + "platform-chaos-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work + "/logs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work + "/nats-server", withIntermediateDirectories: true)
    } catch {
        FileHandle.standardError.write(Data("platform-chaos: cannot create the work folder: \(error)\n".utf8))
        exit(1)
    }

    var portGenerator = SystemRandomNumberGenerator()
    var takenPorts = Set<Int>()
    func newPort() -> Int {
        guard let port = try? freeLoopbackPort(avoiding: takenPorts, using: &portGenerator) else {
            FileHandle.standardError.write(Data("platform-chaos: no free port\n".utf8))
            exit(1)
        }
        takenPorts.insert(port)
        return port
    }

    let natsPort = newPort()
    let monitorPort = newPort()
    let natsURL = "nats://127.0.0.1:\(natsPort)"
    let secret = "platform-chaos-\(UUID().uuidString)"

    // The identities of the permission matrix, each with a password made for this run, in the
    // variables the matrix reads them from.
    let passwordVariables = [
        "admin": "NATS_ADMIN_PASSWORD", "auth-service": "AUTH_SERVICE_PASSWORD",
        "notification-service": "NOTIFICATION_SERVICE_PASSWORD",
        "data-processing-service": "DATA_PROCESSING_SERVICE_PASSWORD", "analytics-service": "ANALYTICS_SERVICE_PASSWORD",
    ]
    let passwords = passwordVariables.mapValues { _ in "p" + UUID().uuidString.replacingOccurrences(of: "-", with: "") }
    let permissions = URL(fileURLWithPath: options.permissions).standardizedFileURL.path
    guard FileManager.default.isReadableFile(atPath: permissions) else {
        FileHandle.standardError.write(Data("platform-chaos: the permission matrix \(permissions) is missing (give --permissions)\n".utf8))
        exit(2)
    }
    // 2.9.10 joins an include's path to the including file's folder: a relative path, up to / and down.
    let brokerConfig = work + "/nats-server.conf"
    let depth = URL(fileURLWithPath: work).standardizedFileURL.pathComponents.count - 1
    do {
        try ("include \"" + String(repeating: "../", count: depth) + permissions.dropFirst() + "\"\n")
            .write(toFile: brokerConfig, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: brokerConfig)
    } catch {
        FileHandle.standardError.write(Data("platform-chaos: cannot write \(brokerConfig): \(error)\n".utf8))
        exit(1)
    }

    var inherited = ProcessInfo.processInfo.environment
    for key in ["JWT_SECRET", "HTTP_PORT", "DATA_DIR", "NATS_URL", "LOG_LEVEL", "SERVICE_NAME", "EVENT_DELIVERY",
                "NATS_USER", "NATS_PASSWORD", "NATS_PASSWORD_FILE"] + Array(passwordVariables.values) { inherited[key] = nil }

    var brokerEnvironment = inherited
    for (identity, variable) in passwordVariables { brokerEnvironment[variable] = passwords[identity] }
    let broker = Component(name: "nats-server", kind: "nats-server", executable: brokerExecutable,
                           arguments: ["-c", brokerConfig, "-a", "127.0.0.1", "-p", String(natsPort), "-m", String(monitorPort), "-n", "chaos",
                                       "-js", "-sd", work + "/nats-server"],
                           environment: brokerEnvironment, port: monitorPort, readyPath: "/healthz", logPath: work + "/logs/nats-server.log")

    func service(_ kind: String, instance: Int) -> Component {
        let name = options.instances > 1 && (kind == "notification-service" || kind == "analytics-service") ? "\(kind)#\(instance)" : kind
        let file = name.replacingOccurrences(of: "#", with: "-")
        let data = work + "/" + file
        try? FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let port = newPort()
        var environment = inherited
        environment["NATS_URL"] = natsURL
        environment["NATS_USER"] = kind
        environment["NATS_PASSWORD"] = passwords[kind]
        environment["JWT_SECRET"] = secret
        environment["DATA_DIR"] = data
        environment["HTTP_PORT"] = String(port)
        environment["LOG_LEVEL"] = "info"
        environment["PASSWORD_ITERATIONS"] = "1000"
        environment["EVENT_DELIVERY"] = "at-least-once"
        // A long run logs each user in thousands of times; the history must keep them all to be checked.
        environment["MAX_NOTIFICATIONS_PER_USER"] = "100000"
        return Component(name: name, kind: kind, executable: binDirectory + "/" + kind, arguments: [], environment: environment,
                         port: port, readyPath: "/readyz", logPath: work + "/logs/\(file).log")
    }

    let auth = service("auth-service", instance: 1)
    let notifications = (1...options.instances).map { service("notification-service", instance: $0) }
    let analytics = (1...options.instances).map { service("analytics-service", instance: $0) }
    let dataProcessing = service("data-processing-service", instance: 1)
    let services = [auth] + notifications + analytics + [dataProcessing]
    let everything = [broker] + services

    /// Stops every process (services first); used on every way out.
    func stopAll() {
        for component in services.reversed() { component.stop() }
        broker.stop()
    }

    // Ctrl-C or a SIGTERM (a test's timeout) must not leave the platform running.
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let signalSources = [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            say("signal \(number): stopping the platform")
            stopAll()
            exit(1)
        }
        source.resume()
        return source
    }

    func abort(_ message: String) -> Never {
        say("FAILED: \(message)")
        for component in everything where !component.isReady() {
            say("last lines of \(component.name) (\(component.logPath)):")
            for line in component.logTail(15) { out("    " + line) }
        }
        stopAll()
        say("logs kept in \(work)/logs")
        exit(1)
    }

    say("work folder \(work); broker \(brokerExecutable) on \(natsPort); seed \(options.seed); \(options.instances) instance(s)")
    do {
        try broker.start()
        guard broker.waitReady(seconds: 30) else { abort("the broker did not answer /healthz within 30 s") }
        for component in services { try component.start() }
        for component in services where !component.waitReady(seconds: 60) {
            abort("\(component.name) was not ready within 60 s")
        }
    } catch {
        abort("cannot start the platform: \(error)")
    }
    say("the platform is ready: " + services.map { "\($0.name) :\($0.port)" }.joined(separator: ", "))

    // MARK: Users and logins



    let ledger = Ledger()


    /// attempt whose answer was lost did register it). Returns whether it is registered.

    let users: [[User]] = (0..<options.clients).map { c in
        (0..<options.usersPerClient).map { u in
            User(email: "chaos-\(options.seed)-\(c)-\(u)-\(UUID().uuidString.prefix(6).lowercased())@example.com",
                 password: "chaos horse battery \(c)\(u)")
        }
    }

    // Registration first, before any kill: the run is about what happens to logins.
    do {
        let registered = Atomic<Int>(0)
        let group = DispatchGroup()
        for (c, list) in users.enumerated() {
            group.enter()
            Thread {
                let client = HTTPClient(port: auth.port)
                for (u, user) in list.enumerated() where register(user, client, name: "Chaos User \(c) \(u)", deadline: monotonicSeconds() + 60) {
                    registered.add(1, ordering: .relaxed)
                }
                group.leave()
            }.start()
        }
        group.wait()
        let total = users.joined().count
        guard registered.load(ordering: .relaxed) == total else {
            abort("only \(registered.load(ordering: .relaxed)) of \(total) users could be registered")
        }
        say("registered \(total) users")
    }

    let loginThreadsDone = DispatchGroup()
    for list in users {
        loginThreadsDone.enter()
        Thread {
            let client = HTTPClient(port: auth.port)
            var index = 0
            while !ledger.stopping.load(ordering: .relaxed) {
                let user = list[index % list.count]
                index += 1
                let outcome = client.request("POST", "/v1/login", json: jsonText(["email": user.email, "password": user.password]))
                switch outcome {
                case .response(200, let body):
                    let token = jsonObject(body)?["access_token"] as? String
                    ledger.record(user.email) { $0.ok += 1; if let token { $0.token = token } }
                case .noAnswer:
                    ledger.record(user.email) { $0.uncertain += 1 }
                    ledger.failure(reason(outcome))
                case .response(let status, _) where status >= 500:
                    // A 5xx may come after the login was stored (its event with it): neither a promise nor a refusal.
                    ledger.record(user.email) { $0.uncertain += 1 }
                    ledger.failure(reason(outcome))
                default:
                    ledger.record(user.email) { $0.failed += 1 }
                    ledger.failure(reason(outcome))
                    usleep(50_000)   // auth is away: do not spin on refused connections
                }
                usleep(10_000)
            }
            loginThreadsDone.leave()
        }.start()
    }


    // MARK: Jobs



    let jobs = Jobs()

    var jobOptions = NATSClient.Options(url: natsURL)
    jobOptions.maxReconnectAttempts = nil
    jobOptions.reconnectMaxWait = .seconds(1)
    jobOptions.retryOnFailedConnect = true
    jobOptions.name = "platform-chaos"
    jobOptions.user = "admin"
    jobOptions.password = passwords["admin"]
    let jobClient: NATSClient
    do {
        jobClient = try await NATSClient.connect(jobOptions)
    } catch {
        abort("cannot connect to the broker: \(error)")
    }

    let jobTask = Task {
        var generator = SeededGenerator(seed: options.seed ^ 0x6A6F_6273)
        while !ledger.stopping.load(ordering: .relaxed) {
            try? await Task.sleep(for: .seconds(Double.random(in: 0.5...1.5, using: &generator) * options.jobEvery))
            if ledger.stopping.load(ordering: .relaxed) { break }
            do {
                let reply = try await jobClient.request(Array(JobRequest.body.utf8), subject: "data.jobs.submit", timeout: .seconds(5))
                if let code = serviceErrorCode(reply) {
                    jobs.refused.withLock { $0["error \(code)", default: 0] += 1 }
                } else if let id = jsonObject(reply.string)?["job_id"] as? String {
                    jobs.accepted.withLock { $0.append(id) }
                } else {
                    jobs.refused.withLock { $0["reply without job_id", default: 0] += 1 }
                }
            } catch {
                jobs.refused.withLock { $0["\(error)", default: 0] += 1 }
            }
        }
    }

    // MARK: Kills


    /// Components that exited without being killed (a crash, or a start-up refusal): each is
    /// started again so the run can go on, and the run fails.
    var unexpectedExits: [String] = []
    func reviveExited() {
        for component in everything where !component.isRunning {
            let tail = component.logTail(5).joined(separator: " | ")
            say("\(stamp()) \(component.name) exited on its own; starting it again (log: \(tail))")
            unexpectedExits.append(component.name)
            try? component.start()
        }
    }

    var plan = SeededGenerator(seed: options.seed)
    // Every kind once, in a random order, then random picks: a short run still kills each of them.
    var order = (["nats-server"] + serviceKinds).shuffled(using: &plan)
    var kills: [Kill] = []
    let killsEnd = RunClock.began + options.duration
    while true {
        let wait = Double.random(in: 0.5...1.5, using: &plan) * options.killEvery
        let downtime = Double.random(in: 0.1...1.5, using: &plan)
        let kind = order.isEmpty ? (["nats-server"] + serviceKinds).randomElement(using: &plan)! : order.removeFirst()
        let candidates = everything.filter { $0.kind == kind }
        let victim = candidates.randomElement(using: &plan)!
        if monotonicSeconds() + wait + downtime > killsEnd { break }
        pause(wait)
        reviveExited()
        let at = monotonicSeconds()
        victim.kill9()
        say("\(stamp()) SIGKILL \(victim.name); restarting it in \(String(format: "%.1f", downtime)) s")
        pause(downtime)
        do { try victim.start() } catch { abort("cannot restart \(victim.name): \(error)") }
        let waitFor = victim === broker ? everything : [victim]
        var ready = true
        for component in waitFor where !component.waitReady(seconds: max(0, at + 90 - monotonicSeconds())) { ready = false }
        let recovered = ready ? monotonicSeconds() - at : nil
        kills.append(Kill(component: victim.name, kind: victim.kind, at: at - RunClock.began, down: downtime, recovered: recovered))
        if let recovered {
            say("\(stamp()) \(victim.name) back: ready \(String(format: "%.2f", recovered)) s after the kill")
        } else {
            say("\(stamp()) \(victim.name) NOT ready 90 s after the kill")
        }
    }
    if monotonicSeconds() < killsEnd { pause(killsEnd - monotonicSeconds()) }

    ledger.stopping.store(true, ordering: .relaxed)
    loginThreadsDone.wait()
    await jobTask.value
    let tallies = ledger.tallies.withLock { $0 }
    let loginsOK = tallies.values.reduce(0) { $0 + $1.ok }
    let loginsUncertain = tallies.values.reduce(0) { $0 + $1.uncertain }
    let loginsFailed = tallies.values.reduce(0) { $0 + $1.failed }
    let acceptedJobs = jobs.accepted.withLock { $0 }
    say("\(stamp()) load stopped: \(loginsOK) logins ok, \(loginsUncertain) uncertain, \(loginsFailed) failed; \(acceptedJobs.count) jobs accepted")

    // MARK: Settling and checking




    /// Losses and duplicates of every user in one notification instance.
    func checkNotifications(_ instance: Component) -> Check {
        var check = Check()
        // A user none of whose logins got a 200 has no token to read the history with, and nothing was promised.
        for (_, tally) in tallies where tally.ok > 0 {
            guard let token = tally.token, let sources = history(instance, token: token) else {
                check.unreadable += 1
                check.lost += tally.ok
                continue
            }
            let distinct = Set(sources)
            check.duplicated += sources.count - distinct.count
            check.duplicated += max(0, distinct.count - tally.ok - tally.uncertain)
            check.lost += max(0, tally.ok - distinct.count)
        }
        return check
    }

    func checkAnalytics(_ instance: Component) -> (counted: Int?, check: Check) {
        guard let counted = countedLogins(instance) else { return (nil, Check(lost: loginsOK, duplicated: 0, unreadable: 1)) }
        return (counted, Check(lost: max(0, loginsOK - counted), duplicated: max(0, counted - loginsOK - loginsUncertain)))
    }

    /// Job ids whose status is a finished result (`done` or `failed`), and the others' last answers.
    func checkJobs() async -> (finished: Int, missing: [String: String]) {
        var finished = 0
        var missing: [String: String] = [:]
        for id in acceptedJobs {
            do {
                let reply = try await jobClient.request(Array(jsonText(["job_id": id]).utf8), subject: "data.jobs.status", timeout: .seconds(5))
                let status = jsonObject(reply.string)?["status"] as? String
                if serviceErrorCode(reply) == nil, status == "done" || status == "failed" {
                    finished += 1
                } else {
                    missing[id] = serviceErrorCode(reply).map { "error \($0)" } ?? (status ?? "no status")
                }
            } catch {
                missing[id] = "\(error)"
            }
        }
        return (finished, missing)
    }

    var notificationChecks: [String: Check] = [:]
    var analyticsChecks: [String: (counted: Int?, check: Check)] = [:]
    var jobCheck: (finished: Int, missing: [String: String]) = (0, [:])
    let settleDeadline = monotonicSeconds() + options.settle
    let settleStart = monotonicSeconds()
    while true {
        reviveExited()
        notificationChecks = Dictionary(uniqueKeysWithValues: notifications.map { ($0.name, checkNotifications($0)) })
        analyticsChecks = Dictionary(uniqueKeysWithValues: analytics.map { ($0.name, checkAnalytics($0)) })
        jobCheck = await checkJobs()
        let settled = notificationChecks.values.allSatisfy { $0.lost == 0 && $0.unreadable == 0 }
            && analyticsChecks.values.allSatisfy { $0.check.lost == 0 && $0.check.unreadable == 0 }
            && jobCheck.missing.isEmpty
        if settled || monotonicSeconds() >= settleDeadline { break }
        pause(1)
    }
    let settleSeconds = monotonicSeconds() - settleStart
    // Anything late (a redelivery that would duplicate) has had its chance by now: one more look.
    pause(min(3, options.settle))
    notificationChecks = Dictionary(uniqueKeysWithValues: notifications.map { ($0.name, checkNotifications($0)) })
    analyticsChecks = Dictionary(uniqueKeysWithValues: analytics.map { ($0.name, checkAnalytics($0)) })
    var readiness: [String: Bool] = [:]
    for component in everything { readiness[component.name] = component.waitReady(seconds: 30) }

    // MARK: Figures

    let lost = notificationChecks.values.reduce(0) { $0 + $1.lost } + analyticsChecks.values.reduce(0) { $0 + $1.check.lost }
    let duplicated = notificationChecks.values.reduce(0) { $0 + $1.duplicated } + analyticsChecks.values.reduce(0) { $0 + $1.check.duplicated }
    let killsPerKind = Dictionary(grouping: kills, by: \.kind).mapValues(\.count)
    // Every component stays inside its row of the matrix through kills and restarts (2.9.10 logs a
    // refused publish or subscription; a service logs the -ERR it was sent).
    // One refusal is not a component leaving its row: a reply to a request received before the broker
    // was killed. `allow_responses` is the broker's memory of that request, and the restarted broker has
    // none, so it refuses the late reply (its requester has timed out by then). Such refusals, a publish
    // to an `_INBOX.` subject, are counted apart; a missing `allow_responses` would still fail the
    // other platform tests, which check the logs with no broker killed.
    var violations: [String] = []
    var staleReplies: [String] = []
    for file in ((try? FileManager.default.contentsOfDirectory(atPath: work + "/logs")) ?? []).sorted() {
        let text = (try? String(contentsOfFile: work + "/logs/" + file, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.contains("Permissions Violation")
            || line.contains("Publish Violation") || line.contains("Subscription Violation")
        {
            let reply = line.contains("Publish Violation - ") && line.contains("Subject \"_INBOX.")
                || line.contains("Permissions Violation for Publish to \"_INBOX.")
                || line.contains("Permissions Violation for Publish to _INBOX.")
            if reply { staleReplies.append("\(file): \(line)") } else { violations.append("\(file): \(line)") }
        }
    }
    let passed = lost == 0 && duplicated == 0 && jobCheck.missing.isEmpty && readiness.values.allSatisfy { $0 }
        && kills.allSatisfy { $0.recovered != nil } && unexpectedExits.isEmpty && violations.isEmpty

    out("")
    say("figures (seed \(options.seed), \(Int(options.duration)) s, broker \(brokerExecutable))")
    out("  logins ok:        \(loginsOK)   uncertain (no answer / 5xx): \(loginsUncertain)   failed: \(loginsFailed)")
    if !ledger.failures.withLock({ $0 }).isEmpty {
        out("  not ok, by reason: " + ledger.failures.withLock { $0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
    out("  kills:            " + (["nats-server"] + serviceKinds).map { "\($0) \(killsPerKind[$0] ?? 0)" }.joined(separator: ", "))
    for kill in kills {
        out(String(format: "    at %6.1fs  %-26@ down %.1f s, ready again after %@", kill.at, kill.component as NSString, kill.down,
                     kill.recovered.map { String(format: "%.2f s", $0) } ?? "NEVER"))
    }
    for instance in notifications {
        let c = notificationChecks[instance.name] ?? Check()
        out("  \(instance.name): lost \(c.lost), duplicated \(c.duplicated)" + (c.unreadable > 0 ? ", \(c.unreadable) histories unreadable" : ""))
    }
    for instance in analytics {
        let a = analyticsChecks[instance.name]
        out("  \(instance.name): counted \(a?.counted.map(String.init) ?? "unreadable") logins, lost \(a?.check.lost ?? 0), duplicated \(a?.check.duplicated ?? 0)")
    }
    out("  jobs:             \(acceptedJobs.count) accepted, \(jobCheck.finished) with a result, \(jobCheck.missing.count) missing"
          + ", refused: \(jobs.refused.withLock { $0 }.values.reduce(0, +))")
    for (id, last) in jobCheck.missing.sorted(by: { $0.key < $1.key }).prefix(10) { out("    job \(id): \(last)") }
    out("  settled in:       \(String(format: "%.1f", settleSeconds)) s after the load stopped")
    if !unexpectedExits.isEmpty { out("  exited on their own: " + unexpectedExits.joined(separator: ", ")) }
    out("  permission violations: \(violations.count)")
    for line in violations.prefix(10) { out("    " + line) }
    out("  late replies refused after a broker restart: \(staleReplies.count)")
    for line in staleReplies.prefix(5) { out("    " + line) }
    out("  ready at the end: " + everything.map { "\($0.name) \(readiness[$0.name] == true ? "yes" : "NO")" }.joined(separator: ", "))
    out("  lost \(lost), duplicated \(duplicated): " + (passed ? "PASS" : "FAIL"))

    var summary: [String: Any] = [
        "seed": options.seed, "duration": options.duration, "instances": options.instances, "broker": brokerExecutable,
        "logins_ok": loginsOK, "logins_uncertain": loginsUncertain, "logins_failed": loginsFailed,
        "kills": killsPerKind, "lost": lost, "duplicated": duplicated,
        "jobs_accepted": acceptedJobs.count, "jobs_finished": jobCheck.finished, "jobs_missing": jobCheck.missing.count,
        "recovery_seconds": kills.map { ["component": $0.component, "seconds": $0.recovered ?? -1] as [String: Any] },
        "ready": readiness, "settle_seconds": settleSeconds, "passed": passed, "unexpected_exits": unexpectedExits,
        "permission_violations": violations.count, "late_replies_refused": staleReplies.count,
    ]
    summary["notifications"] = Dictionary(uniqueKeysWithValues: notificationChecks.map { ($0.key, ["lost": $0.value.lost, "duplicated": $0.value.duplicated]) })
    summary["analytics"] = Dictionary(uniqueKeysWithValues: analyticsChecks.map {
        ($0.key, ["counted": $0.value.counted ?? -1, "lost": $0.value.check.lost, "duplicated": $0.value.check.duplicated] as [String: Any])
    })
    let summaryData = (try? JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])) ?? Data("{}".utf8)
    out("chaos-summary: " + String(decoding: summaryData, as: UTF8.self))

    await jobClient.close()
    stopAll()
    if passed && !options.keep && options.work == nil {
        try? FileManager.default.removeItem(atPath: work)
    } else {
        say("logs and stores kept in \(work)")
    }
    _ = signalSources
    exit(passed ? 0 : 1)
}

// A closed stdout must not kill the tool before it stops the platform: writes fail instead.
signal(SIGPIPE, SIG_IGN)

let options: Options
switch parseOptions(Array(CommandLine.arguments.dropFirst())) {
case .success(let parsed): options = parsed
case .failure(let error):
    FileHandle.standardError.write(Data("platform-chaos: \(error)\n\(usage())\n".utf8))
    exit(2)
}

exit(await chaos(options))
