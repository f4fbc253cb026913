#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ServiceKit

extension AuthService {
    /// Loads the configuration, opens the service, runs it until SIGTERM/SIGINT. Returns the
    /// process exit status: 0 after a clean stop, 2 for a configuration error, 1 for a start-up
    /// failure (store, key, HTTP port).
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                            environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(AuthSettings.all, arguments: arguments, environment: environment)
        } catch {
            let line = "auth-service: \(error)\n"
            FileHandle.standardError.write(Data(line.utf8))
            return 2
        }
        let name = configuration[AuthSettings.serviceName]
        let logger = Logger(service: name, level: configuration[StandardSettings.logLevel])
        let service: AuthService
        do {
            service = try AuthService(configuration: configuration, logger: logger)
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
            service.directory.close()
            return 1
        }
        return 0
    }
}
