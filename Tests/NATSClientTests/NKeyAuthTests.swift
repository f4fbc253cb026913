// nkey authentication: the client signs the nonce of INFO with a seed (given or read from a file)
// and logs in to both brokers configured with the same nkey user; the `nats` tool with --nkey.

import Foundation
import TestSupport
import Testing
@testable import NATSClient

// nats-server 2.9.10's test users (server/reload_test.go): a seed, its public key, another seed.
private let userSeed = "SUAPM67TC4RHQLKBX55NIQXSMATZDOZK6FNEOSS36CAYA7F7TY66LP4BOM"
private let userKey = "UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR"
private let otherSeed = "SUAIS5JPX4X4GJ7EIIJEQ56DH2GWPYJRPWN5XJEDENJOZHCBLI7SEPUQDE"

/// A broker whose only user is the nkey user, allowed `nk.>` and inboxes.
private func nkeyServer(_ broker: Broker, directory: String) async throws -> BrokerProcess {
    let config = directory + "/nkeys.conf"
    try """
        authorization {
          users = [
            {nkey: \(userKey), permissions: {publish: ["nk.>", "_INBOX.>"], subscribe: ["nk.>", "_INBOX.>"]}}
          ]
        }
        """.write(toFile: config, atomically: true, encoding: .utf8)
    return try await BrokerProcess(broker, arguments: ["-c", config])
}

@Suite("nkey authentication", .timeLimit(.minutes(2)))
struct NKeyAuthTests {
    @Test("a seed signs the nonce and the user's permissions apply", arguments: Broker.enabled)
    func seedLogsIn(broker: Broker) async throws {
        let directory = try temporaryDirectory("nkeys")
        defer { removeTemporary(directory) }
        let server = try await nkeyServer(broker, directory: directory)
        defer { server.stop() }
        var options = testOptions(server)
        options.nkeySeed = userSeed
        let client = try await NATSClient.connect(options)
        #expect(client.serverInfo?.nonce?.count == 15)
        let sub = try await client.subscribe("nk.a")
        try await client.flush()
        try await client.publish(Array("signed".utf8), subject: "nk.a")
        let messages = try await take(1, from: sub)
        #expect(messages.first?.string == "signed")
        await client.close()

        let seedFile = directory + "/user.nk"
        try "-----BEGIN USER NKEY SEED-----\n\(userSeed)\n------END USER NKEY SEED------\n"
            .write(toFile: seedFile, atomically: true, encoding: .utf8)
        var fromFile = testOptions(server)
        fromFile.nkeySeedFile = seedFile
        let second = try await NATSClient.connect(fromFile)
        try await second.flush()
        await second.close()
    }

    @Test("an unknown key, or no credentials, is an authorization violation", arguments: Broker.enabled)
    func unknownKeyIsRefused(broker: Broker) async throws {
        let directory = try temporaryDirectory("nkeys")
        defer { removeTemporary(directory) }
        let server = try await nkeyServer(broker, directory: directory)
        defer { server.stop() }
        var options = testOptions(server)
        options.maxReconnectAttempts = 0
        options.nkeySeed = otherSeed
        await #expect(throws: NATSError.authorizationViolation) { _ = try await NATSClient.connect(options) }
        options.nkeySeed = nil
        await #expect(throws: NATSError.authorizationViolation) { _ = try await NATSClient.connect(options) }
    }

    @Test("a bad seed or seed file is refused before connecting, saying why")
    func badSeedsAreInvalidArguments() async throws {
        let port = try freePort()  // nothing listens: the options must fail first
        var options = NATSClient.Options(url: "nats://127.0.0.1:\(port)")
        options.nkeySeed = userKey
        let notASeed = await thrownError { _ = try await NATSClient.connect(options) }
        guard case .invalidArgument(let text)? = notASeed as? NATSError else {
            Issue.record("expected invalidArgument, got \(String(describing: notASeed))")
            return
        }
        #expect(text == "nkeySeed is not an nkey seed (nkeys: invalid key length: 35 bytes, expected 36)")
        options.nkeySeed = String(userSeed.dropLast()) + (userSeed.hasSuffix("A") ? "B" : "A")
        let badChecksum = await thrownError { _ = try await NATSClient.connect(options) }
        #expect(badChecksum as? NATSError == .invalidArgument("nkeySeed is not an nkey seed (nkeys: invalid checksum)"))
        options.nkeySeed = userSeed
        options.nkeySeedFile = "/nonexistent/user.nk"
        let both = await thrownError { _ = try await NATSClient.connect(options) }
        #expect(both as? NATSError == .invalidArgument("set nkeySeed or nkeySeedFile, not both"))
        options.nkeySeed = nil
        let missing = await thrownError { _ = try await NATSClient.connect(options) }
        guard case .invalidArgument(let fileText)? = missing as? NATSError else {
            Issue.record("expected invalidArgument, got \(String(describing: missing))")
            return
        }
        #expect(fileText.contains("/nonexistent/user.nk"))
    }

    @Test("nats --nkey FILE publishes as the nkey user", arguments: Broker.enabled)
    func cliWithNKey(broker: Broker) async throws {
        let directory = try temporaryDirectory("nkeys")
        defer { removeTemporary(directory) }
        let server = try await nkeyServer(broker, directory: directory)
        defer { server.stop() }
        var options = testOptions(server)
        options.nkeySeed = userSeed
        let client = try await NATSClient.connect(options)
        let sub = try await client.subscribe("nk.cli")
        try await client.flush()

        let seedFile = directory + "/user.nk"
        try "\(userSeed)\n".write(toFile: seedFile, atomically: true, encoding: .utf8)
        let published = try await runNATS(server.url, "--nkey", seedFile, "pub", "nk.cli", "from the CLI")
        #expect(published.status == 0, "\(published.errors)")
        let messages = try await take(1, from: sub)
        #expect(messages.first?.string == "from the CLI")
        await client.close()

        let refused = try await runNATS(server.url, "pub", "nk.cli", "anonymous")
        #expect(refused.status != 0)
        #expect(refused.errors.contains("authorization violation"))
    }
}
