// ADR-32 Service API: endpoints, groups, discovery responders with nats.go's JSON, errors.

import Foundation
import Testing
@testable import NATSClient

@Suite("Service API", .timeLimit(.minutes(2)))
struct ServiceTests {
    static func echoService(_ client: NATSClient, name: String = "echo") async throws -> Service {
        let service = try await Service.start(client, .init(name: name, version: "1.2.3", description: "echoes",
                                                            metadata: ["team": "core"]))
        try await service.addEndpoint("say", subject: "\(name).say", metadata: ["kind": "echo"]) { request in
            if request.payload == Array("fail".utf8) {
                try await request.respondError(code: 404, description: "nothing to say")
                return
            }
            try await request.respond(Array("said:".utf8) + request.payload)
        }
        try await client.flush()
        return service
    }

    @Test("an endpoint answers requests and counts them", arguments: Broker.enabled)
    func endpointAnswers(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Self.echoService(client)
        for index in 0..<5 {
            let reply = try await client.request(bytes("\(index)"), subject: "echo.say")
            #expect(reply.string == "said:\(index)")
            #expect(reply.serviceError == nil)
        }
        let stats = try #require(service.stats.endpoints.first)
        #expect(stats.numRequests == 5)
        #expect(stats.numErrors == 0)
        #expect(stats.queueGroup == "q")
        #expect(stats.processingTime > 0)
        #expect(stats.averageProcessingTime == stats.processingTime / 5)
        await service.stop()
        await client.close()
    }

    @Test("respondError sets the error headers and the endpoint's error stats", arguments: Broker.enabled)
    func errorResponses(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Self.echoService(client)
        let reply = try await client.request(bytes("fail"), subject: "echo.say")
        let error = try #require(reply.serviceError)
        #expect(error.code == 404)
        #expect(error.description == "nothing to say")
        #expect(reply.headers?["Nats-Service-Error-Code"] == "404")
        let stats = try #require(service.stats.endpoints.first)
        #expect(stats.numErrors == 1)
        #expect(stats.lastError == "404:nothing to say")
        await service.stop()
        await client.close()
    }

    @Test("a handler that throws answers with code 500", arguments: Broker.enabled)
    func throwingHandler(broker: Broker) async throws {
        struct Broken: Error {}
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Service.start(client, .init(name: "broken", version: "0.1.0"))
        try await service.addEndpoint("fail") { _ in throw Broken() }
        let reply = try await client.request(bytes(""), subject: "fail")
        #expect(reply.serviceError?.code == 500)
        #expect(service.stats.endpoints.first?.numErrors == 1)
        await service.stop()
        await client.close()
    }

    @Test("instances share an endpoint's load through queue group q", arguments: Broker.enabled)
    func instancesShareLoad(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let first = try await Self.echoService(client)
        let second = try await Self.echoService(client)
        for index in 0..<50 { _ = try await client.request(bytes("\(index)"), subject: "echo.say") }
        let counts = [first, second].map { $0.stats.endpoints.first?.numRequests ?? 0 }
        #expect(counts.reduce(0, +) == 50)
        await first.stop()
        await second.stop()
        await client.close()
    }

