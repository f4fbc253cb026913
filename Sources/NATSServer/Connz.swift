// Monitoring documents beyond /varz: /connz, /subsz, /routez, /accountz (2.9.10's fields, order
// and types) and /metrics (Prometheus text format 0.0.4).

import Dispatch
import Formats
import HTTPServer
import NATSProtocol
import Synchronization

/// One subscription as /connz?subs=detail and /subsz?subs=1 list it.
struct SubscriptionInfo: Sendable {
    var subject: String
    var queue: String?
    var sid: String
    var msgs: Int
    var cid: UInt64
}

/// A copy of one connection's monitoring state, taken on its loop thread.
struct ConnectionInfo: Sendable {
    var cid: UInt64
    var ip: String
    var port: Int
    var start: WallClock
    var lastActivity: WallClock
    var rttNanos: UInt64
    var pendingBytes: Int
    var inMsgs: Int
    var outMsgs: Int
    var inBytes: Int
    var outBytes: Int
    var subscriptionCount: Int
    var name: String
    var lang: String
    var version: String
    var subscriptions: [SubscriptionInfo]
    var stop: WallClock?
    var reason: String?
    /// The account's name (`$G` for the global account) and the authenticated user, for `auth=true`.
    var account = "$G"
    var user = ""
}

/// The last `capacity` closed connections, oldest first (nats-server keeps 10,000).
final class ClosedConnections: Sendable {
    private struct Ring {
        var items: [ConnectionInfo] = []
        var next = 0
    }
    private let ring = Mutex(Ring())
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Records one closed connection, evicting the oldest when full.
    func append(_ info: ConnectionInfo) {
        ring.withLock { r in
            if r.items.count < capacity {
                r.items.append(info)
            } else {
                r.items[r.next] = info
                r.next = (r.next + 1) % capacity
            }
        }
    }

    /// Every kept entry, oldest first.
    func all() -> [ConnectionInfo] {
        ring.withLock { r in Array(r.items[r.next...] + r.items[..<r.next]) }
    }
}

extension WallClock {
    /// This time minus `nanos` nanoseconds.
    func minus(nanos: UInt64) -> WallClock {
        let total = seconds &* 1_000_000_000 &+ nanoseconds &- Int(truncatingIfNeeded: min(nanos, UInt64(Int.max / 2)))
        return WallClock(seconds: total / 1_000_000_000, nanoseconds: total % 1_000_000_000)
    }

    /// Nanoseconds from `earlier` to this time (0 when earlier is later).
    func nanos(since earlier: WallClock) -> Int {
        max(0, (seconds - earlier.seconds) &* 1_000_000_000 &+ (nanoseconds - earlier.nanoseconds))
    }
}

extension ClientConnection {
    /// This connection's monitoring state. Loop thread only.
    func snapshot(now: WallClock, details: Bool, closedReason: CloseReason?) -> ConnectionInfo {
        // A closing connection's subscriptions have left the table: 2.9.10 still reports them.
        let subs = closedReason != nil && subscriptions.isEmpty ? subscriptionsAtClose : Array(subscriptions.values)
        let idleNanos = LoopContext.now() &- lastActivity
        let counts = out.withLock { o -> (Int, Int, Int, [Int]) in
            (o.buffer.pendingBytes, o.outMsgs, o.outBytes, details ? subs.map { $0.delivered } : [])
        }
        var list: [SubscriptionInfo] = []
        if details {
            list.reserveCapacity(subs.count)
            for (i, sub) in subs.enumerated() {
                list.append(SubscriptionInfo(
                    subject: String(decoding: sub.subject, as: UTF8.self),
                    queue: sub.queue.map { String(decoding: $0, as: UTF8.self) },
                    sid: String(decoding: sub.sid, as: UTF8.self), msgs: counts.3[i], cid: cid))
            }
            list.sort { ($0.sid.count, $0.sid) < ($1.sid.count, $1.sid) }
        }
        return ConnectionInfo(
            cid: cid, ip: peer.ip, port: peer.port, start: startTime,
            lastActivity: now.minus(nanos: idleNanos), rttNanos: rttNanos, pendingBytes: counts.0,
            inMsgs: inMsgs, outMsgs: counts.1, inBytes: inBytes, outBytes: counts.2,
            subscriptionCount: subs.count, name: options.name, lang: options.lang, version: options.version,
            subscriptions: list, stop: closedReason == nil ? nil : now, reason: closedReason?.rawValue,
            account: account.name, user: options.nkey.isEmpty ? options.user : options.nkey)
    }
}

