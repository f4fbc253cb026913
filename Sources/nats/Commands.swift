// pub, sub, req, reply, micro: the everyday commands of the `nats` tool.

import Foundation
import NATSClient

enum Commands {
    /// Client options from the global flags and NATS_URL.
    ///
    /// - Throws: ``CLIError/usage(_:)`` for a bad flag, both `--password` and `--password-file`, or
    ///   an empty password file; ``CLIError/failed(_:)`` when the password file cannot be read.
    static func options(_ arguments: Arguments) throws(CLIError) -> NATSClient.Options {
        let urls = arguments.value("server") ?? ProcessInfo.processInfo.environment["NATS_URL"] ?? "nats://127.0.0.1:4222"
        var options = NATSClient.Options(servers: urls.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) })
        options.name = "nats-cli"
        options.user = arguments.value("user")
        options.password = arguments.value("password")
        if let file = arguments.value("password-file") {
            guard options.password == nil else { throw .usage("give --password or --password-file, not both") }
            options.password = try passwordFromFile(file)
        }
        options.token = arguments.value("token")
        options.nkeySeedFile = arguments.value("nkey")
        options.connectTimeout = try arguments.duration("timeout", default: .seconds(5))
        return options
    }

    /// The first line of `path`, without its line end: a password kept out of the command line,
    /// where `ps` shows it to every user of the machine.
    ///
    /// - Throws: ``CLIError/failed(_:)`` when the file cannot be read; ``CLIError/usage(_:)`` when
    ///   its first line is empty.
    static func passwordFromFile(_ path: String) throws(CLIError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .failed("nats: cannot read the password file \(path): \(error.localizedDescription)")
        }
        var line = Substring(String(decoding: data, as: UTF8.self).split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        if line.hasSuffix("\r") { line = line.dropLast() }
        guard !line.isEmpty else { throw .usage("the password file \(path) has an empty first line") }
        return String(line)
    }

    /// Connects with the global flags.
    ///
    /// - Throws: ``CLIError/failed(_:)`` with the client's error text.
    static func connect(_ arguments: Arguments) async throws(CLIError) -> NATSClient {
        let options = try options(arguments)
        do {
            return try await NATSClient.connect(options)
        } catch {
            throw .failed("nats: cannot connect to \(options.servers.joined(separator: ",")): \(error)")
        }
    }

    /// `-H key:value` flags as headers.
    ///
    /// - Throws: ``CLIError/usage(_:)`` for a header without `:` or an invalid name or value.
    static func headers(_ arguments: Arguments) throws(CLIError) -> Headers? {
        let specs = arguments.all("header")
        if specs.isEmpty { return nil }
        var headers = Headers()
        for spec in specs {
            guard let colon = spec.firstIndex(of: ":") else { throw .usage("header \"\(spec)\" must be key:value") }
            let name = String(spec[..<colon]).trimmingCharacters(in: .whitespaces)
            let value = String(spec[spec.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            do {
                try headers.append(name: name, value: value)
            } catch {
                throw .usage("header \"\(spec)\" is not valid: \(error)")
            }
        }
        return headers
    }

    static func subjectArgument(_ arguments: Arguments, _ command: String) throws(CLIError) -> String {
        guard let subject = arguments.positional.first else { throw .usage("nats \(command): missing SUBJECT") }
        return subject
    }

    /// Runs a client call, turning its error into a CLI failure.
    static func run<T>(_ what: String, _ body: () async throws -> T) async throws(CLIError) -> T {
        do {
            return try await body()
        } catch {
            throw .failed("nats: \(what): \(error)")
        }
    }

    /// `nats pub SUBJECT [BODY] [--count N] [-H k:v]`
    static func pub(_ arguments: Arguments) async throws(CLIError) {
        let subject = try subjectArgument(arguments, "pub")
        let body = Array((arguments.positional.dropFirst().first ?? "").utf8)
        let count = try arguments.int("count", default: 1, range: 1...Int.max)
        let headers = try headers(arguments)
        let client = try await connect(arguments)
        try await run("publish") {
            for _ in 0..<count { try await client.publish(body, subject: subject, headers: headers) }
            try await client.flush()
        }
        if count == 1 {
            print("\(Format.clock()) Published \(body.count) bytes to \"\(subject)\"")
        } else {
            print("\(Format.clock()) Published \(Format.grouped(count)) messages of \(body.count) bytes to \"\(subject)\"")
        }
        await client.close()
    }

    /// Prints a message the way `nats sub` does.
    static func show(_ message: Message, index: Int, raw: Bool) {
        if raw {
            print(Format.body(message.payload))
            return
        }
        var line = "[#\(index)] Received on \"\(message.subject)\""
        if let reply = message.reply { line += " with reply \"\(reply)\"" }
        print(line)
        if let headers = message.headers {
            if let status = headers.status { print("Status: \(status) \(headers.statusDescription ?? "")") }
            for field in headers.fields { print("\(field.name): \(field.value)") }
        }
        print(Format.body(message.payload))
        print("")
    }

    /// `nats sub SUBJECT [--queue Q] [--count N]`
    static func sub(_ arguments: Arguments) async throws(CLIError) {
        let subject = try subjectArgument(arguments, "sub")
        let queue = arguments.value("queue")
        let limit = try arguments.int("count", default: 0)
        let client = try await connect(arguments)
        let subscription = try await run("subscribe") { try await client.subscribe(subject, queue: queue) }
        try await run("subscribe") { try await client.flush() }
        let events = client.events
        Task {
            for await event in events {
                switch event {
                case .disconnected(let error): printError("\(Format.clock()) Disconnected: \(error.map { "\($0)" } ?? "")")
                case .reconnected(let server): printError("\(Format.clock()) Reconnected to \(server)")
                case .slowConsumer(let subject, let dropped): printError("\(Format.clock()) Slow consumer on \(subject): \(dropped) dropped")
                case .serverError(let error): printError("\(Format.clock()) Server error: \(error)")
                default: break
                }
            }
        }
        printError("\(Format.clock()) Subscribing on \(subject)\(queue.map { " in group \($0)" } ?? "")")
        var index = 0
        do {
            for try await message in subscription {
                index += 1
                show(message, index: index, raw: arguments.switches.contains("raw"))
                fflush(nil)  // each message reaches a pipe (`nats sub x | grep y`) as it arrives
                if limit > 0 && index >= limit { break }
            }
        } catch {
            throw .failed("nats: subscription ended: \(error)")
        }
        await client.close()
    }

    /// `nats req SUBJECT BODY [--timeout D] [-H k:v]`
    static func req(_ arguments: Arguments) async throws(CLIError) {
        let subject = try subjectArgument(arguments, "req")
        let body = Array((arguments.positional.dropFirst().first ?? "").utf8)
        let timeout = try arguments.duration("timeout", default: .seconds(5))
        let headers = try headers(arguments)
        let client = try await connect(arguments)
        printError("\(Format.clock()) Sending request on \"\(subject)\"")
        let start = ContinuousClock.now
        let reply = try await run("request") {
            try await client.request(body, subject: subject, headers: headers, timeout: timeout)
        }
        let elapsed = ContinuousClock.now - start
        let (seconds, attoseconds) = elapsed.components
        printError("\(Format.clock()) Received with rtt \(Format.latency(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))")
        if let headers = reply.headers {
            for field in headers.fields { print("\(field.name): \(field.value)") }
            if !headers.fields.isEmpty { print("") }
        }
        print(Format.body(reply.payload))
        await client.close()
    }

    /// `nats reply SUBJECT BODY [--queue Q] [--count N]`
    static func reply(_ arguments: Arguments) async throws(CLIError) {
        let subject = try subjectArgument(arguments, "reply")
        let body = Array((arguments.positional.dropFirst().first ?? "").utf8)
        let queue = arguments.value("queue") ?? "NATS-RPLY-22"
        let limit = try arguments.int("count", default: 0)
        let client = try await connect(arguments)
        let subscription = try await run("subscribe") { try await client.subscribe(subject, queue: queue) }
        try await run("subscribe") { try await client.flush() }
        printError("\(Format.clock()) Listening on \"\(subject)\" in group \"\(queue)\"")
        var index = 0
        do {
            for try await message in subscription {
                index += 1
                print("\(Format.clock()) [#\(index)] Received on subject \"\(message.subject)\":")
                print(Format.body(message.payload))
                fflush(nil)
                if message.reply != nil { try await message.respond(body) }
                if limit > 0 && index >= limit { break }
            }
        } catch {
            throw .failed("nats: replying failed: \(error)")
        }
        try await run("flush") { try await client.flush() }
        await client.close()
    }

    /// `nats micro ls|info|stats [NAME]`
    static func micro(_ arguments: Arguments) async throws(CLIError) {
        guard let verb = arguments.positional.first else { throw .usage("nats micro: expected ls, info or stats") }
        let name = arguments.positional.dropFirst().first
        let timeout = try arguments.duration("timeout", default: .seconds(1))
        let client = try await connect(arguments)
        do {
            try await micro(client, verb: verb, name: name, timeout: timeout, json: arguments.switches.contains("json"))
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    static func micro(_ client: NATSClient, verb: String, name: String?, timeout: Duration, json: Bool) async throws(CLIError) {
        switch verb {
        case "ls", "list":
            let infos = try await run("discovery") { try await Service.info(client, name: name, timeout: timeout) }
            if json { return printJSON(infos) }
            if infos.isEmpty {
                print("No services found")
                return
            }
            let rows = infos.sorted { ($0.name, $0.id) < ($1.name, $1.id) }
                .map { [$0.name, $0.version, $0.id, $0.description] }
            printTable(title: "All Micro Services", header: ["Name", "Version", "ID", "Description"], rows: rows)
        case "info":
            guard let name else { throw .usage("nats micro info: missing service NAME") }
            let infos = try await run("discovery") { try await Service.info(client, name: name, timeout: timeout) }
            if json { return printJSON(infos) }
            guard !infos.isEmpty else { throw .failed("nats: no service named \(name) answered") }
            for info in infos {
                print("Service Information\n")
                print("          Service: \(info.name) (\(info.id))")
                print("      Description: \(info.description)")
                print("          Version: \(info.version)")
                if !info.metadata.isEmpty {
                    print("\nMetadata:\n")
                    for (key, value) in info.metadata.sorted(by: { $0.key < $1.key }) { print("  \(key): \(value)") }
                }
                print("\nEndpoints:\n")
                for endpoint in info.endpoints {
                    print("             Name: \(endpoint.name)")
                    print("          Subject: \(endpoint.subject)")
                    print("      Queue Group: \(endpoint.queueGroup)")
                    print("")
                }
            }
        case "stats":
            let stats = try await run("discovery") { try await Service.stats(client, name: name, timeout: timeout) }
            if json { return printJSON(stats) }
            if stats.isEmpty {
                print("No services found")
                return
            }
            var rows: [[String]] = []
            for service in stats.sorted(by: { ($0.name, $0.id) < ($1.name, $1.id) }) {
                for endpoint in service.endpoints {
                    rows.append([service.name, endpoint.name, service.id, Format.grouped(endpoint.numRequests),
                                 Format.grouped(endpoint.numErrors), Format.latency(endpoint.processingTime),
                                 Format.latency(endpoint.averageProcessingTime)])
                }
            }
            printTable(title: "\(name ?? "All") Service Statistics",
                       header: ["Service", "Endpoint", "ID", "Requests", "Errors", "Processing Time", "Average Time"], rows: rows)
        default:
            throw .usage("nats micro: unknown command \(verb) (expected ls, info or stats)")
        }
    }

    static func printJSON<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
    }

    /// A boxed table like the Go tool's.
    static func printTable(title: String, header: [String], rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) } }
        let inner = widths.reduce(0, +) + 3 * widths.count - 1
        func line(_ left: String, _ middle: String, _ right: String) -> String {
            left + widths.map { String(repeating: "─", count: $0 + 2) }.joined(separator: middle) + right
        }
        func cells(_ row: [String]) -> String {
            "│" + row.enumerated().map { " " + $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) + " " }.joined(separator: "│") + "│"
        }
        print("╭" + String(repeating: "─", count: inner) + "╮")
        print("│" + (" " + title).padding(toLength: inner, withPad: " ", startingAt: 0) + "│")
        print(line("├", "┬", "┤"))
        print(cells(header))
        print(line("├", "┼", "┤"))
        for row in rows { print(cells(row)) }
        print(line("╰", "┴", "╯"))
    }
}
