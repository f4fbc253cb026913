import Foundation
import TestSupport
import Testing
import ServiceKit

/// The HTTP API of a real auth-service process, over real sockets (NATS deliberately down).
@Suite struct HTTPAPITests {
    @Test func registerAnswers201WithTheUserAndNeverThePasswordHash() async throws {
        try await withAuthService() { service in
            let email = uniqueEmail("reg")
            let response = try await service.register(email.uppercased(), name: "  Ann Lee ")
            #expect(response.status == 201)
            let id = try #require(response.string("id"))
            #expect(response.string("email") == email)
            #expect(response.string("name") == "Ann Lee")
            #expect(response.string("created_at") != nil)
            #expect(response.headers["location"] == "/v1/users/\(id)")
            #expect(response.headers["content-type"] == "application/json")
            for secret in ["password", "salt", "hash", "correct horse"] { #expect(!response.body.contains(secret)) }
        }
    }

    @Test func duplicateEmailIs409WhateverTheCase() async throws {
        try await withAuthService() { service in
            let email = uniqueEmail("dup")
            #expect(try await service.register(email).status == 201)
            let again = try await service.register("  " + email.uppercased())
            #expect(again.status == 409)
            #expect(again.string("error") == "a user with this email already exists")
            #expect(again.json["status"] as? Int == 409)
        }
    }

    @Test func weakPasswordAndBadEmailAre422NamingTheRule() async throws {
        try await withAuthService() { service in
            let short = try await service.register(uniqueEmail("weak"), "abc12")
            #expect(short.status == 422)
            #expect(short.string("rule") == "min_length")
            #expect(short.string("field") == "password")
            #expect(short.string("error")?.contains("at least 10 characters") == true)
            let noDigit = try await service.register(uniqueEmail("weak"), "only letters here")
            #expect(noDigit.status == 422 && noDigit.string("rule") == "letters_and_digits")
            let email = try await service.register("not-an-email", "correct horse 9")
            #expect(email.status == 422 && email.string("field") == "email" && email.string("rule") == "email_syntax")
            let missing = try await service.request("POST", "/v1/users", json: #"{"email":"x@example.com","password":"correct horse 9"}"#)
            #expect(missing.status == 422 && missing.string("error") == "name is required")
            let wrongType = try await service.request("POST", "/v1/users", json: #"{"email":"x@example.com","password":1234567890,"name":"X"}"#)
            #expect(wrongType.status == 422 && wrongType.string("error") == "password must be a string")
            let garbage = try await service.request("POST", "/v1/users", json: "{not json")
            #expect(garbage.status == 400 && garbage.string("error") == "the body must be a JSON object")
        }
    }

    @Test func loginIssuesAVerifiableBearerToken() async throws {
        try await withAuthService() { service in
            let email = uniqueEmail("login")
            let id = try #require(try await service.register(email, name: "Lou").string("id"))
            let response = try await service.login(email.uppercased())
            #expect(response.status == 200)
            #expect(response.string("token_type") == "Bearer")
            #expect(response.json["expires_in"] as? Int == 3600)
            #expect(response.headers["cache-control"] == "no-store")
            let token = try #require(response.string("access_token"))
            let authority = try JWTAuthority(secret: Array(AuthProcess.testSecret.utf8), issuer: "auth-service", audience: "microservices-nats")
            let claims = try authority.verify(token)
            #expect(claims.subject == id)
            #expect(claims.custom["email"] == .string(email))
            #expect(claims.custom["name"] == .string("Lou"))
            let iat = try #require(claims.issuedAt), exp = try #require(claims.expiresAt)
            #expect(exp - iat == 3600)
        }
    }

    @Test func unknownUserAndWrongPasswordGetTheSame401() async throws {
        try await withAuthService() { service in
            let email = uniqueEmail("same")
            #expect(try await service.register(email).status == 201)
            let wrong = try await service.login(email, "wrong horse 9")
            let unknown = try await service.login(uniqueEmail("nobody"), "wrong horse 9")
            #expect(wrong.status == 401 && unknown.status == 401)
            #expect(wrong.body == unknown.body)
            #expect(wrong.body == #"{"error":"invalid email or password","status":401}"#)
            #expect(wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"])
            let missing = try await service.request("POST", "/v1/login", json: #"{"email":"a@example.com"}"#)
            #expect(missing.status == 422)
        }
    }

    @Test func meNeedsAValidBearerToken() async throws {
        try await withAuthService() { service in
            let email = uniqueEmail("me")
            let id = try #require(try await service.register(email).string("id"))
            let token = try #require(try await service.login(email).string("access_token"))
            let me = try await service.request("GET", "/v1/users/me", headers: ["Authorization": "Bearer \(token)"])
            #expect(me.status == 200 && me.string("id") == id && me.string("email") == email)

            let none = try await service.request("GET", "/v1/users/me")
            #expect(none.status == 401 && none.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(none.json["error"] as? String == "missing bearer token")
            let basic = try await service.request("GET", "/v1/users/me", headers: ["Authorization": "Basic dXNlcjpwYXNz"])
            #expect(basic.status == 401)
            let tampered = try await service.request("GET", "/v1/users/me", headers: ["Authorization": "Bearer \(token.dropLast(2))xx"])
            #expect(tampered.status == 401 && tampered.headers["www-authenticate"]?.contains("invalid_token") == true)
            // Right key, but expired / wrong audience / signed by someone else.
            let secret = Array(AuthProcess.testSecret.utf8)
            let expired = try JWTAuthority(secret: secret, issuer: "auth-service", audience: "microservices-nats", now: { 1_000_000 })
                .issue(subject: id, lifetime: 60)
            let otherAudience = try JWTAuthority(secret: secret, issuer: "auth-service", audience: "somebody-else").issue(subject: id, lifetime: 60)
            let otherKey = try JWTAuthority(secret: Array("another-secret-0123456789".utf8), issuer: "auth-service",
                                            audience: "microservices-nats").issue(subject: id, lifetime: 60)
            for bad in [expired, otherAudience, otherKey, "not.a.token"] {
                let response = try await service.request("GET", "/v1/users/me", headers: ["Authorization": "Bearer \(bad)"])
                #expect(response.status == 401, "\(bad)")
            }
        }
    }

    @Test func userByIDShowsTheRecordOnlyToItsOwnUserAnd404ToEveryoneElse() async throws {
        try await withAuthService() { service in
            let email = uniqueEmail("byid"), other = uniqueEmail("other")
            let ownID = try #require(try await service.register(email, name: "Ada").string("id"))
            let otherID = try #require(try await service.register(other, name: "Otto").string("id"))
            let token = try #require(try await service.login(email).string("access_token"))
            let auth = ["Authorization": "Bearer \(token)"]

            // Self: the whole record, email included.
            let own = try await service.request("GET", "/v1/users/\(ownID)", headers: auth)
            #expect(own.status == 200 && own.string("id") == ownID && own.string("email") == email && own.string("name") == "Ada")

            // Another user's id: exactly the answer for an id nobody has, so neither the email,
            // the name nor the id's existence leaks.
            let foreign = try await service.request("GET", "/v1/users/\(otherID)", headers: auth)
            let missing = try await service.request("GET", "/v1/users/no-such-id", headers: auth)
            #expect(foreign.status == 404 && missing.status == 404)
            #expect(foreign.body == missing.body)
            #expect(foreign.body == #"{"error":"user not found","status":404}"#)
            #expect(!foreign.body.contains(other) && !foreign.body.contains("Otto"))
            // The other user sees their own record, and not the first user's.
            let otherToken = try #require(try await service.login(other).string("access_token"))
            let otherAuth = ["Authorization": "Bearer \(otherToken)"]
            let theirs = try await service.request("GET", "/v1/users/\(otherID)", headers: otherAuth)
            #expect(theirs.status == 200 && theirs.string("email") == other)
            let reverse = try await service.request("GET", "/v1/users/\(ownID)", headers: otherAuth)
            #expect(reverse.status == 404 && !reverse.body.contains(email))

            // No token, or a token that does not verify: 401 before anything is looked up.
            let anonymous = try await service.request("GET", "/v1/users/\(ownID)")
            #expect(anonymous.status == 401 && anonymous.json["error"] as? String == "missing bearer token")
            #expect(anonymous.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            let forged = try JWTAuthority(secret: Array("another-secret-0123456789".utf8), issuer: "auth-service",
                                          audience: "microservices-nats").issue(subject: ownID, lifetime: 60)
            let unsigned = Self.unsignedToken(subject: ownID)
            for bad in [forged, unsigned] {
                let response = try await service.request("GET", "/v1/users/\(ownID)", headers: ["Authorization": "Bearer \(bad)"])
                #expect(response.status == 401 && response.headers["www-authenticate"]?.contains("invalid_token") == true, "\(bad)")
                #expect(response.json["error"] as? String == "invalid or expired token" && !response.body.contains(email))
            }

            let wrongMethod = try await service.request("DELETE", "/v1/users/\(otherID)", headers: auth)
            #expect(wrongMethod.status == 405)
            let unknownRoute = try await service.request("GET", "/v2/users", headers: auth)
            #expect(unknownRoute.status == 404)
        }
    }

    /// An `alg: none` token for `subject` with the platform's issuer and audience.
    static func unsignedToken(subject: String) -> String {
        func part(_ json: String) -> String { Base64URL.encode(Array(json.utf8)) }
        let exp = Int(Date().timeIntervalSince1970) + 600
        return part(#"{"alg":"none","typ":"JWT"}"#) + "." +
            part(#"{"sub":"\#(subject)","iss":"auth-service","aud":"microservices-nats","exp":\#(exp)}"#) + "."
    }

    @Test func failedLoginsPerAccountGet429WithRetryAfterEvenForTheRightPassword() async throws {
        try await withAuthService(extra: ["LOGIN_MAX_FAILURES_PER_ACCOUNT": "3", "LOGIN_MAX_FAILURES_PER_ADDRESS": "100",
                                          "LOGIN_FAILURE_WINDOW_SECONDS": "120"]) { service in
            let email = uniqueEmail("limit"), bystander = uniqueEmail("bystander")
            #expect(try await service.register(email).status == 201)
            #expect(try await service.register(bystander).status == 201)
            // A success resets the account's count.
            #expect(try await service.login(email, "wrong horse 9").status == 401)
            #expect(try await service.login(email).status == 200)
            for _ in 0..<3 { #expect(try await service.login(email, "wrong horse 9").status == 401) }
            let limited = try await service.login(email)
            #expect(limited.status == 429)
            let retryAfter = try #require(limited.headers["retry-after"].flatMap(Int.init))
            #expect((1...120).contains(retryAfter))
            #expect(limited.json["retry_after"] as? Int == retryAfter)
            #expect(limited.string("error") == "too many failed logins; retry later")
            // Other accounts from the same address are not affected by this account's limit.
            #expect(try await service.login(bystander).status == 200)
        }
    }

    @Test func failedLoginsPerClientAddressGet429AcrossAccounts() async throws {
        try await withAuthService(extra: ["LOGIN_MAX_FAILURES_PER_ACCOUNT": "100", "LOGIN_MAX_FAILURES_PER_ADDRESS": "4"]) { service in
            let email = uniqueEmail("addr")
            #expect(try await service.register(email).status == 201)
            for i in 0..<4 { #expect(try await service.login(uniqueEmail("guess\(i)"), "wrong horse 9").status == 401) }
            let limited = try await service.login(email)
            #expect(limited.status == 429)
            #expect(limited.headers["retry-after"].flatMap(Int.init).map { (1...900).contains($0) } == true)
        }
    }

    @Test func usersAndTheGeneratedKeySurviveARestart() async throws {
        let first = try await AuthProcess.start(secret: nil)
        let dataDirectory = first.dataDirectory
        defer { removeTemporary(dataDirectory) }
        let warning = try await first.child.waitForLine("the key warning") { $0.contains("JWT_SECRET IS NOT SET") }
        #expect(warning.contains(#""level":"warning""#))
        let email = uniqueEmail("restart")
        let id = try #require(try await first.register(email).string("id"))
        let token = try #require(try await first.login(email).string("access_token"))
        #expect(await first.stop(keepData: true) == 0)

        let second = try await AuthProcess.start(dataDirectory: dataDirectory, secret: nil)
        let me = try await second.request("GET", "/v1/users/me", headers: ["Authorization": "Bearer \(token)"])
        #expect(me.status == 200 && me.string("id") == id)
        #expect(try await second.login(email).status == 200)
        #expect(try await second.register(email).status == 409)
        await second.stop(keepData: true)
    }

    @Test func healthIsUpAndReadinessReportsNATSDown() async throws {
        try await withAuthService() { service in
            let health = try await service.request("GET", "/healthz")
            #expect(health.status == 200)
            let ready = try await service.request("GET", "/readyz")
            #expect(ready.status == 503)
            #expect((ready.json["checks"] as? [String: Any])?["nats"] as? Bool == false)
            #expect((ready.json["checks"] as? [String: Any])?["storage"] as? Bool == true)
            let metrics = try await service.request("GET", "/metrics")
            #expect(metrics.status == 200 && metrics.body.contains("http_requests_total"))
        }
    }

    @Test func everyOperationInTheOpenAPIDocumentIsRouted() async throws {
        let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/auth-service.openapi.yaml")
        let text = try String(contentsOf: document, encoding: .utf8)
        var operations: [(String, String)] = []
        var path: String?
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("  /"), line.hasSuffix(":") { path = String(line.dropFirst(2).dropLast()); continue }
            if !line.hasPrefix("   ") { path = nil }
            if let path, ["    get:", "    post:"].contains(line) { operations.append((line.trimmingCharacters(in: .whitespaces).dropLast().uppercased(), path)) }
        }
        #expect(operations.count == 7)
        try await withAuthService { service in
            for (method, path) in operations {
                let concrete = path.replacingOccurrences(of: "{id}", with: "some-id")
                let response = try await service.request(method, concrete, json: method == "POST" ? "{}" : nil)
                #expect(!response.body.contains("no route for") && response.status != 405, "\(method) \(path)")
            }
        }
    }

    @Test func aBodyOverTheLimitIs413() async throws {
        try await withAuthService { service in
            let padding = String(repeating: "x", count: 17 * 1024)
            let response = try await service.request("POST", "/v1/users", json: jsonText(["email": "big@example.com", "password": "correct horse 9",
                                                                                      "name": padding]))
            #expect(response.status == 413)
            #expect(response.json["status"] as? Int == 413)
            #expect(try await service.request("GET", "/healthz").status == 200)
        }
    }

    @Test func aBadConfigurationStopsTheServiceWithTheKeyNamed() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["PASSWORD_ITERATIONS"] = "12"
        environment["HTTP_PORT"] = "0"
        let child = try ChildProcess(executable: try builtExecutable("auth-service"), environment: environment)
        let line = try await child.waitForLine("the configuration error") { $0.contains("PASSWORD_ITERATIONS") }
        #expect(line.contains("1000...100000000"))
        #expect(await child.stop() == 2)
    }
}
