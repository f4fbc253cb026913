import ServiceKit

/// The notification service's settings: the standard ones (with notification-service defaults for
/// the HTTP port and the data folder) plus the auth lookup timeout, storage bounds, event
/// concurrency and Server-Sent Events limits.
public enum NotificationSettings {
    /// `HTTP_PORT`, default 8082.
    public static let httpPort = Setting<Int>.integer(
        "http_port", env: "HTTP_PORT", default: 8082, range: 0...65535,
        meaning: "HTTP listen port (0 picks a free one)")
    /// `DATA_DIR`, default `./data/notification-service`: the notification store.
    public static let dataDirectory = Setting<String>.string(
        "data_dir", env: "DATA_DIR", default: "./data/notification-service",
        meaning: "folder for the notification store")
    /// `AUTH_TIMEOUT_MS`: how long one `auth.user.get` / `auth.token.verify` request may take.
    public static let authTimeout = Setting<Int>.integer(
        "auth_timeout_ms", env: "AUTH_TIMEOUT_MS", default: 1000, range: 10...60_000,
        meaning: "timeout of each request to auth-service (user lookup, token verification), in milliseconds")
    /// `MAX_NOTIFICATIONS_PER_USER`: the newest this many notifications of a user are kept.
    public static let maxPerUser = Setting<Int>.integer(
        "max_notifications_per_user", env: "MAX_NOTIFICATIONS_PER_USER", default: 1000, range: 1...100_000,
        meaning: "notifications kept per user (older ones are deleted)")
    /// `MAX_NOTIFICATIONS_TOTAL`: the newest this many notifications of all users are kept.
    public static let maxTotal = Setting<Int>.integer(
        "max_notifications_total", env: "MAX_NOTIFICATIONS_TOTAL", default: 1_000_000, range: 1...100_000_000,
        meaning: "notifications kept over all users (the oldest are deleted first; the store keeps them in memory)")
    /// `MAX_CONCURRENT_EVENTS`: login events handled at once by this instance.
    public static let concurrency = Setting<Int>.integer(
        "max_concurrent_events", env: "MAX_CONCURRENT_EVENTS", default: 32, range: 1...1024,
        meaning: "user.logged_in events handled at once (each may wait on auth-service)")
    /// `SSE_BUFFER_EVENTS`: events queued per stream before a slow client is dropped.
    public static let streamBuffer = Setting<Int>.integer(
        "sse_buffer_events", env: "SSE_BUFFER_EVENTS", default: 64, range: 1...10_000,
        meaning: "events queued per SSE stream; a client that falls further behind is disconnected")
    /// `SSE_KEEPALIVE_SECONDS`: interval of the keep-alive comment on idle streams.
    public static let keepAlive = Setting<Int>.integer(
        "sse_keepalive_seconds", env: "SSE_KEEPALIVE_SECONDS", default: 15, range: 1...3600,
        meaning: "seconds between keep-alive comments on SSE streams")
    /// `SSE_MAX_STREAMS_PER_USER`: open streams one user may hold.
    public static let maxStreamsPerUser = Setting<Int>.integer(
        "sse_max_streams_per_user", env: "SSE_MAX_STREAMS_PER_USER", default: 8, range: 1...1000,
        meaning: "open SSE streams allowed per user (more get 429)")

    /// The service name in `$SRV`, logs and metrics.
    public static let serviceName = StandardSettings.serviceName(default: "notification")

    /// Every setting the notification service reads.
    public static var all: [AnySetting] {
        let own = [AnySetting(httpPort), AnySetting(dataDirectory)]
        let replaced = Set(own.map(\.key))
        let standard = StandardSettings.all(serviceName: "notification")
            .filter { !replaced.contains($0.key) && $0.key != "service_name" }
        return own + standard + [AnySetting(serviceName), AnySetting(authTimeout), AnySetting(maxPerUser), AnySetting(maxTotal),
                                 AnySetting(concurrency), AnySetting(streamBuffer), AnySetting(keepAlive),
                                 AnySetting(maxStreamsPerUser)]
    }
}
