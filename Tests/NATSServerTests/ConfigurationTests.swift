// Flags, CONNECT decoding, JSON, server ids, INFO and /varz generation.

import Foundation
import Testing
@testable import NATSServer
import NKeys

@Suite("Command line")
struct CommandLineTests {
    private func options(_ args: [String]) throws -> Options {
        guard case .run(let options) = try ServerCommandLine.parse(args) else {
            throw HarnessError("expected .run for \(args)")
        }
        return options
    }

    @Test func noFlagsGiveNatsServerDefaults() throws {
        let o = try options([])
        #expect(o.host == "0.0.0.0")
        #expect(o.port == 4222)
        #expect(o.maxPayload == 1_048_576)
        #expect(o.maxControlLine == 4096)
        #expect(o.maxConnections == 65_536)
        #expect(o.maxPending == 64 * 1024 * 1024)
        #expect(o.writeDeadline == .seconds(10))
        #expect(o.pingInterval == .seconds(120))
        #expect(o.maxPingsOut == 2)
        #expect(o.authTimeout == .seconds(2))
        #expect(o.logTime)
        #expect(!o.authRequired)
    }

    @Test func shortLongAndEqualsFormsAreAccepted() throws {
        let o = try options(["-a", "127.0.0.1", "--port=-1", "-n", "srv", "-m", "8222", "-P", "/tmp/p.pid",
                             "--ports_file_dir", "/tmp", "-l", "/tmp/log", "-T=false", "-DV", "--user", "u",
                             "--pass", "p"])
        #expect(o.host == "127.0.0.1")
        #expect(o.port == -1)
        #expect(o.serverName == "srv")
        #expect(o.httpPort == 8222)
        #expect(o.pidFile == "/tmp/p.pid")
        #expect(o.portsFileDir == "/tmp")
        #expect(o.logFile == "/tmp/log")
        #expect(!o.logTime)
        #expect(o.debug && o.trace)
        #expect(o.username == "u" && o.password == "p")
        #expect(o.authRequired)
    }

    @Test func aliasesMapToTheSameOption() throws {
        #expect(try options(["--addr", "h1"]).host == "h1")
        #expect(try options(["-net", "h2"]).host == "h2")
        #expect(try options(["--server_name", "x"]).serverName == "x")
        #expect(try options(["--name=y"]).serverName == "y")
        #expect(try options(["--http_port", "-1"]).httpPort == -1)
        #expect(try options(["--auth", "tok"]).authToken == "tok")
        #expect(try options(["-V"]).trace)
        #expect(try options(["-D"]).debug)
    }

    @Test func helpAndVersionAreActions() throws {
        #expect(try ServerCommandLine.parse(["-h"]) == .help)
        #expect(try ServerCommandLine.parse(["--help"]) == .help)
        #expect(try ServerCommandLine.parse(["-v"]) == .version)
        #expect(try ServerCommandLine.parse(["--version"]) == .version)
        #expect(ServerCommandLine.versionLine.contains("0.1.0"))
        #expect(ServerCommandLine.usage.contains("--ports_file_dir"))
    }

    @Test(arguments: [
        ["--tls"], ["--tlscert", "c"], ["--cluster", "nats://x:1"], ["--routes", "a"], ["-js=maybe"], ["-sd"],
        ["-c", "nats.conf"], ["--config", "nats.conf"], ["-t"], ["--signal", "bogus"], ["--signal"], ["-ms", "1"],
        ["--profile", "1"], ["--syslog"], ["--bogus"], ["-x"], ["stray"], ["-p"], ["-p", "abc"], ["-p", "70000"],
        ["-T=maybe"], ["--pass", "p"], ["--user", "u", "--auth", "t"],
    ])
    func unsupportedUnknownOrMalformedFlagsAreRefused(args: [String]) {
        #expect(throws: CommandLineError.self) { try ServerCommandLine.parse(args) }
    }

    @Test func refusalsSayWhy() {
        #expect {
            try ServerCommandLine.parse(["--tls"])
        } throws: { error in
            (error as? CommandLineError)?.message.contains("TLS") == true
        }
        #expect {
            try ServerCommandLine.parse(["--bogus"])
        } throws: { error in
            (error as? CommandLineError)?.message == "flag provided but not defined: -bogus"
        }
    }
}

@Suite("CONNECT decoding")
struct ConnectOptionsTests {
    private func decode(_ json: String, into start: ConnectOptions = ConnectOptions()) throws -> ConnectOptions {
        var options = start
        let bytes = Array(json.utf8)
        try bytes.withUnsafeBytes { raw in
            do { try options.apply(json: raw) } catch { throw error }
        }
        return options
    }

    @Test func defaultsAreVerbosePedanticAndEcho() {
        let o = ConnectOptions()
        #expect(o.verbose && o.pedantic && o.echo)
        #expect(!o.headers && !o.noResponders)
        #expect(o.protocolVersion == 0)
    }

