// nats: a command-line client for NATS (publish, subscribe, request, reply, micro services, bench, JetStream streams, consumers and KV).

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
  bench SUBJECT --js [--pub N] [--sub M] [--msgs X] [--size S] [--stream NAME] [--storage memory|file]
              [--syncpub | --pubbatch W] [--pull [--pullbatch B] | --push]
                                                     JetStream publish with acks, pull or push consume

JetStream:
  stream add NAME [--subjects S,..] [--storage file|memory] [--retention limits|interest|work]
             [--discard old|new] [--max-msgs N] [--max-bytes N] [--max-age D] [--max-msg-size N]
             [--max-msgs-per-subject N] [--dupe-window D] [--replicas N] [--defaults]
  stream ls [--names] | info NAME | rm NAME -f | purge NAME -f [--subject S] [--seq N] [--keep N]
  consumer add STREAM NAME [--pull | --target SUBJECT [--deliver-group G]] [--filter S]
             [--ack explicit|all|none] [--deliver all|last|new|subject|SEQ] [--replay instant|original]
             [--max-deliver N] [--max-pending N] [--wait D] [--heartbeat D] [--flow-control] [--defaults]
  consumer ls STREAM | info STREAM NAME | rm STREAM NAME -f | next STREAM NAME [--count N] [--no-ack] [--wait D]
  kv add BUCKET [--history N] [--ttl D] [--max-bytes N] [--storage file|memory] [--allow-direct]
  kv put BUCKET KEY VALUE | get BUCKET KEY [--raw] | del BUCKET [KEY] | ls [BUCKET] | watch BUCKET [KEY] [--count N]

global flags:
  -s, --server URL[,URL]   server URLs (default $NATS_URL, then nats://127.0.0.1:4222)
  --user USER  --password PASSWORD  --token TOKEN
  --password-file FILE     the password is FILE's first line (not on the command line, where ps shows it)
  --nkey FILE              authenticate as the user nkey whose seed (SU...) is in FILE
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
        case "stream", "str": try await JetStreamCommands.stream(rest)
        case "consumer", "con": try await JetStreamCommands.consumer(rest)
        case "kv": try await JetStreamCommands.kv(rest)
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