    @Test("PING, INFO and STATS answer on every subject form with nats.go's JSON keys and types", arguments: Broker.enabled)
    func discoveryJSON(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Self.echoService(client)
        _ = try await client.request(bytes("x"), subject: "echo.say")
        for subject in ["$SRV.PING", "$SRV.PING.echo", "$SRV.PING.echo.\(service.id)"] {
            let reply = try await client.request(bytes(""), subject: subject)
            let json = try #require(try JSONSerialization.jsonObject(with: reply.data) as? [String: Any])
            #expect(json["type"] as? String == "io.nats.micro.v1.ping_response")
            #expect(json["name"] as? String == "echo")
            #expect(json["id"] as? String == service.id)
            #expect(json["version"] as? String == "1.2.3")
            #expect(json["metadata"] as? [String: String] == ["team": "core"])
        }
        let info = try #require(try JSONSerialization.jsonObject(
            with: try await client.request(bytes(""), subject: "$SRV.INFO.echo").data) as? [String: Any])
        #expect(info["type"] as? String == "io.nats.micro.v1.info_response")
        #expect(info["description"] as? String == "echoes")
        let endpoint = try #require((info["endpoints"] as? [[String: Any]])?.first)
        #expect(endpoint["name"] as? String == "say")
        #expect(endpoint["subject"] as? String == "echo.say")
        #expect(endpoint["queue_group"] as? String == "q")
        #expect(endpoint["metadata"] as? [String: String] == ["kind": "echo"])

        let statsReply = try await client.request(bytes(""), subject: "$SRV.STATS.echo.\(service.id)")
        let stats = try #require(try JSONSerialization.jsonObject(with: statsReply.data) as? [String: Any])
        #expect(stats["type"] as? String == "io.nats.micro.v1.stats_response")
        let started = try #require(stats["started"] as? String)
        #expect(started.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"#, options: .regularExpression) != nil)
        let endpointStats = try #require((stats["endpoints"] as? [[String: Any]])?.first)
        #expect(endpointStats["num_requests"] as? Int == 1)
        #expect(endpointStats["num_errors"] as? Int == 0)
        #expect(endpointStats["last_error"] as? String == "")
        // Integer nanoseconds, not a float or a string.
        let raw = String(decoding: statsReply.payload, as: UTF8.self)
        #expect(raw.range(of: #""processing_time":\d+[,}]"#, options: .regularExpression) != nil)
        #expect(raw.range(of: #""average_processing_time":\d+[,}]"#, options: .regularExpression) != nil)
        await service.stop()
        await client.close()
    }

    @Test("an endpoint without metadata reports metadata null", arguments: Broker.enabled)
    func endpointMetadataNull(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Service.start(client, .init(name: "plain", version: "1.0.0"))
        try await service.addEndpoint("x") { try await $0.respond([]) }
        let raw = try await client.request(bytes(""), subject: "$SRV.INFO.plain").string
        #expect(raw.contains(#""metadata":null"#))
        #expect(raw.contains(#""metadata":{}"#))
        await service.stop()
        await client.close()
    }

    @Test("discovery collects every instance until the timeout and filters by name and id", arguments: Broker.enabled)
    func discoveryCollects(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let a = try await Self.echoService(client, name: "alpha")
        let b = try await Self.echoService(client, name: "alpha")
        let c = try await Self.echoService(client, name: "beta")
        let all = try await Service.ping(client, timeout: .milliseconds(500))
        #expect(Set(all.map(\.id)) == Set([a.id, b.id, c.id]))
        let alphas = try await Service.info(client, name: "alpha", timeout: .milliseconds(500))
        #expect(Set(alphas.map(\.id)) == Set([a.id, b.id]))
        let one = try await Service.stats(client, name: "alpha", timeout: .milliseconds(500))
        #expect(one.count == 2)
        let byID = try await Service.discover(client, verb: .ping, name: "beta", id: c.id, timeout: .seconds(5), maxReplies: 1)
        #expect(byID.count == 1)
        for service in [a, b, c] { await service.stop() }
        await client.close()
    }

    @Test("groups prefix endpoint subjects and can change the queue group", arguments: Broker.enabled)
    func groups(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Service.start(client, .init(name: "grouped", version: "1.0.0"))
        let users = service.addGroup("api").addGroup("users", queueGroup: .named("uq"))
        try await users.addEndpoint("get") { try await $0.respond(Array("user".utf8)) }
        try await users.addEndpoint("all", queueGroup: .none) { try await $0.respond(Array("all".utf8)) }
        #expect(try await client.request(bytes(""), subject: "api.users.get").string == "user")
        #expect(try await client.request(bytes(""), subject: "api.users.all").string == "all")
        let endpoints = service.info.endpoints
        #expect(endpoints.map(\.subject) == ["api.users.get", "api.users.all"])
        #expect(endpoints.map(\.queueGroup) == ["uq", ""])
        await service.stop()
        await client.close()
    }

    @Test("bad service names and versions are refused")
    func validation() {
        #expect(Service.isValidName("auth-service_2"))
        #expect(!Service.isValidName("auth.service"))
        #expect(!Service.isValidName(""))
        for good in ["1.0.0", "0.1.2-alpha.1", "10.20.30+build.5", "1.0.0-rc.1+sha.abc"] { #expect(Service.isValidSemVer(good)) }
        for bad in ["1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0+", ""] { #expect(!Service.isValidSemVer(bad)) }
    }

    @Test("stop drains: the endpoint stops answering and a new request finds no responders", arguments: Broker.enabled)
    func stopDrains(broker: Broker) async throws {
        let server = try await BrokerProcess(broker)
        defer { server.stop() }
        let client = try await NATSClient.connect(testOptions(server))
        let service = try await Self.echoService(client)
        _ = try await client.request(bytes("x"), subject: "echo.say")
        await service.stop()
        await #expect(throws: NATSError.noResponders(subject: "echo.say")) {
            _ = try await client.request(bytes("x"), subject: "echo.say")
        }
        await client.close()
    }
}
