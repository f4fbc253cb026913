import ServiceKit

extension DataProcessingService: ServiceProgram {
    public static let executableName = "data-processing-service"
    public static var settings: [AnySetting] { DataProcessingSettings.all }
    public static var serviceNameSetting: Setting<String> { DataProcessingSettings.serviceName }

    /// Runs the service as a process (see ``ServiceMain/run(_:arguments:environment:prepare:)``):
    /// 0 after a clean stop, 2 for a configuration error, 1 when it cannot start (HTTP port).
    public static func main() async -> Int32 { await ServiceMain.run(DataProcessingService.self) }
}
