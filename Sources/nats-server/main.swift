// nats-server: parse flags, build the broker, handle signals until one stops it.

import Glibc
import NATSServer

func fail(_ message: String) -> Never {
    let line = "nats-server: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

let arguments = Array(CommandLine.arguments.dropFirst())
let action: CommandLineAction
do {
    action = try ServerCommandLine.parse(arguments)
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

// Before any thread starts, so that only the handler's sigwait receives them.
SignalHandler.blockTrappedSignals()

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

SignalHandler(server: server, logger: logger, arguments: arguments, processFiles: processFiles).run()
exit(0)