    @Test func onlyGivenKeysChange() throws {
        let o = try decode(#"{"pedantic":false,"name":"svc","lang":"swift","version":"1.0","protocol":1,"headers":true,"no_responders":true,"user":"u","pass":"p","auth_token":"t","echo":false}"#)
        #expect(o.verbose)
        #expect(!o.pedantic && !o.echo)
        #expect(o.headers && o.noResponders)
        #expect(o.name == "svc" && o.lang == "swift" && o.version == "1.0")
        #expect(o.protocolVersion == 1)
        #expect(o.user == "u" && o.pass == "p" && o.authToken == "t")
    }

    @Test func keysMatchCaseInsensitivelyAndUnknownKeysAreIgnored() throws {
        let o = try decode(#"{"Verbose":false,"ECHO":false,"whatever":[1,{"a":null}],"tls_required":false}"#)
        #expect(!o.verbose && !o.echo)
    }

    @Test func nullLeavesTheDefault() throws {
        let o = try decode(#"{"verbose":null,"name":null}"#)
        #expect(o.verbose)
        #expect(o.name == "")
    }

    @Test(arguments: [
        #"{"verbose":1}"#, #"{"protocol":1.0}"#, #"{"protocol":"1"}"#, #"{"name":5}"#, #"{"verbose":false} x"#,
        "", "[]", "{", #"{"a" 1}"#, #"{"a":tru}"#, #"{"a":"\q"}"#, #"{"a":01}"#,
    ])
    func wrongTypesAndMalformedJSONAreRejected(json: String) {
        #expect(throws: ConnectOptions.DecodeError.self) { try decode(json) }
    }

    @Test func stringEscapesAreDecoded() throws {
        let o = try decode(#"{"name":"a\"b\\c\u00e9\ud83d\ude00\n"}"#)
        #expect(o.name == "a\"b\\cé😀\n")
    }
}

@Suite("Server id, INFO and monitoring documents")
struct GeneratedTextTests {
    @Test func serverIDsLookLikeNkeysAndDiffer() {
        let a = ServerID.generate()
        let b = ServerID.generate()
        #expect(a != b)
        for id in [a, b] {
            #expect(id.count == 56)
            #expect(id.hasPrefix("N"))
            #expect(id.allSatisfy { ("A"..."Z").contains($0) || ("2"..."7").contains($0) })
        }
    }

    @Test func base32AndCRCMatchKnownVectors() {
        #expect(Base32.encode(Array("foobar".utf8)) == "MZXW6YTBOI")
        #expect(Base32.encode([]) == "")
        // CRC-16/XMODEM check value.
        #expect(CRC16.checksum(Array("123456789".utf8)) == 0x31C3)
    }

    @Test func infoHasTheSpaceBeforeCRLFAndPerClientFields() throws {
        let template = InfoTemplate(serverID: "NABC", serverName: "n\"x", host: "0.0.0.0", port: 4222,
                                    authRequired: true, maxPayload: 1024)
        let line = String(decoding: template.line(clientID: 7, clientIP: "10.0.0.1"), as: UTF8.self)
        #expect(line == #"INFO {"server_id":"NABC","server_name":"n\"x","version":"2.9.10","proto":1,"go":"\#(ServerVersion.runtime)","host":"0.0.0.0","port":4222,"headers":true,"auth_required":true,"max_payload":1024,"client_id":7,"client_ip":"10.0.0.1"} "# + "\r\n")
    }

    @Test func goJSONObjectEscapesLikeGo() {
        var json = GoJSONObject()
        json.add("s", "<a&b>\t\u{1}")
        #expect(json.string() == #"{"s":"\u003ca\u0026b\u003e\t\u0001"}"#)
    }

    @Test func uptimeIsFormattedLikeNatsServer() {
        #expect(Broker.goUptime(seconds: 31) == "31s")
        #expect(Broker.goUptime(seconds: 3600 + 61) == "1h1m1s")
        #expect(Broker.goUptime(seconds: 86_400 * 2 + 5) == "2d0h0m5s")
    }

    @Test func wallClockMarshalsLikeGoTime() {
        #expect(WallClock(seconds: 0, nanoseconds: 232_476_344).rfc3339 == "1970-01-01T00:00:00.232476344Z")
        #expect(WallClock(seconds: 86_400, nanoseconds: 500_000_000).rfc3339 == "1970-01-02T00:00:00.5Z")
        #expect(WallClock(seconds: 1, nanoseconds: 0).rfc3339 == "1970-01-01T00:00:01Z")
    }

    @Test func startRejectsInconsistentOptions() {
        var options = Options()
        options.port = 0
        options.noLog = true
        options.maxPayload = 2048
        options.maxPending = 1024
        let server = Server(options: options)
        #expect(throws: ServerStartError.self) { try server.start() }
    }

    @Test func aBusyPortIsAListenError() throws {
        let broker = try TestBroker()
        var options = Options()
        options.host = "127.0.0.1"
        options.port = broker.port
        options.noLog = true
        let second = Server(options: options)
        #expect(throws: ServerStartError.self) { try second.start() }
        #expect(second.port == 0)
    }
}

@Suite("Log formatting")
struct LogFormattingTests {
    @Test func durationsPrintLikeGo() {
        #expect(goDuration(.seconds(10)) == "10s")
        #expect(goDuration(.milliseconds(250)) == "250ms")
        #expect(goDuration(.seconds(90)) == "1m30s")
        #expect(goDuration(.seconds(7200)) == "2h0m0s")
    }

    @Test func timestampsHaveMicroseconds() {
        var line: [UInt8] = []
        Logger.appendTimestamp(to: &line)
        let text = String(decoding: line, as: UTF8.self)
        // 2026/11/23 12:53:19.232476 followed by a space.
        #expect(text.count == 27)
        #expect(text.range(of: #"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{6} $"#, options: .regularExpression) != nil)
    }
}
