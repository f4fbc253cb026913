import ServiceKit

extension AnalyticsService: ServiceProgram {
    public static let executableName = "analytics-service"
    public static var settings: [AnySetting] { AnalyticsSettings.all }
    public static var serviceNameSetting: Setting<String> { AnalyticsSettings.serviceName }

    /// Opens the service on the system clock, restoring the last snapshot.
    /// - Throws: as ``init(configuration:logger:clock:)``.
    public convenience init(configuration: Configuration, logger: ServiceLogger) throws {
        try self.init(configuration: configuration, logger: logger, clock: AnalyticsEngine.systemClock)
    }

    /// Waits for the final snapshot (normally the runtime's shutdown action takes it; this waits
    /// for it, or takes it, when the shutdown deadline ran out first, so it is never lost).
    public func finish() async { await stop() }

    /// Runs the service as a process (see ``ServiceMain/run(_:arguments:environment:prepare:)``):
    /// 0 after a clean stop, 2 for a configuration error, 1 for a start-up failure (store, HTTP
    /// port). `analytics-service bench ...` runs the benchmark tool instead (see ``AnalyticsBench``).
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst())) async -> Int32 {
        if arguments.first == "bench" { return await AnalyticsBench.main(Array(arguments.dropFirst())) }
        return await ServiceMain.run(AnalyticsService.self, arguments: arguments)
    }
}
