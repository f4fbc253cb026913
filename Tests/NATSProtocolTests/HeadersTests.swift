import Testing
@testable import NATSProtocol

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct HeadersTests {
    static let canonicalBlocks = [
        "NATS/1.0\r\n\r\n",
        "NATS/1.0 503\r\n\r\n",
        "NATS/1.0 404 No Messages\r\n\r\n",
        "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n",
        "NATS/1.0\r\nA: 1\r\nB: two words\r\na: 3\r\n\r\n",
        "NATS/1.0\r\nX-Unicode: välue ✓\r\n\r\n",
        "NATS/1.0\r\nEmpty: \r\n\r\n",
    ]

    @Test(arguments: canonicalBlocks)
    func canonicalBlocksRoundTripByteExactly(block: String) throws {
        let parsed = try Headers(parsing: bytes(block))
        #expect(parsed.serialized() == bytes(block))
        #expect(parsed.serializedCount == bytes(block).count)
        // Rebuilding the same content from scratch produces the same bytes too.
        var rebuilt = Headers()
        try rebuilt.setStatus(parsed.status, description: parsed.statusDescription)
        for field in parsed.fields { try rebuilt.append(name: field.name, value: field.value) }
        #expect(rebuilt == parsed)
        #expect(rebuilt.serialized() == bytes(block))
        #expect(rebuilt.serializedCount == bytes(block).count)
    }

    @Test func nonCanonicalSpacingIsPreservedUntilTheHeadersChange() throws {
        let block = "NATS/1.0  503   No Responders \r\nName:value\r\nOther:\t spaced \t\r\n\r\n"
        var parsed = try Headers(parsing: bytes(block))
        #expect(parsed.status == 503)
        #expect(parsed.statusDescription == "No Responders")
        #expect(parsed["name"] == "value")
        #expect(parsed["OTHER"] == "spaced")
        #expect(parsed.serialized() == bytes(block))
        try parsed.append(name: "New", value: "x")
        #expect(parsed.serialized() == bytes("NATS/1.0 503 No Responders\r\nName: value\r\nOther: spaced\r\nNew: x\r\n\r\n"))
    }

    @Test func statusAndDescriptionAreParsed() throws {
        let noResponders = try Headers(parsing: bytes("NATS/1.0 503\r\n\r\n"))
        #expect(noResponders.status == 503)
        #expect(noResponders.statusDescription == nil)
        #expect(noResponders.fields.isEmpty)
        let plain = try Headers(parsing: bytes("NATS/1.0\r\nA: b\r\n\r\n"))
        #expect(plain.status == nil)
        #expect(plain.statusDescription == nil)
        let described = try Headers(parsing: bytes("NATS/1.0 100 Idle Heartbeat\r\n\r\n"))
        #expect(described.status == 100)
        #expect(described.statusDescription == "Idle Heartbeat")
    }

    @Test func lookupIsCaseInsensitiveAndOrderedAndMultiValued() throws {
        let headers = try Headers(parsing: bytes("NATS/1.0\r\nTrace-Id: 1\r\nOther: x\r\ntrace-id: 2\r\nTRACE-ID: 3\r\n\r\n"))
        #expect(headers["TRACE-id"] == "1")
        #expect(headers.values(for: "trace-ID") == ["1", "2", "3"])
        #expect(headers.fields.map(\.name) == ["Trace-Id", "Other", "trace-id", "TRACE-ID"])
        #expect(headers["missing"] == nil)
        #expect(headers.values(for: "missing").isEmpty)
    }

    @Test func editsKeepOrderAndCase() throws {
        var headers = try Headers([("A", "1"), ("b", "2"), ("a", "3")])
        try headers.set(name: "A", value: "9")
        #expect(headers.fields == [HeaderField(name: "A", value: "9"), HeaderField(name: "b", value: "2")])
        #expect(headers.remove(name: "B") == 1)
        #expect(headers.remove(name: "nothing") == 0)
        try headers.set(name: "New", value: "v")
        #expect(headers.serialized() == bytes("NATS/1.0\r\nA: 9\r\nNew: v\r\n\r\n"))
        try headers.setStatus(503)
        #expect(headers.serialized() == bytes("NATS/1.0 503\r\nA: 9\r\nNew: v\r\n\r\n"))
        try headers.setStatus(nil)
        #expect(headers.status == nil)
    }

    @Test func invalidEditsAreRefusedAndChangeNothing() throws {
        var headers = try Headers([("A", "1")])
        let before = headers
        #expect(throws: HeadersError.invalidName(line: 3)) { try headers.append(name: "", value: "x") }
        #expect(throws: HeadersError.invalidName(line: 3)) { try headers.append(name: "has space", value: "x") }
        #expect(throws: HeadersError.invalidName(line: 3)) { try headers.append(name: "co:lon", value: "x") }
        #expect(throws: HeadersError.invalidValue(line: 3)) { try headers.append(name: "Ok", value: "a\r\nInjected: 1") }
        #expect(throws: HeadersError.invalidValue(line: 3)) { try headers.set(name: "Ok", value: "\n") }
        #expect(throws: HeadersError.invalidStatusValue) { try headers.setStatus(99) }
        #expect(throws: HeadersError.invalidStatusValue) { try headers.setStatus(1000) }
        #expect(throws: HeadersError.invalidStatusValue) { try headers.setStatus(nil, description: "x") }
        #expect(throws: HeadersError.invalidStatusValue) { try headers.setStatus(200, description: "a\r\n") }
        #expect(headers == before)
        #expect(headers.serialized() == bytes("NATS/1.0\r\nA: 1\r\n\r\n"))
    }

    static let malformed: [(String, HeadersError)] = [
        ("", .missingVersion),
        ("HTTP/1.1\r\n\r\n", .missingVersion),
        ("NATS/1.1\r\n\r\n", .missingVersion),
        ("NATS/1.0503\r\n\r\n", .missingVersion),
        ("NATS/1.0", .invalidLineEnding(line: 1)),
        ("NATS/1.0\n\n", .invalidLineEnding(line: 1)),
        ("NATS/1.0\r\n", .unterminated),
        ("NATS/1.0\r\nA: b\r\n", .unterminated),
        ("NATS/1.0\r\nA: b", .invalidLineEnding(line: 2)),
        ("NATS/1.0\r\nA: b\n\r\n", .invalidLineEnding(line: 2)),
        ("NATS/1.0\r\nA: b\rc\r\n\r\n", .invalidLineEnding(line: 2)),
        ("NATS/1.0 50\r\n\r\n", .invalidStatus(line: 1)),
        ("NATS/1.0 abc\r\n\r\n", .invalidStatus(line: 1)),
        ("NATS/1.0 5031\r\n\r\n", .invalidStatus(line: 1)),
        ("NATS/1.0\r\nNoColon\r\n\r\n", .missingColon(line: 2)),
        ("NATS/1.0\r\n: empty name\r\n\r\n", .invalidName(line: 2)),
        ("NATS/1.0\r\nBad Name: x\r\n\r\n", .invalidName(line: 2)),
        ("NATS/1.0\r\nÜmlaut: x\r\n\r\n", .invalidName(line: 2)),
        ("NATS/1.0\r\nA: 1\r\n continued\r\n\r\n", .continuationLine(line: 3)),
        ("NATS/1.0\r\nA: b\u{01}\r\n\r\n", .invalidValue(line: 2)),
        ("NATS/1.0\r\n\r\nextra", .trailingBytes),
    ]

    @Test(arguments: malformed)
    func malformedBlocksGiveAClearError(block: String, expected: HeadersError) {
        #expect(throws: expected) { try Headers(parsing: bytes(block)) }
    }

    @Test func invalidUTF8IsReportedWithItsLine() {
        var block = bytes("NATS/1.0\r\nA: ")
        block.append(contentsOf: [0xC3, 0x28])
        block.append(contentsOf: bytes("\r\n\r\n"))
        #expect(throws: HeadersError.invalidUTF8(line: 2)) { try Headers(parsing: block) }
    }

    @Test func serializedBlockWorksInsideHmsg() throws {
        var headers = Headers()
        try headers.append(name: "Nats-Msg-Id", value: "42")
        var out: [UInt8] = []
        let block = headers.serialized()
        Encoder.hmsg(&out, subject: "s", sid: "1", headers: block, payload: bytes("hi"))
        #expect(out == bytes("HMSG s 1 29 31\r\nNATS/1.0\r\nNats-Msg-Id: 42\r\n\r\nhi\r\n"))
        #expect(try Headers(parsing: block) == headers)
    }
}
