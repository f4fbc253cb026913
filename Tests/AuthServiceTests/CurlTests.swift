import Foundation
import TestSupport
import Testing

/// The real curl (/usr/bin/curl) against a real auth-service process.
@Suite struct CurlTests {
    static let curl = "/usr/bin/curl"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: curl) }

    /// Runs curl with `-s -i` plus `arguments`; returns the parsed response.
    static func run(_ arguments: [String]) async throws -> HTTPResult {
        try await offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: curl)
            process.arguments = ["-s", "-i", "--max-time", "15"] + arguments
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw TestFailure("curl exited with \(process.terminationStatus)") }
            return try parseHTTPResponse(String(decoding: data, as: UTF8.self))
        }
    }

    @Test func registerLoginMeWrongPasswordAndRateLimitWithCurl() async throws {
        guard Self.available else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but \(Self.curl) is missing") }
            return
        }
        try await withAuthService(extra: ["LOGIN_MAX_FAILURES_PER_ACCOUNT": "2"]) { service in
            let base = "http://127.0.0.1:\(service.port)"
            let email = uniqueEmail("curl")
            let json = ["-H", "Content-Type: application/json"]

            let registered = try await Self.run(json + ["-d", jsonText(["email": email, "password": "correct horse 9", "name": "Cu Rl"]),
                                                         "\(base)/v1/users"])
            #expect(registered.status == 201)
            let id = try #require(registered.string("id"))

            let login = try await Self.run(json + ["-d", jsonText(["email": email, "password": "correct horse 9"]), "\(base)/v1/login"])
            #expect(login.status == 200 && login.string("token_type") == "Bearer")
            let token = try #require(login.string("access_token"))

            let me = try await Self.run(["-H", "Authorization: Bearer \(token)", "\(base)/v1/users/me"])
            #expect(me.status == 200 && me.string("id") == id && me.string("name") == "Cu Rl")

            let wrong = try await Self.run(json + ["-d", jsonText(["email": email, "password": "wrong horse 9"]), "\(base)/v1/login"])
            #expect(wrong.status == 401 && wrong.string("error") == "invalid email or password")
            #expect(try await Self.run(json + ["-d", jsonText(["email": email, "password": "wrong horse 9"]), "\(base)/v1/login"]).status == 401)

            let limited = try await Self.run(json + ["-d", jsonText(["email": email, "password": "correct horse 9"]), "\(base)/v1/login"])
            #expect(limited.status == 429)
            #expect(limited.headers["retry-after"].flatMap(Int.init) != nil)
        }
    }
}
