// /varz and /healthz: the fields and types of nats-server 2.9.10 (samples/varz.json, healthz.json).

import Foundation
import Testing
@testable import NATSServer

@Suite("Monitoring")
struct MonitoringTests {
    @Test func healthzAnswersStatusOK() async throws {
        let broker = try TestBroker { $0.httpPort = -1 }
        let port = try #require(broker.server.monitoringPort)
        let (status, body) = try await httpGet(port: port, path: "/healthz")
        #expect(status == 200)
        #expect(String(decoding: body, as: UTF8.self) == #"{"status":"ok"}"#)
    }

    @Test func varzHasTheFieldsAndTypesOf2_9_10AndLiveCounters() async throws {
        let broker = try TestBroker { $0.httpPort = -1; $0.serverName = "mon" }
        let client = try broker.connected()
        try client.send("SUB a 1\r\nPUB a 2\r\nhi\r\n")
        try client.sync()
        #expect(eventually { broker.server.statistics().outMsgs == 1 })
        let port = try #require(broker.server.monitoringPort)
        let (status, body) = try await httpGet(port: port, path: "/varz")
        #expect(status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])

        let numbers = ["proto", "port", "max_connections", "ping_interval", "ping_max", "http_port", "https_port",
                       "auth_timeout", "max_control_line", "max_payload", "max_pending", "tls_timeout",
                       "write_deadline", "mem", "cores", "gomaxprocs", "cpu", "connections", "total_connections",
                       "routes", "remotes", "leafnodes", "in_msgs", "out_msgs", "in_bytes", "out_bytes",
                       "slow_consumers", "subscriptions"]
        let strings = ["server_id", "server_name", "version", "go", "host", "http_host", "http_base_path", "start",
                       "now", "uptime", "config_load_time", "system_account"]
        let objects = ["cluster", "gateway", "leaf", "mqtt", "websocket", "jetstream", "http_req_stats"]
        for key in numbers { #expect(json[key] is NSNumber, "\(key) is a number") }
        for key in strings { #expect(json[key] is String, "\(key) is a string") }
        for key in objects { #expect(json[key] is [String: Any], "\(key) is an object") }

        #expect(json["server_name"] as? String == "mon")
        #expect(json["version"] as? String == "2.9.10")
        #expect(json["port"] as? Int == broker.port)
        #expect(json["http_port"] as? Int == port)
        #expect(json["ping_interval"] as? Int == 120_000_000_000)
        #expect(json["write_deadline"] as? Int == 10_000_000_000)
        #expect(json["max_pending"] as? Int == 64 * 1024 * 1024)
        #expect(json["connections"] as? Int == 1)
        #expect(json["subscriptions"] as? Int == 1)
        #expect(json["in_msgs"] as? Int == 1)
        #expect(json["out_msgs"] as? Int == 1)
        #expect(json["in_bytes"] as? Int == 2)
        #expect(json["swift_broker_version"] as? String == "0.1.0")
        #expect((json["http_req_stats"] as? [String: Any])?["/varz"] as? Int == 1)
        let start = try #require(json["start"] as? String)
        #expect(start.hasSuffix("Z") && start.contains("T"))
    }

    @Test func varzKeepsTheFieldOrderOfTheAuthServerSample() async throws {
        let broker = try TestBroker { $0.httpPort = -1; $0.authToken = "t" }
        let port = try #require(broker.server.monitoringPort)
        let (_, body) = try await httpGet(port: port, path: "/varz")
        let text = String(decoding: body, as: UTF8.self)
        // samples/varz_auth_server.json, in order.
        let order = ["server_id", "server_name", "version", "proto", "go", "host", "port", "auth_required",
                     "max_connections", "ping_interval", "ping_max", "http_host", "http_port", "http_base_path",
                     "https_port", "auth_timeout", "max_control_line", "max_payload", "max_pending", "cluster",
                     "gateway", "leaf", "mqtt", "websocket", "jetstream", "tls_timeout", "write_deadline", "start",
                     "now", "uptime", "mem", "cores", "gomaxprocs", "cpu", "connections", "total_connections",
                     "routes", "remotes", "leafnodes", "in_msgs", "out_msgs", "in_bytes", "out_bytes",
                     "slow_consumers", "subscriptions", "http_req_stats", "config_load_time", "system_account"]
        var last = text.startIndex
        for key in order {
            let range = try #require(text.range(of: "\"\(key)\":"), "missing \(key)")
            #expect(range.lowerBound > last, "\(key) out of order")
            last = range.lowerBound
        }
    }

    @Test func monitoringIsOffByDefault() throws {
        let broker = try TestBroker()
        #expect(broker.server.monitoringPort == nil)
    }
}
