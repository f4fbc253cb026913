import ServiceKit

extension AuthService: ServiceProgram {
    public static let executableName = "auth-service"
    public static var settings: [AnySetting] { AuthSettings.all }
    public static var serviceNameSetting: Setting<String> { AuthSettings.serviceName }

    /// Opens the service with the real monotonic clock for the login limiters.
    /// - Throws: as ``init(configuration:logger:clock:)``.
    public convenience init(configuration: Configuration, logger: ServiceLogger) throws {
        try self.init(configuration: configuration, logger: logger, clock: LoginLimiter.monotonicSeconds)
    }

    /// Closes the user store and the outbox (idempotent; normally the runtime's shutdown actions did).
    public func finish() async {
        directory.close()
        outbox?.close()
    }

    /// Runs the auth service as a process (see ``ServiceMain/run(_:arguments:environment:prepare:)``):
    /// 0 after a clean stop, 2 for a configuration error, 1 for a start-up failure (store, key, HTTP port).
    public static func main() async -> Int32 { await ServiceMain.run(AuthService.self) }
}
