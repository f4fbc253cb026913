import ServiceKit

/// The auth service's settings: the standard ones (with auth-service defaults for the HTTP port
/// and the data folder) plus password hashing, token lifetime and login limits.
public enum AuthSettings {
    /// `HTTP_PORT`, default 8081.
    public static let httpPort = Setting<Int>.integer(
        "http_port", env: "HTTP_PORT", default: 8081, range: 0...65535,
        meaning: "HTTP listen port (0 picks a free one)")
    /// `DATA_DIR`, default `./data/auth-service`: the user store (the replica of the shared
    /// directory in at-least-once mode), the outbox and the generated signing key.
    public static let dataDirectory = Setting<String>.string(
        "data_dir", env: "DATA_DIR", default: "./data/auth-service",
        meaning: "folder for the user store, the event outbox (at-least-once) and the generated signing key when JWT_SECRET is unset")
    /// `PASSWORD_ITERATIONS`: PBKDF2-HMAC-SHA256 rounds for new password hashes.
    public static let passwordIterations = Setting<Int>.integer(
        "password_iterations", env: "PASSWORD_ITERATIONS", default: PBKDF2.recommendedIterations,
        range: 1_000...100_000_000,
        meaning: "PBKDF2-HMAC-SHA256 iterations for new password hashes (OWASP 2023: 600000)")
    /// `TOKEN_TTL_SECONDS`: lifetime of issued access tokens.
    public static let tokenLifetime = Setting<Int>.integer(
        "token_ttl_seconds", env: "TOKEN_TTL_SECONDS", default: 3600, range: 1...2_592_000,
        meaning: "lifetime of access tokens in seconds")
    /// `LOGIN_MAX_FAILURES_PER_ACCOUNT`.
    public static let maxFailuresPerAccount = Setting<Int>.integer(
        "login_max_failures_per_account", env: "LOGIN_MAX_FAILURES_PER_ACCOUNT", default: 5, range: 1...10_000,
        meaning: "failed logins allowed per account within the window before 429")
    /// `LOGIN_MAX_FAILURES_PER_ADDRESS`.
    public static let maxFailuresPerAddress = Setting<Int>.integer(
        "login_max_failures_per_address", env: "LOGIN_MAX_FAILURES_PER_ADDRESS", default: 20, range: 1...100_000,
        meaning: "failed logins allowed per client address within the window before 429")
    /// `LOGIN_FAILURE_WINDOW_SECONDS`.
    public static let failureWindow = Setting<Int>.integer(
        "login_failure_window_seconds", env: "LOGIN_FAILURE_WINDOW_SECONDS", default: 900, range: 1...86_400,
        meaning: "length of the sliding window for failed logins, in seconds")
    /// `LOGIN_LIMITER_MAX_KEYS`: memory bound of each login limiter.
    public static let limiterMaxKeys = Setting<Int>.integer(
        "login_limiter_max_keys", env: "LOGIN_LIMITER_MAX_KEYS", default: 100_000, range: 16...10_000_000,
        meaning: "accounts (and, separately, addresses) the login limiter tracks at most")

    /// The service name in `$SRV`, logs and metrics.
    public static let serviceName = StandardSettings.serviceName(default: "auth")

    /// Every setting the auth service reads.
    public static var all: [AnySetting] {
        let own = [AnySetting(httpPort), AnySetting(dataDirectory)]
        let replaced = Set(own.map(\.key))
        let standard = StandardSettings.all(serviceName: "auth").filter { !replaced.contains($0.key) && $0.key != "service_name" }
        return own + standard + [AnySetting(serviceName), AnySetting(passwordIterations), AnySetting(tokenLifetime),
                                 AnySetting(maxFailuresPerAccount), AnySetting(maxFailuresPerAddress),
                                 AnySetting(failureWindow), AnySetting(limiterMaxKeys)]
    }
}
