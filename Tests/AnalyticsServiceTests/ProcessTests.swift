import Foundation
import NATSClient
import ServiceKit
import Testing
import TestSupport

/// The real executable against our broker in at-most-once mode (core NATS, no JetStream):
/// events in over NATS, answers out over NATS and HTTP, counts kept across a restart.
@Suite("analytics-service process")
struct ProcessTests {
    static func headers(_ traceparent: String) throws -> Headers {
        var h = Headers()
        try h.set(name: "traceparent", value: traceparent)
        return h
    }

    static func counted(_ service: ServiceProcess) async throws -> Int? {
        let result = try await service.request("GET", "/v1/stats/ingest")
        return result.json["counted"] as? Int
    }

    static func query(_ client: NATSClient, _ body: String) async throws -> Message {
        try await client.request(Array(body.utf8), subject: "analytics.query", timeout: .seconds(5))
    }

    /// Barrier: unreadable probes on each consumed subject until the service logs each one, so
    /// every subscription is in place (probes count as invalid, never as events).
    static func waitForSubscriptions(_ service: ServiceProcess, _ client: NATSClient) async throws {
        let subjects = ["user.probe", "notification.probe", "events.probe"]
        let seen = await eventually(20) {
            for subject in subjects { try? await client.publish(Array("probe".utf8), subject: subject) }
            try? await client.flush()
            try? await Task.sleep(for: .milliseconds(50))
            let lines = service.child.output.filter { $0.contains("unreadable event dropped") }
            return subjects.allSatisfy { subject in lines.contains { $0.contains(#""subject":"\#(subject)""#) } }
        }
        if !seen { throw TestFailure("the service did not consume every subject; output:\n" + service.child.output.suffix(20).joined(separator: "\n")) }
    }

    /// A broker, a fresh data folder, analytics-service on them and a client, for `body`; then
    /// everything is stopped, whether `body` throws or not (the service must exit 0 when it does
    /// not). `body` may restart the service on the same `environment` by replacing `service`.
    /// The `JWT_SECRET` the service gets (unless a test leaves it unset).
    static let secret = "analytics-test-secret-0123456789"

    /// `Authorization` for a token of `user` signed with `secret` for the platform's issuer and
    /// audience, as auth-service issues them.
    static func bearer(_ user: String, secret: String = ProcessTests.secret, audience: String = "microservices-nats") throws -> [String: String] {
        let token = try JWTAuthority(secret: Array(secret.utf8), issuer: "auth-service", audience: audience)
            .issue(subject: user, lifetime: 600)
        return ["Authorization": "Bearer \(token)"]
    }

    static func withService(_ tag: String, snapshotIntervalSeconds: Int, secret: String? = ProcessTests.secret,
                            _ body: (_ service: inout ServiceProcess, _ client: NATSClient, _ environment: [String: String]) async throws -> Void)
        async throws {
        let broker = try await Broker.start()
        let data: String
        do { data = try temporaryDirectory(tag) } catch { await broker.stop(); throw error }
        defer { removeTemporary(data) }
        let environment = ["NATS_URL": broker.url, "DATA_DIR": data, "LOG_LEVEL": "debug", "EVENT_DELIVERY": "at-most-once",
                           "SNAPSHOT_INTERVAL_SECONDS": String(snapshotIntervalSeconds)].merging(secret.map { ["JWT_SECRET": $0] } ?? [:]) { $1 }
        var service: ServiceProcess
        do { service = try await ServiceProcess.start("analytics-service", environment: environment) } catch {
            await broker.stop()
            throw error
        }
        let client: NATSClient
        do { client = try await NATSClient.connect(broker.url) } catch {
            await service.stop(); await broker.stop()
            throw error
        }
        do {
            try await body(&service, client, environment)
        } catch {
            await client.close(); await service.stop(); await broker.stop()
            throw error
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func countsOnceAnswersAndSurvivesARestart() async throws {
        try await Self.withService("analytics", snapshotIntervalSeconds: 3600) { service, client, environment in
            #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
            try await Self.waitForSubscriptions(service, client)

            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            for k in 0..<3 {
                let raw = login("login-\(k)", user: "user-\(k % 2)", email: "u\(k)@example.com", at: now)
                try await client.publish(raw, subject: "user.logged_in", headers: try Self.headers(trace))
                // data-processing continues the login's trace on the envelope, so whichever copy
                // arrives first, the counted one carries the trace.
                try await client.publish(envelope(of: raw, id: "login-\(k)", user: "user-\(k % 2)", at: now), subject: "events.user.logged_in",
                                         headers: try Self.headers(trace))
            }
            for k in 0..<2 {
                try await client.publish(notificationSent("sent-\(k)", user: "user-\(k)", loginAt: now - 100, latency: 100 + Int64(k) * 100),
                                         subject: "notification.sent")
            }
            try await client.flush()
            #expect(try await eventually { try await Self.counted(service) == 5 })

            // NATS query.
            let reply = try await Self.query(client, #"{"metric":"counts","window":"1m"}"#)
            let counts = try #require(try JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any])
            #expect(counts["total"] as? Int == 5)
            #expect(counts["by_type"] as? [String: Int] == ["user.logged_in": 3, "notification.sent": 2])
            let users = try await Self.query(client, #"{"metric":"unique_users","window":"all"}"#)
            #expect((try JSONSerialization.jsonObject(with: Data(users.payload)) as? [String: Any])?["estimate"] as? Int == 2)

            // Errors as service errors.
            let unknown = try await Self.query(client, #"{"metric":"nope"}"#)
            #expect(unknown.headers?["Nats-Service-Error-Code"] == "404")
            let badWindow = try await Self.query(client, #"{"metric":"counts","window":"2d"}"#)
            #expect(badWindow.headers?["Nats-Service-Error-Code"] == "400")
            let newline = try await Self.query(client, #"{"metric":"a\r\nb"}"#)
            #expect(newline.headers?["Nats-Service-Error-Code"] == "404")
            let notJSON = try await Self.query(client, "metric=counts")
            #expect(notJSON.headers?["Nats-Service-Error-Code"] == "400")

            // NATS: the most active users by id, for whoever the broker lets ask.
            let natsTop = try await Self.query(client, #"{"metric":"top"}"#)
            let natsUsers = (try JSONSerialization.jsonObject(with: Data(natsTop.payload)) as? [String: Any])?["users"] as? [String: Any]
            #expect((natsUsers?["items"] as? [[String: Any]])?.map { $0["key"] as? String } == ["user-0", "user-1"])

            // HTTP: the answers naming users need a token, and show other users as counts only.
            let stats = try await service.request("GET", "/v1/stats", headers: try Self.bearer("user-1"))
            #expect(stats.status == 200)
            let latency = try #require(stats.json["latency"] as? [String: Any])
            #expect(latency["count"] as? Int == 2)
            let p50 = try #require(latency["p50_ms"] as? Double)
            #expect(abs(p50 - 100) <= 100 / 256, "p50 \(p50) is within the histogram's 1/256 of the exact 100 ms")
            let statsUsers = try #require((stats.json["top"] as? [String: Any])?["users"] as? [String: Any])
            let statsItems = try #require(statsUsers["items"] as? [[String: Any]])
            #expect(statsItems.count == 2 && statsItems[0]["key"] == nil && statsItems[0]["count"] as? Int == 3)
            #expect(statsItems[1]["key"] as? String == "user-1" && statsItems[1]["count"] as? Int == 2)
            #expect((statsUsers["you"] as? [String: Any])?["count"] as? Int == 2)
            #expect(!stats.body.contains("user-0"), "another user's id is not shown: \(stats.body)")
            let top = try await service.request("GET", "/v1/stats/top", headers: try Self.bearer("user-0"))
            let topUsers = try #require((top.json["users"] as? [String: Any])?["items"] as? [[String: Any]])
            #expect(topUsers.first?["key"] as? String == "user-0")
            #expect(topUsers.first?["count"] as? Int == 3)
            #expect(topUsers.count == 2 && topUsers[1]["key"] == nil && !top.body.contains("user-1"))
            let stranger = try await service.request("GET", "/v1/stats/top", headers: try Self.bearer("user-9"))
            #expect(stranger.status == 200 && !stranger.body.contains("user-0") && !stranger.body.contains("user-1"))
            #expect((stranger.json["users"] as? [String: Any])?["you"] is NSNull)
            for path in ["/v1/stats", "/v1/stats/all", "/v1/stats/top", "/v1/stats/top?window=all"] {
                let anonymous = try await service.request("GET", path)
                #expect(anonymous.status == 401 && anonymous.json["status"] as? Int == 401, "\(path)")
                #expect(anonymous.json["error"] as? String == "missing bearer token", "\(path)")
                #expect(anonymous.headers["www-authenticate"]?.hasPrefix("Bearer") == true, "\(path)")
                #expect(!anonymous.body.contains("user-0"), "\(path)")
            }
            let forged = [try Self.bearer("user-0", secret: "not-the-service-secret-0123"), try Self.bearer("user-0", audience: "elsewhere"),
                          ["Authorization": "Bearer not.a.token"], ["Authorization": "Basic dXNlcjpwYXNz"]]
            for headers in forged {
                let refused = try await service.request("GET", "/v1/stats/top", headers: headers)
                #expect(refused.status == 401 && refused.json["status"] as? Int == 401, "\(headers)")
                #expect(!refused.body.contains("user-0"), "\(headers)")
            }
            // The aggregates without user ids stay public.
            for path in ["/v1/stats/counts", "/v1/stats/unique_users", "/v1/stats/latency", "/v1/stats/ingest"] {
                let open = try await service.request("GET", path)
                #expect(open.status == 200 && !open.body.contains("user-0"), "\(path)")
            }
            let missing = try await service.request("GET", "/v1/stats/bogus")
            #expect(missing.status == 404 && missing.json["status"] as? Int == 404 && missing.string("error") != nil)
            let bad = try await service.request("GET", "/v1/stats/counts?window=10m")
            #expect(bad.status == 400 && bad.json["status"] as? Int == 400)

            // The debug line of a counted login carries the publisher's trace id.
            _ = try await service.child.waitForLine("an event counted line") {
                $0.contains(#""message":"event counted""#) && $0.contains(#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#)
            }

            // Restart on the same data: the counts survive, and a late duplicate is still dropped.
            #expect(await service.stop() == 0)
            service = try await ServiceProcess.start("analytics-service", environment: environment)
            #expect(try await Self.counted(service) == 5)
            let restored = try await service.request("GET", "/v1/stats/counts?window=1h")
            #expect(restored.json["total"] as? Int == 5)
            try await Self.waitForSubscriptions(service, client)
            try await client.publish(login("login-0", user: "user-0", at: now), subject: "user.logged_in")
            try await client.publish(login("login-new", user: "user-7", at: now), subject: "user.logged_in")
            try await client.flush()
            #expect(try await eventually { try await Self.counted(service) == 6 })
            #expect(try await eventually { try await service.request("GET", "/v1/stats/ingest").json["duplicates"] as? Int == 4 })
        }
    }

    static func snapshotsWritten(_ service: ServiceProcess) async throws -> Int {
        let text = try await service.request("GET", "/metrics").body
        let line = text.split(separator: "\n").first { $0.hasPrefix("analytics_snapshots_total ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }

    /// SIGKILL loses at most the events since the last periodic snapshot.
    @Test func periodicSnapshotsSurviveAKill() async throws {
        try await Self.withService("analytics-kill", snapshotIntervalSeconds: 1) { service, client, environment in
            try await Self.waitForSubscriptions(service, client)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for k in 0..<20 { try await client.publish(login("kill-\(k)", user: "u\(k % 4)", at: now), subject: "user.logged_in") }
            try await client.flush()
            #expect(try await eventually { try await Self.counted(service) == 20 })
            // Two more snapshots: the second one began after all 20 were counted.
            let written = try await Self.snapshotsWritten(service)
            #expect(try await eventually(10) { try await Self.snapshotsWritten(service) >= written + 2 })
            await service.kill9()
            service = try await ServiceProcess.start("analytics-service", environment: environment)
            #expect(try await Self.counted(service) == 20)
            let users = try await service.request("GET", "/v1/stats/unique_users?window=all")
            #expect(users.json["estimate"] as? Int == 4)
        }
    }

    /// Without JWT_SECRET nothing can prove who asks: the answers naming users are refused
    /// with 503, the aggregates still answer.
    @Test func withoutASecretTheAnswersNamingUsersAre503() async throws {
        try await Self.withService("analytics-nosecret", snapshotIntervalSeconds: 3600, secret: nil) { service, _, _ in
            _ = try await service.child.waitForLine("the warning about tokens") { $0.contains("bearer tokens cannot be verified") }
            for path in ["/v1/stats", "/v1/stats/top"] {
                let refused = try await service.request("GET", path, headers: try Self.bearer("user-0"))
                #expect(refused.status == 503 && refused.json["status"] as? Int == 503, "\(path)")
                #expect((refused.json["error"] as? String)?.contains("JWT_SECRET") == true, "\(path)")
                let anonymous = try await service.request("GET", path)
                #expect(anonymous.status == 401, "\(path)")
            }
            #expect(try await service.request("GET", "/v1/stats/counts").status == 200)
        }
    }

    @Test func aBadSettingRefusesToStart() async throws {
        let child = try ChildProcess(executable: try builtExecutable("analytics-service"),
                                     environment: ["HLL_PRECISION": "30", "PATH": "/usr/bin:/bin"])
        _ = try await child.waitForLine("the configuration error") { $0.contains("HLL_PRECISION") }
        _ = try await offPool { child.process.waitUntilExit() }
        #expect(child.process.terminationStatus == 2)
    }
}
