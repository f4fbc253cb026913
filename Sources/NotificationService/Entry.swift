import ServiceKit

extension NotificationService: ServiceProgram {
    public static let executableName = "notification-service"
    public static var settings: [AnySetting] { NotificationSettings.all }
    public static var serviceNameSetting: Setting<String> { NotificationSettings.serviceName }

    /// Closes the store (idempotent; normally the runtime's shutdown action did).
    public func finish() async { store.close() }

    /// Runs the service as a process (see ``ServiceMain/run(_:arguments:environment:prepare:)``):
    /// 0 after a clean stop, 2 for a configuration error, 1 for a start-up failure (store, HTTP port).
    public static func main() async -> Int32 {
        await ServiceMain.run(NotificationService.self) { _, configuration, logger in
            if configuration[StandardSettings.jwtSecret] == nil {
                logger.notice("JWT_SECRET is not set: bearer tokens are verified by auth-service (auth.token.verify)")
            }
        }
    }
}