/// A 400 for a bad monitoring argument.
struct MonitorArgumentError: Error {
    let message: String
}

/// Parsed /connz arguments.
struct ConnzQuery {
    enum Subs { case none, list, detail }
    enum State { case open, closed, any }
    static let sortOptions = ["cid", "start", "subs", "pending", "msgs_to", "msgs_from", "bytes_to",
                              "bytes_from", "last", "idle", "uptime", "stop", "reason", "rtt"]
    var sort = "cid"
    var subs = Subs.none
    var offset = 0
    var limit = 1024
    var cid: UInt64?
    var state = State.open
    /// `auth=true`: each connection's user and (outside `$G`) account; `acc` and `user` filter.
    var auth = false
    var account: String?
    var user: String?

    /// Reads the arguments in 2.9.10's order (auth, subs, offset, limit, cid, state, then the
    /// sort), so the first bad one is the one reported, with 2.9.10's words.
    init(_ query: HTTPQuery) throws(MonitorArgumentError) {
        auth = try parseBool("auth", query["auth"])
        if let value = query["subs"], value.lowercased() == "detail" {
            subs = .detail
        } else if try parseBool("subs", query["subs"]) {
            subs = .list
        }
        offset = max(0, try parseInt("offset", query["offset"]) ?? 0)
        if let limit = try parseInt("limit", query["limit"]), limit > 0 { self.limit = limit }
        if let value = query["cid"], !value.isEmpty {
            // ParseUint takes digits only (UInt64.init would also take a `+`).
            let digits = value.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            guard digits, let id = UInt64(value) else {
                throw MonitorArgumentError(message: "Error decoding uint64 for 'cid': strconv.ParseUint: parsing "
                                           + "\(ServerError.goQuoted(value)): \(digits ? "value out of range" : "invalid syntax")")
            }
            if id > 0 { cid = id }
        }
        if let value = query["state"], !value.isEmpty {
            switch value.lowercased() {
            case "open": state = .open
            case "closed": state = .closed
            case "any", "all": state = .any
            default: throw MonitorArgumentError(message: "Error decoding state for \(value)")
            }
        }
        if let value = query["sort"], !value.isEmpty {
            guard Self.sortOptions.contains(value) else { throw MonitorArgumentError(message: "invalid sorting option: \(value)") }
            sort = value
        }
        if let value = query["acc"], !value.isEmpty { account = value }
        if let value = query["user"], !value.isEmpty { user = value }
        if !auth && (account != nil || user != nil) {
            throw MonitorArgumentError(message: "filter by user or account only allowed with auth option")
        }
        if (sort == "stop" || sort == "reason") && state != .closed {
            throw MonitorArgumentError(message: "sort by \(sort) only valid on closed connections")
        }
    }
}

/// Go's strconv.ParseBool of a query argument; absent or empty is false.
func parseBool(_ name: String, _ value: String?) throws(MonitorArgumentError) -> Bool {
    switch value ?? "" {
    case "": return false
    case "1", "t", "T", "true", "TRUE", "True": return true
    case "0", "f", "F", "false", "FALSE", "False": return false
    default:
        throw MonitorArgumentError(message: "Error decoding boolean for '\(name)': strconv.ParseBool: parsing "
                                   + "\(ServerError.goQuoted(value ?? "")): invalid syntax")
    }
}

/// Go's strconv.Atoi of a query argument (a sign allowed); nil when absent or empty.
func parseInt(_ name: String, _ value: String?) throws(MonitorArgumentError) -> Int? {
    guard let value, !value.isEmpty else { return nil }
    if let number = Int(value) { return number }
    var digits = Substring(value)
    if digits.first == "+" || digits.first == "-" { digits = digits.dropFirst() }
    let why = !digits.isEmpty && digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        ? "value out of range" : "invalid syntax"
    throw MonitorArgumentError(
        message: "Error decoding int for '\(name)': strconv.Atoi: parsing \(ServerError.goQuoted(value)): \(why)")
}

