import Testing
@testable import NATSProtocol

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Runs `body` with raw views of the given strings.
private func views<R>(_ a: String, _ b: String, _ c: String, _ d: String,
                      _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> R) -> R {
    let (ba, bb, bc, bd) = (Array(a.utf8), Array(b.utf8), Array(c.utf8), Array(d.utf8))
    return ba.withUnsafeBytes { ra in bb.withUnsafeBytes { rb in bc.withUnsafeBytes { rc in bd.withUnsafeBytes { rd in
        body(ra, rb, rc, rd)
    } } } }
}

@Suite struct EncoderTests {
    @Test func msgWithAndWithoutReply() {
        var out: [UInt8] = []
        views("foo.bar", "42", "", "hello") { s, sid, r, p in Encoder.msg(&out, subject: s, sid: sid, reply: r, payload: p) }
        #expect(text(out) == "MSG foo.bar 42 5\r\nhello\r\n")
        out.removeAll()
        views("foo.bar", "42", "_INBOX.x", "hello") { s, sid, r, p in Encoder.msg(&out, subject: s, sid: sid, reply: r, payload: p) }
        #expect(text(out) == "MSG foo.bar 42 _INBOX.x 5\r\nhello\r\n")
        out.removeAll()
        Encoder.msg(&out, subject: "a", sid: "1", payload: [])
        #expect(text(out) == "MSG a 1 0\r\n\r\n")
    }

    @Test func hmsgCountsHeaderAndTotalSizes() {
        var out: [UInt8] = []
        let headers = Array("NATS/1.0\r\nA: b\r\n\r\n".utf8)
        Encoder.hmsg(&out, subject: "s", sid: "9", reply: "r.1", headers: headers, payload: Array("xyz".utf8))
        #expect(text(out) == "HMSG s 9 r.1 18 21\r\nNATS/1.0\r\nA: b\r\n\r\nxyz\r\n")
        // The exact 2.9.10 no-responders message.
        out.removeAll()
        Encoder.hmsg(&out, subject: "_INBOX.abc", sid: "1", headers: Array("NATS/1.0 503\r\n\r\n".utf8), payload: [])
        #expect(text(out) == "HMSG _INBOX.abc 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")
    }

