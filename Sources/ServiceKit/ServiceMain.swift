#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A service as ``ServiceMain`` runs it: its settings, how to open it, and what to install on
/// the runtime.
public protocol ServiceProgram: Sendable {
    /// The executable's name, prefixed to configuration errors on stderr.
    static var executableName: String { get }
    /// Every setting the service reads.
    static var settings: [AnySetting] { get }
    /// The setting that names the service (in `$SRV`, logs and metrics).
    static var serviceNameSetting: Setting<String> { get }
    /// Version in `$SRV.INFO`.
    static var version: String { get }
    /// Opens the service (stores, keys...).
    /// - Throws: whatever makes the service unable to start; logged, exit status 1.
    init(configuration: Configuration, logger: ServiceLogger) throws
    /// Registers routes, endpoints, consumers, readiness checks and shutdown actions.
    func install(on runtime: ServiceRuntime)
    /// Called once the runtime has stopped or failed to start: releases what ``install(on:)``'s
    /// shutdown actions would have (idempotent; they may already have run).
    func finish() async
}

extension ServiceProgram {
    public func finish() async {}
}

/// The whole life of a service process: configuration -> service -> runtime -> exit status.
public enum ServiceMain {
    /// Loads the configuration (defaults, optional JSON file, environment), opens the service,
    /// runs it until SIGTERM/SIGINT, and returns the process exit status: 0 after a clean stop,
    /// 2 for a configuration error (printed to stderr with the key and where it came from), 1 when
    /// the service cannot start or the runtime cannot run (logged).
    /// - Parameters:
    ///   - program: the service type.
    ///   - arguments: command-line arguments (`--config PATH`).
    ///   - environment: the environment variables.
    ///   - prepare: runs after the service opened, before the runtime starts (e.g. start-up notices).
    public static func run<Program: ServiceProgram>(
        _ program: Program.Type,
        arguments: [String] = Array(CommandLine.arguments.dropFirst()),
        environment: [String: String] = ProcessInfo.processInfo.environment,
        prepare: (Program, Configuration, ServiceLogger) -> Void = { _, _, _ in }
    ) async -> Int32 {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(Program.settings, arguments: arguments, environment: environment)
            // Read once here so that a missing or empty password file stops the start with exit 2.
            _ = try NATSCredentials.from(configuration)
        } catch {
            FileHandle.standardError.write(Data("\(Program.executableName): \(error)\n".utf8))
            return 2
        }
        let name = configuration[Program.serviceNameSetting]
        let logger = ServiceLogger(service: name, level: configuration[StandardSettings.logLevel])
        let service: Program
        do {
            service = try Program(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start", ["error": .string("\(error)")])
            return 1
        }
        prepare(service, configuration, logger)
        let runtime = ServiceRuntime(name: name, version: Program.version, configuration: configuration, logger: logger)
        service.install(on: runtime)
        var status: Int32 = 0
        do {
            try await runtime.run()
        } catch {
            logger.critical("cannot run", ["error": .string("\(error)")])
            status = 1
        }
        await service.finish()
        return status
    }
}
