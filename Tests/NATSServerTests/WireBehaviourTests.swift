// The broker's wire behaviour, checked against what nats-server 2.9.10 sends (samples/protocol_transcripts.txt).

import Foundation
import Testing
@testable import NATSServer

@Suite("Wire behaviour")
struct WireBehaviourTests {
    @Test func infoComesFirstWithTheFieldsAndOrderOf2_9_10() throws {
        let broker = try TestBroker { $0.serverName = "wire-test" }
        let client = try RawClient(port: broker.port)
        let (json, raw) = try client.readInfo()
        let keys = ["server_id", "server_name", "version", "proto", "go", "host", "port", "headers",
                    "max_payload", "client_id", "client_ip"]
        var lastIndex = raw.startIndex
        for key in keys {
            let range = try #require(raw.range(of: "\"\(key)\":"), "missing \(key)")
            #expect(range.lowerBound > lastIndex, "\(key) out of order")
            lastIndex = range.lowerBound
        }
        #expect(!raw.contains("auth_required"))
        #expect(json["server_name"] as? String == "wire-test")
        #expect(json["version"] as? String == "2.9.10")
        #expect(json["proto"] as? Int == 1)
        #expect(json["host"] as? String == "127.0.0.1")
        #expect(json["port"] as? Int == broker.port)
        #expect(json["headers"] as? Bool == true)
        #expect(json["max_payload"] as? Int == 1_048_576)
        #expect(json["client_ip"] as? String == "127.0.0.1")
        let id = try #require(json["server_id"] as? String)
        #expect(id == broker.server.serverID)
        #expect(id.count == 56 && id.hasPrefix("N"))
        #expect(id.allSatisfy { ("A"..."Z").contains($0) || ("2"..."7").contains($0) })
    }

    @Test func serverNameDefaultsToTheServerIDAndClientIDsIncrease() throws {
        let broker = try TestBroker()
        let first = try RawClient(port: broker.port).readInfo().json
        let second = try RawClient(port: broker.port).readInfo().json
        #expect(first["server_name"] as? String == first["server_id"] as? String)
        let a = try #require(first["client_id"] as? Int)
        let b = try #require(second["client_id"] as? Int)
        #expect(b > a)
    }

    @Test func authRequiredAppearsInInfoOnlyWithAuthentication() throws {
        let broker = try TestBroker { $0.authToken = "s3cret" }
        let (json, _) = try RawClient(port: broker.port).readInfo()
        #expect(json["auth_required"] as? Bool == true)
    }

