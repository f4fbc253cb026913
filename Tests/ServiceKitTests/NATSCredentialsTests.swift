import Foundation
import TestSupport
import Testing
@testable import ServiceKit

@Suite struct NATSCredentialsTests {
    let settings = StandardSettings.all(serviceName: "auth")

    func load(_ environment: [String: String]) throws -> NATSCredentials? {
        let config = try Configuration.load(settings, arguments: [], environment: environment, workingDirectory: "/nonexistent")
        return try NATSCredentials.from(config)
    }

    /// The problems of loading `environment` (the load or the credentials), as text.
    func problem(_ environment: [String: String]) -> String {
        do {
            _ = try load(environment)
            return "(no error)"
        } catch {
            return "\(error)"
        }
    }

    @Test func noUserMeansNoCredentials() throws {
        #expect(try load([:]) == nil)
        #expect(try load(["NATS_URL": "nats://a:b@127.0.0.1:4222"]) == nil, "the URL's credentials stay with the URL")
    }

    @Test func userAndPasswordFromTheEnvironmentWithTheirOwnInbox() throws {
        let credentials = try #require(try load(["NATS_USER": "auth-service", "NATS_PASSWORD": "s3cret"]))
        #expect(credentials == NATSCredentials(user: "auth-service", password: "s3cret"))
        #expect(credentials.inboxPrefix == "_INBOX.auth-service")
        let config = try Configuration.load(settings, arguments: [], environment: ["NATS_USER": "u", "NATS_PASSWORD": "s3cret"],
                                            workingDirectory: "/nonexistent")
        #expect(config.summary["nats_password"] == .string("(set)"), "the password is never shown")
    }

    @Test func passwordFileFirstLineWithoutItsNewline() throws {
        let dir = try temporaryDirectory("credentials")
        defer { removeTemporary(dir) }
        let file = dir + "/auth-service"
        try "pW0rd-from-file\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try load(["NATS_USER": "auth-service", "NATS_PASSWORD_FILE": file])?.password == "pW0rd-from-file")
        try "crlf\r\nsecond line\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try load(["NATS_USER": "auth-service", "NATS_PASSWORD_FILE": file])?.password == "crlf")
        // Docker and Kubernetes mount secrets readable by everyone: accepted.
        chmod(file, 0o644)
        #expect(try load(["NATS_USER": "auth-service", "NATS_PASSWORD_FILE": file])?.password == "crlf")
    }

    @Test func badCombinationsAndFilesAreClearErrors() throws {
        let dir = try temporaryDirectory("credentials")
        defer { removeTemporary(dir) }
        let empty = dir + "/empty", big = dir + "/big"
        try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
        try String(repeating: "x", count: 5000).write(toFile: big, atomically: true, encoding: .utf8)

        #expect(problem(["NATS_PASSWORD": "p"]).contains("NATS_PASSWORD (from environment variable NATS_PASSWORD): a password needs NATS_USER"))
        #expect(problem(["NATS_PASSWORD_FILE": empty]).contains("a password file needs NATS_USER"))
        #expect(problem(["NATS_USER": "u"]).contains("NATS_USER \"u\" needs NATS_PASSWORD or NATS_PASSWORD_FILE"))
        #expect(problem(["NATS_USER": "u", "NATS_PASSWORD": "p", "NATS_PASSWORD_FILE": empty]).contains("not both"))
        #expect(problem(["NATS_USER": "u", "NATS_PASSWORD_FILE": dir + "/missing"]).contains("\(dir)/missing does not exist"))
        #expect(problem(["NATS_USER": "u", "NATS_PASSWORD_FILE": dir]).contains("is a folder"))
        #expect(problem(["NATS_USER": "u", "NATS_PASSWORD_FILE": empty]).contains("\(empty) is empty"))
        #expect(problem(["NATS_USER": "u", "NATS_PASSWORD_FILE": big]).contains("larger than 4096 bytes"))
        // The user names the reply inbox, so it must be one subject token.
        for bad in ["a.b", "a b", "*", ">", "a/b"] {
            #expect(problem(["NATS_USER": bad, "NATS_PASSWORD": "p"]).contains("NATS_USER (from environment variable NATS_USER): invalid value"),
                    "\(bad)")
        }
    }

    /// ServiceMain refuses bad credentials before anything starts: exit status 2 with the message.
    @Test func serviceMainStopsWithStatus2OnBadCredentials() async throws {
        let status = await ServiceMain.run(CredentialsProbe.self, arguments: [],
                                           environment: ["NATS_USER": "u", "NATS_PASSWORD_FILE": "/nonexistent/password"])
        #expect(status == 2)
    }
}

/// A service that must never be opened: the configuration is refused first.
private struct CredentialsProbe: ServiceProgram {
    static let executableName = "credentials-probe"
    static let version = "0.0.0"
    static var settings: [AnySetting] { StandardSettings.all(serviceName: "probe") }
    static var serviceNameSetting: Setting<String> { StandardSettings.serviceName(default: "probe") }
    init(configuration: Configuration, logger: ServiceLogger) throws { Issue.record("the service was opened") }
    func install(on runtime: ServiceRuntime) {}
}
