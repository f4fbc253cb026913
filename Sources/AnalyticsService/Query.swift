import Formats
import ServiceKit

/// A query that cannot be answered: `status` is 400 (bad request or window) or 404 (unknown
/// metric), used as the HTTP status and the NATS service error code.
public struct QueryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 400 or 404.
    public var status: Int
    /// What was wrong.
    public var message: String
    /// A query error.
    public init(status: Int, _ message: String) { self.status = status; self.message = message }
    public var description: String { "\(status): \(message)" }
}

/// The metrics `analytics.query` and `GET /v1/stats/{metric}` answer.
public enum Metric: String, Sendable, CaseIterable {
    /// Events per type and in total.
    case counts
    /// Estimated distinct users (HyperLogLog).
    case uniqueUsers = "unique_users"
    /// Most active users, most frequent email domains, event types.
    case top
    /// Login-to-notification latency percentiles.
    case latency
    /// Ingest counters (counted, duplicates, invalid).
    case ingest

    /// The windows this metric is kept for.
    public var windows: [Window] {
        switch self {
        case .counts, .uniqueUsers: return Window.allCases
        case .top, .latency, .ingest: return [.all]
        }
    }
}

extension AnalyticsEngine {
    /// Answers one query.
    ///
    /// - Parameters:
    ///   - metric: a ``Metric`` name, or `all` for every metric (as `GET /v1/stats`).
    ///   - window: `1m`, `5m`, `1h` or `all`; nil answers every window the metric has.
    /// - Throws: ``QueryError`` 404 for an unknown metric, 400 for an unknown window or one the
    ///   metric is not kept for.
    public func answer(metric name: String, window windowName: String?) throws(QueryError) -> JSONValue {
        if name == "all" {
            if let windowName, windowName != Window.all.rawValue {
                throw QueryError(status: 400, "metric all has no window \(Self.shown(windowName)) (use /v1/stats/{metric}?window=...)")
            }
            return allStats()
        }
        guard let metric = Metric(rawValue: name) else {
            throw QueryError(status: 404, "unknown metric \(Self.shown(name)) (known: all, \(Metric.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let windowName else {
            if metric.windows.count == 1 { return tagged(metric, .all, value(metric, .all)) }
            var windows: [String: JSONValue] = [:]
            for window in metric.windows { windows[window.rawValue] = value(metric, window) }
            return .object(["metric": .string(metric.rawValue), "windows": .object(windows)])
        }
        guard let window = Window(rawValue: windowName) else {
            throw QueryError(status: 400, "unknown window \(Self.shown(windowName)) (known: \(Window.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard metric.windows.contains(window) else {
            throw QueryError(status: 400, "metric \(metric.rawValue) is kept for window all only, not \(Self.shown(windowName))")
        }
        return tagged(metric, window, value(metric, window))
    }

    /// Parses an `analytics.query` body (`{"metric": ..., "window": ...}`) and answers it.
    /// - Throws: ``QueryError`` 400 for a body that is not such an object, and as
    ///   ``answer(metric:window:)``.
    public func answer(request body: [UInt8]) throws(QueryError) -> JSONValue {
        guard case .object(let members)? = JSONValue.parse(body) else {
            throw QueryError(status: 400, #"the request must be a JSON object {"metric": ..., "window": ...}"#)
        }
        guard case .string(let metric)? = members["metric"] else {
            throw QueryError(status: 400, "missing string field metric (one of all, \(Metric.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var window: String?
        switch members["window"] {
        case nil, .null?: window = nil
        case .string(let w)?: window = w
        case let other?: throw QueryError(status: 400, "window must be a string, not \(other.typeName)")
        }
        return try answer(metric: metric, window: window)
    }

    /// A caller's text as it may appear in an error: control characters become `?` (a NATS
    /// service error travels in a header, where CR or LF cannot go) and at most 64 characters.
    static func shown(_ text: String) -> String {
        let cleaned = String(text.unicodeScalars.prefix(64).map { $0.properties.generalCategory == .control ? "?" : Character($0) })
        return text.unicodeScalars.count > 64 ? cleaned + "..." : cleaned
    }

    /// Every metric in every window it is kept for (the body of `GET /v1/stats`).
    public func allStats() -> JSONValue {
        var out: [String: JSONValue] = [:]
        for metric in Metric.allCases {
            if metric.windows.count == 1 {
                out[metric.rawValue] = value(metric, .all)
            } else {
                var windows: [String: JSONValue] = [:]
                for window in metric.windows { windows[window.rawValue] = value(metric, window) }
                out[metric.rawValue] = .object(windows)
            }
        }
        out["time"] = .string(AnalyticsEngine.iso8601(clock()))
        return .object(out)
    }

    private func tagged(_ metric: Metric, _ window: Window, _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = value else { return value }
        members["metric"] = .string(metric.rawValue)
        members["window"] = .string(window.rawValue)
        return .object(members)
    }

    private func value(_ metric: Metric, _ window: Window) -> JSONValue {
        switch metric {
        case .counts:
            let (total, byType) = counts(window)
            return .object(["total": .int(Int64(clamping: total)), "by_type": .object(byType.mapValues { .int(Int64(clamping: $0)) })])
        case .uniqueUsers:
            let (estimate, error) = uniqueUsers(window)
            return .object(["estimate": AnalyticsEngine.integer(estimate), "standard_error": .double(error)])
        case .top:
            let bounds = topBounds()
            func list(_ entries: [TopEntry]) -> JSONValue {
                .array(entries.map { .object(["key": .string($0.key), "count": .int(Int64(clamping: $0.count)),
                                              "error": .int(Int64(clamping: $0.error))]) })
            }
            let types = counts(.all).byType.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .prefix(options.topN).map { TopEntry(key: $0.key, count: $0.value, error: 0) }
            return .object([
                "n": .int(Int64(options.topN)),
                "capacity": .int(Int64(options.topCapacity)),
                "users": .object(["items": list(topUsers()), "counted": .int(Int64(clamping: bounds.users.total)),
                                  "unlisted_max": .int(Int64(clamping: bounds.users.minimum))]),
                "email_domains": .object(["items": list(topEmailDomains()), "counted": .int(Int64(clamping: bounds.domains.total)),
                                          "unlisted_max": .int(Int64(clamping: bounds.domains.minimum))]),
                "event_types": .object(["items": list(types)]),
            ])
        case .latency:
            let h = latency
            // Non-finite values (only a damaged snapshot could hold them) become null: JSONValue
            // cannot serialise them.
            func ms(_ v: Double?) -> JSONValue {
                guard let v, v.isFinite else { return .null }
                return .double((v * 1000).rounded() / 1000)
            }
            return .object([
                "count": .int(Int64(clamping: h.count)),
                "p50_ms": ms(h.percentile(0.5)), "p90_ms": ms(h.percentile(0.9)), "p99_ms": ms(h.percentile(0.99)),
                "min_ms": ms(h.minimumMs), "max_ms": ms(h.maximumMs), "mean_ms": ms(h.meanMs),
                "relative_error": .double(LatencyHistogram.relativeError),
            ])
        case .ingest:
            let s = statistics
            return .object([
                "counted": .int(Int64(clamping: s.counted)), "duplicates": .int(Int64(clamping: s.duplicates)),
                "invalid": .int(Int64(clamping: s.invalid)), "without_event_id": .int(Int64(clamping: s.withoutID)),
                "since": .string(AnalyticsEngine.iso8601(s.since)),
            ])
        }
    }

    /// A JSON integer for a count estimate (rounded; clamped to Int64; null if not finite).
    static func integer(_ value: Double) -> JSONValue {
        guard value.isFinite else { return .null }
        return .int(Int64(min(max(value.rounded(), -9.0e18), 9.0e18)))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds (UTC, proleptic Gregorian).
    /// Times outside years 1970...9999 are clamped into them.
    static func iso8601(_ time: Int64) -> String {
        RFC3339.format(UnixTime(milliseconds: min(max(time, 0), 253_402_300_799_999)), fractionDigits: 3)
    }
}