    @Test func withoutConnectVerboseAndPedanticAreOn() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\n")
        let lines = try client.sync()
        #expect(lines == ["+OK", "+OK", "MSG foo 1 2", "hi", "+OK"])
    }

    @Test func verboseConnectIsAcknowledged() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":true}\r\n")
        #expect(try client.sync() == ["+OK"])
        try client.send("CONNECT {\"verbose\":false}\r\nSUB a 1\r\n")
        #expect(try client.sync() == [])
    }

    @Test func lowerCaseOperationsWork() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("sub foo 1\r\npub foo 2\r\nhi\r\n")
        #expect(try client.sync() == ["+OK", "+OK", "MSG foo 1 2", "hi"])
    }

    @Test func tabsAndRepeatedSpacesSeparateArguments() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("SUB\tfoo  \t 9\r\nPUB \t foo\t2\r\nhi\r\n")
        #expect(try client.sync() == ["+OK", "+OK", "MSG foo 9 2", "hi"])
    }

    @Test func bareLineFeedsEndLines() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("SUB foo 9\nPUB foo 2\nhi\r\n")
        #expect(try client.sync() == ["+OK", "+OK", "MSG foo 9 2", "hi"])
    }

    @Test func everyPlainSubscriberGetsACopyWithItsSidAndTheReply() throws {
        let broker = try TestBroker()
        let a = try broker.connected()
        let b = try broker.connected()
        try a.send("SUB news.* 7\r\n")
        try b.send("SUB news.> 8\r\nSUB news.sport 9\r\n")
        try a.sync()
        try b.sync()
        let publisher = try broker.connected()
        try publisher.send("PUB news.sport inbox.1 5\r\nhello\r\n")
        try publisher.sync()
        #expect(try a.sync() == ["MSG news.sport 7 inbox.1 5", "hello"])
        let bLines = try b.sync()
        #expect(bLines.count == 4)
        #expect(Set([bLines[0], bLines[2]]) == ["MSG news.sport 8 inbox.1 5", "MSG news.sport 9 inbox.1 5"])
    }

    @Test func aLargePayloadArrivesIntact() throws {
        let broker = try TestBroker()
        let sub = try broker.connected()
        try sub.send("SUB big 1\r\n")
        try sub.sync()
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let publisher = try broker.connected()
        try publisher.send(bytes: Array("PUB big \(payload.count)\r\n".utf8) + payload + Array("\r\n".utf8))
        try publisher.sync()
        try sub.expect("MSG big 1 \(payload.count)")
        #expect(try sub.readBody(count: payload.count) == payload)
    }

    @Test func manyMessagesKeepTheirOrder() throws {
        let broker = try TestBroker()
        let sub = try broker.connected()
        try sub.send("SUB seq 1\r\n")
        try sub.sync()
        let publisher = try broker.connected()
        var batch = ""
        for i in 0..<2000 { batch += "PUB seq \(String(i).utf8.count)\r\n\(i)\r\n" }
        try publisher.send(batch)
        try publisher.sync()
        for i in 0..<2000 {
            try sub.expect("MSG seq 1 \(String(i).utf8.count)")
            try sub.expect("\(i)")
        }
    }

    @Test func queueGroupsDeliverEachMessageToExactlyOneMemberAndUseAllMembers() throws {
        let broker = try TestBroker()
        let members = try (0..<3).map { _ in try broker.connected() }
        for (i, member) in members.enumerated() {
            try member.send("SUB work workers \(i + 1)\r\n")
            try member.sync()
        }
        let plain = try broker.connected()
        try plain.send("SUB work 99\r\n")
        try plain.sync()
        let publisher = try broker.connected()
        let total = 300
        var batch = ""
        for i in 0..<total { batch += "PUB work \(String(i).utf8.count)\r\n\(i)\r\n" }
        try publisher.send(batch)
        try publisher.sync()

        var seen: [String: Int] = [:]
        var perMember: [Int] = []
        for member in members {
            let lines = try member.sync()
            var count = 0
            var index = 0
            while index + 1 < lines.count {
                #expect(lines[index].hasPrefix("MSG work "))
                seen[lines[index + 1], default: 0] += 1
                count += 1
                index += 2
            }
            perMember.append(count)
        }
        #expect(seen.count == total)
        #expect(seen.values.allSatisfy { $0 == 1 })
        #expect(perMember.allSatisfy { $0 > 0 }, "every member used: \(perMember)")
        #expect(try plain.sync().count == total * 2, "the plain subscriber gets every message")
    }

    @Test func unsubWithMaxStopsAfterThatManyMessages() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("SUB foo 1\r\nUNSUB 1 2\r\n")
        try client.send("PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n")
        #expect(try client.sync() == ["MSG foo 1 1", "a", "MSG foo 1 1", "b"])
        #expect(eventually { broker.server.statistics().subscriptions == 0 })
    }

    @Test func unsubWithMaxAlreadyReachedIsImmediate() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("SUB foo 1\r\nPUB foo 1\r\nz\r\nUNSUB 1 1\r\nPUB foo 1\r\nz\r\n")
        #expect(try client.sync() == ["MSG foo 1 1", "z"])
        #expect(broker.server.statistics().subscriptions == 0)
    }

    @Test func unsubOfAnUnknownSidIsIgnored() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("UNSUB 42\r\n")
        #expect(try client.sync() == ["+OK"])
    }

    @Test func aDuplicateSidIsIgnored() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("SUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nx\r\nPUB foo 1\r\ny\r\n")
        #expect(try client.sync() == ["MSG foo 1 1", "y"])
        #expect(broker.server.statistics().subscriptions == 1)
    }

    @Test func echoFalseSuppressesOwnMessagesOnly() throws {
        let broker = try TestBroker()
        let quiet = try broker.connected(#"{"verbose":false,"echo":false}"#)
        let other = try broker.connected()
        try quiet.send("SUB x 1\r\n")
        try other.send("SUB x 2\r\n")
        try quiet.sync()
        try other.sync()
        try quiet.send("PUB x 1\r\nz\r\n")
        #expect(try quiet.sync() == [])
        #expect(try other.sync() == ["MSG x 2 1", "z"])
        try other.send("PUB x 1\r\nw\r\n")
        try other.sync()
        #expect(try quiet.sync() == ["MSG x 1 1", "w"])
    }

    @Test func headersAreStrippedForSubscribersWithoutHeaderSupport() throws {
        let broker = try TestBroker()
        let plain = try broker.connected(#"{"verbose":false}"#)
        let withHeaders = try broker.connected(#"{"verbose":false,"headers":true}"#)
        try plain.send("SUB foo 1\r\n")
        try withHeaders.send("SUB foo 2\r\n")
        try plain.sync()
        try withHeaders.sync()
        let publisher = try broker.connected(#"{"verbose":false,"headers":true}"#)
        try publisher.send("HPUB foo 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n")
        try publisher.sync()
        #expect(try plain.sync() == ["MSG foo 1 2", "hi"])
        #expect(try withHeaders.sync() == ["HMSG foo 2 18 20", "NATS/1.0", "A: b", "", "hi"])
    }

    @Test func noRespondersSends503ToThePublishersReplySubscription() throws {
        let broker = try TestBroker()
        let client = try broker.connected(#"{"verbose":false,"headers":true,"no_responders":true}"#)
        try client.send("SUB _INBOX.abc 1\r\nPUB svc.none _INBOX.abc 0\r\n\r\n")
        #expect(try client.sync() == ["HMSG _INBOX.abc 1 16 16", "NATS/1.0 503", "", ""])
    }

    @Test func noResponderReplyIsNotSentWhenSomeoneReceivedTheMessage() throws {
        let broker = try TestBroker()
        let responder = try broker.connected()
        try responder.send("SUB svc 1\r\n")
        try responder.sync()
        let client = try broker.connected(#"{"verbose":false,"headers":true,"no_responders":true}"#)
        try client.send("SUB _INBOX.abc 1\r\nPUB svc _INBOX.abc 0\r\n\r\nPUB svc2 0\r\n\r\n")
        #expect(try client.sync() == [])
        #expect(try responder.sync() == ["MSG svc 1 _INBOX.abc 0", ""])
    }

    @Test func noResponderReplyNeedsTheOptionAndAReplySubscription() throws {
        let broker = try TestBroker()
        let withoutOption = try broker.connected(#"{"verbose":false,"headers":true}"#)
        try withoutOption.send("SUB _INBOX.x 1\r\nPUB svc.none _INBOX.x 0\r\n\r\n")
        #expect(try withoutOption.sync() == [])
        let withoutSubscription = try broker.connected(#"{"verbose":false,"headers":true,"no_responders":true}"#)
        try withoutSubscription.send("PUB svc.none _INBOX.y 0\r\n\r\n")
        #expect(try withoutSubscription.sync() == [])
    }

    @Test func pedanticWildcardPublishIsRejectedButStillDelivered() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\n")
        #expect(try client.sync() == ["-ERR 'Invalid Publish Subject'", "MSG foo.* 1 2", "hi"])
    }

    @Test func nonPedanticPublishRoutesWildcardsLiterallyAndDropsEmptyTokens() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("SUB foo.* 1\r\nSUB foo.bar 2\r\nSUB foo.> 3\r\nPUB foo.* 2\r\nhi\r\nPUB foo..x 2\r\nno\r\n")
        let lines = try client.sync()
        #expect(lines.count == 4)
        #expect(Set([lines[0], lines[2]]) == ["MSG foo.* 1 2", "MSG foo.* 3 2"])
    }

    @Test func clientPongAndOkAreIgnored() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("PONG\r\n+OK\r\n")
        #expect(try client.sync() == [])
    }

    @Test func statisticsCountMessagesBytesAndConnections() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("SUB a 1\r\nPUB a 3\r\nabc\r\nPUB b 2\r\nxy\r\n")
        try client.sync()
        #expect(eventually {
            let stats = broker.server.statistics()
            return stats.inMsgs == 2 && stats.inBytes == 5 && stats.outMsgs == 1 && stats.outBytes == 3
        })
        let stats = broker.server.statistics()
        #expect(stats.connections == 1)
        #expect(stats.totalConnections == 1)
        #expect(stats.subscriptions == 1)
    }

    @Test func shutdownClosesClientsAfterFlushing() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("SUB a 1\r\n")
        try client.sync()
        broker.server.shutdown()
        #expect(try client.linesUntilClosed() == [])
        #expect(broker.server.port == 0)
    }
}
