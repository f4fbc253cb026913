#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ServiceKit

extension AnalyticsService {
    /// Loads the configuration, opens the service (restoring the last snapshot), runs it until
    /// SIGTERM/SIGINT. Returns the process exit status: 0 after a clean stop, 2 for a
    /// configuration error, 1 for a start-up failure (store, HTTP port).
    ///
    /// `analytics-service bench ...` runs the benchmark tool instead (see ``AnalyticsBench``).
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                            environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        if arguments.first == "bench" { return await AnalyticsBench.main(Array(arguments.dropFirst())) }
        let configuration: Configuration
        do {
            configuration = try Configuration.load(AnalyticsSettings.all, arguments: arguments, environment: environment)
        } catch {
            FileHandle.standardError.write(Data("analytics-service: \(error)\n".utf8))
            return 2
        }
        let name = configuration[AnalyticsSettings.serviceName]
        let logger = Logger(service: name, level: configuration[StandardSettings.logLevel])
        let service: AnalyticsService
        do {
            service = try AnalyticsService(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start", ["error": .string("\(error)")])
            return 1
        }
        let runtime = ServiceRuntime(name: name, version: version, configuration: configuration, logger: logger)
        service.install(on: runtime)
        do {
            try await runtime.run()
        } catch {
            logger.critical("cannot run", ["error": .string("\(error)")])
            await service.stop()
            return 1
        }
        // Normally done by the runtime's shutdown action; this waits for it (or does it) when the
        // shutdown deadline ran out first, so the final snapshot is never lost.
        await service.stop()
        return 0
    }
}
