// Monitoring: the HTTP routes of nats-server 2.9.10's monitoring port, plus /metrics.

import Glibc
import HTTPServer
import Synchronization

/// The monitoring endpoint (`-m`): /varz, /connz, /subsz, /routez, /accountz, /jsz, /healthz, /metrics
/// and an index at `/`, served by
/// ``HTTPServer`` on its own loop thread (monitoring never competes with the message loops).
///
/// `@unchecked Sendable`: `broker` is set once before the server starts and only read afterwards;
/// the request counters are in a `Mutex`.
final class Monitor: @unchecked Sendable {
    private let http: HTTPServer
    /// Requests served per path (the /varz `http_req_stats`).
    private let requestCounts = Mutex<[String: Int]>([:])
    unowned(unsafe) var broker: Broker?

    /// Creates the HTTP server (nothing is bound until ``start()``); with `basePath` (`http_base_path`)
    /// every endpoint is served under it, as 2.9.10 does (`/mon/varz`, the index at `/mon`).
    init(host: String, port: Int, basePath: String? = nil) {
        var router = BasePathRouter(base: basePath ?? "")
        let box = MonitorBox()
        router.get("/varz") { _ in
            guard let monitor = box.monitor else { throw HTTPError(.serviceUnavailable, "shutting down") }
            return monitor.varz()
        }
        router.get("/healthz") { _ in
            guard let monitor = box.monitor else { throw HTTPError(.serviceUnavailable, "shutting down") }
            monitor.count("/healthz")
            return .json(bytes: Array(#"{"status":"ok"}"#.utf8))
        }
        router.get("/") { _ in
            guard let monitor = box.monitor else { throw HTTPError(.serviceUnavailable, "shutting down") }
            monitor.count("/")
            var html = "<html><head><title>NATS Server</title></head><body>\n"
            for endpoint in ["varz", "connz", "routez", "subsz", "accountz", "jsz", "healthz", "metrics"] {
                html += "<a href=\"./\(endpoint)\">\(endpoint)</a><br/>\n"
            }
            html += "</body></html>\n"
            return HTTPResponse(status: .ok, headers: ["Content-Type": "text/html; charset=utf-8"], body: Array(html.utf8))
        }
        router.get("/connz") { request in
            try Self.serve(box, "/connz") { (broker) throws(MonitorArgumentError) in
                .json(bytes: Array(broker.connzJSON(try ConnzQuery(request.query)).utf8))
            }
        }
        for path in ["/subsz", "/subscriptionsz"] {
            router.get(path) { request in
                try Self.serve(box, path) { (broker) throws(MonitorArgumentError) in .json(bytes: Array(try broker.subszJSON(request.query).utf8)) }
            }
        }
        router.get("/routez") { _ in
            try Self.serve(box, "/routez") { broker in .json(bytes: Array(broker.routezJSON().utf8)) }
        }
        router.get("/accountz") { request in
            try Self.serve(box, "/accountz") { (broker) throws(MonitorArgumentError) in .json(bytes: Array(try broker.accountzJSON(request.query).utf8)) }
        }
        router.get("/jsz") { request in
            try Self.serve(box, "/jsz") { (broker) throws(MonitorArgumentError) in .json(bytes: Array(try broker.jszJSON(request.query).utf8)) }
        }
        router.get("/metrics") { _ in
            guard let monitor = box.monitor else { throw HTTPError(.serviceUnavailable, "shutting down") }
            monitor.count("/metrics")
            guard let broker = monitor.broker else { throw HTTPError(.serviceUnavailable, "shutting down") }
            let text = broker.metricsText(httpRequests: monitor.sortedCounts())
            return HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"],
                                body: Array(text.utf8))
        }
        http = HTTPServer(host: host, port: port, router: router.routes)
        box.set(self)
    }

    /// The bound port once started.
    var port: Int { http.port }

    /// Binds and starts serving.
    /// - Throws: what ``HTTPServer/start()`` throws (bind failures).
    func start() throws {
        try http.start()
    }

    /// Stops the HTTP server and waits until it has stopped (its own loop thread does the work, so
    /// this never waits on the concurrency pool). Not on an event loop thread.
    func shutdown() {
        http.shutdownAndWait()
        broker = nil
    }

    private func count(_ path: String) {
        requestCounts.withLock { $0[path, default: 0] += 1 }
    }

    private func sortedCounts() -> [(String, Int)] {
        requestCounts.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Counts the request, then builds the response; a bad argument becomes 2.9.10's 400: the
    /// message alone as text/plain. Both carry a `Date`, as Go's HTTP server adds one.
    private static func serve(_ box: MonitorBox, _ path: String,
                              _ build: (Broker) throws(MonitorArgumentError) -> HTTPResponse) throws -> HTTPResponse {
        guard let monitor = box.monitor else { throw HTTPError(.serviceUnavailable, "shutting down") }
        monitor.count(path)
        guard let broker = monitor.broker else { throw HTTPError(.serviceUnavailable, "shutting down") }
        var response: HTTPResponse
        do {
            response = try build(broker)
        } catch {
            response = HTTPResponse(status: .badRequest, headers: ["Content-Type": "text/plain; charset=utf-8"],
                                    body: Array(error.message.utf8))
        }
        response.headers.replaceOrAdd(name: "Date", value: httpDate())
        return response
    }

    /// The current time as an HTTP `Date` (`Mon, 07 Dec 2026 23:25:14 GMT`).
    static func httpDate() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(1900 + parts.tm_year) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }

    private func varz() -> HTTPResponse {
        count("/varz")
        let counts = sortedCounts()
        guard let broker else { return .error(.serviceUnavailable, "shutting down") }
        return .json(bytes: Array(broker.varzJSON(httpRequests: counts).utf8))
    }
}

/// Lets route closures reach the monitor that owns the router without a retain cycle.
private final class MonitorBox: Sendable {
    private struct Weak { weak var monitor: Monitor? }
    private let reference = Mutex(Weak())
    var monitor: Monitor? { reference.withLock { $0.monitor } }
    func set(_ monitor: Monitor) { reference.withLock { $0.monitor = monitor } }
}

/// Registers routes under a base path joined as Go's `path.Join` does (`mon` + `/varz` is `/mon/varz`,
/// `/` is the base itself).
private struct BasePathRouter {
    var routes = HTTPRouter()
    let base: String