/// `rtt` as Go's `Duration.String()` writes it.
func goDuration(nanos: UInt64) -> String {
    GoDuration.string(Int64(clamping: nanos))
}

extension Broker {
    /// Snapshots of every open connection, each taken on its own loop thread. Not on a loop thread.
    func openConnections(details: Bool) -> [ConnectionInfo] {
        let all = connections.withLock { Array($0.values) }
        let box = CollectorBox()
        let group = DispatchGroup()
        for context in contexts {
            let mine = all.filter { $0.context === context }
            if mine.isEmpty { continue }
            group.enter()
            context.loop.execute {
                let now = WallClock.now()
                var infos: [ConnectionInfo] = []
                for connection in mine where connection.isOpen {
                    infos.append(connection.snapshot(now: now, details: details, closedReason: nil))
                }
                box.collected.withLock { $0 += infos }
                group.leave()
            }
        }
        _ = group.wait(timeout: .now() + .seconds(2))
        return box.collected.withLock { $0 }
    }

    /// The /connz document.
    func connzJSON(_ query: ConnzQuery) -> String {
        var list: [ConnectionInfo] = []
        let details = query.subs != .none
        if query.state != .closed { list += openConnections(details: details) }
        if query.state != .open { list += closedConnections.all() }
        if let cid = query.cid { list = list.filter { $0.cid == cid } }
        if let account = query.account { list = list.filter { $0.account == account } }
        if let user = query.user { list = list.filter { $0.user == user } }
        let now = WallClock.now()
        list.sort(by: Self.connzOrder(query.sort, now: now))
        let total = list.count
        // `limit` may be as large as Int allows: offset + limit could overflow, total - offset cannot.
        let page = query.offset < total ? Array(list[query.offset..<(query.offset + min(query.limit, total - query.offset))]) : []
        var json = GoJSONObject()
        json.add("server_id", serverID)
        json.add("now", now.rfc3339)
        json.add("num_connections", page.count)
        json.add("total", total)
        json.add("offset", query.offset)
        json.add("limit", query.limit)
        let items = page.map { Self.connectionJSON($0, now: now, subs: query.subs, auth: query.auth).string() }
        json.add("connections", raw: "[" + items.joined(separator: ",") + "]")
        return json.string()
    }

    private static func connzOrder(_ sort: String, now: WallClock) -> (ConnectionInfo, ConnectionInfo) -> Bool {
        func end(_ c: ConnectionInfo) -> WallClock { c.stop ?? now }
        switch sort {
        case "start": return { ($0.start.seconds, $0.start.nanoseconds, $0.cid) < ($1.start.seconds, $1.start.nanoseconds, $1.cid) }
        case "subs": return { ($0.subscriptionCount, $1.cid) > ($1.subscriptionCount, $0.cid) }
        case "pending": return { ($0.pendingBytes, $1.cid) > ($1.pendingBytes, $0.cid) }
        case "msgs_to": return { ($0.outMsgs, $1.cid) > ($1.outMsgs, $0.cid) }
        case "msgs_from": return { ($0.inMsgs, $1.cid) > ($1.inMsgs, $0.cid) }
        case "bytes_to": return { ($0.outBytes, $1.cid) > ($1.outBytes, $0.cid) }
        case "bytes_from": return { ($0.inBytes, $1.cid) > ($1.inBytes, $0.cid) }
        case "last": return { ($0.lastActivity.seconds, $0.lastActivity.nanoseconds, $1.cid) > ($1.lastActivity.seconds, $1.lastActivity.nanoseconds, $0.cid) }
        case "idle": return { (end($0).nanos(since: $0.lastActivity), $1.cid) > (end($1).nanos(since: $1.lastActivity), $0.cid) }
        case "uptime": return { (end($0).nanos(since: $0.start), $1.cid) > (end($1).nanos(since: $1.start), $0.cid) }
        case "stop": return { (end($0).seconds, end($0).nanoseconds, $1.cid) > (end($1).seconds, end($1).nanoseconds, $0.cid) }
        case "reason": return { ($0.reason ?? "", $0.cid) < ($1.reason ?? "", $1.cid) }
        case "rtt": return { ($0.rttNanos, $1.cid) > ($1.rttNanos, $0.cid) }
        default: return { $0.cid < $1.cid }
        }
    }

