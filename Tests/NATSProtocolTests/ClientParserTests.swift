import Testing
@testable import NATSProtocol
import TestSupport

// Every case goes through ChunkingVerifier: whole, byte by byte, every two-way split, random splits.
// Expected behaviour is nats-server 2.9.10's (checked against /usr/sbin/nats-server 2.9.10).

struct ClientCase: CustomTestStringConvertible, Sendable {
    let input: String
    let ops: [ClientOp]
    let result: ClientParseResult
    var testDescription: String { input.debugDescription }

    init(_ input: String, _ ops: [ClientOp], _ result: ClientParseResult = .ok) {
        self.input = input
        self.ops = ops
        self.result = result
    }
}

let validClientCases: [ClientCase] = [
    // PUB
    ClientCase("PUB foo 5\r\nhello\r\n", [.pub("foo", "hello")]),
    ClientCase("PUB foo bar 5\r\nhello\r\n", [.pub("foo", "bar", "hello")]),
    ClientCase("PUB\tfoo\tbar\t5\r\nhello\r\n", [.pub("foo", "bar", "hello")]),
    ClientCase("PUB   foo  \t bar \t\t 5   \r\nhello\r\n", [.pub("foo", "bar", "hello")]),
    ClientCase("pub foo 5\r\nhello\r\n", [.pub("foo", "hello")]),
    ClientCase("PuB foo 5\r\nhello\r\n", [.pub("foo", "hello")]),
    ClientCase("PUB foo 5\nhello\r\n", [.pub("foo", "hello")]),
    ClientCase("PUB foo 0\r\n\r\n", [.pub("foo", "")]),
    ClientCase("PUB foo 000000005\r\nhello\r\n", [.pub("foo", "hello")]),
    ClientCase("PUB foo 4\r\n\r\n\r\n\r\n", [.pub("foo", "\r\n\r\n")]),
    ClientCase("PUB foo\rbar 5\r\nhello\r\n", [.pub("foo\rbar", "hello")]),       // CR is not a PUB separator
    ClientCase("PUB foo\u{0C} 5\r\nhello\r\n", [.pub("foo\u{0C}", "hello")]),     // nor is form feed
    ClientCase("PUB a 1\r\nx\r\nPUB b r 2\r\nyz\r\n", [.pub("a", "x"), .pub("b", "r", "yz")]),
    // HPUB
    ClientCase("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", [.hpub("foo", "NATS/1.0\r\n\r\n", "hi")]),
    ClientCase("HPUB foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n", [.hpub("foo", "r", "NATS/1.0\r\n\r\n", "")]),
    ClientCase("hpub\tfoo\t\tr\t12  14\nNATS/1.0\r\n\r\nhi\r\n", [.hpub("foo", "r", "NATS/1.0\r\n\r\n", "hi")]),
    ClientCase("HPUB foo 0 2\r\nhi\r\n", [.hpub("foo", "", "hi")]),
    ClientCase("HPUB foo 2 2\r\nhi\r\n", [.hpub("foo", "hi", "")]),
    // SUB
    ClientCase("SUB foo 1\r\n", [.sub("foo", "1")]),
    ClientCase("SUB foo q 1\r\n", [.sub("foo", "q", "1")]),
    ClientCase("sub\tfoo\t\tq\t 1 \r\n", [.sub("foo", "q", "1")]),
    ClientCase("SuB foo.* 22\n", [.sub("foo.*", "22")]),
    ClientCase("SUB foo\rbar 1\r\n", [.sub("foo", "bar", "1")]),                    // CR splits SUB args
    ClientCase("SUB foo 1\rX\n", [.sub("foo", "1")]),                               // CR seen: byte before LF dropped
    // UNSUB
    ClientCase("UNSUB 1\r\n", [.unsub("1")]),
    ClientCase("UNSUB 1 5\r\n", [.unsub("1", 5)]),
    ClientCase("unsub\t1\t\t0\n", [.unsub("1", 0)]),
    ClientCase("UNSUB 1 abc\r\n", [.unsub("1", nil)]),
    ClientCase("UNSUB 1 -5\r\n", [.unsub("1", nil)]),
    ClientCase("UNSUB 1 0000000001\r\n", [.unsub("1", nil)]),                       // 10 digits: invalid size
    // CONNECT, INFO, PING/PONG, +OK, -ERR
    ClientCase("CONNECT {\"verbose\":false}\r\n", [.connect("{\"verbose\":false}")]),
    ClientCase("connect  \t{\"a\":1}\n", [.connect("{\"a\":1}")]),
    ClientCase("CONNECT{\"a\":1}\r\n", [.connect("{\"a\":1}")]),
    ClientCase("CONNECT \r\n", [.connect("\r")]),                                    // first arg byte is taken as is
    ClientCase("CONNECT {\"a\":\"x y\"}\r\nPING\r\n", [.connect("{\"a\":\"x y\"}"), .ping]),
    ClientCase("PING\r\n", [.ping]),
    ClientCase("ping\n", [.ping]),
    ClientCase("PINGX garbage\r\n", [.ping]),                                       // bytes to LF ignored
    ClientCase("PONG\r\nPoNg\r\n", [.pong, .pong]),
    ClientCase("pInG\r\npOnG\r\nhMsG x\r\n\r\n", [.ping, .pong, .pub("", "")]),
    ClientCase("+OK\r\n+ok junk\n", [.ok, .ok]),
    ClientCase("INFO {}\r\n", [.info("{}")]),
    ClientCase("INFO \t {\"x\":1}\r\n", [.info("{\"x\":1}")]),
    ClientCase("-ERR 'Stale Connection'\r\n", [.err("Stale Connection")]),
    ClientCase("-ERR  plain text\r\n", [.err("plain text")]),
    // client HMSG: no argument processing, size 0, publish with an empty subject
    ClientCase("HMSG foo 1 2 2\r\n\r\n", [.pub("", "")]),
    ClientCase("HMSG anything at all\r\n\r\nPING\r\n", [.pub("", ""), .ping]),
    // A mixed stream
    ClientCase("CONNECT {}\r\nSUB foo 1\r\nPUB foo 2\r\nab\r\nUNSUB 1 1\r\nPING\r\nPONG\r\n",
               [.connect("{}"), .sub("foo", "1"), .pub("foo", "ab"), .unsub("1", 1), .ping, .pong]),
]

