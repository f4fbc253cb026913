// max_sub_tokens, no_header_support and reloaded queue permissions: the answers nats-server
// 2.9.10 gives to the same client bytes (recorded with the real server).

import Foundation
import Testing

@testable import NATSServer

@Suite("max_sub_tokens, no_header_support and queue permissions on reload")
struct SubscribeLimitTests {
    @Test func aSubWithMoreTokensThanMaxSubTokensIsRefusedAndTheConnectionStays() throws {
        let broker = try TestBroker { $0.maxSubTokens = 3 }
        let client = try broker.connected()
        try client.send("SUB a.b.c.d 1\r\nSUB a.b.c 2\r\nSUB a.b.c.d q 3\r\nSUB a..b.c 4\r\nSUB a.b.> 5\r\nPUB a.b.c 1\r\nx\r\n")
        let got = try client.sync()
        #expect(Array(got.prefix(3)) == [
            #"-ERR 'Permissions Violation for Subscription to "a.b.c.d", too many tokens'"#,
            #"-ERR 'Permissions Violation for Subscription to "a.b.c.d", too many tokens'"#,
            #"-ERR 'Permissions Violation for Subscription to "a..b.c", too many tokens'"#,
        ])
        // Both kept subscriptions receive, in the subscription index's order.
        #expect(got.dropFirst(3).sorted() == ["MSG a.b.c 2 1", "MSG a.b.c 5 1", "x", "x"], "\(got)")
    }

    @Test func aPermissionViolationIsReportedBeforeTooManyTokens() throws {
        let broker = try TestBroker {
            $0.maxSubTokens = 1
            $0.users = [User(name: "u", password: "p",
                             permissions: Permissions(subscribe: SubjectPermission(allow: ["ok.>"])))]
        }
        let client = try broker.connected(#"{"verbose":false,"user":"u","pass":"p"}"#)
        try client.send("SUB no.x 1\r\nSUB ok.x 2\r\n")
        #expect(try client.sync() == [
            #"-ERR 'Permissions Violation for Subscription to "no.x"'"#,
            #"-ERR 'Permissions Violation for Subscription to "ok.x", too many tokens'"#,
        ])
    }

    @Test func noHeaderSupportSaysSoInInfoAndRefusesHeadersAsIfNotNegotiated() throws {
        let broker = try TestBroker { $0.noHeaderSupport = true }
        let raw = try RawClient(port: broker.port)
        let info = try raw.readInfo()
        #expect(info.json["headers"] as? Bool == false)
        try raw.send(#"CONNECT {"verbose":false,"headers":true,"no_responders":true}"# + "\r\n")
        #expect(try raw.linesUntilClosed() == ["-ERR 'no responders requires headers support'"])

        let client = try broker.connected(#"{"verbose":false,"headers":true}"#)
        try client.send("HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        #expect(try client.linesUntilClosed() == [])
    }

    @Test func clientAdvertiseIsTheHostAndPortOfInfoAndVarzAndTagsAreListed() async throws {
        let broker = try TestBroker {
            $0.clientAdvertise = "example.com"
            $0.serverTags = ["region:eu"]
            $0.httpPort = -1
        }
        let raw = try RawClient(port: broker.port)
        let info = try raw.readInfo().json
        #expect(info["host"] as? String == "example.com")
        #expect(info["port"] as? Int == broker.port)
        let (status, body) = try await httpGet(port: try #require(broker.server.monitoringPort), path: "/varz")
        #expect(status == 200)
        let varz = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(varz["host"] as? String == "example.com")
        #expect(varz["tags"] as? [String] == ["region:eu"])
    }

    @Test func httpBasePathServesEveryEndpointUnderItAndVarzReportsItAsWritten() async throws {
        let broker = try TestBroker {
            $0.httpBasePath = "mon/"
            $0.httpPort = -1
        }
        let port = try #require(broker.server.monitoringPort)
        let (status, body) = try await httpGet(port: port, path: "/mon/varz")
        #expect(status == 200)
        let varz = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(varz["http_base_path"] as? String == "mon/")
        #expect(try await httpGet(port: port, path: "/varz").status == 404)
        #expect(try await httpGet(port: port, path: "/mon").status == 200)
        #expect(try await httpGet(port: port, path: "/mon/connz?sort=x").status == 400)
    }

    @Test("settings 2.9.10 cannot reload are refused with its words", arguments: [
        ("MaxSubTokens", "0", "3"), ("NoHeaderSupport", "false", "true"), ("HTTPBasePath", "", "/x"),
        ("NoSublistCache", "false", "true"),
    ])
    func unreloadableSettingsAreRefused(field: String, old: String, new: String) throws {
        let broker = try TestBroker()
        var fresh = broker.server.options
        switch field {
        case "MaxSubTokens": fresh.maxSubTokens = 3
        case "NoHeaderSupport": fresh.noHeaderSupport = true
        case "HTTPBasePath": fresh.httpBasePath = "/x"
        default: fresh.disableSublistCache = true
        }
        let error = #expect(throws: ServerStartError.self) { try broker.server.reload(fresh) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("config reload not supported for \(field): old=\(old), new=\(new)"))
    }

    @Test func headersStayOnByDefault() throws {
        let broker = try TestBroker()
        let raw = try RawClient(port: broker.port)
        #expect(try raw.readInfo().json["headers"] as? Bool == true)
    }

    @Test("a reload keeps a queue subscription a plain or a queue SUB would still be allowed, as 2.9.10 does")
    func reloadedQueuePermissionsRemoveWhatNeitherAllows() throws {
        let broker = try TestBroker { $0.users = [User(name: "a", password: "p")] }
        let client = try broker.connected(#"{"verbose":false,"user":"a","pass":"p"}"#)
        try client.send("SUB foo v2 1\r\nSUB foo v1 2\r\nSUB bar 3\r\nSUB bar v9 4\r\nSUB baz q3 5\r\nSUB baz q2 6\r\n")
        #expect(try client.sync().isEmpty)
        var fresh = broker.server.options
        fresh.users = [User(name: "a", password: "p", permissions: Permissions(subscribe: SubjectPermission(
            allow: ["foo v1", "bar v9", "baz", "baz q1"], deny: ["baz q2"])))]
        try broker.server.reload(fresh)
        var lines: [String] = []
        #expect(try eventually {
            lines += try client.sync()
            return lines.count >= 2
        })
        #expect(Set(lines) == [#"-ERR 'Permissions Violation for Subscription to "bar" (sid "3")'"#,
                               #"-ERR 'Permissions Violation for Subscription to "foo" (sid "1")'"#])
        let publisher = try broker.connected(#"{"verbose":false,"user":"a","pass":"p"}"#)
        try publisher.send("PUB foo 1\r\nx\r\nPUB bar 1\r\ny\r\nPUB baz 1\r\nz\r\n")
        try publisher.sync()
        let got = try client.sync()
        // Two queue groups on baz: one copy each, in the subscription index's order.
        let messages = stride(from: 0, to: got.count - 1, by: 2).map { got[$0] + "|" + got[$0 + 1] }
        #expect(got.count == 8)
        #expect(Set(messages) == ["MSG foo 2 1|x", "MSG bar 4 1|y", "MSG baz 5 1|z", "MSG baz 6 1|z"])
    }
}
