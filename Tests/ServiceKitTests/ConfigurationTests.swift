import Foundation
import TestSupport
import Testing
@testable import ServiceKit

@Suite struct ConfigurationTests {
    static let retries = Setting<Int>.integer("login_max_failures", env: "LOGIN_MAX_FAILURES", default: 5, range: 1...100,
                                               meaning: "failed logins before 429")
    static let verbose = Setting<Bool>.boolean("verbose_http", env: "VERBOSE_HTTP", default: false, meaning: "log every request")
    let settings: [AnySetting] = StandardSettings.all(serviceName: "auth-service") + [AnySetting(retries), AnySetting(verbose)]

    func folder(withDefaultJSON json: String?) throws -> String {
        let dir = try temporaryDirectory("config")
        if let json {
            try FileManager.default.createDirectory(atPath: dir + "/config", withIntermediateDirectories: true)
            try Data(json.utf8).write(to: URL(fileURLWithPath: dir + "/config/default.json"))
        }
        return dir
    }

    @Test func builtInDefaultsApplyWhenNothingIsSet() throws {
        let dir = try folder(withDefaultJSON: nil)
        let config = try Configuration.load(settings, arguments: [], environment: [:], workingDirectory: dir)
        #expect(config[StandardSettings.natsURL] == "nats://127.0.0.1:4222")
        #expect(config[StandardSettings.httpPort] == 8080)
        #expect(config[StandardSettings.logLevel] == .info)
        #expect(config[StandardSettings.jwtSecret] == nil)
        #expect(config[StandardSettings.serviceName(default: "auth-service")] == "auth-service")
        #expect(config[Self.retries] == 5)
        #expect(config.source(of: "http_port") == .builtInDefault)
    }

    @Test func fileOverridesDefaultsAndEnvironmentOverridesFile() throws {
        let dir = try folder(withDefaultJSON: #"{"http_port": 9000, "log_level": "debug", "login_max_failures": 3, "verbose_http": true}"#)
        let config = try Configuration.load(settings, arguments: [],
                                            environment: ["HTTP_PORT": "9100", "JWT_SECRET": "0123456789abcdef0123", "NATS_URL": ""],
                                            workingDirectory: dir)
        #expect(config[StandardSettings.httpPort] == 9100)
        #expect(config.source(of: "http_port") == .environment("HTTP_PORT"))
        #expect(config[StandardSettings.logLevel] == .debug)
        #expect(config.source(of: "log_level") == .file(dir + "/config/default.json"))
        #expect(config[Self.retries] == 3)
        #expect(config[Self.verbose] == true)
        #expect(config[StandardSettings.jwtSecret] == "0123456789abcdef0123")
        #expect(config[StandardSettings.natsURL] == "nats://127.0.0.1:4222", "an empty variable counts as unset")
        #expect(config.summary["jwt_secret"] == .string("(set)"))
        #expect(config.summary["http_port"] == .string("9100"))
    }

    @Test func explicitConfigFileReplacesTheConventionalOne() throws {
        let dir = try folder(withDefaultJSON: #"{"http_port": 9000}"#)
        let other = dir + "/other.json"
        try Data(#"{"http_port": 7000}"#.utf8).write(to: URL(fileURLWithPath: other))
        let a = try Configuration.load(settings, arguments: ["--config", other], environment: [:], workingDirectory: dir)
        #expect(a[StandardSettings.httpPort] == 7000)
        let b = try Configuration.load(settings, arguments: ["--config=\(other)"], environment: [:], workingDirectory: dir)
        #expect(b.source(of: "http_port") == .file(other))
    }

    @Test func badEnvironmentValueNamesTheVariableAndWhatIsExpected() throws {
        let dir = try folder(withDefaultJSON: nil)
        #expect(throws: ConfigurationError(problems: [
            .init(key: "HTTP_PORT", source: .environment("HTTP_PORT"), message: "invalid value \"eighty\": expected an integer in 0...65535"),
        ])) {
            try Configuration.load(settings, arguments: [], environment: ["HTTP_PORT": "eighty"], workingDirectory: dir)
        }
    }

