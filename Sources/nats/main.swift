// nats: a command-line client for NATS (publish, subscribe, request, reply, micro services, bench).

import Foundation
import NATSClient

let usage = """
usage: nats [global flags] <command> [arguments]

commands:
  pub SUBJECT [BODY] [--count N] [-H key:value]...   publish a message (N times)
  sub SUBJECT [--queue Q] [--count N] [--raw]        print messages until interrupted (or N arrived)
  req SUBJECT BODY [--timeout D] [-H key:value]...   send a request and print the reply
  reply SUBJECT BODY [--queue Q] [--count N]         answer requests with BODY
  micro ls|info|stats [NAME] [--json]                discover NATS micro services
  bench SUBJECT [--pub N] [--sub M] [--msgs X] [--size S] [--request]
                                                     measure throughput (and request-reply latency)

global flags:
  -s, --server URL[,URL]   server URLs (default $NATS_URL, then nats://127.0.0.1:4222)
  --user USER  --password PASSWORD  --token TOKEN
  --timeout D              connect/request timeout (500ms, 2s, ...)
"""

func runCommand(_ raw: [String]) async -> Int32 {
    do throws(CLIError) {
        let arguments = try Arguments(raw)
        guard let command = arguments.positional.first else {
            print(usage)
            return arguments.switches.contains("help") ? 0 : 2
        }
        if arguments.switches.contains("help") {
            print(usage)
            return 0
        }
        var rest = arguments
        rest.positional.removeFirst()
        switch command {
        case "pub": try await Commands.pub(rest)
        case "sub": try await Commands.sub(rest)
        case "req", "request": try await Commands.req(rest)
        case "reply": try await Commands.reply(rest)
        case "micro": try await Commands.micro(rest)
        case "bench": try await Bench.run(rest)
        default: throw .usage("unknown command \(command)")
        }
        return 0
    } catch {
        printError(error.description)
        if case .usage = error {
            printError("run 'nats --help' for usage")
            return 2
        }
        return 1
    }
}

exit(await runCommand(Array(CommandLine.arguments.dropFirst())))
