// Black-box wire compatibility: each scenario of `Scenarios` is played against our broker and against
// nats-server 2.9.10; the normalized byte streams and the closes must be identical.
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let referenceCondition = ConditionTrait.enabled(
    if: Peers.referenceAvailable || Peers.required,
    "nats-server 2.9.10 is not installed (REQUIRE_PEERS=1 turns this into a failure)")

@Suite("Wire transcripts: our broker against nats-server 2.9.10")
struct TranscriptCompatibilityTests {
    @Test("our broker sends the same bytes and closes the same connections as nats-server 2.9.10",
          referenceCondition, arguments: Scenarios.comparable)
    func oursMatchesReference(_ scenario: Scenario) async throws {
        try #require(Peers.referenceAvailable, "nats-server 2.9.10 missing at \(Peers.referencePath)")
        await ConcurrencyGate.scenarios.acquire()
        async let referenceRun = runBlocking { try ScenarioRunner.run(scenario, on: .reference) }
        async let oursRun = runBlocking { try ScenarioRunner.run(scenario, on: .ours) }
        let outcome: Result<([ConnectionTranscript], [ConnectionTranscript]), any Error>
        do { outcome = .success(try await (referenceRun, oursRun)) } catch { outcome = .failure(error) }
        await ConcurrencyGate.scenarios.release()
        let (reference, ours) = try outcome.get()

        let expected = scenario.expectedTranscripts
        #expect(reference == expected, """
            the table disagrees with nats-server 2.9.10 (fix the scenario):
            \(ScenarioRunner.describeDifference(scenario: scenario, expected: expected, expectedLabel: "table",
                                                actual: reference, actualLabel: "nats-server"))
            """)
        if ours != reference {
            let difference = ScenarioRunner.describeDifference(
                scenario: scenario, expected: reference, expectedLabel: "nats-server 2.9.10",
                actual: ours, actualLabel: "ours")
            ScenarioRunner.report(difference)
            recordDifference(difference, name: scenario.name)
        } else if KnownDifferences.reason(for: scenario.name) != nil {
            print("compat: \"\(scenario.name)\" now matches nats-server 2.9.10; drop it from KnownDifferences")
        }
    }

    /// Cases that need a nats-server config file (max_payload, max_connections, ping_interval...):
    /// checked against 2.9.10 only until our broker declares the `config` capability
    /// (`NATS_SERVER_CAPABILITIES=config`), when they move to `oursMatchesReference`.
    @Test("nats-server 2.9.10 behaves as the table says for cases our broker cannot be configured for yet",
          referenceCondition, arguments: Scenarios.referenceOnly)
    func referenceMatchesTable(_ scenario: Scenario) async throws {
        try #require(Peers.referenceAvailable, "nats-server 2.9.10 missing at \(Peers.referencePath)")
        await ConcurrencyGate.scenarios.acquire()
        let outcome: Result<[ConnectionTranscript], any Error>
        do {
            outcome = .success(try await runBlocking { try ScenarioRunner.run(scenario, on: .reference) })
        } catch {
            outcome = .failure(error)
        }
        await ConcurrencyGate.scenarios.release()
        let reference = try outcome.get()
        let expected = scenario.expectedTranscripts
        #expect(reference == expected, """
            the table disagrees with nats-server 2.9.10 (fix the scenario):
            \(ScenarioRunner.describeDifference(scenario: scenario, expected: expected, expectedLabel: "table",
                                                actual: reference, actualLabel: "nats-server"))
            """)
    }
}

@Suite("Transcript normalization")
struct NormalizationTests {
    @Test("INFO per-run values become placeholders and field order and the trailing space are kept")
    func infoNormalization() {
        let line = #"INFO {"server_id":"NABC","server_name":"NABC","version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576,"client_id":5,"client_ip":"127.0.0.1"} "# + "\r\n"
        let normalized = String(decoding: InfoNormalizer.normalize(Array(line.utf8)), as: UTF8.self)
        #expect(normalized == #"INFO {"server_id":"<server_id>","server_name":"<server_id>","version":"2.9.10","proto":1,"go":"<go>","host":"<host>","port":<port>,"headers":true,"max_payload":1048576,"client_id":<client_id>,"client_ip":"<client_ip>"} "# + "\r\n")
    }

    @Test("an explicit server_name and field order differences survive normalization")
    func infoKeepsDifferences() {
        let a = #"INFO {"server_id":"X","server_name":"mine","proto":1} "# + "\r\n"
        let b = #"INFO {"proto":1,"server_id":"Y","server_name":"mine"} "# + "\r\n"
        let na = String(decoding: InfoNormalizer.normalize(Array(a.utf8)), as: UTF8.self)
        let nb = String(decoding: InfoNormalizer.normalize(Array(b.utf8)), as: UTF8.self)
        #expect(na.contains(#""server_name":"mine""#))
        #expect(na != nb)
    }

    @Test("MSG payloads containing CRLF and PING text stay inside their frame")
    func framesKeepPayloads() {
        let stream = Array("MSG a 1 8\r\nPING\r\nab\r\nPING\r\nPONG\r\n".utf8)
        let frames = Frames.split(stream).map { String(decoding: $0, as: UTF8.self) }
        #expect(frames == ["MSG a 1 8\r\nPING\r\nab\r\n", "PING\r\n", "PONG\r\n"])
        #expect(Normalizer.normalize(stream, keepServerPings: false, unordered: false)
                == "MSG a 1 8\\r\\n\nPING\\r\\n\nab\\r\\n\nPONG\\r\\n\n")
    }

    @Test("JetStream times become placeholders, the zero time stays, and the MSG size follows the new payload")
    func jetStreamTimes() {
        let json = #"{"created":"2026-12-07T18:56:36.7733Z","state":{"first_ts":"0001-01-01T00:00:00Z","last_ts":"2026-12-07T18:56:37Z","messages":1}}"#
        let frame = Array("MSG r.1 1 \(json.utf8.count)\r\n\(json)\r\n".utf8)
        let normalized = String(decoding: JetStreamNormalizer.normalize(frame, generatedNames: false), as: UTF8.self)
        let expected = #"{"created":"<time>","state":{"first_ts":"0001-01-01T00:00:00Z","last_ts":"<time>","messages":1}}"#
        #expect(normalized == "MSG r.1 1 \(expected.utf8.count)\r\n\(expected)\r\n")
        // A frame whose announced size is not its payload's is left alone, so the difference shows.
        let wrong = Array("MSG r.1 1 5\r\n\(json)\r\n".utf8)
        #expect(JetStreamNormalizer.normalize(wrong, generatedNames: false) == wrong)
    }

    @Test("an ack subject's timestamp and a Direct Get's Nats-Time-Stamp are normalized, both HMSG sizes follow")
    func jetStreamAckSubjectAndHeaders() {
        let delivery = Array("MSG s.a 2 $JS.ACK.S.c.1.3.3.1796669808130082849.0 5\r\nthree\r\n".utf8)
        #expect(String(decoding: JetStreamNormalizer.normalize(delivery, generatedNames: false), as: UTF8.self)
                == "MSG s.a 2 $JS.ACK.S.c.1.3.3.<ts>.0 5\r\nthree\r\n")
        let block = "NATS/1.0\r\nNats-Stream: S\r\nNats-Time-Stamp: 2026-12-07T18:56:17.65548126Z\r\n\r\n"
        let direct = Array("HMSG r.1 1  \(block.utf8.count) \(block.utf8.count + 2)\r\n\(block)yo\r\n".utf8)
        let newBlock = "NATS/1.0\r\nNats-Stream: S\r\nNats-Time-Stamp: <time>\r\n\r\n"
        #expect(String(decoding: JetStreamNormalizer.normalize(direct, generatedNames: false), as: UTF8.self)
                == "HMSG r.1 1  \(newBlock.utf8.count) \(newBlock.utf8.count + 2)\r\n\(newBlock)yo\r\n")
    }

    @Test("generated consumer names are replaced only when asked, and other names never")
    func jetStreamGeneratedNames() {
        let json = #"{"stream_name":"S","name":"qfIyEenG","config":{"durable_name":"dd"}}"#
        let frame = Array("MSG r.1 1 \(json.utf8.count)\r\n\(json)\r\n".utf8)
        #expect(JetStreamNormalizer.normalize(frame, generatedNames: false) == frame)
        let named = String(decoding: JetStreamNormalizer.normalize(frame, generatedNames: true), as: UTF8.self)
        #expect(named.contains(#""name":"<name>""#) && named.contains(#""durable_name":"dd""#))
        let ack = Array("MSG s.a 1 $JS.ACK.S.qfIyEenG.1.1.1.17966.0 1\r\nx\r\n".utf8)
        #expect(String(decoding: JetStreamNormalizer.normalize(ack, generatedNames: true), as: UTF8.self)
                == "MSG s.a 1 $JS.ACK.S.<name>.1.1.1.<ts>.0 1\r\nx\r\n")
    }

    @Test("non-printable bytes are escaped so that no difference is hidden")
    func escaping() {
        #expect(Normalizer.escape([0x00, 0x41, 0xFF, 0x09]) == "\\x00A\\xff\\t")
    }
}

@Suite("Harness")
struct HarnessTests {
    @Test("a listener is attributed to the process that owns it, and to no other")
    func listenerOwnership() throws {
        let port = try BrokerProcess.freePort()
        #expect(!BrokerProcess.process(getpid(), listensOn: port))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(fd, 1) == 0)
        #expect(BrokerProcess.process(getpid(), listensOn: port))
        #expect(!BrokerProcess.process(1, listensOn: port))
    }

    @Test("the jetstream capability probe says yes for nats-server 2.9.10 -js", referenceCondition)
    func jetStreamProbe() throws {
        try #require(Peers.referenceAvailable, "nats-server 2.9.10 missing at \(Peers.referencePath)")
        #expect(Peers.announcesJetStream(.reference))
    }

    @Test("/proc files are read to the end, past the first page")
    func procFilesAreReadWhole() throws {
        // Enough listeners that /proc/net/tcp outgrows one 4 KiB page (about 27 rows).
        var listeners: [Int32] = []
        defer { listeners.forEach { close($0) } }
        for _ in 0..<40 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            try #require(fd >= 0)
            listeners.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try #require(bound == 0 && listen(fd, 1) == 0)
        }
        let text = try #require(BrokerProcess.readProcFile("/proc/net/tcp"))
        #expect(text.split(separator: "\n").count > 40)
        #expect(text.utf8.count > 4096)
    }
}