    @Test func everyProblemIsReportedTogetherWithItsSource() throws {
        let dir = try folder(withDefaultJSON: #"{"http_port": "80", "colour": "blue", "log_level": "loud", "login_max_failures": 0}"#)
        let file = ConfigSource.file(dir + "/config/default.json")
        do {
            _ = try Configuration.load(settings, arguments: [], environment: ["NATS_URL": "http://x:1", "JWT_SECRET": "short"],
                                       workingDirectory: dir)
            Issue.record("expected an error")
        } catch {
            #expect(error.problems.map(\.key) == ["colour", "http_port", "log_level", "login_max_failures", "NATS_URL", "JWT_SECRET"])
            #expect(error.problems.first?.source == file)
            #expect(error.problems.first?.message.hasPrefix("unknown key") == true)
            #expect(error.problems[1].message == #"invalid value "80": expected an integer in 0...65535"#, "a JSON string is not a number")
            #expect(error.problems[2].message.contains("one of trace, debug, info, notice, warning, error, critical"))
            #expect(error.problems[4].source == .environment("NATS_URL"))
            #expect(error.problems[5].message == "invalid value (secret, 5 bytes): expected a secret of at least 16 bytes")
            #expect(!error.description.contains("short"), "secrets never appear in errors")
            #expect(error.description.hasPrefix("configuration: colour (from file "))
        }
    }

    @Test func unreadableOrInvalidFilesAndStrayArgumentsAreProblems() throws {
        let dir = try folder(withDefaultJSON: "[1, 2]")
        #expect(throws: ConfigurationError.self) { try Configuration.load(settings, arguments: [], environment: [:], workingDirectory: dir) }
        let missing = dir + "/nope.json"
        do {
            _ = try Configuration.load(settings, arguments: ["--config", missing, "--verbose"], environment: [:], workingDirectory: dir)
            Issue.record("expected an error")
        } catch {
            #expect(error.problems.map(\.key) == ["--verbose", missing])
            #expect(error.problems[1].message == "cannot read the file")
        }
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        #expect(throws: ConfigurationError(problems: [.init(key: dir + "/bad.json", source: .file(dir + "/bad.json"), message: "not valid JSON")])) {
            try Configuration.load(settings, arguments: ["--config", dir + "/bad.json"], environment: [:], workingDirectory: dir)
        }
        #expect(throws: ConfigurationError(problems: [.init(key: "--config", source: .arguments, message: "expected a file path after --config")])) {
            try Configuration.load(settings, arguments: ["--config"], environment: [:], workingDirectory: dir + "/elsewhere")
        }
    }

    @Test(arguments: [
        ("nats://127.0.0.1:4222", true), ("localhost:4222", true), ("nats://a:1,nats://b:2", true), ("tls://h:4443", true),
        ("nats://user:pw@host:4222", true), ("host", true),
        ("http://h:4222", false), ("nats://h:0", false), ("nats://h:99999", false), ("nats://:4222", false), ("", false), ("nats://a:1,", false),
    ])
    func natsURLValidation(url: String, valid: Bool) {
        #expect(StandardSettings.isValidNATSURLList(url) == valid)
    }

    @Test func documentationTableListsEveryKeyWithEnvDefaultAndMeaning() {
        let table = Configuration.documentationTable(settings)
        let lines = table.split(separator: "\n")
        #expect(lines.count == 2 + settings.count)
        #expect(lines[0] == "| Key (file) | Environment | Default | Meaning |")
        #expect(table.contains("| `http_port` | `HTTP_PORT` | `8080` | HTTP listen port (0 picks a free one); an integer in 0...65535 |"))
        #expect(table.contains("| `jwt_secret` | `JWT_SECRET` | `(none)` |"))
        #expect(table.contains("| `login_max_failures` | `LOGIN_MAX_FAILURES` | `5` |"))
    }
}