    @Test func infoHasASpaceBeforeCRLFLike2_9_10() {
        var out: [UInt8] = []
        Encoder.info(&out, json: #"{"server_id":"X","max_payload":1048576}"#)
        #expect(text(out) == "INFO {\"server_id\":\"X\",\"max_payload\":1048576} \r\n")
    }

    @Test func controlOps() {
        var out: [UInt8] = []
        Encoder.ping(&out)
        Encoder.pong(&out)
        Encoder.ok(&out)
        Encoder.error(&out, .invalidSubject)
        #expect(text(out) == "PING\r\nPONG\r\n+OK\r\n-ERR 'Invalid Subject'\r\n")
    }

    @Test func pubAndHpub() {
        var out: [UInt8] = []
        Encoder.pub(&out, subject: "orders", payload: Array("12345678901".utf8))
        Encoder.pub(&out, subject: "orders", reply: "_INBOX.r", payload: [])
        #expect(text(out) == "PUB orders 11\r\n12345678901\r\nPUB orders _INBOX.r 0\r\n\r\n")
        out.removeAll()
        views("s", "", "NATS/1.0\r\n\r\n", "p") { s, r, h, p in Encoder.hpub(&out, subject: s, reply: r, headers: h, payload: p) }
        #expect(text(out) == "HPUB s 12 13\r\nNATS/1.0\r\n\r\np\r\n")
        out.removeAll()
        Encoder.hpub(&out, subject: "s", reply: "r", headers: Array("NATS/1.0\r\n\r\n".utf8), payload: [])
        #expect(text(out) == "HPUB s r 12 12\r\nNATS/1.0\r\n\r\n\r\n")
    }

    @Test func subUnsubAndConnect() {
        var out: [UInt8] = []
        Encoder.sub(&out, subject: "foo.*", sid: "1")
        Encoder.sub(&out, subject: "foo.>", queue: "workers", sid: "2")
        Encoder.sub(&out, subject: "bar", sid: UInt64(18_446_744_073_709_551_615))
        Encoder.unsub(&out, sid: "1")
        Encoder.unsub(&out, sid: "2", max: 10)
        Encoder.unsub(&out, sid: UInt64(3), max: 0)
        Encoder.connect(&out, json: #"{"verbose":false}"#)
        #expect(text(out) == "SUB foo.* 1\r\nSUB foo.> workers 2\r\nSUB bar 18446744073709551615\r\n"
            + "UNSUB 1\r\nUNSUB 2 10\r\nUNSUB 3 0\r\nCONNECT {\"verbose\":false}\r\n")
    }

    @Test(arguments: [0, 1, 9, 10, 99, 100, 1_048_576, 999_999_999, Int.max])
    func decimalsRenderLikeStringDescribing(value: Int) {
        var out: [UInt8] = []
        out.append(decimal: value)
        #expect(text(out) == String(value))
    }

    @Test func negativeDecimalsKeepTheirSign() {
        var out: [UInt8] = []
        out.append(decimal: Int.min)
        #expect(text(out) == String(Int.min))
    }

    @Test func largePayloadIsCopiedWhole() {
        let payload = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
        var out: [UInt8] = []
        Encoder.pub(&out, subject: "big", payload: payload)
        let header = Array("PUB big 70000\r\n".utf8)
        #expect(Array(out.prefix(header.count)) == header)
        #expect(Array(out[header.count..<(header.count + payload.count)]) == payload)
        #expect(Array(out.suffix(2)) == [13, 10])
        #expect(out.count == header.count + payload.count + 2)
    }
}

@Suite struct ServerErrorTests {
    @Test func constantTextsAreExactly2_9_10s() {
        let expected: [(ServerError, String, Bool)] = [
            (.unknownProtocolOperation, "Unknown Protocol Operation", true),
            (.authorizationViolation, "Authorization Violation", true),
            (.authenticationTimeout, "Authentication Timeout", true),
            (.maxPayloadViolation, "Maximum Payload Violation", true),
            (.maxControlLineExceeded, "maximum control line exceeded", true),
            (.maxConnectionsExceeded, "maximum connections exceeded", true),
            (.maxAccountConnectionsExceeded, "maximum account active connections exceeded", true),
            (.invalidClientProtocol, "invalid client protocol", true),
            (.noRespondersRequiresHeaders, "no responders requires headers support", true),
            (.staleConnection, "Stale Connection", true),
            (.secureConnectionTLSRequired, "Secure Connection - TLS Required", true),
            (.userAuthenticationExpired, "User Authentication Expired", true),
            (.accountAuthenticationExpired, "Account Authentication Expired", true),
            (.userAuthenticationRevoked, "User Authentication Revoked", true),
            (.connectionThrottling, "Connection throttling is active. Please try again later.", true),
            (.invalidSubject, "Invalid Subject", false),
            (.invalidPublishSubject, "Invalid Publish Subject", false),
            (.maxSubscriptionsExceeded, "maximum subscriptions exceeded", false),
        ]
        #expect(expected.count == ServerError.constantCases.count)
        for (error, wire, closes) in expected {
            #expect(error.text == wire)
            #expect(error.closesConnection == closes, "\(error)")
            #expect(text(error.wireLine) == "-ERR '\(wire)'\r\n")
            #expect(ServerError.constantCases.contains(error))
        }
    }

    @Test func permissionTextsQuoteTheSubjectLikeGo() {
        #expect(ServerError.publishPermissionViolation(subject: "secret.x").text
            == #"Permissions Violation for Publish to "secret.x""#)
        #expect(text(ServerError.subscriptionPermissionViolation(subject: "private.y", queue: nil).wireLine)
            == "-ERR 'Permissions Violation for Subscription to \"private.y\"'\r\n")
        #expect(ServerError.subscriptionPermissionViolation(subject: "private.y", queue: "q").text
            == #"Permissions Violation for Subscription to "private.y" using queue "q""#)
        #expect(ServerError.replyPermissionViolation(reply: "_R_.x").text
            == #"Permissions Violation for Publish with Reply of "_R_.x""#)
        for error in [ServerError.publishPermissionViolation(subject: "a"),
                      .subscriptionPermissionViolation(subject: "a", queue: "q"), .replyPermissionViolation(reply: "r")] {
            #expect(!error.closesConnection)
        }
    }

    @Test func parseErrorsMapToTheirWireErrorOrToASilentClose() {
        #expect(ServerError(ClientParseError.unknownOperation) == .unknownProtocolOperation)
        #expect(ServerError(ClientParseError.authorizationViolation) == .authorizationViolation)
        #expect(ServerError(ClientParseError.maxControlLineExceeded) == .maxControlLineExceeded)
        #expect(ServerError(ClientParseError.maxPayloadViolation) == .maxPayloadViolation)
        #expect(ServerError(ClientParseError.badArguments(.pub)) == nil)
        #expect(ServerError(ClientParseError.badArguments(.sub)) == nil)
    }

    @Test func goQuotingEscapesQuotesBackslashesAndControls() {
        #expect(ServerError.goQuoted(#"a"b\c"#) == #""a\"b\\c""#)
        #expect(ServerError.goQuoted("t\tn\nr\r") == #""t\tn\nr\r""#)
        #expect(ServerError.goQuoted("\u{01}\u{7F}") == #""\x01\x7f""#)
        #expect(ServerError.goQuoted("ünï") == "\"ünï\"")
        #expect(ServerError.goQuoted("") == "\"\"")
    }
}
