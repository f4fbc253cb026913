#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ServiceKit

extension DataProcessingService {
    /// Loads the configuration, installs the service on a runtime and runs it until
    /// SIGTERM/SIGINT. Returns the process exit status: 0 after a clean stop, 2 for a
    /// configuration error, 1 when it cannot start (HTTP port).
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                            environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(DataProcessingSettings.all, arguments: arguments, environment: environment)
        } catch {
            FileHandle.standardError.write(Data("data-processing-service: \(error)\n".utf8))
            return 2
        }
        let name = configuration[DataProcessingSettings.serviceName]
        let logger = Logger(service: name, level: configuration[StandardSettings.logLevel])
        let service = DataProcessingService(configuration: configuration, logger: logger)
        let runtime = ServiceRuntime(name: name, version: version, configuration: configuration, logger: logger)
        service.install(on: runtime)
        do {
            try await runtime.run()
        } catch {
            logger.critical("cannot run", ["error": .string("\(error)")])
            return 1
        }
        return 0
    }
}