    private static func connectionJSON(_ c: ConnectionInfo, now: WallClock, subs: ConnzQuery.Subs,
                                       auth: Bool = false) -> GoJSONObject {
        let end = c.stop ?? now
        var json = GoJSONObject()
        json.add("cid", Int(truncatingIfNeeded: c.cid))
        json.add("kind", "Client")
        json.add("type", "nats")
        json.add("ip", c.ip)
        json.add("port", c.port)
        json.add("start", c.start.rfc3339)
        json.add("last_activity", c.lastActivity.rfc3339)
        if let stop = c.stop { json.add("stop", stop.rfc3339) }
        if let reason = c.reason { json.add("reason", reason) }
        json.add("rtt", goDuration(nanos: c.rttNanos))
        json.add("uptime", goUptime(seconds: end.nanos(since: c.start) / 1_000_000_000))
        json.add("idle", goUptime(seconds: end.nanos(since: c.lastActivity) / 1_000_000_000))
        json.add("pending_bytes", c.pendingBytes)
        json.add("in_msgs", c.inMsgs)
        json.add("out_msgs", c.outMsgs)
        json.add("in_bytes", c.inBytes)
        json.add("out_bytes", c.outBytes)
        json.add("subscriptions", c.subscriptionCount)
        if !c.name.isEmpty { json.add("name", c.name) }
        if !c.lang.isEmpty { json.add("lang", c.lang) }
        if !c.version.isEmpty { json.add("version", c.version) }
        if auth {
            if !c.user.isEmpty { json.add("authorized_user", c.user) }
            if c.account != "$G" { json.add("account", c.account) }
        }
        if !c.subscriptions.isEmpty {
            switch subs {
            case .none: break
            case .list: json.add("subscriptions_list", strings: c.subscriptions.map(\.subject))
            case .detail:
                let items = c.subscriptions.map { subscriptionJSON($0, account: nil).string() }
                json.add("subscriptions_list_detail", raw: "[" + items.joined(separator: ",") + "]")
            }
        }
        return json
    }

    static func subscriptionJSON(_ s: SubscriptionInfo, account: String?) -> GoJSONObject {
        var json = GoJSONObject()
        if let account { json.add("account", account) }
        json.add("subject", s.subject)
        if let queue = s.queue { json.add("qgroup", queue) }
        json.add("sid", s.sid)
        json.add("msgs", s.msgs)
        json.add("cid", Int(truncatingIfNeeded: s.cid))
        return json
    }

