#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ServiceKit

extension NotificationService {
    /// Loads the configuration, opens the service, runs it until SIGTERM/SIGINT. Returns the
    /// process exit status: 0 after a clean stop, 2 for a configuration error, 1 for a start-up
    /// failure (store, HTTP port).
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                            environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(NotificationSettings.all, arguments: arguments, environment: environment)
        } catch {
            let line = "notification-service: \(error)\n"
            FileHandle.standardError.write(Data(line.utf8))
            return 2
        }
        let name = configuration[NotificationSettings.serviceName]
        let logger = Logger(service: name, level: configuration[StandardSettings.logLevel])
        let service: NotificationService
        do {
            service = try NotificationService(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start", ["error": .string("\(error)")])
            return 1
        }
        if configuration[StandardSettings.jwtSecret] == nil {
            logger.notice("JWT_SECRET is not set: bearer tokens are verified by auth-service (auth.token.verify)")
        }
        let runtime = ServiceRuntime(name: name, version: version, configuration: configuration, logger: logger)
        service.install(on: runtime)
        do {
            try await runtime.run()
        } catch {
            logger.critical("cannot run", ["error": .string("\(error)")])
            service.store.close()
            return 1
        }
        return 0
    }
}
