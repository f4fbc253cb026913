// Interoperability with nats-py, both directions.

import Foundation
import TestSupport
import Testing
@testable import NATSClient

/// Runs a script from Tests/NATSClientTests/Python with python3.
final class PythonScript: @unchecked Sendable {
    // @unchecked: owned by one test, used sequentially.
    let process = Process()
    let output = Pipe()
    let errors = Pipe()

    init(_ name: String, _ arguments: [String]) throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Python")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", directory.appendingPathComponent(name).path] + arguments
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = input
        try process.run()
    }

    let input = Pipe()

    /// Closes the script's stdin (scripts that wait for EOF then stop).
    func closeInput() { try? input.fileHandleForWriting.close() }

    /// Reads stdout up to the first line (bounded by `seconds`).
    func firstLine(seconds: Double = 20) async throws -> String {
        let handle = output.fileHandleForReading
        return try await within(seconds, "python output") {
            await onThread {
                var data = Data()
                while !data.contains(0x0A) {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    data.append(chunk)
                }
                return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
    }

    /// Waits for exit (bounded) and returns (status, stdout rest, stderr).
    func finish(seconds: Double = 30) async throws -> (Int32, String, String) {
        let process = self.process
        let out = output.fileHandleForReading, err = errors.fileHandleForReading
        return try await within(seconds, "python exit") {
            await onThread {
                let stdout = out.readDataToEndOfFile()
                let stderr = err.readDataToEndOfFile()
                process.waitUntilExit()
                return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
            }
        }
    }

    deinit { if process.isRunning { process.terminate() } }
}

@Suite("Interop with nats-py", .timeLimit(.minutes(2)))
struct InteropTests {
    @Test("a nats-py responder answers our requests, headers included", arguments: Broker.enabled)
    func pythonResponder(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let responder = try PythonScript("responder.py", [server.url, "py.echo", "3"])
        #expect(try await responder.firstLine() == "ready")
        let client = try await NATSClient.connect(testOptions(server))
        var headers = Headers()
        try headers.append(name: "X-Request", value: "r-1")
        for index in 0..<3 {
            let reply = try await client.request(bytes("q\(index)"), subject: "py.echo", headers: index == 0 ? headers : nil)
            #expect(reply.string == "py:q\(index)")
            #expect(reply.headers?["X-Responder"] == "nats-py")
            if index == 0 { #expect(reply.headers?["X-Echo"] == "r-1") }
        }
        let (status, _, stderr) = try await responder.finish()
        #expect(status == 0, "responder.py: \(stderr)")
        await client.close()
    }

    @Test("our subscriber receives nats-py's messages with headers", arguments: Broker.enabled)
    func pythonPublisher(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let sub = try await client.subscribe("py.data")
        try await client.flush()
        let publisher = try PythonScript("publisher.py", [server.url, "py.data", "20"])
        let (status, _, stderr) = try await publisher.finish()
        #expect(status == 0, "publisher.py: \(stderr)")
        let messages = try await take(20, from: sub)
        #expect(messages.map(\.string) == (0..<20).map { "py-\($0)" })
        #expect(messages.map { $0.headers?["X-Index"] } == (0..<20).map { String($0) })
        await client.close()
    }

    @Test("our Service answers nats-py requests and its $SRV replies parse in Python", arguments: Broker.enabled)
    func pythonUsesOurService(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await ServiceTests.echoService(client, name: "pyecho")
        let script = try PythonScript("service_client.py", [server.url, "pyecho", "pyecho.say"])
        let (status, stdout, stderr) = try await script.finish()
        #expect(status == 0, "service_client.py: \(stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any])
        #expect(json["endpoint_reply"] as? String == "said:from-python")
        let errorHeaders = try #require(json["error_headers"] as? [String: String])
        #expect(errorHeaders["Nats-Service-Error-Code"] == "404")
        #expect(errorHeaders["Nats-Service-Error"] == "nothing to say")
        #expect((json["ping"] as? [String: Any])?["id"] as? String == service.id)
        #expect((json["info"] as? [String: Any])?["type"] as? String == "io.nats.micro.v1.info_response")
        let statsEndpoints = (json["stats"] as? [String: Any])?["endpoints"] as? [[String: Any]]
        #expect(statsEndpoints?.first?["num_requests"] as? Int == 2)
        #expect(statsEndpoints?.first?["num_errors"] as? Int == 1)
        await service.stop()
        await client.close()
    }

    @Test("our discovery helpers read a nats-py micro service's PING, INFO and STATS", arguments: Broker.enabled)
    func discoverPythonService(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let script = try PythonScript("micro_service.py", [server.url])
        #expect(try await script.firstLine() == "ready")
        let client = try await NATSClient.connect(testOptions(server))
        let reply = try await client.request(bytes("hi"), subject: "py.svc.echo")
        #expect(reply.string == "py-svc:hi")
        let pings = try await Service.ping(client, name: "py-svc", timeout: .milliseconds(500))
        #expect(pings.map(\.version) == ["2.0.1"])
        #expect(pings.first?.type == ServicePing.responseType)
        let infos = try await Service.info(client, timeout: .milliseconds(500))
        let info = try #require(infos.first { $0.name == "py-svc" })
        #expect(info.metadata == ["lang": "python"])
        #expect(info.endpoints.map(\.subject) == ["py.svc.echo"])
        #expect(info.endpoints.first?.queueGroup == "q")
        let stats = try await Service.stats(client, name: "py-svc", timeout: .milliseconds(500))
        #expect(stats.first?.endpoints.first?.numRequests == 1)
        script.closeInput()
        let (status, _, stderr) = try await script.finish()
        #expect(status == 0, "micro_service.py: \(stderr)")
        await client.close()
    }
}
