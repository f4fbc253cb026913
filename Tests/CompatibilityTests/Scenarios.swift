// The table of wire scenarios. Each one is run against nats-server 2.9.10 and our broker; `expect`
// documents what 2.9.10 sends (checked on every run, so a wrong row fails against the reference).
// Sources: ../shared/reference/samples/protocol_transcripts.txt and probes of Debian's 2.9.10.
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One action of a scenario on client connection `on` (opened, and its INFO read, on first use).
enum Step: Sendable {
    /// Open the connection and read the INFO line.
    case open(on: Int = 0)
    /// Write the bytes and read nothing.
    case send(String, on: Int = 0)
    /// Write `text` + `PING\r\n` in one write, then read until the PONG (the barrier), a close or the deadline.
    case exchange(String, on: Int = 0)
    /// Write `text` as it is (it carries its own ping), then read until one more PONG.
    case sendAwaitingPong(String, on: Int = 0)
    /// Write the bytes, then read until the broker closes (or the deadline).
    case sendExpectingClose(String, on: Int = 0)
    /// Write nothing; read until the broker closes (or the deadline).
    case awaitClose(on: Int = 0)
    /// Read until the broker sends a PING of its own.
    case awaitServerPing(on: Int = 0)
    /// Send a signal to the broker process (SIGUSR2: lame duck mode); `on` is the connection opened
    /// first, if not yet.
    case signalBroker(Int32, on: Int = 0)
    /// Read until the broker sends one more INFO (an asynchronous one).
    case awaitInfo(on: Int = 0)
    /// Write `text` + `PING\r\n`, then read until the PONG and `replies` more MSG/HMSG frames: JetStream
    /// answers API requests, PubAcks and deliveries after the PONG that follows them.
    case request(String, replies: Int = 1, on: Int = 0)

    var connection: Int {
        switch self {
        case .open(let on), .send(_, let on), .exchange(_, let on), .sendAwaitingPong(_, let on),
             .sendExpectingClose(_, let on), .awaitClose(let on), .awaitServerPing(let on),
             .signalBroker(_, let on), .awaitInfo(let on), .request(_, _, let on):
            on
        }
    }
}

/// What nats-server 2.9.10 sends on one connection after its INFO line, and whether it closes.
struct Expect: Sendable {
    var output: String
    var closed: Bool

    static func open(_ output: String) -> Expect { Expect(output: output, closed: false) }
    static func closed(_ output: String) -> Expect { Expect(output: output, closed: true) }
}

struct Scenario: Sendable, CustomTestStringConvertible {
    var name: String
    var config: BrokerConfig = .plain
    var steps: [Step]
    /// One entry per connection, in connection order.
    var expect: [Expect]
    /// Keep the broker's own PINGs in the transcript (keep-alive scenarios only).
    var keepServerPings = false
    /// Compare frames as a multiset: 2.9.10 keeps the plain subscriptions of a subject in a Go map, so
    /// the delivery order across different subscriptions varies from run to run.
    var unordered = false
    /// Consumer names the broker generates (8 letters and digits: legacy ephemerals) become `<name>`;
    /// the scenario names its own consumers with other lengths.
    var generatedNames = false

    var testDescription: String { name }

    var normalization: Normalization {
        Normalization(keepServerPings: keepServerPings, unordered: unordered, jetstream: config.jetstream,
                      generatedNames: generatedNames)
    }