    /// The /subsz document.
    /// - Throws: ``MonitorArgumentError`` for a bad argument.
    func subszJSON(_ query: HTTPQuery) throws(MonitorArgumentError) -> String {
        let listed = try parseBool("subs", query["subs"])
        let offset = max(0, try parseInt("offset", query["offset"]) ?? 0)
        var limit = try parseInt("limit", query["limit"]) ?? 1024
        if limit <= 0 { limit = 1024 }
        var test: [UInt8]?
        if let value = query["test"], !value.isEmpty {
            let bytes = Array(value.utf8)
            guard bytes.withUnsafeBytes({ Subject.isValidLiteral($0) }) else {
                throw MonitorArgumentError(message: "invalid test subject, must be valid publish subject: \(value)")
            }
            test = bytes
        }
        let filter = query["acc"].flatMap { $0.isEmpty ? nil : $0 }
        var summed: TrieStats?
        var entries: [(account: String, sub: Subscription)] = []
        for account in accountList where filter == nil || account.name == filter {
            let (own, subs) = account.subscriptions.withLock { trie in
                (trie.stats, listed ? trie.allSubscriptions().map(\.value) : [])
            }
            entries += subs.filter { $0.importRoute == nil }.map { (account.name, $0) }
            if var sum = summed {
                sum.numSubscriptions += own.numSubscriptions
                sum.numCache += own.numCache
                sum.numInserts &+= own.numInserts
                sum.numRemoves &+= own.numRemoves
                sum.numMatches &+= own.numMatches
                summed = sum
            } else {
                summed = own
            }
        }
        let stats = summed ?? globalAccount.subscriptions.withLock { $0.stats }
        var json = GoJSONObject()
        if listed {
            json.add("server_id", serverID)
            json.add("now", WallClock.now().rfc3339)
        }
        json.add("num_subscriptions", stats.numSubscriptions)
        json.add("num_cache", options.disableSublistCache ? 0 : stats.numCache)
        json.add("num_inserts", Int(truncatingIfNeeded: stats.numInserts))
        json.add("num_removes", Int(truncatingIfNeeded: stats.numRemoves))
        json.add("num_matches", Int(truncatingIfNeeded: stats.numMatches))
        json.add("cache_hit_rate", options.disableSublistCache ? 0 : stats.cacheHitRate)
        json.add("max_fanout", stats.maxFanout)
        json.add("avg_fanout", stats.avgFanout)
        guard listed else { return json.string() }
        var matching = entries
        if let test {
            matching = entries.filter { (_, sub) in
                sub.subject.withUnsafeBytes { p in test.withUnsafeBytes { s in Subject.matches(pattern: p, subject: s) } }
            }
        }
        let total = matching.count
        let page = offset < total ? Array(matching[offset..<(offset + min(limit, total - offset))]) : []
        let items = page.map { (account, sub) -> String in
            let msgs = sub.client.out.withLock { _ in sub.delivered }
            let info = SubscriptionInfo(
                subject: String(decoding: sub.subject, as: UTF8.self),
                queue: sub.queue.map { String(decoding: $0, as: UTF8.self) },
                sid: String(decoding: sub.sid, as: UTF8.self), msgs: msgs, cid: sub.client.cid)
            return Self.subscriptionJSON(info, account: account).string()
        }
        json.add("total", total)
        json.add("offset", offset)
        json.add("limit", limit)
        json.add("subscriptions_list", raw: "[" + items.joined(separator: ",") + "]")
        return json.string()
    }

    /// The /routez document (this broker has no routes).
    func routezJSON() -> String {
        var json = GoJSONObject()
        json.add("server_id", serverID)
        json.add("now", WallClock.now().rfc3339)
        json.add("num_routes", 0)
        json.add("routes", raw: "[]")
        return json.string()
    }

    /// The /accountz document; with `acc` the account's detail.
    /// - Throws: ``MonitorArgumentError`` for an unknown account.
    func accountzJSON(_ query: HTTPQuery) throws(MonitorArgumentError) -> String {
        var json = GoJSONObject()
        json.add("server_id", serverID)
        json.add("now", WallClock.now().rfc3339)
        json.add("system_account", "$SYS")
        guard let account = query["acc"], !account.isEmpty else {
            json.add("accounts", strings: accountList.map(\.name) + ["$SYS"])
            return json.string()
        }
        let running = accounts[account]
        guard running != nil || account == "$SYS" else {
            throw MonitorArgumentError(message: "Account \(account) does not exist")
        }
        var detail = GoJSONObject()
        detail.add("account_name", account)
        detail.add("update_time", startTime.rfc3339)
        detail.add("expired", false)
        detail.add("complete", true)
        detail.add("jetstream_enabled", (running?.jetStreamEnabled ?? false) && jetStream != nil)
        detail.add("leafnode_connections", 0)
        let connected = running == nil ? 0
            : (accountList.count == 1 ? statistics().connections
                : openConnections(details: false).filter { $0.account == account }.count)
        detail.add("client_connections", connected)
        detail.add("subscriptions", running?.subscriptions.withLock { $0.count } ?? 0)
        if let config = running?.config {
            if !config.exports.isEmpty { detail.add("exports", raw: Self.exportsJSON(config.exports)) }
            if !config.imports.isEmpty { detail.add("imports", raw: Self.importsJSON(config.imports)) }
        }
        if let running {
            let stats = running.subscriptions.withLock { $0.stats }
            var sublist = GoJSONObject()
            sublist.add("num_subscriptions", stats.numSubscriptions)
            sublist.add("num_cache", stats.numCache)
            sublist.add("num_inserts", Int(truncatingIfNeeded: stats.numInserts))
            sublist.add("num_removes", Int(truncatingIfNeeded: stats.numRemoves))
            sublist.add("num_matches", Int(truncatingIfNeeded: stats.numMatches))
            sublist.add("cache_hit_rate", stats.cacheHitRate)
            sublist.add("max_fanout", stats.maxFanout)
            sublist.add("avg_fanout", stats.avgFanout)
            detail.add("sublist_stats", object: sublist)
        }
        json.add("account_detail", object: detail)
        return json.string()
    }

