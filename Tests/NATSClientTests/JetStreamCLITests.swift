// Smoke tests of the `nats` tool's stream, consumer and kv commands against a broker with -js.

import Foundation
import TestSupport
import Testing
@testable import NATSClient

/// One run of the built `nats` tool.
struct CLIRun: Sendable {
    var status: Int32
    var output: String
    var errors: String
}

/// Runs `nats arguments...` against `url` and waits for it to exit (bounded by 30 s).
func runNATS(_ url: String, _ arguments: String...) async throws -> CLIRun {
    let executable = try builtExecutable("nats")
    return try await within(30, "nats \(arguments.joined(separator: " "))") {
        try await offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["--server", url] + arguments
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let output = out.fileHandleForReading.readDataToEndOfFile()
            let errors = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return CLIRun(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                          errors: String(decoding: errors, as: UTF8.self))
        }
    }
}

@Suite("nats CLI: JetStream commands", .timeLimit(.minutes(2)))
struct JetStreamCLITests {
    @Test("stream add, ls, info, purge and rm, and consumer add, ls, info, next and rm", arguments: JetStreamBrokers.enabled)
    func streamAndConsumerCommands(broker: Broker) async throws {
        let server = try await JetStreamServer(broker)
        defer { server.stop() }
        let url = server.url
        let added = try await runNATS(url, "stream", "add", "ORDERS", "--subjects", "orders.>", "--storage", "memory",
                                      "--retention", "limits", "--max-msgs", "1000", "--defaults")
        #expect(added.status == 0, "\(added.errors)")
        #expect(added.output.contains("Stream ORDERS was created"))
        #expect(added.output.contains("Maximum Messages: 1,000"))

        let client = try await NATSClient.connect(testOptions(server.process))
        let js = try client.jetStream()
        let info = try await js.streamInfo("ORDERS")
        #expect(info.config.storage == .memory)
        #expect(info.config.maxMsgs == 1000)
        for index in 1...3 { _ = try await js.publish("orders.\(index)", "order \(index)") }

        let listed = try await runNATS(url, "stream", "ls", "--names")
        #expect(listed.output.split(separator: "\n") == ["ORDERS"])
        let shown = try await runNATS(url, "stream", "info", "ORDERS")
        #expect(shown.status == 0)
        #expect(shown.output.contains("Messages: 3"))

        let consumer = try await runNATS(url, "consumer", "add", "ORDERS", "worker", "--pull", "--filter", "orders.>",
                                         "--ack", "explicit", "--defaults")
        #expect(consumer.status == 0, "\(consumer.errors)")
        #expect(try await js.consumerInfo("ORDERS", name: "worker").config.filterSubject == "orders.>")
        #expect(try await runNATS(url, "consumer", "ls", "ORDERS", "--names").output == "worker\n")
        let next = try await runNATS(url, "consumer", "next", "ORDERS", "worker", "--count", "2")
        #expect(next.status == 0, "\(next.errors)")
        #expect(next.output.contains("order 1"))
        #expect(next.output.contains("order 2"))
        #expect(!next.output.contains("order 3"))
        let consumerInfo = try await runNATS(url, "consumer", "info", "ORDERS", "worker")
        #expect(consumerInfo.output.contains("Unprocessed Messages: 1"))
        #expect(try await js.consumerInfo("ORDERS", name: "worker").numAckPending == 0)

        let refused = try await runNATS(url, "stream", "purge", "ORDERS")
        #expect(refused.status == 2)
        let purged = try await runNATS(url, "stream", "purge", "ORDERS", "-f", "--subject", "orders.1")
        #expect(purged.status == 0)
        #expect(purged.output.contains("Purged 1 messages"))
        #expect(try await runNATS(url, "consumer", "rm", "ORDERS", "worker", "-f").status == 0)
        #expect(try await js.consumerNames("ORDERS").isEmpty)
        #expect(try await runNATS(url, "stream", "rm", "ORDERS", "-f").status == 0)
        let gone = try await runNATS(url, "stream", "info", "ORDERS")
        #expect(gone.status == 1)
        #expect(gone.errors.contains("10059"))
        let bad = try await runNATS(url, "stream", "add", "X", "--storage", "tape")
        #expect(bad.status == 2)
        await client.close()
    }

    @Test("kv add, put, get, ls, watch and del", arguments: JetStreamBrokers.enabled)
    func keyValueCommands(broker: Broker) async throws {
        let server = try await JetStreamServer(broker)
        defer { server.stop() }
        let url = server.url
        let added = try await runNATS(url, "kv", "add", "CFG", "--history", "3", "--storage", "memory")
        #expect(added.status == 0, "\(added.errors)")
        #expect(added.output.contains("History Kept: 3"))
        #expect(try await runNATS(url, "kv", "put", "CFG", "db.host", "10.0.0.1").output == "10.0.0.1\n")
        #expect(try await runNATS(url, "kv", "put", "CFG", "db.port", "5432").status == 0)
        #expect(try await runNATS(url, "kv", "get", "CFG", "db.host", "--raw").output == "10.0.0.1\n")
        let got = try await runNATS(url, "kv", "get", "CFG", "db.port")
        #expect(got.output.contains("CFG > db.port revision: 2"))
        #expect(try await runNATS(url, "kv", "ls").output.contains("CFG"))
        #expect(try await runNATS(url, "kv", "ls", "CFG").output == "db.host\ndb.port\n")
        let watched = try await runNATS(url, "kv", "watch", "CFG", "db.*", "--count", "2")
        #expect(watched.output.contains("PUT CFG > db.host: 10.0.0.1"))
        #expect(watched.output.contains("PUT CFG > db.port: 5432"))
        #expect(try await runNATS(url, "kv", "del", "CFG", "db.port").status == 0)
        let missing = try await runNATS(url, "kv", "get", "CFG", "db.port")
        #expect(missing.status == 1)
        #expect(missing.errors.contains("not found"))
        #expect(try await runNATS(url, "kv", "ls", "CFG").output == "db.host\n")
        #expect(try await runNATS(url, "kv", "del", "CFG", "-f").status == 0)
        #expect(try await runNATS(url, "kv", "ls").output.contains("No Key-Value buckets found"))
    }
}
