import Testing
@testable import NATSProtocol
import TestSupport

struct ServerCase: CustomTestStringConvertible, Sendable {
    let input: String
    let ops: [ServerOp]
    let result: ServerParseResult
    var testDescription: String { input.debugDescription }

    init(_ input: String, _ ops: [ServerOp], _ result: ServerParseResult = .ok) {
        self.input = input
        self.ops = ops
        self.result = result
    }
}

// The INFO line exactly as 2.9.10 sends it (note the space before CRLF).
let realInfoLine = "INFO {\"server_id\":\"NAAL\",\"version\":\"2.9.10\",\"proto\":1,\"headers\":true,\"max_payload\":1024} \r\n"

let validServerCases: [ServerCase] = [
    ServerCase(realInfoLine, [.info("{\"server_id\":\"NAAL\",\"version\":\"2.9.10\",\"proto\":1,\"headers\":true,\"max_payload\":1024} ")]),
    ServerCase("INFO {}\r\n", [.info("{}")]),
    ServerCase("info\t{}\n", [.info("{}")]),
    ServerCase("MSG foo 1 5\r\nhello\r\n", [.msg("foo", "1", "hello")]),
    ServerCase("MSG foo 1 reply.x 5\r\nhello\r\n", [.msg("foo", "1", "reply.x", "hello")]),
    ServerCase("msg\tfoo\t\t1  r \t 0\n\r\n", [.msg("foo", "1", "r", "")]),
    ServerCase("MsG foo 22 2\r\n\r\n\r\n", [.msg("foo", "22", "\r\n")]),
    ServerCase("HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", [.hmsg("foo", "1", "NATS/1.0\r\n\r\n", "hi")]),
    ServerCase("HMSG foo 2 reply.x 28 30\r\nNATS/1.0\r\nA: 1\r\nBee: two\r\n\r\nhi\r\n",
               [.hmsg("foo", "2", "reply.x", "NATS/1.0\r\nA: 1\r\nBee: two\r\n\r\n", "hi")]),
    // The 503 no-responders status exactly as 2.9.10 sends it.
    ServerCase("HMSG _INBOX.abc 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n", [.hmsg("_INBOX.abc", "1", "NATS/1.0 503\r\n\r\n", "")]),
    ServerCase("PING\r\nPONG\r\n+OK\r\n", [.ping, .pong, .ok]),
    ServerCase("ping\npong\n+ok\n", [.ping, .pong, .ok]),
    ServerCase("pOnG\r\nPiNg\r\n", [.pong, .ping]),
    ServerCase("-ERR 'Unknown Protocol Operation'\r\n", [.err("Unknown Protocol Operation")]),
    ServerCase("-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n", [.err("Permissions Violation for Publish to \"secret.x\"")]),
    ServerCase("-ERR  no quotes\r\n", [.err("no quotes")]),
    ServerCase("+OK\r\nMSG a 1 1\r\nx\r\nMSG b 2 r 0\r\n\r\nPING\r\n", [.ok, .msg("a", "1", "x"), .msg("b", "2", "r", ""), .ping]),
]

let failingServerCases: [ServerCase] = [
    ServerCase("XYZ\r\n", [], .error(.unknownOperation)),
    ServerCase("PUB foo 1\r\nx\r\n", [], .error(.unknownOperation)),
    ServerCase("SUB foo 1\r\n", [], .error(.unknownOperation)),
    ServerCase("MSGfoo 1 1\r\n", [], .error(.unknownOperation)),
    // PING and PONG part at their second letter; a later letter of the other name fails.
    ServerCase("PONG\r\nPINB\r\n", [.pong], .error(.unknownOperation)),
    ServerCase("POIG\r\n", [], .error(.unknownOperation)),
    ServerCase("PX\r\n", [], .error(.unknownOperation)),
    ServerCase("HM\r\n", [], .error(.unknownOperation)),
    ServerCase("-ERR\r\n", [], .error(.unknownOperation)),
    ServerCase("\r\n", [], .error(.unknownOperation)),
    ServerCase("MSG foo 1 5\r\nhelloX\r\n", [], .error(.unknownOperation)),
    ServerCase("MSG foo 1 5\r\nhello\nPING\r\n", [], .error(.unknownOperation)),
    ServerCase("PING\r\nMSG foo 1 1\r\nxy\r\n", [.ping], .error(.unknownOperation)),
    ServerCase("MSG foo 5\r\nhello\r\n", [], .error(.badArguments)),
    ServerCase("MSG foo 1 r x 5\r\n", [], .error(.badArguments)),
    ServerCase("MSG foo 1 -5\r\n", [], .error(.badArguments)),
    ServerCase("MSG foo 1 5a\r\n", [], .error(.badArguments)),
    ServerCase("MSG foo 1 99999999999999999999999\r\n", [], .error(.badArguments)),
    ServerCase("HMSG foo 1 2\r\nhi\r\n", [], .error(.badArguments)),
    ServerCase("HMSG foo 1 13 12\r\n", [], .error(.badArguments)),
    ServerCase("HMSG foo 1 x 12\r\n", [], .error(.badArguments)),
    ServerCase("HMSG a 1 r x 1 2\r\n", [], .error(.badArguments)),
    ServerCase("MSG foo 1 67108865\r\n", [], .error(.payloadTooLarge)),
]

@Suite("ServerParser")
struct ServerParserTests {
    @Test("valid server frames give the same ops in every chunking", arguments: validServerCases)
    func validFrames(_ c: ServerCase) {
        let run = ChunkingVerifier.verifyServer(wireBytes(c.input))
        #expect(run.ops == c.ops)
        #expect(run.result == c.result)
    }

