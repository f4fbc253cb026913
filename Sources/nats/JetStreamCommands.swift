// stream, consumer, kv: the JetStream commands of the `nats` tool, with natscli's names and flags.

import Foundation
import NATSClient

enum JetStreamCommands {
    /// Connects and runs `body` with a JetStream context; the client is closed afterwards.
    ///
    /// - Throws: ``CLIError/failed(_:)`` from connecting or from `body`.
    static func withContext(_ arguments: Arguments, _ body: (JetStreamContext) async throws(CLIError) -> Void) async throws(CLIError) {
        let client = try await Commands.connect(arguments)
        let js: JetStreamContext
        do {
            js = try client.jetStream(timeout: try arguments.duration("timeout", default: .seconds(5)))
        } catch {
            await client.close()
            throw .failed("nats: \(error)")
        }
        do {
            try await body(js)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    /// Runs a JetStream call, turning its error into a CLI failure.
    static func run<T>(_ what: String, _ body: () async throws(JetStreamError) -> T) async throws(CLIError) -> T {
        do {
            return try await body()
        } catch {
            throw .failed("nats: \(what): \(error)")
        }
    }

    static func positional(_ arguments: Arguments, _ index: Int, _ what: String, _ command: String) throws(CLIError) -> String {
        guard arguments.positional.count > index else { throw .usage("nats \(command): missing \(what)") }
        return arguments.positional[index]
    }

    /// A `--max-*` size or count flag: a number (with K/M/KB/MB suffixes) or -1 for unlimited.
    ///
    /// - Throws: ``CLIError/usage(_:)``.
    static func limit(_ arguments: Arguments, _ key: String) throws(CLIError) -> Int {
        guard let text = arguments.value(key) else { return -1 }
        if text == "-1" { return -1 }
        guard let value = Arguments.parseCount(text), value >= 0 else {
            throw .usage("--\(key) must be a number (or -1 for unlimited), got \(text)")
        }
        return value
    }

    /// - Throws: ``CLIError/usage(_:)`` when `value` is not one of `choices`.
    static func choice<T>(_ arguments: Arguments, _ key: String, _ choices: [String: T], default fallback: T) throws(CLIError) -> T {
        guard let text = arguments.value(key) else { return fallback }
        guard let value = choices[text.lowercased()] else {
            throw .usage("--\(key) must be one of \(choices.keys.sorted().joined(separator: ", ")), got \(text)")
        }
        return value
    }

    static func optionalDuration(_ arguments: Arguments, _ key: String) throws(CLIError) -> Duration? {
        guard arguments.value(key) != nil else { return nil }
        let value = try arguments.duration(key, default: .zero)
        return value == .zero ? nil : value
    }

    static func date(_ date: Date?) -> String {
        guard let date else { return "never" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }

    static func duration(_ duration: Duration?) -> String {
        guard let duration else { return "unlimited" }
        let nanos = Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        if nanos % 1_000_000_000 == 0 {
            let seconds = nanos / 1_000_000_000
            if seconds % 3600 == 0 { return "\(seconds / 3600)h0m0s" }
            if seconds % 60 == 0 { return "\(seconds / 60)m0s" }
            return "\(seconds)s"
        }
        return Format.latency(nanos)
    }

    static func count(_ value: Int) -> String { value < 0 ? "unlimited" : Format.grouped(value) }

    // MARK: - stream

    /// `nats stream add|ls|info|rm|purge ...`
    static func stream(_ arguments: Arguments) async throws(CLIError) {
        guard let verb = arguments.positional.first else {
            throw .usage("nats stream: expected add, ls, info, rm or purge")
        }
        switch verb {
        case "add", "create", "new":
            let name = try positional(arguments, 1, "stream NAME", "stream add")
            var config = StreamConfig(name: name, subjects: arguments.all("subjects").flatMap {
                $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            })
            config.storage = try choice(arguments, "storage", ["file": .file, "memory": .memory, "mem": .memory], default: .file)
            config.retention = try choice(arguments, "retention",
                                          ["limits": .limits, "interest": .interest, "work": .workqueue, "workq": .workqueue,
                                           "workqueue": .workqueue], default: .limits)
            config.discard = try choice(arguments, "discard", ["old": .old, "new": .new], default: .old)
            config.maxMsgs = try limit(arguments, "max-msgs")
            config.maxBytes = try limit(arguments, "max-bytes")
            config.maxMsgSize = try limit(arguments, "max-msg-size")
            config.maxMsgsPerSubject = try limit(arguments, "max-msgs-per-subject")
            config.maxConsumers = try limit(arguments, "max-consumers")
            config.maxAge = try optionalDuration(arguments, "max-age")
            config.duplicateWindow = try optionalDuration(arguments, "dupe-window")
            config.replicas = try arguments.int("replicas", default: 1, range: 1...5)
            config.description = arguments.value("description")
            config.allowRollup = arguments.switches.contains("allow-rollup")
            config.denyDelete = arguments.switches.contains("deny-delete")
            config.denyPurge = arguments.switches.contains("deny-purge")
            config.allowDirect = arguments.switches.contains("allow-direct")
            try await withContext(arguments) { js throws(CLIError) in
                let info = try await run("adding stream \(name)") { () async throws(JetStreamError) in try await js.addStream(config) }
                if arguments.switches.contains("json") { return Commands.printJSON(StreamInfoJSON(info)) }
                print("Stream \(name) was created\n")
                showStream(info)
            }
        case "ls", "list":
            try await withContext(arguments) { js throws(CLIError) in
                if arguments.switches.contains("names") {
                    for name in try await run("listing streams", { () async throws(JetStreamError) in try await js.streamNames() }) { print(name) }
                    return
                }
                let infos = try await run("listing streams") { () async throws(JetStreamError) in try await js.streams() }
                if arguments.switches.contains("json") { return Commands.printJSON(infos.map(StreamInfoJSON.init)) }
                if infos.isEmpty {
                    print("No Streams defined")
                    return
                }
                let rows = infos.sorted { $0.config.name < $1.config.name }.map {
                    [$0.config.name, $0.config.description ?? "", date($0.created), Format.grouped(Int($0.state.messages)),
                     Format.grouped(Int($0.state.bytes)) + " B", date($0.state.lastTime)]
                }
                Commands.printTable(title: "Streams", header: ["Name", "Description", "Created", "Messages", "Size", "Last Message"], rows: rows)
            }
        case "info":
            let name = try positional(arguments, 1, "stream NAME", "stream info")
            try await withContext(arguments) { js throws(CLIError) in
                let info = try await run("stream \(name)") { () async throws(JetStreamError) in try await js.streamInfo(name) }
                if arguments.switches.contains("json") { return Commands.printJSON(StreamInfoJSON(info)) }
                showStream(info)
            }
        case "rm", "delete", "del":
            let name = try positional(arguments, 1, "stream NAME", "stream rm")
            try requireForce(arguments, "stream rm")
            try await withContext(arguments) { js throws(CLIError) in
                try await run("deleting stream \(name)") { () async throws(JetStreamError) in try await js.deleteStream(name) }
                print("Deleted stream \(name)")
            }
        case "purge":
            let name = try positional(arguments, 1, "stream NAME", "stream purge")
            try requireForce(arguments, "stream purge")
            let sequence = try arguments.value("seq").map { _ throws(CLIError) in UInt64(try arguments.int("seq", default: 0)) }
            let keep = try arguments.value("keep").map { _ throws(CLIError) in UInt64(try arguments.int("keep", default: 0)) }
            try await withContext(arguments) { js throws(CLIError) in
                let purged = try await run("purging stream \(name)") { () async throws(JetStreamError) in
                    try await js.purgeStream(name, filter: arguments.value("subject"), sequence: sequence, keep: keep)
                }
                print("Purged \(Format.grouped(Int(purged))) messages from stream \(name)")
                showStream(try await run("stream \(name)") { () async throws(JetStreamError) in try await js.streamInfo(name) })
            }
        default:
            throw .usage("nats stream: unknown command \(verb) (expected add, ls, info, rm or purge)")
        }
    }

    /// Destructive commands ask for `-f` (natscli prompts instead; a script cannot answer).
    static func requireForce(_ arguments: Arguments, _ command: String) throws(CLIError) {
        if !arguments.switches.contains("force") { throw .usage("nats \(command): add -f (--force) to confirm") }
    }

    static func showStream(_ info: StreamInfo) {
        let config = info.config
        print("Information for Stream \(config.name) created \(date(info.created))\n")
        print("Configuration:\n")
        print("             Subjects: \(config.subjects.joined(separator: ", "))")
        if let description = config.description { print("          Description: \(description)") }
        print("     Acknowledgements: \(!config.noAck)")
        print("            Retention: \(config.storage == .file ? "File" : "Memory") - \(config.retention.rawValue.capitalized)")
        print("             Replicas: \(config.replicas)")
        print("       Discard Policy: \(config.discard.rawValue.capitalized)")
        print("     Duplicate Window: \(duration(config.duplicateWindow))")
        print("    Allows Msg Delete: \(!config.denyDelete)")
        print("         Allows Purge: \(!config.denyPurge)")
        print("       Allows Rollups: \(config.allowRollup)")
        print("     Maximum Messages: \(count(config.maxMsgs))")
        print("  Maximum Per Subject: \(count(config.maxMsgsPerSubject))")
        print("        Maximum Bytes: \(count(config.maxBytes))")
        print("          Maximum Age: \(duration(config.maxAge))")
        print(" Maximum Message Size: \(count(config.maxMsgSize))")
        print("    Maximum Consumers: \(count(config.maxConsumers))")
        print("\nState:\n")
        print("             Messages: \(Format.grouped(Int(info.state.messages)))")
        print("                Bytes: \(Format.grouped(Int(info.state.bytes))) B")
        print("             FirstSeq: \(info.state.firstSequence) @ \(date(info.state.firstTime))")
        print("              LastSeq: \(info.state.lastSequence) @ \(date(info.state.lastTime))")
        print("     Active Consumers: \(info.state.consumerCount)")
        print("   Number of Subjects: \(info.state.subjectCount)")
    }

    // MARK: - consumer

    /// `nats consumer add|ls|info|rm|next ...`
    static func consumer(_ arguments: Arguments) async throws(CLIError) {
        guard let verb = arguments.positional.first else {
            throw .usage("nats consumer: expected add, ls, info, rm or next")
        }
        switch verb {
        case "add", "create", "new":
            let stream = try positional(arguments, 1, "STREAM", "consumer add")
            let name = arguments.positional.count > 2 ? arguments.positional[2] : nil
            var config = ConsumerConfig()
            if arguments.switches.contains("ephemeral") {
                config.name = name
            } else {
                guard let name else { throw .usage("nats consumer add: missing consumer NAME (or --ephemeral)") }
                config.durableName = name
            }
            if let target = arguments.value("target") {
                if arguments.switches.contains("pull") { throw .usage("nats consumer add: --target and --pull exclude each other") }
                config.deliverSubject = target
                config.deliverGroup = arguments.value("deliver-group")
            }
            config.filterSubject = arguments.value("filter")
            config.description = arguments.value("description")
            config.ackPolicy = try choice(arguments, "ack", ["explicit": .explicit, "all": .all, "none": .none], default: .explicit)
            config.replayPolicy = try choice(arguments, "replay", ["instant": .instant, "original": .original], default: .instant)
            if let deliver = arguments.value("deliver") {
                switch deliver.lowercased() {
                case "all": config.deliverPolicy = .all
                case "last": config.deliverPolicy = .last
                case "new": config.deliverPolicy = .new
                case "last_per_subject", "subject": config.deliverPolicy = .lastPerSubject
                default:
                    guard let sequence = UInt64(deliver) else {
                        throw .usage("--deliver must be all, last, new, subject or a sequence, got \(deliver)")
                    }
                    config.deliverPolicy = .byStartSequence
                    config.optStartSeq = sequence
                }
            }
            if arguments.value("max-deliver") != nil { config.maxDeliver = try arguments.int("max-deliver", default: -1, range: -1...Int.max) }
            if arguments.value("max-pending") != nil { config.maxAckPending = try arguments.int("max-pending", default: 1000) }
            config.ackWait = try optionalDuration(arguments, "wait")
            config.idleHeartbeat = try optionalDuration(arguments, "heartbeat")
            config.flowControl = arguments.switches.contains("flow-control")
            try await withContext(arguments) { js throws(CLIError) in
                let info = try await run("adding consumer") { () async throws(JetStreamError) in try await js.addConsumer(stream, config: config) }
                showConsumer(info)
            }
        case "ls", "list":
            let stream = try positional(arguments, 1, "STREAM", "consumer ls")
            try await withContext(arguments) { js throws(CLIError) in
                if arguments.switches.contains("names") {
                    for name in try await run("listing consumers", { () async throws(JetStreamError) in try await js.consumerNames(stream) }) {
                        print(name)
                    }
                    return
                }
                let infos = try await run("listing consumers") { () async throws(JetStreamError) in try await js.consumers(stream) }
                if infos.isEmpty {
                    print("No Consumers defined")
                    return
                }
                let rows = infos.sorted { $0.name < $1.name }.map {
                    [$0.name, $0.config.description ?? "", date($0.created), Format.grouped($0.numAckPending),
                     Format.grouped(Int($0.numPending)), date($0.delivered.lastActive)]
                }
                Commands.printTable(title: "Consumers", header: ["Name", "Description", "Created", "Ack Pending", "Unprocessed", "Last Delivery"],
                                    rows: rows)
            }
        case "info":
            let stream = try positional(arguments, 1, "STREAM", "consumer info")
            let name = try positional(arguments, 2, "consumer NAME", "consumer info")
            try await withContext(arguments) { js throws(CLIError) in
                showConsumer(try await run("consumer \(name)") { () async throws(JetStreamError) in try await js.consumerInfo(stream, name: name) })
            }
        case "rm", "delete", "del":
            let stream = try positional(arguments, 1, "STREAM", "consumer rm")
            let name = try positional(arguments, 2, "consumer NAME", "consumer rm")
            try requireForce(arguments, "consumer rm")
            try await withContext(arguments) { js throws(CLIError) in
                try await run("deleting consumer \(name)") { () async throws(JetStreamError) in try await js.deleteConsumer(stream, name: name) }
                print("Deleted consumer \(stream) > \(name)")
            }
        case "next":
            let stream = try positional(arguments, 1, "STREAM", "consumer next")
            let name = try positional(arguments, 2, "consumer NAME", "consumer next")
            let wanted = try arguments.int("count", default: 1, range: 1...1_000_000)
            let wait = try arguments.duration("wait", default: .seconds(5))
            let ack = !arguments.switches.contains("no-ack")
            try await withContext(arguments) { js throws(CLIError) in
                let consumer = try await run("consumer \(name)") { () async throws(JetStreamError) in try js.pullConsumer(stream: stream, name: name) }
                var received = 0
                while received < wanted {
                    let batch = try await run("fetching") { () async throws(JetStreamError) in
                        try await consumer.fetch(batch: wanted - received, expires: wait)
                    }
                    if batch.isEmpty { break }
                    for message in batch {
                        received += 1
                        let meta = message.metadata
                        print("[\(Format.clock())] subj: \(message.subject) / tries: \(meta.delivered) / cons seq: \(meta.consumerSequence) / str seq: \(meta.streamSequence) / pending: \(meta.pending)\n")
                        if let headers = message.headers {
                            for field in headers.fields { print("\(field.name): \(field.value)") }
                            if !headers.fields.isEmpty { print("") }
                        }
                        print(Format.body(message.payload))
                        if ack {
                            try await run("acknowledging") { () async throws(JetStreamError) in try await message.ackSync() }
                            print("\nAcknowledged message")
                        }
                        print("")
                    }
                }
                if received == 0 { throw .failed("nats: no message received within \(duration(wait))") }
            }
        default:
            throw .usage("nats consumer: unknown command \(verb) (expected add, ls, info, rm or next)")
        }
    }

    static func showConsumer(_ info: ConsumerInfo) {
        let config = info.config
        print("Information for Consumer \(info.stream) > \(info.name) created \(date(info.created))\n")
        print("Configuration:\n")
        if let durable = config.durableName { print("                Name: \(durable)") }
        if let description = config.description { print("         Description: \(description)") }
        if let deliver = config.deliverSubject {
            print("    Delivery Subject: \(deliver)")
            if let group = config.deliverGroup { print("      Deliver Group: \(group)") }
        } else {
            print("           Pull Mode: true")
        }
        if let filter = config.filterSubject { print("      Filter Subject: \(filter)") }
        print("      Deliver Policy: \(config.deliverPolicy.rawValue)")
        print("          Ack Policy: \(config.ackPolicy.rawValue.capitalized)")
        if let wait = config.ackWait { print("            Ack Wait: \(duration(wait))") }
        print("       Replay Policy: \(config.replayPolicy.rawValue.capitalized)")
        if let maxDeliver = config.maxDeliver { print("  Maximum Deliveries: \(count(maxDeliver))") }
        if let pending = config.maxAckPending { print("     Max Ack Pending: \(Format.grouped(pending))") }
        print("\nState:\n")
        print("   Last Delivered Message: Consumer sequence: \(info.delivered.consumerSequence) Stream sequence: \(info.delivered.streamSequence)")
        print("     Acknowledgment floor: Consumer sequence: \(info.ackFloor.consumerSequence) Stream sequence: \(info.ackFloor.streamSequence)")
        print("         Outstanding Acks: \(info.numAckPending)")
        print("     Redelivered Messages: \(info.numRedelivered)")
        print("     Unprocessed Messages: \(info.numPending)")
        print("            Waiting Pulls: \(info.numWaiting)")
    }

    // MARK: - kv

    /// `nats kv add|put|get|del|ls|watch ...`
    static func kv(_ arguments: Arguments) async throws(CLIError) {
        guard let verb = arguments.positional.first else {
            throw .usage("nats kv: expected add, put, get, del, ls or watch")
        }
        switch verb {
        case "add", "create", "new":
            let bucket = try positional(arguments, 1, "BUCKET", "kv add")
            var config = KeyValueConfig(bucket: bucket)
            config.history = try arguments.int("history", default: 1, range: 1...64)
            config.ttl = try optionalDuration(arguments, "ttl")
            config.maxBytes = try limit(arguments, "max-bytes")
            config.maxValueSize = try limit(arguments, "max-value-size")
            config.storage = try choice(arguments, "storage", ["file": .file, "memory": .memory, "mem": .memory], default: .file)
            config.replicas = try arguments.int("replicas", default: 1, range: 1...5)
            config.description = arguments.value("description")
            config.allowDirect = arguments.switches.contains("allow-direct")
            try await withContext(arguments) { js throws(CLIError) in
                let kv = try await run("adding bucket \(bucket)") { () async throws(JetStreamError) in try await js.createKeyValue(config) }
                let info = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.streamInfo(kv.streamName) }
                print("Information for Key-Value Store Bucket \(bucket) created \(date(info.created))\n")
                print("Configuration:\n")
                print("          Bucket Name: \(bucket)")
                print("         History Kept: \(info.config.maxMsgsPerSubject)")
                print("        Values Stored: \(info.state.messages)")
                print("   Backing Store Kind: JetStream")
                print("          Bucket Size: \(info.state.bytes)")
                print("  Maximum Bucket Size: \(count(info.config.maxBytes))")
                print("   Maximum Value Size: \(count(info.config.maxMsgSize))")
                print("          Maximum Age: \(duration(info.config.maxAge))")
                print("     JetStream Stream: \(info.config.name)")
                print("              Storage: \(info.config.storage == .file ? "File" : "Memory")")
            }
        case "put":
            let bucket = try positional(arguments, 1, "BUCKET", "kv put")
            let key = try positional(arguments, 2, "KEY", "kv put")
            let value = try positional(arguments, 3, "VALUE", "kv put")
            try await withContext(arguments) { js throws(CLIError) in
                let kv = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.keyValue(bucket) }
                try await run("put \(key)") { () async throws(JetStreamError) in _ = try await kv.put(key, value) }
                print(value)
            }
        case "get":
            let bucket = try positional(arguments, 1, "BUCKET", "kv get")
            let key = try positional(arguments, 2, "KEY", "kv get")
            try await withContext(arguments) { js throws(CLIError) in
                let kv = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.keyValue(bucket) }
                let entry = try await run("get \(key)") { () async throws(JetStreamError) in try await kv.get(key) }
                if arguments.switches.contains("raw") {
                    print(Format.body(entry.value))
                    return
                }
                print("\(bucket) > \(key) revision: \(entry.revision) created @ \(date(entry.created))\n")
                print(Format.body(entry.value))
            }
        case "del", "rm", "delete":
            let bucket = try positional(arguments, 1, "BUCKET", "kv del")
            try await withContext(arguments) { js throws(CLIError) in
                if arguments.positional.count > 2 {
                    let key = arguments.positional[2]
                    let kv = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.keyValue(bucket) }
                    try await run("delete \(key)") { () async throws(JetStreamError) in try await kv.delete(key) }
                    print("Deleted key \(key) from bucket \(bucket)")
                } else {
                    try requireForce(arguments, "kv del BUCKET")
                    try await run("delete bucket \(bucket)") { () async throws(JetStreamError) in try await js.deleteKeyValue(bucket) }
                    print("Deleted bucket \(bucket)")
                }
            }
        case "ls", "list":
            try await withContext(arguments) { js throws(CLIError) in
                if arguments.positional.count > 1 {
                    let bucket = arguments.positional[1]
                    let kv = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.keyValue(bucket) }
                    let keys = try await run("keys of \(bucket)") { () async throws(JetStreamError) in try await kv.keys() }
                    if keys.isEmpty { printError("No keys found in bucket") }
                    for key in keys { print(key) }
                    return
                }
                let buckets = try await run("listing buckets") { () async throws(JetStreamError) in try await js.keyValueBuckets() }
                if buckets.isEmpty {
                    print("No Key-Value buckets found")
                    return
                }
                var rows: [[String]] = []
                for bucket in buckets.sorted() {
                    let info = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.streamInfo("KV_\(bucket)") }
                    rows.append([bucket, info.config.description ?? "", date(info.created), Format.grouped(Int(info.state.bytes)) + " B",
                                 Format.grouped(Int(info.state.messages)), date(info.state.lastTime)])
                }
                Commands.printTable(title: "Key-Value Buckets", header: ["Bucket", "Description", "Created", "Size", "Values", "Last Update"],
                                    rows: rows)
            }
        case "watch":
            let bucket = try positional(arguments, 1, "BUCKET", "kv watch")
            let keys = arguments.positional.count > 2 ? arguments.positional[2] : ">"
            let limit = try arguments.int("count", default: 0)
            try await withContext(arguments) { js throws(CLIError) in
                let kv = try await run("bucket \(bucket)") { () async throws(JetStreamError) in try await js.keyValue(bucket) }
                let watcher = try await run("watch") { () async throws(JetStreamError) in try kv.watch(keys) }
                var shown = 0
                do {
                    for try await update in watcher {
                        guard case .entry(let entry) = update else { continue }
                        let operation = entry.operation == .put ? "PUT" : entry.operation == .delete ? "DEL" : "PURGE"
                        var line = "[\(date(entry.created))] \(operation) \(bucket) > \(entry.key)"
                        if entry.operation == .put { line += ": \(Format.body(entry.value))" }
                        print(line)
                        fflush(nil)
                        shown += 1
                        if limit > 0 && shown >= limit { break }
                    }
                } catch {
                    throw .failed("nats: watch ended: \(error)")
                }
            }
        default:
            throw .usage("nats kv: unknown command \(verb) (expected add, put, get, del, ls or watch)")
        }
    }
}

/// StreamInfo for `--json` output, with the API's field names.
struct StreamInfoJSON: Encodable {
    var config: StreamConfig
    var created: String?
    var state: State

    struct State: Encodable {
        var messages: UInt64
        var bytes: UInt64
        var first_seq: UInt64
        var last_seq: UInt64
        var consumer_count: Int
    }

    init(_ info: StreamInfo) {
        config = info.config
        created = info.created.map { JetStreamCommands.date($0) }
        state = State(messages: info.state.messages, bytes: info.state.bytes, first_seq: info.state.firstSequence,
                      last_seq: info.state.lastSequence, consumer_count: info.state.consumerCount)
    }
}