let failingClientCases: [ClientCase] = [
    ClientCase("PUx", [], .error(.unknownOperation)),
    ClientCase("XYZ\r\n", [], .error(.unknownOperation)),
    ClientCase("\r\n", [], .error(.unknownOperation)),
    ClientCase(" PING\r\n", [], .error(.unknownOperation)),
    ClientCase("PIN\r\n", [], .error(.unknownOperation)),
    ClientCase("PUB\r\n", [], .error(.unknownOperation)),
    ClientCase("PUBX\r\n", [], .error(.unknownOperation)),
    // Names that share a first letter part only at the second: a later letter of another name fails.
    ClientCase("PUNG\r\n", [], .error(.unknownOperation)),
    ClientCase("PIB foo 1\r\nx\r\n", [], .error(.unknownOperation)),
    ClientCase("POB foo 1\r\nx\r\n", [], .error(.unknownOperation)),
    ClientCase("PINB\r\n", [], .error(.unknownOperation)),
    ClientCase("HMUB foo 0 0\r\n\r\n", [], .error(.unknownOperation)),
    ClientCase("HPSG foo 1 0 0\r\n\r\n", [], .error(.unknownOperation)),
    ClientCase("HX\r\n", [], .error(.unknownOperation)),
    ClientCase("UNSUB\r\n", [], .error(.unknownOperation)),
    ClientCase("UNSUB_2\r\n", [], .error(.unknownOperation)),
    ClientCase("-ERR\r\n", [], .error(.unknownOperation)),
    ClientCase("MSG foo 1 2\r\nhi\r\n", [], .error(.unknownOperation)),
    ClientCase("RS+ foo\r\n", [], .error(.unknownOperation)),
    ClientCase("LS+ foo\r\n", [], .error(.unknownOperation)),
    ClientCase("A+ foo\r\n", [], .error(.unknownOperation)),
    ClientCase("CX\r\n", [], .error(.unknownOperation)),
    ClientCase("HMSG foo 1 2 2\r\nhi\r\n", [], .error(.unknownOperation)),
    ClientCase("PING\r\nPUB foo 5\r\nhelloX\r\n", [.ping], .error(.unknownOperation)),
    ClientCase("PUB foo 5\r\nhello\nPING\r\n", [], .error(.unknownOperation)),
    ClientCase("PUB foo 5\r\nhello\r\r\n", [], .error(.unknownOperation)),
    ClientCase("PUB foo 2\r\nab\r\nPUB foo 2\r\na\r\n", [.pub("foo", "ab")], .error(.unknownOperation)),
    ClientCase("PUB foo\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB \r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB a b c 5\r\nhello\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB foo -1\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB foo +5\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB foo 5x\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB foo 0000000005\r\nhello\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB foo 99999999999999999999\r\n", [], .error(.badArguments(.pub))),
    ClientCase("PUB foo\r 5\nhello\r\n", [], .error(.badArguments(.pub))),          // CR seen: '5' dropped
    ClientCase("PUB foo 5\rX\nhello\r\n", [], .error(.badArguments(.pub))),         // size "5\r"
    ClientCase("PUB foo\nbar 5\r\n", [], .error(.badArguments(.pub))),
    ClientCase("HPUB foo 2\r\nhi\r\n", [], .error(.badArguments(.hpub))),
    ClientCase("HPUB foo 13 12\r\n", [], .error(.badArguments(.hpub))),
    ClientCase("HPUB foo x 12\r\n", [], .error(.badArguments(.hpub))),
    ClientCase("HPUB foo 1 x\r\n", [], .error(.badArguments(.hpub))),
    ClientCase("HPUB a b c 1 2\r\n", [], .error(.badArguments(.hpub))),
    ClientCase("HPUB foo 0 -2\r\n", [], .error(.badArguments(.hpub))),
    ClientCase("SUB foo\r\n", [], .error(.badArguments(.sub))),
    ClientCase("SUB a b c d\r\n", [], .error(.badArguments(.sub))),
    ClientCase("SUB \r\n", [], .error(.badArguments(.sub))),
    ClientCase("UNSUB 1 2 3\r\n", [], .error(.badArguments(.unsub))),
    ClientCase("UNSUB \r\n", [], .error(.badArguments(.unsub))),
    ClientCase("PUB foo 1048577\r\n", [], .error(.maxPayloadViolation)),
    ClientCase("PUB foo 999999999\r\n", [], .error(.maxPayloadViolation)),
    ClientCase("HPUB foo 0 1048577\r\n", [], .error(.maxPayloadViolation)),
    ClientCase("HPUB foo x 1048577\r\n", [], .error(.badArguments(.hpub))),         // sizes checked before the limit
]