    @Test("invalid server frames fail with the same error in every chunking", arguments: failingServerCases)
    func failingFrames(_ c: ServerCase) {
        let run = ChunkingVerifier.verifyServer(wireBytes(c.input))
        #expect(run.ops == c.ops)
        #expect(run.result == c.result)
    }

    @Test("an incomplete server frame waits for more bytes")
    func incompleteFrameWaits() {
        for input in ["MSG foo 1 5\r\nhel", "MSG foo 1 5\r\nhello\r", "INFO {", "HMSG a 1 2 3\r\n"] {
            let run = ChunkingVerifier.verifyServer(wireBytes(input))
            #expect(run.ops.isEmpty, "\(input.debugDescription)")
            #expect(run.result == .ok)
        }
    }

    @Test("control line limit applies to INFO and MSG arguments, also when split")
    func controlLineLimit() {
        var config = ServerConfig()
        config.maxControlLine = 32
        let okInfo = "INFO {\"" + String(repeating: "a", count: 28) + "\"}\r\n"   // 32-byte argument
        let badInfo = "INFO {\"" + String(repeating: "a", count: 29) + "\"}\r\n"  // 33
        #expect(ChunkingVerifier.verifyServer(wireBytes(okInfo), config).result == .ok)
        #expect(ChunkingVerifier.verifyServer(wireBytes(badInfo), config).result == .error(.controlLineTooLong))
        let endless = wireBytes("MSG ") + [UInt8](repeating: 0x62, count: 5000)
        let run = runServer(endless, cuts: Array(0..<endless.count), config)
        #expect(run.result == .error(.controlLineTooLong))
        #expect(run.peakCapacity <= 32 + 1 + 4096)
    }

    @Test("payload limit bounds the split buffer")
    func payloadLimit() {
        var config = ServerConfig()
        config.maxPayload = 100
        #expect(ChunkingVerifier.verifyServer(wireBytes("MSG a 1 101\r\n"), config).result == .error(.payloadTooLarge))
        let payload = String(repeating: "z", count: 100)
        let input = wireBytes("MSG a 1 100\r\n\(payload)\r\n")
        let run = runServer(input, cuts: Array(stride(from: 1, to: input.count, by: 3)), config)
        #expect(run.ops == [.msg("a", "1", payload)])
        #expect(run.peakCapacity <= 4096 + 32 + 100)
    }

    @Test("a handler returning false stops the server parser at once")
    func handlerStops() {
        var config = ServerConfig()
        config.stopAfter = 1
        let run = ChunkingVerifier.verifyServer(wireBytes("MSG a 1 1\r\nx\r\nPING\r\n"), config)
        #expect(run.ops == [.msg("a", "1", "x")])
        #expect(run.result == .stopped)
    }

    @Test("server parser errors are sticky")
    func errorsAreSticky() {
        var p = ServerParser()
        var rec = ServerRecorder()
        let r1 = wireBytes("BOGUS\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        let r2 = wireBytes("PING\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(r1 == .error(.unknownOperation))
        #expect(r2 == .error(.unknownOperation))
        #expect(rec.ops.isEmpty)
    }

    @Test("many messages in one read are delivered without buffering")
    func manyMessagesOneRead() {
        var input: [UInt8] = []
        var expected: [ServerOp] = []
        for k in 0..<500 {
            let payload = String(repeating: "m", count: k % 17)
            input += wireBytes("MSG s.\(k) \(k) \(payload.utf8.count)\r\n\(payload)\r\n")
            expected.append(.msg("s.\(k)", "\(k)", payload))
        }
        let run = runServer(input, cuts: [])
        #expect(run.ops == expected)
        #expect(run.peakCapacity == 0)
        let chunked = runServer(input, cuts: Array(stride(from: 5, to: input.count, by: 61)))
        #expect(chunked.ops == expected)
    }
}

@Suite("ServerParser robustness")
struct ServerParserRobustnessTests {
    @Test("random and mutated server frames never crash, chunk the same, and stay bounded")
    func fuzzLoop() {
        let seeds: [[UInt8]] = [
            realInfoLine, "MSG foo 1 5\r\nhello\r\n", "MSG foo 1 r 0\r\n\r\n", "HMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
            "HMSG a 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "PING\r\n", "PONG\r\n", "+OK\r\n", "-ERR 'Stale Connection'\r\n",
        ].map(wireBytes)
        var rng = SeededGenerator(seed: 0xBADC0DE)
        var config = ServerConfig()
        config.maxControlLine = 96
        config.maxPayload = 256
        let bound = config.maxControlLine + 1 + config.maxPayload + 4096
        var errors = 0
        for _ in 0..<3000 {
            var input: [UInt8] = []
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let frame = seeds.randomElement(using: &rng) ?? []
                input += Int.random(in: 0..<3, using: &rng) == 0 ? mutateFrame(frame, &rng) : frame
            }
            let whole = runServer(input, cuts: [], config)
            var cuts: [Int] = []
            var at = 0
            while true {
                at += Int.random(in: 1...9, using: &rng)
                if at >= input.count { break }
                cuts.append(at)
            }
            let chunked = runServer(input, cuts: cuts, config)
            #expect(chunked == whole, "input \(String(decoding: input, as: UTF8.self).debugDescription) cuts \(cuts)")
            #expect(whole.peakCapacity <= bound && chunked.peakCapacity <= bound)
            if case .error = whole.result { errors += 1 }
            if chunked != whole { break }
        }
        #expect(errors > 100 && errors < 3000)
    }
}
