// nats-server: parse flags, build the broker, run until SIGINT/SIGTERM.

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
case .run(let parsed):
    options = parsed
}

// Block the shutdown signals before any thread starts, so only sigwait below receives them.
var shutdownSignals = sigset_t()
sigemptyset(&shutdownSignals)
sigaddset(&shutdownSignals, SIGINT)
sigaddset(&shutdownSignals, SIGTERM)
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

var received: Int32 = 0
while sigwait(&shutdownSignals, &received) != 0 {}
logger.debug("Trapped \"\(received == SIGINT ? "interrupt" : "terminated")\" signal")
server.shutdown()
processFiles.remove()
exit(0)