    /// The INFO line 2.9.10 sends for this config, already normalized.
    var expectedInfo: String {
        var maxPayload = 1_048_576
        for line in config.configLines where line.hasPrefix("max_payload:") {
            if line.contains("1KB") { maxPayload = 1024 }
        }
        let authRequired: Bool
        switch config.auth {
        case .none: authRequired = config.configLines.contains { $0.hasPrefix("authorization") || $0.hasPrefix("accounts") }
        case .user, .token: authRequired = true
        }
        let name = config.serverName ?? "<server_id>"
        return #"INFO {"server_id":"<server_id>","server_name":"\#(name)","version":"2.9.10","proto":1,"go":"<go>","#
            + #""host":"<host>","port":<port>,"headers":\#(!config.configLines.contains("no_header_support: true")),"#
            + (authRequired ? #""auth_required":true,"# : "")
            + #""max_payload":\#(maxPayload),"# + (config.jetstream ? #""jetstream":true,"# : "")
            + #""client_id":<client_id>,"client_ip":"<client_ip>""#
            + (config.hasNKeyUsers ? #","nonce":"<nonce>""# : "") + "} \r\n"
    }

    var expectedTranscripts: [ConnectionTranscript] {
        expect.map {
            ConnectionTranscript(
                output: Normalizer.normalize(Array((expectedInfo + $0.output).utf8), normalization),
                closed: $0.closed)
        }
    }
}

private let crlf = "\r\n"
private let quiet = #"CONNECT {"verbose":false}"# + crlf
private let quietHeaders = #"CONNECT {"verbose":false,"headers":true}"# + crlf
private let queueUsers = BrokerConfig(configLines: [
    "authorization {",
    "  users = [",
    #"    {user: q, password: pw, permissions: {subscribe: ["foo", "foo v1", "bar.* v.*", "baz v*", "only  q1"]}}"#,
    #"    {user: d, password: pw, permissions: {subscribe: {deny: ["dd v1", "both", "both v1", "x.> v2"]}}}"#,
    "  ]",
    "}",
])
private let noResponders = #"CONNECT {"verbose":false,"headers":true,"no_responders":true}"# + crlf
private let unknownOp = "-ERR 'Unknown Protocol Operation'\r\n"
private let authViolation = "-ERR 'Authorization Violation'\r\n"
/// `NATS/1.0\r\nA: b\r\nA: c\r\nX: 1\r\n\r\n` is 30 bytes.
private let multiHeader = "NATS/1.0\r\nA: b\r\nA: c\r\nX: 1\r\n\r\n"
private let alice = BrokerConfig(auth: .user("alice", "secret"))
private let tokenAuth = BrokerConfig(auth: .token("s3cr3t"))
private let kate = BrokerConfig(auth: .user("Kate", "Kelvin"))
private let kateToken = BrokerConfig(auth: .token("Kate"))
private let kateUsers = BrokerConfig(configLines: ["authorization {", "  users = [ {user: Kate, password: pw} ]", "}"])

enum Scenarios {
    static let all: [Scenario] = basics + parserCorners + signals + errors + headersAndNoResponders + delivery + auth + configured
        + NKeyScenarios.all
        + jetStream + accounts

    /// Scenarios our broker can be started for (its capabilities cover the config).
    static var comparable: [Scenario] {
        all.filter { $0.config.requiredCapabilities.isSubset(of: Peers.oursCapabilities) }
    }

    /// Scenarios only nats-server can run today (they need a config file our broker does not read yet).
    static var referenceOnly: [Scenario] {
        all.filter { !$0.config.requiredCapabilities.isSubset(of: Peers.oursCapabilities) }
    }

    static let basics: [Scenario] = [
        Scenario(name: "PING before CONNECT is answered with PONG",
                 steps: [.exchange("")], expect: [.open("PONG\r\n")]),
        Scenario(name: "verbose CONNECT gets +OK before the PONG",
                 steps: [.exchange(#"CONNECT {"verbose":true}"# + crlf)], expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "without CONNECT the verbose default acknowledges SUB and PUB and delivers",
                 steps: [.exchange("SUB foo 1\r\nPUB foo 2\r\nhi\r\n")],
                 expect: [.open("+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "CONNECT with unknown fields and client metadata is accepted",
                 steps: [.exchange(#"CONNECT {"verbose":true,"foo":1,"name":"x","lang":"swift","version":"1","protocol":1}"# + crlf)],
                 expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "operation names are case-insensitive",
                 steps: [.sendAwaitingPong("connect {\"verbose\":true}\r\nsub foo 1\r\npub foo 2\r\nhi\r\nping\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "fields may be separated by tabs and runs of spaces",
                 steps: [.exchange("CONNECT\t{\"verbose\":true}\r\nSUB \t foo\t\t9\r\nPUB\tfoo   2\r\nhi\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n+OK\r\nMSG foo 9 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "control lines may end in a bare LF",
                 steps: [.sendAwaitingPong("CONNECT {\"verbose\":true}\nSUB foo 9\nPUB foo 2\nhi\r\nPING\n")],
                 expect: [.open("+OK\r\n+OK\r\n+OK\r\nMSG foo 9 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "UNSUB of an unknown sid is acknowledged and ignored",
                 steps: [.exchange("UNSUB 99\r\n")], expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "verbose acknowledges CONNECT, SUB and each UNSUB",
                 steps: [.exchange(#"CONNECT {"verbose":true,"pedantic":true}"# + "\r\nSUB foo 1\r\nUNSUB 1\r\nUNSUB 99\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n+OK\r\n+OK\r\nPONG\r\n")]),
        Scenario(name: "an unsolicited PONG is ignored",
                 steps: [.exchange("PONG\r\n")], expect: [.open("PONG\r\n")]),
        Scenario(name: "a client's +OK is ignored without acknowledgement",
                 steps: [.exchange("+OK\r\n")], expect: [.open("PONG\r\n")]),
        Scenario(name: "a client's INFO is ignored",
                 steps: [.exchange("INFO {}\r\n")], expect: [.open("PONG\r\n")]),
        Scenario(name: "an op split across several writes is reassembled",
                 steps: [.send(quiet + "SUB fo"), .send("o 1\r\nPU"), .send("B foo 5\r\nhel"), .send("lo"),
                         .exchange("\r\n")],
                 expect: [.open("MSG foo 1 5\r\nhello\r\nPONG\r\n")]),
        Scenario(name: "a 100000-byte payload is delivered intact",
                 steps: [.exchange(quiet + "SUB big 1\r\nPUB big 100000\r\n" + String(repeating: "0123456789", count: 10_000) + crlf)],
                 expect: [.open("MSG big 1 100000\r\n" + String(repeating: "0123456789", count: 10_000) + "\r\nPONG\r\n")]),
        Scenario(name: "server_name given with -n appears in INFO",
                 config: BrokerConfig(serverName: "compat-name"),
                 steps: [.exchange("")], expect: [.open("PONG\r\n")]),
        Scenario(name: "the server sends its first PING about 2s after CONNECT and accepts the PONG",
                 steps: [.send(quiet), .awaitServerPing(), .exchange("PONG\r\n")],
                 expect: [.open("PING\r\nPONG\r\n")], keepServerPings: true),
    ]

    /// Parser corners probed on 2.9.10: what it tolerates and how it fails.
    static let parserCorners: [Scenario] = [
        Scenario(name: "verbose and pedantic interleave +OK and -ERR in op order",
                 steps: [.exchange(#"CONNECT {"verbose":true,"pedantic":true}"# + "\r\nSUB foo.* 1\r\nPUB foo.* 1\r\nx\r\nSUB foo. 2\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nMSG foo.* 1 1\r\nx\r\n-ERR 'Invalid Subject'\r\nPONG\r\n")]),
        Scenario(name: "CONNECT without pedantic keeps the pedantic default, so a wildcard PUB gets -ERR",
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo bar.* 1\r\nx\r\nPUB foo.> 1\r\ny\r\n")],
                 expect: [.open("MSG foo 1 bar.* 1\r\nx\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n")]),
        Scenario(name: "PING with trailing arguments is still a PING",
                 steps: [.sendAwaitingPong("PING x\r\n")], expect: [.open("PONG\r\n")]),
        Scenario(name: "PINGX is taken as PING",
                 steps: [.sendAwaitingPong("PINGX\r\n")], expect: [.open("PONG\r\n")]),
        Scenario(name: "lower-case pong, +ok and ping are understood",
                 steps: [.sendAwaitingPong("pong\r\n+ok\r\nping\r\n")], expect: [.open("PONG\r\n")]),
        Scenario(name: "an empty line is an unknown op",
                 steps: [.sendExpectingClose("\r\nPING\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a leading space before an op is an unknown op",
                 steps: [.sendExpectingClose(" PING\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "CONNECT with a string where a bool belongs closes without -ERR",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":"true"}"# + "\r\nPING\r\n")], expect: [.closed("")]),
        Scenario(name: "CONNECT with text after the JSON closes without -ERR",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":false} x"# + "\r\nPING\r\n")], expect: [.closed("")]),
        Scenario(name: "a second CONNECT replaces the options",
                 steps: [.exchange(quiet + #"CONNECT {"verbose":true}"# + crlf)], expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "CONNECT JSON with escapes and unicode is accepted",
                 steps: [.exchange(#"CONNECT {"verbose":false,"name":"\u00e9\"q","lang":"é"}"# + crlf)],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "CONNECT protocol 0 with echo false is accepted",
                 steps: [.exchange(#"CONNECT {"verbose":false,"echo":false,"protocol":0}"# + crlf)],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "a PUB size with a leading zero is echoed as written in the MSG",
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo 02\r\nhi\r\n")],
                 expect: [.open("MSG foo 1 02\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "a PUB size with a plus sign closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "PUB foo +2\r\nhi\r\n")], expect: [.closed("")]),
        Scenario(name: "a PUB size that overflows closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "PUB foo 99999999999999999999\r\n")], expect: [.closed("")]),
        Scenario(name: "PUB with an empty subject field closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "PUB  2\r\nhi\r\n")], expect: [.closed("")]),
        Scenario(name: "PUB of size 0 without the payload CRLF is an unknown op",
                 steps: [.sendExpectingClose(quiet + "SUB foo 1\r\nPUB foo 0\r\nPING\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a payload followed by a lone CR is an unknown op",
                 steps: [.sendExpectingClose(quiet + "SUB foo 1\r\nPUB foo 1\r\nx\rPING\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a payload followed by CR CR LF is an unknown op",
                 steps: [.sendExpectingClose(quiet + "SUB foo 1\r\nPUB foo 1\r\nx\r\r\nPING\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "UNSUB with three arguments closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "UNSUB 1 2 3\r\n")], expect: [.closed("")]),
        Scenario(name: "two subscriptions of one connection on one subject each get a copy",
                 steps: [.exchange(quiet + "SUB foo 1\r\nSUB foo 2\r\nPUB foo 1\r\nx\r\n")],
                 expect: [.open("MSG foo 1 1\r\nx\r\nMSG foo 2 1\r\nx\r\nPONG\r\n")],
                 unordered: true),
        Scenario(name: "UTF-8 subjects are routed byte for byte",
                 steps: [.exchange(quiet + "SUB foo\u{e9} 1\r\nPUB foo\u{e9} 1\r\nx\r\n")],
                 expect: [.open("MSG foo\u{e9} 1 1\r\nx\r\nPONG\r\n")]),
        Scenario(name: "queue names are not validated as subjects",
                 steps: [.exchange(quiet + "SUB foo q.x 1\r\nSUB foo q* 2\r\nPUB foo 1\r\nx\r\n")],
                 expect: [.open("MSG foo 1 1\r\nx\r\nMSG foo 2 1\r\nx\r\nPONG\r\n")],
                 unordered: true),
        Scenario(name: "no responders: a wildcard subscription covering the reply gets the 503",
                 steps: [.exchange(noResponders + "SUB _INBOX.* 4\r\nPUB none _INBOX.q 0\r\n\r\n")],
                 expect: [.open("HMSG _INBOX.q 4 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "control line arguments of exactly 4096 bytes are accepted",
                 steps: [.exchange(quiet + "SUB " + String(repeating: "a", count: 4094) + " 1\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "control line arguments of 4097 bytes exceed the limit",
                 steps: [.sendExpectingClose(quiet + "SUB " + String(repeating: "a", count: 4095) + " 1\r\n")],
                 expect: [.closed("-ERR 'maximum control line exceeded'\r\n")]),
        Scenario(name: "a CONNECT longer than the control line limit is refused",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":false,"name":""# + String(repeating: "n", count: 4096) + "\"}\r\n")],
                 expect: [.closed("-ERR 'maximum control line exceeded'\r\n")]),
        Scenario(name: "reserved reply prefixes $JS.ACK. and _GR_. and the _GR_. publish prefix are refused",
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo $JS.ACK.x 1\r\nx\r\nPUB foo _GR_.x 1\r\ny\r\n"
                                   + "SUB $GNR.> 2\r\nPUB $GNR.a.b.c 1\r\nz\r\nPUB _GR_.a 1\r\nw\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Publish with Reply of \"$JS.ACK.x\"'\r\n"
                                + "-ERR 'Permissions Violation for Publish with Reply of \"_GR_.x\"'\r\n"
                                + "MSG $GNR.a.b.c 2 1\r\nz\r\n"
                                + "-ERR 'Permissions Violation for Publish to \"_GR_.a\"'\r\nPONG\r\n")]),
        Scenario(name: "control characters other than whitespace are allowed in subjects",
                 steps: [.exchange(quiet + "SUB foo\u{1} 1\r\nSUB foo\u{7f} 2\r\nPUB foo\u{1} 1\r\nx\r\n")],
                 expect: [.open("MSG foo\u{1} 1 1\r\nx\r\nPONG\r\n")]),
        Scenario(name: "payload bytes are opaque: CRLF and control bytes inside a payload are delivered",
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo 4\r\n\r\n\r\n\r\nPUB foo 4\r\n\u{0}\u{1}\u{1f}\u{7f}\r\n")],
                 expect: [.open("MSG foo 1 4\r\n\r\n\r\n\r\nMSG foo 1 4\r\n\u{0}\u{1}\u{1f}\u{7f}\r\nPONG\r\n")]),
        Scenario(name: "UNSUB with a negative max unsubscribes at once",
                 steps: [.exchange(quiet + "SUB foo 1\r\nUNSUB 1 -1\r\nPUB foo 1\r\nx\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "a second UNSUB max replaces the first",
                 steps: [.exchange(quiet + "SUB foo 1\r\nUNSUB 1 1\r\nUNSUB 1 5\r\nPUB foo 1\r\nx\r\nPUB foo 1\r\ny\r\n")],
                 expect: [.open("MSG foo 1 1\r\nx\r\nMSG foo 1 1\r\ny\r\nPONG\r\n")]),
        Scenario(name: "UNSUB max applies to a queue subscription",
                 steps: [.exchange(quiet + "SUB foo q 1\r\nUNSUB 1 1\r\nPUB foo 1\r\nx\r\nPUB foo 1\r\ny\r\n")],
                 expect: [.open("MSG foo 1 1\r\nx\r\nPONG\r\n")]),
        Scenario(name: "HPUB whose header block does not start with NATS/1.0 is an unknown op",
                 steps: [.sendExpectingClose(quietHeaders + "SUB foo 1\r\nHPUB foo 5 7\r\nFOO\r\n\r\nhi\r\n")],
                 expect: [.closed(unknownOp)]),
        Scenario(name: "HPUB with both sizes 0 is delivered as an empty MSG",
                 steps: [.exchange(quietHeaders + "SUB foo 1\r\nHPUB foo 0 0\r\n\r\n")],
                 expect: [.open("MSG foo 1 0\r\n\r\nPONG\r\n")]),
        Scenario(name: "HPUB with one size closes without -ERR",
                 steps: [.sendExpectingClose(quietHeaders + "HPUB foo 12\r\n")], expect: [.closed("")]),
        Scenario(name: "HPUB with a non-numeric header size closes without -ERR",
                 steps: [.sendExpectingClose(quietHeaders + "HPUB foo x 14\r\n")], expect: [.closed("")]),
        Scenario(name: "HPUB with too many arguments closes without -ERR",
                 steps: [.sendExpectingClose(quietHeaders + "HPUB foo a b 12 14\r\n")], expect: [.closed("")]),
        Scenario(name: "verbose acknowledges HPUB",
                 steps: [.exchange(#"CONNECT {"verbose":true,"headers":true}"# + "\r\nSUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n+OK\r\nHMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "verbose pedantic PUBs to malformed subjects get -ERR then +OK each",
                 steps: [.exchange(#"CONNECT {"verbose":true,"pedantic":true}"# + "\r\nSUB > 1\r\nPUB foo..bar 1\r\nx\r\nPUB foo. 1\r\ny\r\nPUB .foo 1\r\nz\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n" + String(repeating: "-ERR 'Invalid Publish Subject'\r\n+OK\r\n", count: 3) + "PONG\r\n")]),
        Scenario(name: "non-pedantic PUBs to empty-token subjects are dropped, foo.>.x is delivered to >",
                 steps: [.exchange(#"CONNECT {"verbose":false,"pedantic":false}"# + "\r\nSUB > 1\r\nPUB foo. 1\r\ny\r\nPUB .foo 1\r\nz\r\nPUB foo.>.x 1\r\nw\r\n")],
                 expect: [.open("MSG foo.>.x 1 1\r\nw\r\nPONG\r\n")]),
        Scenario(name: "an invalid queue SUB gets Invalid Subject; * and > alone are valid",
                 steps: [.exchange(quiet + "SUB foo. q 1\r\nSUB * 2\r\nSUB > 3\r\nPUB a 1\r\nx\r\n")],
                 expect: [.open("-ERR 'Invalid Subject'\r\nMSG a 3 1\r\nx\r\nMSG a 2 1\r\nx\r\nPONG\r\n")],
                 unordered: true),
        Scenario(name: "2000 pipelined PUBs in one write arrive in order",
                 steps: [.exchange(quiet + "SUB p 1\r\n" + (0..<2000).map { "PUB p \(String($0).utf8.count)\r\n\($0)\r\n" }.joined())],
                 expect: [.open((0..<2000).map { "MSG p 1 \(String($0).utf8.count)\r\n\($0)\r\n" }.joined() + "PONG\r\n")]),
        Scenario(name: "a CRLF split between two writes still ends the line",
                 steps: [.send(quiet + "SUB foo 1\r"), .send("\nPUB foo 1\r\nx\r"), .exchange("\n")],
                 expect: [.open("MSG foo 1 1\r\nx\r\nPONG\r\n")]),
    ]

    /// Signals: lame duck mode (SIGUSR2) announces itself with an INFO carrying `"ldm":true`.
    static let signals: [Scenario] = [
        Scenario(name: "SIGUSR2 (lame duck) sends protocol-1 clients an INFO with ldm true",
                 steps: [.exchange(#"CONNECT {"verbose":false,"protocol":1}"# + crlf), .signalBroker(SIGUSR2), .awaitInfo()],
                 expect: [.open("PONG\r\n" + #"INFO {"server_id":"<server_id>","server_name":"<server_id>","version":"2.9.10","proto":1,"go":"<go>","host":"<host>","port":<port>,"headers":true,"max_payload":1048576,"client_id":<client_id>,"client_ip":"<client_ip>","ldm":true} "# + "\r\n")]),
    ]

    static let errors: [Scenario] = [
        Scenario(name: "an unknown op before CONNECT gets Unknown Protocol Operation and a close",
                 steps: [.sendExpectingClose("FOO\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "an unknown op after CONNECT gets Unknown Protocol Operation and a close",
                 steps: [.sendExpectingClose(quiet + "FOO bar\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a client MSG is an unknown op",
                 steps: [.sendExpectingClose(quiet + "MSG foo 1 1\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a client HMSG is an unknown op",
                 steps: [.sendExpectingClose(quiet + "HMSG foo 1 1\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a client -ERR closes the connection silently",
                 steps: [.sendExpectingClose("-ERR 'x'\r\n")], expect: [.closed("")]),
        Scenario(name: "invalid SUB subjects get Invalid Subject and the connection stays open",
                 steps: [.exchange(quiet + "SUB foo. 1\r\nSUB foo..bar 2\r\nSUB foo.>.bar 3\r\nSUB >.foo 4\r\nSUB .foo 5\r\n")],
                 expect: [.open(String(repeating: "-ERR 'Invalid Subject'\r\n", count: 5) + "PONG\r\n")]),
        Scenario(name: "a pedantic PUB to a wildcard subject gets Invalid Publish Subject and is still delivered",
                 steps: [.exchange(#"CONNECT {"verbose":false,"pedantic":true}"# + "\r\nSUB foo.* 1\r\nSUB foo.bar 2\r\nPUB foo.* 2\r\nhi\r\n")],
                 expect: [.open("-ERR 'Invalid Publish Subject'\r\nMSG foo.* 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "a non-pedantic PUB to a wildcard subject reaches only the wildcard subscription; foo..x is dropped",
                 steps: [.exchange(#"CONNECT {"verbose":false,"pedantic":false}"# + "\r\nSUB foo.* 1\r\nSUB foo.bar 2\r\nPUB foo.* 2\r\nhi\r\nPUB foo..x 2\r\nhi\r\n")],
                 expect: [.open("MSG foo.* 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "PUB with too many arguments closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "PUB foo bar baz 2\r\nhi\r\n")], expect: [.closed("")]),
        Scenario(name: "PUB with no arguments is an unknown op",
                 steps: [.sendExpectingClose("PUB\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "PUB with a non-numeric size closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "PUB foo abc\r\n")], expect: [.closed("")]),
        Scenario(name: "PUB with a negative size closes without -ERR",
                 steps: [.sendExpectingClose(quiet + "PUB foo -1\r\n")], expect: [.closed("")]),
        Scenario(name: "a payload longer than its size is an unknown op",
                 steps: [.sendExpectingClose(quiet + "PUB foo 2\r\nhello\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a payload shorter than its size is an unknown op once the next op arrives",
                 steps: [.sendExpectingClose(quiet + "PUB foo 5\r\nhi\r\nPING\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "a payload ended by a bare LF is an unknown op",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":true}"# + "\nSUB foo 9\nPUB foo 2\nhi\nPING\n")],
                 expect: [.closed("+OK\r\n+OK\r\n" + unknownOp)]),
        Scenario(name: "SUB with four arguments closes without -ERR",
                 steps: [.sendExpectingClose("SUB a b c d\r\n")], expect: [.closed("")]),
        Scenario(name: "SUB with one argument closes without -ERR",
                 steps: [.sendExpectingClose("SUB foo\r\n")], expect: [.closed("")]),
        Scenario(name: "UNSUB with no arguments is an unknown op",
                 steps: [.sendExpectingClose("UNSUB\r\n")], expect: [.closed(unknownOp)]),
        Scenario(name: "CONNECT with no JSON closes without -ERR",
                 steps: [.sendExpectingClose("CONNECT\r\n")], expect: [.closed("")]),
        Scenario(name: "malformed CONNECT JSON closes without -ERR",
                 steps: [.sendExpectingClose("CONNECT {verbose\r\n")], expect: [.closed("")]),
        Scenario(name: "CONNECT protocol 2 gets invalid client protocol and a close",
                 steps: [.sendExpectingClose(#"CONNECT {"protocol":2}"# + crlf)],
                 expect: [.closed("-ERR 'invalid client protocol'\r\n")]),
        Scenario(name: "CONNECT protocol -1 gets invalid client protocol and a close",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":false,"protocol":-1}"# + crlf)],
                 expect: [.closed("-ERR 'invalid client protocol'\r\n")]),
        Scenario(name: "no_responders without headers gets an -ERR and a close",
                 steps: [.sendExpectingClose(#"CONNECT {"no_responders":true}"# + crlf)],
                 expect: [.closed("-ERR 'no responders requires headers support'\r\n")]),
        Scenario(name: "CONNECT naming an account gets Authorization Violation without auth configured",
                 steps: [.sendExpectingClose(#"CONNECT {"account":"A"}"# + "\r\nPING\r\n")],
                 expect: [.closed(authViolation)]),
        Scenario(name: "a control line over 4096 bytes gets maximum control line exceeded and a close",
                 steps: [.sendExpectingClose("SUB " + String(repeating: "a", count: 5000) + " 1\r\n")],
                 expect: [.closed("-ERR 'maximum control line exceeded'\r\n")]),
        Scenario(name: "an unterminated control line over 4096 bytes gets maximum control line exceeded",
                 steps: [.sendExpectingClose("SUB " + String(repeating: "a", count: 5000))],
                 expect: [.closed("-ERR 'maximum control line exceeded'\r\n")]),
        Scenario(name: "PUB over the default max_payload (1MB in INFO) gets Maximum Payload Violation and a close",
                 steps: [.sendExpectingClose(quiet + "PUB foo 1048577\r\n")],
                 expect: [.closed("-ERR 'Maximum Payload Violation'\r\n")]),
        Scenario(name: "HPUB over the default max_payload gets Maximum Payload Violation and a close",
                 steps: [.sendExpectingClose(quietHeaders + "HPUB foo 12 1048577\r\n")],
                 expect: [.closed("-ERR 'Maximum Payload Violation'\r\n")]),
        Scenario(name: "publishing to the reserved _GR_. prefix is a permissions violation",
                 steps: [.exchange(quiet + "SUB _GR_.> 1\r\nPUB _GR_.a.b.c 1\r\nx\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Publish to \"_GR_.a.b.c\"'\r\nPONG\r\n")]),
        Scenario(name: "a reply subject under _R_. is a permissions violation",
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo _R_.x 1\r\nx\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Publish with Reply of \"_R_.x\"'\r\nPONG\r\n")]),
    ]

    static let headersAndNoResponders: [Scenario] = [
        Scenario(name: "HPUB is delivered as HMSG to a headers subscriber",
                 steps: [.exchange(quietHeaders + "SUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.open("HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "HPUB with an empty payload keeps the header block",
                 steps: [.exchange(quietHeaders + "SUB foo 1\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n")],
                 expect: [.open("HMSG foo 1 12 12\r\nNATS/1.0\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "HPUB with a zero-length header block is delivered as MSG",
                 steps: [.exchange(quietHeaders + "SUB foo 1\r\nHPUB foo 0 2\r\nhi\r\n")],
                 expect: [.open("MSG foo 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "HPUB header length is taken as declared, not validated",
                 steps: [.exchange(quietHeaders + "SUB foo 1\r\nHPUB foo 13 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.open("HMSG foo 1 13 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "HPUB with header length above total closes without -ERR",
                 steps: [.sendExpectingClose(quietHeaders + "HPUB foo 14 12\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.closed("")]),
        Scenario(name: "HPUB after CONNECT headers:false closes without -ERR",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":false,"headers":false}"# + "\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.closed("")]),
        Scenario(name: "HPUB without headers support closes at its control line, before any payload",
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":false}"# + "\r\nHPUB foo 12 14\r\n")],
                 expect: [.closed("")]),
        Scenario(name: "HPUB without any CONNECT closes without -ERR",
                 steps: [.sendExpectingClose("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")], expect: [.closed("")]),
        Scenario(name: "a subscriber without headers support gets the payload only, as MSG",
                 steps: [.exchange(quiet + "SUB foo 1\r\n", on: 0),
                         .exchange(quietHeaders + "HPUB foo rep 30 32\r\n" + multiHeader + "hi\r\n", on: 1),
                         .exchange("", on: 0)],
                 expect: [.open("PONG\r\nMSG foo 1 rep 2\r\nhi\r\nPONG\r\n"), .open("PONG\r\n")]),
        Scenario(name: "no responders: a request with no subscriber gets the 16-byte 503 HMSG on the reply sid",
                 steps: [.exchange(noResponders + "SUB _INBOX.abc 1\r\nPUB svc.none _INBOX.abc 0\r\n\r\n")],
                 expect: [.open("HMSG _INBOX.abc 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "no responders: an HPUB request with no subscriber gets the 503 too",
                 steps: [.exchange(noResponders + "SUB _INBOX.x 7\r\nHPUB svc.none _INBOX.x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.open("HMSG _INBOX.x 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "no responders: verbose acks come before the 503",
                 steps: [.exchange(#"CONNECT {"verbose":true,"headers":true,"no_responders":true}"# + "\r\nSUB _INBOX.a 1\r\nPUB none _INBOX.a 0\r\n\r\n")],
                 expect: [.open("+OK\r\n+OK\r\n+OK\r\nHMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "no responders: a queue subscription on the reply subject gets no 503",
                 steps: [.exchange(noResponders + "SUB _INBOX.a q 1\r\nPUB none _INBOX.a 0\r\n\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "no responders: echo false does not suppress the 503",
                 steps: [.exchange(#"CONNECT {"verbose":false,"headers":true,"no_responders":true,"echo":false}"# + "\r\nSUB _INBOX.a 1\r\nPUB none _INBOX.a 0\r\n\r\n")],
                 expect: [.open("HMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "no responders: no 503 when the requester has no subscription on the reply subject",
                 steps: [.exchange(noResponders + "PUB svc.none _INBOX.abc 0\r\n\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "no responders: no 503 without the no_responders option",
                 steps: [.exchange(quietHeaders + "SUB _INBOX.abc 1\r\nPUB svc.none _INBOX.abc 0\r\n\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "no responders: no 503 when there is a responder",
                 steps: [.exchange(quiet + "SUB svc 1\r\n", on: 1),
                         .exchange(noResponders + "SUB _INBOX.abc 1\r\nPUB svc _INBOX.abc 2\r\nhi\r\n", on: 0),
                         .exchange("", on: 1)],
                 expect: [.open("PONG\r\n"), .open("PONG\r\nMSG svc 1 _INBOX.abc 2\r\nhi\r\nPONG\r\n")]),
    ]

    static let delivery: [Scenario] = [
        Scenario(name: "plain subscribers get the message before the queue group; UNSUB max below delivered is immediate",
                 steps: [.exchange(quietHeaders + "SUB foo q 1\r\nSUB foo 2\r\n"
                                   + "HPUB foo reply.x 30 32\r\n" + multiHeader + "hi\r\n"
                                   + "PUB foo 0\r\n\r\nUNSUB 2 1\r\nPUB foo 1\r\nz\r\nPUB foo 1\r\nz\r\n")],
                 expect: [.open("HMSG foo 2 reply.x 30 32\r\n" + multiHeader + "hi\r\n"
                                + "HMSG foo 1 reply.x 30 32\r\n" + multiHeader + "hi\r\n"
                                + "MSG foo 2 0\r\n\r\nMSG foo 1 0\r\n\r\nMSG foo 1 1\r\nz\r\nMSG foo 1 1\r\nz\r\nPONG\r\n")]),
        Scenario(name: "UNSUB with max stops after that many messages",
                 steps: [.exchange(quiet + "SUB foo 1\r\nUNSUB 1 2\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n")],
                 expect: [.open("MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\nPONG\r\n")]),
        Scenario(name: "UNSUB with max 0 unsubscribes at once",
                 steps: [.exchange(quiet + "SUB foo 1\r\nUNSUB 1 0\r\nPUB foo 1\r\na\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "UNSUB with a non-numeric max unsubscribes at once",
                 steps: [.exchange(quiet + "SUB foo 1\r\nUNSUB 1 x\r\nPUB foo 1\r\na\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "a SUB reusing a sid is ignored",
                 steps: [.exchange(quiet + "SUB foo 1\r\nSUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nx\r\nPUB foo 1\r\ny\r\n")],
                 expect: [.open("MSG foo 1 1\r\ny\r\nPONG\r\n")]),
        Scenario(name: "empty payloads and reply subjects are delivered",
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo 0\r\n\r\nPUB foo bar 3\r\nabc\r\n")],
                 expect: [.open("MSG foo 1 0\r\n\r\nMSG foo 1 bar 3\r\nabc\r\nPONG\r\n")]),
        Scenario(name: "wildcards * and > match as NATS defines (frames compared unordered)",
                 steps: [.exchange(quiet + "SUB a.* 1\r\nSUB a.> 2\r\nSUB > 3\r\nSUB *.b 4\r\nSUB a 5\r\n"
                                   + "PUB a.b 1\r\nx\r\nPUB a.b.c 1\r\ny\r\nPUB a 1\r\nz\r\n")],
                 expect: [.open("MSG a.b 3 1\r\nx\r\nMSG a.b 4 1\r\nx\r\nMSG a.b 2 1\r\nx\r\nMSG a.b 1 1\r\nx\r\n"
                                + "MSG a.b.c 3 1\r\ny\r\nMSG a.b.c 2 1\r\ny\r\nMSG a 3 1\r\nz\r\nMSG a 5 1\r\nz\r\nPONG\r\n")],
                 unordered: true),
        Scenario(name: "echo false also keeps a client's own queue subscription from its messages",
                 steps: [.exchange(#"CONNECT {"verbose":false,"echo":false}"# + "\r\nSUB foo q 1\r\nPUB foo 1\r\nx\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "a queue group alone gets the message once",
                 steps: [.exchange(quiet + "SUB foo q 1\r\nPUB foo 1\r\na\r\n")],
                 expect: [.open("MSG foo 1 1\r\na\r\nPONG\r\n")]),
        Scenario(name: "echo false keeps a client's own messages from itself but not from others",
                 steps: [.exchange(quiet + "SUB foo 1\r\n", on: 1),
                         .exchange(#"CONNECT {"verbose":false,"echo":false}"# + "\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\n", on: 0),
                         .exchange("", on: 1)],
                 expect: [.open("PONG\r\n"), .open("PONG\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "messages cross connections in publish order",
                 steps: [.exchange(quiet + "SUB seq 5\r\n", on: 0),
                         .exchange(quiet + "PUB seq 1\r\n1\r\nPUB seq 1\r\n2\r\nPUB seq 1\r\n3\r\n", on: 1),
                         .exchange("", on: 0)],
                 expect: [.open("PONG\r\nMSG seq 5 1\r\n1\r\nMSG seq 5 1\r\n2\r\nMSG seq 5 1\r\n3\r\nPONG\r\n"),
                          .open("PONG\r\n")]),
    ]

    static let auth: [Scenario] = [
        Scenario(name: "user/pass: good credentials get +OK and PONG", config: alice,
                 steps: [.exchange(#"CONNECT {"user":"alice","pass":"secret"}"# + crlf)],
                 expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "user/pass: lower-case connect with good credentials works", config: alice,
                 steps: [.sendAwaitingPong(#"connect {"user":"alice","pass":"secret","verbose":false}"# + "\r\nping\r\n")],
                 expect: [.open("PONG\r\n")]),
        Scenario(name: "user/pass: a bad password gets Authorization Violation and a close", config: alice,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"alice","pass":"bad"}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: CONNECT without credentials gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose("CONNECT {}\r\n")], expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: a token instead of credentials gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"secret"}"# + crlf)], expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: SUB before CONNECT gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose("SUB foo 1\r\n")], expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: PING before CONNECT gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose("PING\r\n")], expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: an unknown op before CONNECT gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose("FOO\r\n")], expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: malformed CONNECT closes without -ERR", config: alice,
                 steps: [.sendExpectingClose("CONNECT {bad\r\n")], expect: [.closed("")]),
        Scenario(name: "user/pass: an account in CONNECT gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"alice","pass":"secret","account":"A"}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: no CONNECT within 2s gets Authentication Timeout and a close", config: alice,
                 steps: [.awaitClose()], expect: [.closed("-ERR 'Authentication Timeout'\r\n")]),
        Scenario(name: "user/pass: a partial CONNECT line still times out", config: alice,
                 steps: [.send("CONNECT"), .awaitClose()], expect: [.closed("-ERR 'Authentication Timeout'\r\n")]),
        Scenario(name: "user/pass: a second CONNECT with a bad password gets Authorization Violation", config: alice,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"alice","pass":"secret","verbose":false}"#
                                             + "\r\n" + #"CONNECT {"user":"alice","pass":"x"}"# + "\r\nPING\r\n")],
                 expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: a second CONNECT without credentials is accepted", config: alice,
                 steps: [.exchange(#"CONNECT {"user":"alice","pass":"secret","verbose":false}"#
                                   + "\r\n" + #"CONNECT {"verbose":true}"# + crlf)],
                 expect: [.open("+OK\r\nPONG\r\n")]),
        // U+212A KELVIN SIGN is canonically equivalent to K: Swift's String == takes them as equal,
        // 2.9.10 compares bytes and refuses it.
        Scenario(name: "user/pass: a user name with the Kelvin sign for K gets Authorization Violation", config: kate,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"\#u{212A}ate","pass":"Kelvin"}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "user/pass: a password with the Kelvin sign for K gets Authorization Violation", config: kate,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"Kate","pass":"\#u{212A}elvin"}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "users: a configured user named with the Kelvin sign for K gets Authorization Violation",
                 config: kateUsers,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"\#u{212A}ate","pass":"pw"}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "users: the configured user's own bytes log in", config: kateUsers,
                 steps: [.exchange(#"CONNECT {"user":"Kate","pass":"pw"}"# + crlf)], expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "token: a token with the Kelvin sign for K gets Authorization Violation", config: kateToken,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"\#u{212A}ate"}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "token: the right token gets +OK and PONG", config: tokenAuth,
                 steps: [.exchange(#"CONNECT {"auth_token":"s3cr3t"}"# + crlf)], expect: [.open("+OK\r\nPONG\r\n")]),
        Scenario(name: "token: a wrong token gets Authorization Violation and a close", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"bad"}"# + "\r\nPING\r\n")],
                 expect: [.closed(authViolation)]),
        Scenario(name: "token: a user name instead of the token gets Authorization Violation", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"user":"s3cr3t"}"# + crlf)], expect: [.closed(authViolation)]),
        Scenario(name: "token: an oversized CONNECT gets maximum control line exceeded, not an auth error", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":""# + String(repeating: "a", count: 5000) + "\"}\r\n")],
                 expect: [.closed("-ERR 'maximum control line exceeded'\r\n")]),
        Scenario(name: "token: an oversized PUB before CONNECT gets Authorization Violation", config: tokenAuth,
                 steps: [.sendExpectingClose("PUB foo 2000000\r\n")], expect: [.closed(authViolation)]),
        Scenario(name: "token: a good token with protocol 5 gets invalid client protocol", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"s3cr3t","protocol":5}"# + crlf)],
                 expect: [.closed("-ERR 'invalid client protocol'\r\n")]),
        Scenario(name: "token: a bad token with protocol 5 gets Authorization Violation first", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"bad","protocol":5}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "token: a bad token with no_responders and no headers gets Authorization Violation first", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"bad","no_responders":true}"# + crlf)],
                 expect: [.closed(authViolation)]),
        Scenario(name: "token: HPUB without headers after a good CONNECT closes without -ERR", config: tokenAuth,
                 steps: [.sendExpectingClose(#"CONNECT {"auth_token":"s3cr3t","verbose":false}"# + "\r\nHPUB foo 12 14\r\n")],
                 expect: [.closed("")]),
        Scenario(name: "token: a client +OK before CONNECT gets Authorization Violation", config: tokenAuth,
                 steps: [.sendExpectingClose("+OK\r\n")], expect: [.closed(authViolation)]),
        Scenario(name: "token: pedantic checks apply after authentication", config: tokenAuth,
                 steps: [.exchange(#"CONNECT {"auth_token":"s3cr3t","verbose":false,"pedantic":true}"# + "\r\nSUB foo 1\r\nPUB foo.* 1\r\nx\r\n")],
                 expect: [.open("-ERR 'Invalid Publish Subject'\r\nPONG\r\n")]),
        Scenario(name: "token: PUB before CONNECT gets Authorization Violation", config: tokenAuth,
                 steps: [.sendExpectingClose("PUB foo 0\r\n\r\n")], expect: [.closed(authViolation)]),
    ]

    /// Limits that need a config file on nats-server; run against ours once it declares `config`.
    static let configured: [Scenario] = [
        Scenario(name: "config max_payload 1KB: INFO says 1024 and a 1025-byte PUB is a violation",
                 config: BrokerConfig(configLines: ["max_payload: 1KB"]),
                 steps: [.sendExpectingClose(quiet + "PUB foo 1025\r\n")],
                 expect: [.closed("-ERR 'Maximum Payload Violation'\r\n")]),
        Scenario(name: "config max_payload 1KB: a 1024-byte payload is delivered",
                 config: BrokerConfig(configLines: ["max_payload: 1KB"]),
                 steps: [.exchange(quiet + "SUB foo 1\r\nPUB foo 1024\r\n" + String(repeating: "x", count: 1024) + crlf)],
                 expect: [.open("MSG foo 1 1024\r\n" + String(repeating: "x", count: 1024) + "\r\nPONG\r\n")]),
        Scenario(name: "config max_connections 2: the third connection gets maximum connections exceeded",
                 config: BrokerConfig(configLines: ["max_connections: 2"]),
                 steps: [.exchange(quiet, on: 0), .exchange(quiet, on: 1), .open(on: 2), .awaitClose(on: 2)],
                 expect: [.open("PONG\r\n"), .open("PONG\r\n"), .closed("-ERR 'maximum connections exceeded'\r\n")]),
        Scenario(name: "config max_control_line 512: a longer line gets maximum control line exceeded",
                 config: BrokerConfig(configLines: ["max_control_line: 512"]),
                 steps: [.sendExpectingClose("SUB " + String(repeating: "a", count: 600) + " 1\r\n")],
                 expect: [.closed("-ERR 'maximum control line exceeded'\r\n")]),
        Scenario(name: "config max_subscriptions 1: the second SUB is refused and the connection stays",
                 config: BrokerConfig(configLines: ["max_subscriptions: 1"]),
                 steps: [.exchange(quiet + "SUB a 1\r\nSUB b 2\r\nPUB b 1\r\nx\r\nPUB a 1\r\ny\r\n")],
                 expect: [.open("-ERR 'maximum subscriptions exceeded'\r\nMSG a 1 1\r\ny\r\nPONG\r\n")]),
        Scenario(name: "config ping_interval 1s, ping_max 2: unanswered PINGs end in Stale Connection",
                 config: BrokerConfig(configLines: [#"ping_interval: "1s""#, "ping_max: 2"]),
                 steps: [.exchange(quiet), .awaitClose()],
                 expect: [.closed("PONG\r\nPING\r\nPING\r\n-ERR 'Stale Connection'\r\n")], keepServerPings: true),
        Scenario(name: "config permissions: denied publish and subscribe get Permissions Violation",
                 config: BrokerConfig(configLines: [
                    "authorization {",
                    "  users = [",
                    #"    {user: bob, password: pw, permissions: {publish: {deny: ["secret.>"]}, subscribe: {allow: ["public.>", "_INBOX.>"]}}}"#,
                    "  ]",
                    "}",
                 ]),
                 steps: [.exchange(#"CONNECT {"verbose":false,"user":"bob","pass":"pw"}"#
                                   + "\r\nPUB secret.x 1\r\nx\r\nSUB private.y 1\r\nSUB private.y q 2\r\nSUB public.z 3\r\nPUB public.z 1\r\nz\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"private.y\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"private.y\" using queue \"q\"'\r\n"
                                + "MSG public.z 3 1\r\nz\r\nPONG\r\n")]),
        Scenario(name: "config queue permissions: plain and queue allow entries decide plain and queue SUBs",
                 config: queueUsers,
                 steps: [.exchange(#"CONNECT {"verbose":false,"user":"q","pass":"pw"}"# + crlf
                                   + "SUB foo 1\r\nSUB foo v1 2\r\nSUB foo v2 3\r\nSUB only 4\r\nSUB only q1 5\r\nSUB only q2 6\r\n"
                                   + "SUB bar.x v.1 7\r\nSUB bar.x v.1.2 8\r\nSUB bar.x 9\r\nSUB bar.* v.> 10\r\nSUB baz v* 11\r\nSUB baz vx 12\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Subscription to \"foo\" using queue \"v2\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"only\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"only\" using queue \"q2\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"bar.x\" using queue \"v.1.2\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"bar.x\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"bar.*\" using queue \"v.>\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"baz\" using queue \"vx\"'\r\n"
                                + "PONG\r\n")]),
        Scenario(name: "config queue permissions: deny queue entries refuse only their queue and override a plain deny",
                 config: queueUsers,
                 steps: [.exchange(#"CONNECT {"verbose":false,"user":"d","pass":"pw"}"# + crlf
                                   + "SUB dd 1\r\nSUB dd v1 2\r\nSUB dd v2 3\r\nSUB both 4\r\nSUB both v1 5\r\nSUB both v2 6\r\n"
                                   + "SUB x.y v2 7\r\nSUB x.y v3 8\r\nSUB x.> 9\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Subscription to \"dd\" using queue \"v1\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"both\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"both\" using queue \"v1\"'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"x.y\" using queue \"v2\"'\r\n"
                                + "PONG\r\n")]),
        Scenario(name: "config queue permissions: an allowed queue group receives, one member per message",
                 config: queueUsers,
                 steps: [.exchange(#"CONNECT {"verbose":false,"user":"q","pass":"pw"}"# + crlf + "SUB foo v1 1\r\n", on: 0),
                         .exchange(#"CONNECT {"verbose":false,"user":"d","pass":"pw"}"# + crlf + "PUB foo 2\r\nhi\r\n", on: 1),
                         .exchange("", on: 0)],
                 expect: [.open("PONG\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n"), .open("PONG\r\n")]),
        Scenario(name: "the queue group _sys_ is refused without any permissions",
                 steps: [.exchange(quiet + "SUB foo _sys_ 1\r\nSUB foo sys 2\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Subscription to \"foo\" using queue \"_sys_\"'\r\nPONG\r\n")]),
        Scenario(name: "config max_sub_tokens 3: longer SUBs are refused, empty tokens counted, the connection stays",
                 config: BrokerConfig(configLines: ["max_sub_tokens: 3"]),
                 steps: [.exchange(quiet + "SUB a.b.c.d 1\r\nSUB a.b.c 2\r\nSUB a.b.c.d q 3\r\nSUB a..b.c 4\r\nSUB a.b.> 5\r\n"
                                   + "PUB a.b.c 1\r\nx\r\n")],
                 expect: [.open("-ERR 'Permissions Violation for Subscription to \"a.b.c.d\", too many tokens'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"a.b.c.d\", too many tokens'\r\n"
                                + "-ERR 'Permissions Violation for Subscription to \"a..b.c\", too many tokens'\r\n"
                                + "MSG a.b.c 2 1\r\nx\r\nMSG a.b.c 5 1\r\nx\r\nPONG\r\n")], unordered: true),
        Scenario(name: "config no_header_support: INFO says headers false and HPUB closes as if headers were never asked for",
                 config: BrokerConfig(configLines: ["no_header_support: true"]),
                 steps: [.exchange(quietHeaders), .sendExpectingClose("HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
                 expect: [.closed("PONG\r\n")]),
        Scenario(name: "config no_header_support: no_responders in CONNECT is refused for want of headers",
                 config: BrokerConfig(configLines: ["no_header_support: true"]),
                 steps: [.sendExpectingClose(#"CONNECT {"verbose":false,"headers":true,"no_responders":true}"# + crlf)],
                 expect: [.closed("-ERR 'no responders requires headers support'\r\n")]),
    ]
}
