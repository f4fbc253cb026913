// Every core row of the 2.9.10 -ERR table (nats-facts.md A.7), the silent closes, and the limits.

import Foundation
import Glibc
import Testing
@testable import NATSServer

@Suite("Errors and limits")
struct ErrorAndLimitTests {
    // MARK: Errors that close

    @Test func unknownOperationIsRejectedAndCloses() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("FOO bar\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Unknown Protocol Operation'"])
    }

    @Test func aPayloadLongerThanItsSizeIsAnUnknownOperation() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("PUB foo 2\r\nhiX\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Unknown Protocol Operation'"])
    }

    @Test func clientsMaySendMsgNoMoreThanOtherServerOps() throws {
        let broker = try TestBroker()
        let client = try broker.connected()
        try client.send("MSG foo 1 2\r\nhi\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Unknown Protocol Operation'"])
    }

    @Test func anOpOtherThanConnectFirstIsAnAuthorizationViolation() throws {
        let broker = try TestBroker { $0.username = "alice"; $0.password = "secret" }
        let client = try broker.client()
        try client.send("PING\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }

    @Test func badCredentialsAreAnAuthorizationViolation() throws {
        let broker = try TestBroker { $0.username = "alice"; $0.password = "secret" }
        let client = try broker.client()
        try client.send("CONNECT {\"user\":\"alice\",\"pass\":\"wrong\"}\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
        #expect(eventually { broker.server.statistics().connections == 0 })
    }

    @Test func goodCredentialsAreAccepted() throws {
        let broker = try TestBroker { $0.username = "alice"; $0.password = "secret" }
        let client = try broker.client()
        try client.send("CONNECT {\"user\":\"alice\",\"pass\":\"secret\"}\r\n")
        #expect(try client.sync() == ["+OK"])
    }

    @Test func tokenAuthenticationChecksTheToken() throws {
        let broker = try TestBroker { $0.authToken = "t0ken" }
        let good = try broker.client()
        try good.send("CONNECT {\"verbose\":false,\"auth_token\":\"t0ken\"}\r\n")
        #expect(try good.sync() == [])
        let bad = try broker.client()
        try bad.send("CONNECT {\"verbose\":false,\"auth_token\":\"nope\"}\r\n")
        #expect(try bad.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }

    @Test func anAccountInConnectIsAnAuthorizationViolation() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":false,\"account\":\"A\"}\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }

    @Test func noConnectWithinTheAuthTimeoutIsAnAuthenticationTimeout() throws {
        let broker = try TestBroker { $0.authToken = "t"; $0.authTimeout = .milliseconds(200) }
        let client = try broker.client()
        #expect(try client.linesUntilClosed() == ["-ERR 'Authentication Timeout'"])
    }

    @Test func connectInTimeStopsTheAuthTimer() throws {
        let broker = try TestBroker { $0.authToken = "t"; $0.authTimeout = .milliseconds(200) }
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":false,\"auth_token\":\"t\"}\r\n")
        try client.sync()
        // Well past the timeout the connection still answers.
        #expect(try client.linesUntilClosed(timeout: 0.6) == nil)
        #expect(try client.sync() == [])
    }

    @Test func aPayloadAboveMaxPayloadIsAViolation() throws {
        let broker = try TestBroker { $0.maxPayload = 1024 }
        let client = try broker.connected()
        try client.send("PUB foo 1025\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Maximum Payload Violation'"])
    }

    @Test func aControlLineAboveTheLimitIsRejected() throws {
        let broker = try TestBroker { $0.maxControlLine = 512 }
        let client = try broker.connected()
        try client.send("SUB " + String(repeating: "a", count: 600) + " 1\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'maximum control line exceeded'"])
    }

    @Test func aProtocolOtherThanZeroOrOneIsInvalid() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":false,\"protocol\":2}\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'invalid client protocol'"])
    }

    @Test func noRespondersWithoutHeadersIsRejected() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":false,\"no_responders\":true}\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'no responders requires headers support'"])
    }

    @Test func theConnectionAboveMaxConnectionsGetsInfoThenTheErrorAndIsClosed() throws {
        let broker = try TestBroker { $0.maxConnections = 2 }
        let first = try broker.connected()
        let second = try broker.connected()
        let third = try RawClient(port: broker.port)
        let info = try third.readInfo().json
        #expect(info["client_id"] != nil)
        #expect(try third.linesUntilClosed() == ["-ERR 'maximum connections exceeded'"])
        #expect(try first.sync() == [])
        #expect(try second.sync() == [])
    }

    @Test func aFreedSlotAcceptsANewConnection() throws {
        let broker = try TestBroker { $0.maxConnections = 1 }
        var first: RawClient? = try broker.connected()
        _ = first
        first = nil
        #expect(eventually { broker.server.statistics().connections == 0 })
        let next = try broker.connected()
        #expect(try next.sync() == [])
    }

    @Test func unansweredServerPingsEndInStaleConnection() throws {
        let broker = try TestBroker { $0.pingInterval = .milliseconds(100); $0.maxPingsOut = 2 }
        let client = try broker.connected()
        #expect(try client.linesUntilClosed() == ["PING", "PING", "-ERR 'Stale Connection'"])
    }

    @Test func answeredServerPingsKeepTheConnection() throws {
        let broker = try TestBroker { $0.pingInterval = .milliseconds(100); $0.maxPingsOut = 2 }
        let client = try broker.connected()
        var pings = 0
        while pings < 4 {
            let line = try #require(try client.readLine(timeout: 5))
            #expect(line == "PING")
            pings += 1
            try client.send("PONG\r\n")
        }
        let lines = try client.sync()
        #expect(lines.allSatisfy { $0 == "PING" })
        #expect(broker.server.statistics().connections == 1)
    }

    @Test func thePingTimerStartsAtAcceptBeforeConnect() throws {
        let broker = try TestBroker {
            $0.pingInterval = .milliseconds(100)
            $0.authToken = "t"
            $0.authTimeout = .milliseconds(700)
        }
        let client = try broker.client()
        let lines = try #require(try client.linesUntilClosed())
        #expect(lines.first == "PING")
        #expect(lines.last == "-ERR 'Stale Connection'" || lines.last == "-ERR 'Authentication Timeout'")
    }

    // MARK: Silent closes

    @Test(arguments: [
        "PUB a b c d\r\n",
        "SUB a b c d\r\n",
        "UNSUB 1 2 3\r\n",
        "PUB foo x\r\n",
        "CONNECT {\"verbose\":\r\n",
        "CONNECT {\"verbose\":1}\r\n",
        "CONNECT [1]\r\n",
        "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        "-ERR 'oops'\r\n",
        "INFO {bad\r\n",
    ])
    func malformedInputClosesWithoutAnError(input: String) throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("CONNECT {\"verbose\":false}\r\n")
        try client.sync()
        try client.send(input)
        #expect(try client.linesUntilClosed() == [])
    }

    // MARK: Errors that keep the connection

    @Test func anInvalidSubscriptionSubjectIsRejectedButTheConnectionStays() throws {
        let broker = try TestBroker()
        let client = try broker.client()
        try client.send("SUB foo. 1\r\nSUB foo..bar 2\r\nSUB foo.>.bar 3\r\nSUB ok 4\r\n")
        #expect(try client.sync() == ["-ERR 'Invalid Subject'", "-ERR 'Invalid Subject'", "-ERR 'Invalid Subject'", "+OK"])
        #expect(broker.server.statistics().subscriptions == 1)
    }

    @Test func subscriptionsAboveTheLimitAreRefusedButTheConnectionStays() throws {
        let broker = try TestBroker { $0.maxSubscriptions = 2 }
        let client = try broker.client()
        try client.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB c 1\r\nx\r\nPUB a 1\r\ny\r\n")
        #expect(try client.sync() == ["+OK", "+OK", "-ERR 'maximum subscriptions exceeded'", "+OK", "+OK", "MSG a 1 1", "y"])
    }

    // MARK: Slow consumers

    @Test func aSubscriberThatNeverReadsIsClosedAsSlowConsumerWhileOthersContinue() throws {
        let broker = try TestBroker {
            $0.maxPayload = 4096
            $0.maxPending = 64 * 1024
        }
        let stuck = try RawClient(port: broker.port, receiveBuffer: 4096)
        try stuck.send("CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n")
        let healthy = try broker.connected()
        try healthy.send("SUB other 1\r\n")
        try healthy.sync()

        let publisher = try broker.connected()
        let payload = String(repeating: "x", count: 4000)
        var batch = ""
        for _ in 0..<100 { batch += "PUB flood 4000\r\n\(payload)\r\n" }
        for _ in 0..<25 { try publisher.send(batch) }
        try publisher.send("PUB other 2\r\nok\r\n")
        #expect(try publisher.sync() == [])
        #expect(try healthy.sync() == ["MSG other 1 2", "ok"])
        #expect(eventually { broker.server.statistics().slowConsumers == 1 })
        #expect(try stuck.drainUntilClosed(), "the slow consumer is disconnected")
        #expect(eventually { broker.server.statistics().connections == 2 })
    }

    @Test func aSubscriberThatStopsReadingIsClosedAtTheWriteDeadline() throws {
        let broker = try TestBroker {
            $0.maxPayload = 4096
            $0.writeDeadline = .milliseconds(300)
        }
        let stuck = try RawClient(port: broker.port, receiveBuffer: 4096)
        try stuck.send("CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n")
        let publisher = try broker.connected()
        #expect(eventually { broker.server.statistics().subscriptions == 1 })
        let payload = String(repeating: "y", count: 4000)
        var batch = ""
        for _ in 0..<100 { batch += "PUB flood 4000\r\n\(payload)\r\n" }
        for _ in 0..<20 { try publisher.send(batch) }
        try publisher.sync()
        #expect(eventually { broker.server.statistics().slowConsumers == 1 })
        #expect(try stuck.drainUntilClosed())
        #expect(try publisher.sync() == [])
    }
}
