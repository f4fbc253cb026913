import ServiceKit

/// The analytics service's settings: the standard ones (with analytics-service defaults for the
/// HTTP port and the data folder) plus snapshots, consumer concurrency and aggregate sizes.
public enum AnalyticsSettings {
    /// `HTTP_PORT`, default 8084.
    public static let httpPort = Setting<Int>.integer(
        "http_port", env: "HTTP_PORT", default: 8084, range: 0...65535,
        meaning: "HTTP listen port (0 picks a free one)")
    /// `DATA_DIR`, default `./data/analytics-service`: the snapshot store.
    public static let dataDirectory = Setting<String>.string(
        "data_dir", env: "DATA_DIR", default: "./data/analytics-service",
        meaning: "folder for the snapshot store (aggregates survive restarts)")
    /// `SNAPSHOT_INTERVAL_SECONDS`: how often the aggregates are saved (also on shutdown).
    public static let snapshotInterval = Setting<Int>.integer(
        "snapshot_interval_seconds", env: "SNAPSHOT_INTERVAL_SECONDS", default: 10, range: 1...3600,
        meaning: "seconds between snapshots of the aggregates (one is also taken on shutdown)")
    /// `TOP_N`: entries per top-N list; each summary keeps 100 times as many counters.
    public static let topN = Setting<Int>.integer(
        "top_n", env: "TOP_N", default: 10, range: 1...100,
        meaning: "entries per top-N list (users, email domains, event types); each summary keeps 100 x N counters")
    /// `HLL_PRECISION`: precision p of the all-time unique-user HyperLogLog.
    public static let hllPrecision = Setting<Int>.integer(
        "hll_precision", env: "HLL_PRECISION", default: 14, range: 4...18,
        meaning: "HyperLogLog precision p for all-time unique users (2^p registers, standard error 1.04/sqrt(2^p))")
    /// `DEDUP_CAPACITY`: event ids remembered to count each event once.
    public static let dedupCapacity = Setting<Int>.integer(
        "dedup_capacity", env: "DEDUP_CAPACITY", default: 262_144, range: 1024...16_777_216,
        meaning: "event ids remembered to drop the second copy of an event (raw and events.* envelope)")
    /// `CONSUMER_CONCURRENCY`: handlers in flight per subscription (at-most-once mode; streams
    /// are read in order, one message at a time per stream).
    public static let consumerConcurrency = Setting<Int>.integer(
        "consumer_concurrency", env: "CONSUMER_CONCURRENCY", default: 4, range: 1...64,
        meaning: "at-most-once mode: event handlers in flight per subscription (events.>, user.>, notification.>); "
            + "streams are read in order, one message at a time each")

    /// The service name in `$SRV`, logs and metrics.
    public static let serviceName = StandardSettings.serviceName(default: "analytics")

    /// Every setting the analytics service reads.
    public static var all: [AnySetting] {
        let own = [AnySetting(httpPort), AnySetting(dataDirectory)]
        let replaced = Set(own.map(\.key))
        let standard = StandardSettings.all(serviceName: "analytics").filter { !replaced.contains($0.key) && $0.key != "service_name" }
        return own + standard + [AnySetting(serviceName), AnySetting(snapshotInterval), AnySetting(topN),
                                 AnySetting(hllPrecision), AnySetting(dedupCapacity), AnySetting(consumerConcurrency)]
    }
}