@Suite("ClientParser")
struct ClientParserTests {
    @Test("valid frames give the same ops in every chunking", arguments: validClientCases)
    func validFrames(_ c: ClientCase) {
        let run = ChunkingVerifier.verifyClient(wireBytes(c.input))
        #expect(run.ops == c.ops)
        #expect(run.result == c.result)
    }

    @Test("invalid frames fail with the 2.9.10 error in every chunking", arguments: failingClientCases)
    func failingFrames(_ c: ClientCase) {
        let run = ChunkingVerifier.verifyClient(wireBytes(c.input))
        #expect(run.ops == c.ops)
        #expect(run.result == c.result)
    }

    @Test("an incomplete frame waits for more bytes and reports nothing")
    func incompleteFrameWaits() {
        for input in ["PUB foo 5\r\nhel", "PUB foo 5\r\nhello", "PUB foo 5\r\nhello\r", "SUB foo", "PING", "HPUB foo 1 2\r\n"] {
            let run = ChunkingVerifier.verifyClient(wireBytes(input))
            #expect(run.ops.isEmpty, "\(input.debugDescription)")
            #expect(run.result == .ok)
        }
    }

    @Test("errors are sticky: a later call returns the same error")
    func errorsAreSticky() {
        var p = ClientParser()
        var rec = ClientRecorder()
        let r1 = wireBytes("XPING\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        let r2 = wireBytes("PING\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(r1 == .error(.unknownOperation))
        #expect(r2 == .error(.unknownOperation))
        #expect(rec.ops.isEmpty)
    }

    @Test("a handler returning false stops parsing at once")
    func handlerStops() {
        var config = ClientConfig()
        config.stopAfter = 2
        let run = ChunkingVerifier.verifyClient(wireBytes("PING\r\nPUB a 1\r\nx\r\nPONG\r\nSUB a 1\r\n"), config)
        #expect(run.ops == [.ping, .pub("a", "x")])
        #expect(run.result == .stopped)
    }

    @Test("without negotiated headers an HPUB fails at its control line, before its arguments or payload",
          arguments: ["HPUB foo 12 14\r\n", "HPUB foo\r\n", "hpub foo reply 999999999 999999999\r\n"])
    func hpubWithoutHeadersFailsAtTheControlLine(frame: String) {
        var p = ClientParser()
        var rec = ClientRecorder(headers: false)
        let result = wireBytes("PUB a 1\r\nx\r\n" + frame).withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(result == .error(.badArguments(.hpub)))
        #expect(rec.ops == [.pub("a", "x")])
    }

    @Test("after .stopped the next call continues with the following op")
    func continuesAfterStop() {
        var p = ClientParser()
        var rec = ClientRecorder(stopAfter: 1)
        let r1 = wireBytes("PING\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        rec.stopAfter = .max
        let r2 = wireBytes("PONG\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(r1 == .stopped)
        #expect(r2 == .ok)
        #expect(rec.ops == [.ping, .pong])
    }

    // MARK: auth

    @Test("auth required: a first op other than CONNECT is an authorization violation at its first byte")
    func authFirst() {
        var config = ClientConfig()
        config.requireConnectFirst = true
        for input in ["PING\r\n", "P", "+OK\r\n", "INFO {}\r\n", "\r\n", "SUB foo 1\r\n", " CONNECT {}\r\n", "xyz"] {
            let run = ChunkingVerifier.verifyClient(wireBytes(input), config)
            #expect(run.result == .error(.authorizationViolation), "\(input.debugDescription)")
            #expect(run.ops.isEmpty)
        }
    }

    @Test("auth required: CONNECT (any case) is accepted and clears the rule")
    func authConnectClears() {
        var config = ClientConfig()
        config.requireConnectFirst = true
        let run = ChunkingVerifier.verifyClient(wireBytes("connect {\"user\":\"a\"}\r\nPING\r\nSUB x 1\r\n"), config)
        #expect(run.ops == [.connect("{\"user\":\"a\"}"), .ping, .sub("x", "1")])
        #expect(run.result == .ok)

        var p = config.makeParser()
        var rec = ClientRecorder()
        _ = wireBytes("CONNECT {}\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(p.requireConnectFirst == false)
    }

    @Test("auth required: a C that is not CONNECT is an unknown operation")
    func authCButNotConnect() {
        var config = ClientConfig()
        config.requireConnectFirst = true
        #expect(ChunkingVerifier.verifyClient(wireBytes("CX\r\n"), config).result == .error(.unknownOperation))
    }

    // MARK: limits

    @Test("control line: exactly the limit passes, one more byte fails, also when split")
    func controlLineLimit() {
        var config = ClientConfig()
        config.maxControlLine = 64
        let subj60 = String(repeating: "x", count: 60)
        let ok = "SUB \(subj60) 12\r\n"        // argument is 63 bytes
        let okEdge = "SUB \(subj60) 123\r\n"   // 64 bytes
        let bad = "SUB \(subj60) 1234\r\n"     // 65 bytes
        #expect(ChunkingVerifier.verifyClient(wireBytes(ok), config).ops == [.sub(subj60, "12")])
        #expect(ChunkingVerifier.verifyClient(wireBytes(okEdge), config).ops == [.sub(subj60, "123")])
        #expect(ChunkingVerifier.verifyClient(wireBytes(bad), config).result == .error(.maxControlLineExceeded))
        // The limit covers CONNECT, INFO, -ERR, HMSG too.
        for op in ["CONNECT ", "INFO ", "-ERR ", "HMSG ", "PUB ", "HPUB ", "UNSUB "] {
            let input = op + String(repeating: "y", count: 65) + "\r\n"
            #expect(ChunkingVerifier.verifyClient(wireBytes(input), config, randomRuns: 3).result == .error(.maxControlLineExceeded),
                    "\(op)")
        }
    }

    @Test("control line: an endless line without LF fails before the buffer grows past the limit")
    func endlessLineIsBounded() {
        var config = ClientConfig()
        config.maxControlLine = 128
        let input = wireBytes("SUB ") + [UInt8](repeating: 0x61, count: 10_000)
        let whole = runClient(input, cuts: [], config)
        let bytewise = runClient(input, cuts: Array(0..<input.count), config)
        #expect(whole.result == .error(.maxControlLineExceeded))
        #expect(bytewise.result == .error(.maxControlLineExceeded))
        #expect(bytewise.peakCapacity <= 128 + 1 + 4096)
        // A line of limit+1 bytes without LF could still end in a dropped CR: not an error yet.
        let edge = wireBytes("SUB ") + [UInt8](repeating: 0x61, count: 129)
        #expect(runClient(edge, cuts: Array(0..<edge.count), config).result == .ok)
    }

    @Test("PING, PONG and +OK skip any amount of trailing junk without buffering it")
    func pingJunkIsNotBuffered() {
        var config = ClientConfig()
        config.maxControlLine = 16
        let input = wireBytes("PING") + [UInt8](repeating: 0x7A, count: 5000) + wireBytes("\r\nPONG\r\n")
        let run = runClient(input, cuts: Array(stride(from: 1, to: input.count, by: 7)), config)
        #expect(run.ops == [.ping, .pong])
        #expect(run.peakCapacity == 0)
    }

    @Test("payload: the limit itself is accepted, split payloads are copied into a bounded buffer")
    func payloadLimit() {
        var config = ClientConfig()
        config.maxPayload = 1000
        let payload = String(repeating: "p", count: 1000)
        let input = wireBytes("PUB foo 1000\r\n\(payload)\r\n")
        let cuts = Array(stride(from: 3, to: input.count, by: 97))
        let run = runClient(input, cuts: cuts, config)
        #expect(run.ops == [.pub("foo", payload)])
        #expect(run.peakCapacity <= config.maxControlLine + 1 + 1000 + 4096)
        #expect(runClient(wireBytes("PUB foo 1001\r\n"), cuts: [], config).result == .error(.maxPayloadViolation))
        #expect(runClient(wireBytes("HPUB foo 10 1001\r\n"), cuts: [], config).result == .error(.maxPayloadViolation))
    }

    @Test("the split buffer is released after a big split message")
    func bigBufferReleased() {
        var p = ClientParser()
        var rec = ClientRecorder()
        let payload = [UInt8](repeating: 0x41, count: 100_000)
        let head = wireBytes("PUB big 100000\r\n")
        _ = head.withUnsafeBytes { p.parse($0, into: &rec) }
        _ = payload.withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(p.bufferCapacity >= 100_000)
        let r = wireBytes("\r\n").withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(r == .ok)
        #expect(rec.ops == [.pub(subject: wireBytes("big"), reply: [], payload: payload)])
        #expect(p.bufferCapacity == 0)
        #expect(p.bufferedByteCount == 0)
    }

    @Test("unsplit frames are not copied: views point into the caller's bytes")
    func zeroCopyViews() {
        struct Probe: ClientOpHandler {
            var lo: UnsafeRawPointer?
            var hi: UnsafeRawPointer?
            var inside = 0
            mutating func check(_ v: UnsafeRawBufferPointer) {
                guard let b = v.baseAddress, let lo, let hi else { return }
                if b >= lo && b + v.count <= hi { inside += 1 }
            }
            mutating func connect(json: UnsafeRawBufferPointer) -> Bool { check(json); return true }
            mutating func pub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
                check(subject); check(reply); check(payload); return true
            }
            mutating func hpub(subject: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                               headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
                check(subject); check(headers); check(payload); return true
            }
            mutating func sub(subject: UnsafeRawBufferPointer, queue: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer) -> Bool {
                check(subject); check(queue); check(sid); return true
            }
            mutating func unsub(sid: UnsafeRawBufferPointer, max: Int?) -> Bool { check(sid); return true }
            mutating func ping() -> Bool { true }
            mutating func pong() -> Bool { true }
            mutating func info(json: UnsafeRawBufferPointer) -> Bool { true }
            mutating func ok() -> Bool { true }
            mutating func err(message: UnsafeRawBufferPointer) -> Bool { true }
        }
        let input = wireBytes("CONNECT {}\r\nPUB a r 2\r\nhi\r\nHPUB b 5 7\r\nH\r\n\r\nxy\r\nSUB c q 9\r\nUNSUB 9\r\n")
        var parser = ClientParser()
        var probe = Probe()
        input.withUnsafeBytes { buf in
            probe.lo = buf.baseAddress
            probe.hi = buf.baseAddress.map { $0 + buf.count }
            #expect(parser.parse(buf, into: &probe) == .ok)
        }
        #expect(probe.inside == 1 + 3 + 3 + 3 + 1)
        #expect(parser.bufferCapacity == 0)
    }
}

// MARK: - Robustness: random bytes and mutated frames

/// Valid frames the mutation loop starts from.
let clientSeedFrames: [[UInt8]] = [
    "CONNECT {\"verbose\":false,\"headers\":true}\r\n", "PUB foo 5\r\nhello\r\n", "PUB foo bar 3\r\nabc\r\n",
    "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "SUB foo q 1\r\n", "UNSUB 1 10\r\n", "PING\r\n", "PONG\r\n",
    "+OK\r\n", "-ERR 'x'\r\n", "INFO {}\r\n", "HMSG a 1 2 2\r\n\r\n", "PUB foo 0\r\n\r\n",
].map(wireBytes)

/// Applies a few random byte edits (flip, insert, delete, duplicate a range) to `frame`.
func mutateFrame(_ frame: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
    var f = frame
    let alphabet = wireBytes(" \t\r\n0123456789-+PUBSHMGICONTXEKRpubs'{}.*>")
    for _ in 0..<Int.random(in: 1...4, using: &rng) {
        let pos = f.isEmpty ? 0 : Int.random(in: 0..<f.count, using: &rng)
        switch Int.random(in: 0..<5, using: &rng) {
        case 0 where !f.isEmpty: f[pos] = UInt8.random(in: 0...255, using: &rng)
        case 1: f.insert(alphabet.randomElement(using: &rng) ?? 0x20, at: pos)
        case 2 where !f.isEmpty: f.remove(at: pos)
        case 3 where !f.isEmpty:
            let end = Swift.min(f.count, pos + Int.random(in: 1...8, using: &rng))
            f.insert(contentsOf: f[pos..<end], at: pos)
        default: f[pos...].reverse()
        }
    }
    return f
}

@Suite("ClientParser robustness")
struct ClientParserRobustnessTests {
    @Test("random bytes and mutated frames never crash, chunk the same, and keep the split buffer bounded")
    func fuzzLoop() {
        var rng = SeededGenerator(seed: 0xC0FFEE)
        var config = ClientConfig()
        config.maxControlLine = 64
        config.maxPayload = 256
        let bound = config.maxControlLine + 1 + config.maxPayload + 4096
        var errors = 0
        for iteration in 0..<3000 {
            var input: [UInt8] = []
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                if Int.random(in: 0..<4, using: &rng) == 0 {
                    input += (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                } else {
                    let frame = clientSeedFrames.randomElement(using: &rng) ?? []
                    input += Bool.random(using: &rng) ? frame : mutateFrame(frame, &rng)
                }
            }
            config.requireConnectFirst = iteration % 5 == 0
            let whole = runClient(input, cuts: [], config)
            var cuts: [Int] = []
            var at = 0
            while true {
                at += Int.random(in: 1...9, using: &rng)
                if at >= input.count { break }
                cuts.append(at)
            }
            let chunked = runClient(input, cuts: cuts, config)
            #expect(chunked == whole, "input \(String(decoding: input, as: UTF8.self).debugDescription) cuts \(cuts)")
            #expect(whole.peakCapacity <= bound && chunked.peakCapacity <= bound)
            if case .error = whole.result { errors += 1 }
            if chunked != whole { break }
        }
        // The loop must exercise both outcomes, or it tests nothing.
        #expect(errors > 100 && errors < 3000)
    }

    @Test("a payload announced at the limit but cut short keeps only limit-bounded memory")
    func announcedPayloadBounded() {
        var p = ClientParser(maxControlLine: 64, maxPayload: 1_000_000)
        var rec = ClientRecorder()
        let r = wireBytes("PUB a 1000000\r\nxyz").withUnsafeBytes { p.parse($0, into: &rec) }
        #expect(r == .ok)
        #expect(p.bufferCapacity <= 64 + 1 + 1_000_000 + 4096)
        #expect(p.bufferedByteCount == "a 1000000".utf8.count + 3)
    }
}