    init(base: String) { self.base = base }

    mutating func get(_ path: String, _ handler: @escaping HTTPHandler) {
        routes.get(Self.clean(base + "/" + path), handler)
    }

    /// Go's `path.Clean` of an absolute path: no empty or `.` segments, `..` removes the one before.
    static func clean(_ path: String) -> String {
        var kept: [Substring] = []
        for segment in path.split(separator: "/") {
            if segment == "." { continue }
            if segment == ".." { _ = kept.popLast(); continue }
            kept.append(segment)
        }
        return "/" + kept.joined(separator: "/")
    }
}

extension Broker {
    /// The /varz document: 2.9.10's fields, in its order, with its types.
    func varzJSON(httpRequests: [(String, Int)]) -> String {
        let stats = statistics()
        let now = WallClock.now()
        var json = GoJSONObject()
        json.add("server_id", serverID)
        json.add("server_name", serverName)
        json.add("version", ServerVersion.compatible)
        json.add("proto", 1)
        json.add("go", ServerVersion.runtime)
        let advertised = options.advertised(port: port)
        json.add("host", advertised.host)
        json.add("port", advertised.port)
        if options.authRequired { json.add("auth_required", true) }
        json.add("max_connections", options.maxConnections)
        json.add("ping_interval", options.pingInterval.nanoseconds)
        json.add("ping_max", options.maxPingsOut)
        json.add("http_host", options.httpHost ?? options.host)
        json.add("http_port", monitoringPort ?? 0)
        json.add("http_base_path", options.httpBasePath ?? "")
        json.add("https_port", 0)
        json.add("auth_timeout", options.authTimeout.seconds)
        json.add("max_control_line", options.maxControlLine)
        json.add("max_payload", options.maxPayload)
        json.add("max_pending", options.maxPending)
        json.add("cluster", object: GoJSONObject())
        json.add("gateway", object: GoJSONObject())
        json.add("leaf", object: GoJSONObject())
        json.add("mqtt", object: GoJSONObject())
        json.add("websocket", object: GoJSONObject())
        json.add("jetstream", object: jetStreamVarz())
        json.add("tls_timeout", 2)
        json.add("write_deadline", options.writeDeadline.nanoseconds)
        json.add("start", startTime.rfc3339)
        json.add("now", now.rfc3339)
        json.add("uptime", Self.goUptime(seconds: now.seconds - startTime.seconds))
        json.add("mem", Self.residentMemory())
        json.add("cores", contexts.count)
        json.add("gomaxprocs", contexts.count)
        json.add("cpu", 0)
        json.add("connections", stats.connections)
        json.add("total_connections", stats.totalConnections)
        json.add("routes", 0)
        json.add("remotes", 0)
        json.add("leafnodes", 0)
        json.add("in_msgs", stats.inMsgs)
        json.add("out_msgs", stats.outMsgs)
        json.add("in_bytes", stats.inBytes)
        json.add("out_bytes", stats.outBytes)
        json.add("slow_consumers", stats.slowConsumers)
        json.add("subscriptions", stats.subscriptions)
        var requests = GoJSONObject()
        for (path, count) in httpRequests { requests.add(path, count) }
        json.add("http_req_stats", object: requests)
        json.add("config_load_time", startTime.rfc3339)
        if !options.serverTags.isEmpty { json.add("tags", strings: options.serverTags) }
        json.add("system_account", "$SYS")
        json.add("swift_broker_version", ServerVersion.own)
        return json.string()
    }

    /// Go's `Duration`-like uptime nats-server prints: `1d2h3m4s`, `31s`.
    static func goUptime(seconds: Int) -> String {
        var rest = max(0, seconds)
        let years = rest / (365 * 86_400); rest %= 365 * 86_400
        let days = rest / 86_400; rest %= 86_400
        let hours = rest / 3600; rest %= 3600
        let minutes = rest / 60
        let secs = rest % 60
        var text = ""
        if years > 0 { text += "\(years)y" }
        if days > 0 || !text.isEmpty { text += "\(days)d" }
        if hours > 0 || !text.isEmpty { text += "\(hours)h" }
        if minutes > 0 || !text.isEmpty { text += "\(minutes)m" }
        return text + "\(secs)s"
    }

    /// Resident set size in bytes (from /proc/self/statm), 0 when unavailable.
    static func residentMemory() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        let fields = String(decoding: buffer[0..<n], as: UTF8.self).split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
