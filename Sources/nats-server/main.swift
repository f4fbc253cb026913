// nats-server: parse flags, build the broker, run until SIGINT/SIGTERM.

import Foundation
import Glibc
import NATSServer

func fail(_ message: String) -> Never {
    let line = "nats-server: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

let action: CommandLineAction
do {
    action = try ServerCommandLine.parse(CommandLine.arguments.dropFirst())
} catch {
    fail("\(error.message)\nRun 'nats-server --help' for the supported flags.")
}

let options: Options
switch action {
case .help:
    print(ServerCommandLine.usage, terminator: "")
    exit(0)
case .version:
    print(ServerCommandLine.versionLine)
    exit(0)
case .configurationValid(let path):
    print("nats-server: configuration file \(path) is valid")
    exit(0)
case .signal(let request):
    do {
        try request.send()
    } catch {
        fail(error.message)
    }
    exit(0)
case .run(let parsed):
    options = parsed
}

// Block the shutdown signals before any thread starts, so only sigwait below receives them.
var shutdownSignals = sigset_t()
sigemptyset(&shutdownSignals)
sigaddset(&shutdownSignals, SIGINT)
sigaddset(&shutdownSignals, SIGTERM)
sigaddset(&shutdownSignals, SIGUSR2)
sigaddset(&shutdownSignals, SIGUSR1)
sigaddset(&shutdownSignals, SIGHUP)
pthread_sigmask(SIG_BLOCK, &shutdownSignals, nil)

let logger: Logger
do {
    logger = try Logger(options: options)
} catch {
    fail(error.description)
}

let server = Server(options: options, logger: logger)
do {
    try server.start()
} catch {
    logger.fatal(error.description)
    exit(1)
}

let processFiles = ProcessFiles(options: options, executable: CommandLine.arguments.first ?? "nats-server")
do {
    try processFiles.write(clientPort: server.port, monitoringPort: server.monitoringPort)
} catch {
    logger.fatal(error.description)
    server.shutdown()
    exit(1)
}

/// SIGHUP: reads the configuration again (the same command line, so flags still win over the
/// file) and applies it (``Server/reload(_:)``). A file that does not load, or a change that
/// needs a restart, is reported and the running configuration kept.
func reload() {
    let fresh: Options
    do {
        guard case .run(let parsed) = try ServerCommandLine.parse(CommandLine.arguments.dropFirst()) else { return }
        fresh = parsed
    } catch {
        logger.error("Failed to reload server configuration: \(error.message)")
        return
    }
    do {
        try server.reload(fresh)
    } catch {
        logger.error("Failed to reload server configuration: \(error.description)")
    }
}

/// Lame duck mode runs on its own thread so SIGINT/SIGTERM still stop the server meanwhile.
func startLameDuckMode() {
    Thread.detachNewThread { [server, processFiles] in
        server.enterLameDuckMode()
        processFiles.remove()
        Glibc.exit(0)
    }
}

nonisolated(unsafe) var lameDuckStarted = false  // main thread only
while true {
    var received: Int32 = 0
    guard sigwait(&shutdownSignals, &received) == 0 else { continue }
    switch received {
    case SIGUSR1:
        logger.debug("Trapped \"user defined signal 1\" signal")
        do {
            try logger.reopen()
        } catch {
            logger.error("Error re-opening log file: \(error.description)")
        }
    case SIGHUP:
        logger.debug("Trapped \"hangup\" signal")
        reload()
    case SIGUSR2:
        logger.debug("Trapped \"user defined signal 2\" signal")
        if !lameDuckStarted {
            lameDuckStarted = true
            startLameDuckMode()
        }
    default:
        logger.debug("Trapped \"\(received == SIGINT ? "interrupt" : "terminated")\" signal")
        server.shutdown()
        processFiles.remove()
        exit(0)
    }
}