    /// 2.9.10's `ExtExport` list: services first, then streams, each in configuration order.
    private static func exportsJSON(_ exports: [AccountExport]) -> String {
        var items: [String] = []
        for export in exports { if case .service(let type) = export.kind {
            var json = GoJSONObject()
            json.add("subject", export.subject)
            json.add("type", "service")
            json.add("response_type", type.rawValue)
            if let accounts = export.accounts, !accounts.isEmpty { json.add("approved_accounts", strings: accounts) }
            items.append(json.string())
        } }
        for export in exports where export.kind == .stream {
            var json = GoJSONObject()
            json.add("subject", export.subject)
            json.add("type", "stream")
            if let accounts = export.accounts, !accounts.isEmpty { json.add("approved_accounts", strings: accounts) }
            items.append(json.string())
        }
        return "[" + items.joined(separator: ",") + "]"
    }

    /// 2.9.10's `ExtImport` list: streams first, then services, each in configuration order.
    private static func importsJSON(_ imports: [AccountImport]) -> String {
        var items: [String] = []
        for item in imports.filter({ $0.kind == .stream }) + imports.filter({ $0.kind == .service }) {
            var json = GoJSONObject()
            if item.kind == .stream {
                json.add("subject", item.subject)
                json.add("account", item.account)
                if item.localSubject != item.subject { json.add("local_subject", item.localSubject) }
                json.add("type", "stream")
            } else {
                json.add("subject", item.localSubject)
                json.add("account", item.account)
                json.add("to", item.subject)
                json.add("type", "service")
            }
            json.add("invalid", false)
            json.add("share", false)
            json.add("tracking", false)
            items.append(json.string())
        }
        return "[" + items.joined(separator: ",") + "]"
    }

    /// The /metrics document in Prometheus text exposition format 0.0.4.
    func metricsText(httpRequests: [(String, Int)]) -> String {
        let stats = statistics()
        let now = WallClock.now()
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: Int) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("nats_server_connections", "gauge", "Open client connections.", stats.connections)
        metric("nats_server_connections_total", "counter", "Client connections accepted since start.", stats.totalConnections)
        metric("nats_server_subscriptions", "gauge", "Subscriptions in the subject index.", stats.subscriptions)
        metric("nats_server_in_msgs_total", "counter", "Messages received from clients.", stats.inMsgs)
        metric("nats_server_out_msgs_total", "counter", "Messages delivered to clients.", stats.outMsgs)
        metric("nats_server_in_bytes_total", "counter", "Message bytes received from clients.", stats.inBytes)
        metric("nats_server_out_bytes_total", "counter", "Message bytes delivered to clients.", stats.outBytes)
        metric("nats_server_slow_consumers_total", "counter", "Connections closed as slow consumers.", stats.slowConsumers)
        metric("nats_server_uptime_seconds", "gauge", "Seconds since the server started.", now.nanos(since: startTime) / 1_000_000_000)
        text += "# HELP nats_server_http_requests_total Monitoring requests served, by endpoint.\n"
        text += "# TYPE nats_server_http_requests_total counter\n"
        for (path, count) in httpRequests {
            // Route paths only (no quotes or backslashes), so no label escaping is needed.
            text += "nats_server_http_requests_total{endpoint=\"\(path)\"} \(count)\n"
        }
        text += "# HELP nats_server_info Server identity.\n# TYPE nats_server_info gauge\n"
        text += "nats_server_info{server_id=\"\(serverID)\",version=\"\(ServerVersion.compatible)\"} 1\n"
        return text + jetStreamMetrics()
    }
}

/// Carries the snapshot collector into loop tasks.
private final class CollectorBox: Sendable {
    let collected = Mutex<[ConnectionInfo]>([])
}
