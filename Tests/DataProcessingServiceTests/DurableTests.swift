// EVENT_DELIVERY=at-least-once with the real executable and a broker with JetStream on a store
// directory: jobs survive a SIGKILLed service and a restarted broker, two instances share the jobs,
// normalised events are stored once however often their source event is delivered.

import Foundation
import NATSClient
import ServiceKit
import Synchronization
import TestSupport
import Testing

extension Broker {
    /// Our broker (`NATS_SERVER_BIN`, else the one built beside the tests) with JetStream on a
    /// free port and a store of its own, so that it can be killed and started again on the same
    /// store; `configuration`: the text of a configuration file to start it with.
    static func oursWithStore(configuration: String? = nil) async throws -> Broker {
        try await Broker.start(port: freePort(), jetStream: true, executable: oursExecutable(), configuration: configuration)
    }

    /// nats-server 2.9.10 the same way, nil when it is not installed.
    static func referenceWithStore() async throws -> Broker? {
        guard referenceAvailable else { return nil }
        return try await Broker.start(port: freePort(), jetStream: true, executable: referenceExecutable)
    }
}

@Suite(.serialized) struct DurableTests {
    static let service = "data-processing-service"

    /// Starts the service once the two streams it reads exist (created here as their owners,
    /// auth-service and notification-service, would: the service waits for them, never creates them).
    func start(_ broker: Broker, _ extra: [String: String] = [:]) async throws -> ServiceProcess {
        let owner = try await NATSClient.connect(broker.url)
        do {
            let js = try owner.jetStream()
            for spec in [PlatformStreams.userEvents, PlatformStreams.notifications] { try await JetStreamSetup.ensure(spec, js) }
        } catch {
            await owner.close()
            throw error
        }
        await owner.close()
        var environment = ["NATS_URL": broker.url, "LOG_LEVEL": "debug", "WORKERS": "1", "JOBS_ACK_WAIT_S": "3",
                           "EVENT_DELIVERY": "at-least-once"]
        for (k, v) in extra { environment[k] = v }
        let service = try await ServiceProcess.start(Self.service, environment: environment)
        #expect(try await eventually(30) { try await service.request("GET", "/readyz").status == 200 },
                "not ready: \(service.child.output.suffix(10).joined(separator: "\n"))")
        return service
    }

    func object(_ payload: [UInt8]) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]) ?? [:]
    }

    /// Submits `body` (retrying while the endpoint is not yet registered); the job id.
    func submit(_ client: NATSClient, _ body: String) async throws -> String {
        var reply: Message?
        _ = await eventually {
            reply = try? await client.request(Array(body.utf8), subject: "data.jobs.submit", timeout: .seconds(2))
            return reply?.serviceError == nil && reply != nil
        }
        let answer = object(try #require(reply).payload)
        return try #require(answer["job_id"] as? String, "submit answered \(answer)")
    }

    /// `data.jobs.status` of `id`: the answer, or the service error.
    func status(_ client: NATSClient, _ id: String) async throws -> Message {
        try await client.request(Array(#"{"job_id":"\#(id)"}"#.utf8), subject: "data.jobs.status", timeout: .seconds(5))
    }

    /// A job of `pairs` x `pairs` joined records grouped into one: slow enough (a second or more
    /// in a debug build) to be killed while it runs.
    static func slowJob(_ pairs: Int, tag: Int = 0) -> String {
        let left = (0..<pairs).map { #"{"k":1,"a":\#($0)}"# }.joined(separator: ",")
        let right = (0..<pairs).map { #"{"k":1,"b":\#($0 + tag)}"# }.joined(separator: ",")
        return #"{"data":[\#(left)],"join_with":[\#(right)],"pipeline":[{"op":"join","on":["k"]},"#
            + #"{"op":"group","by":["k"],"aggregates":[{"fn":"count"},{"fn":"sum","field":"b"}]}]}"#
    }

    static let quickJob = #"{"format":"csv","csv":"user,ms\nann,120\nbo,30\nann,80\n","pipeline":[{"op":"group","by":["user"],"aggregates":[{"fn":"count"}]},{"op":"sort","by":["user"]}]}"#

    @Test func aJobSurvivesItsServiceKilledWhileRunningOrWaiting() async throws {
        let broker = try await Broker.oursWithStore()
        let environment = ["JOBS_MAX_RUNNING": "1", "TIME_BUDGET_MS": "120000"]
        var service = try await start(broker, environment)
        let client = try await NATSClient.connect(broker.url)
        do {
            let running = try await submit(client, Self.slowJob(700))
            // One job at a time: the second waits in DATA_JOBS until the first is acknowledged.
            let waiting = try await submit(client, Self.quickJob)
            _ = try await service.child.waitForLine("the slow job's start") { $0.contains("job started") && $0.contains(running) }
            // The first was delivered (running), the second not yet (queued).
            #expect(object(try await status(client, running).payload)["status"] as? String == "running")
            #expect(object(try await status(client, waiting).payload)["status"] as? String == "queued")
            await service.kill9()
            let finishedBeforeKill = service.child.output.contains { $0.contains("job finished") }
            #expect(!finishedBeforeKill, "the job finished before the kill; the test needs a slower job")

            // The broker restarts on its store too: the jobs are on disk.
            await broker.kill9()
            try await broker.restart()
            service = try await start(broker, environment)
            let client2 = try await NATSClient.connect(broker.url)
            var results: [String: [String: Any]] = [:]
            #expect(await eventually(60) {
                for id in [running, waiting] where results[id] == nil {
                    if let reply = try? await status(client2, id), reply.serviceError == nil,
                       case let answer = object(reply.payload), answer["status"] as? String == "done" {
                        results[id] = answer
                    }
                }
                return results.count == 2
            }, "results: \(results.keys.sorted()); service:\n\(service.child.output.suffix(15).joined(separator: "\n"))")
            let slow = try #require((results[running]?["result"] as? [String: Any])?["records"] as? [[String: Any]])
            #expect(slow.first?["count"] as? Int == 700 * 700)
            #expect((results[waiting]?["result"] as? [String: Any])?["records"] as? [[String: Any]] != nil)
            #expect(service.child.output.contains { $0.contains("job started") && $0.contains(running) && $0.contains(#""delivery":2"#) })
            let unknown = try await status(client2, "0123456789abcdef0123456789abcdef")
            #expect(unknown.serviceError?.code == 404)
            let wildcard = try await status(client2, "*")
            #expect(wildcard.serviceError?.code == 404)
            await client2.close()
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func twoInstancesShareTwentyJobsAndResultsSurviveARestart() async throws {
        guard let broker = try await Broker.referenceWithStore() else {
            Issue.record("/usr/sbin/nats-server (2.9.10) is not installed")
            return
        }
        let environment = ["JOBS_MAX_RUNNING": "1", "JOBS_MAX_QUEUED": "40"]
        let first = try await start(broker, environment)
        let second = try await start(broker, environment)
        let client = try await NATSClient.connect(broker.url)
        do {
            let done = try await client.subscribe("data.jobs.*.done")
            try await client.flush()
            var ids: [String] = []
            for n in 0..<20 { ids.append(try await submit(client, Self.slowJob(60, tag: n))) }
            let seen = Mutex<[String: Int]>([:])
            let collector = Task {
                for try await message in done {
                    let id = String(message.subject.split(separator: ".")[2])
                    seen.withLock { $0[id, default: 0] += 1 }
                }
            }
            defer { collector.cancel() }
            let js = try client.jetStream()
            // Every job acknowledged (each is acknowledged after its done message went out).
            #expect(try await eventually(120) {
                try await js.streamInfo("DATA_JOBS").state.messages == 0 && seen.withLock { $0.count } == 20
            }, "done: \(seen.withLock { $0.count }) of 20")
            for id in ids { _ = try await status(client, id) }
            try await client.flush()
            let counted = seen.withLock { $0 }
            #expect(Set(counted.keys) == Set(ids))
            #expect(counted.values.allSatisfy { $0 == 1 }, "done messages per job: \(counted)")
            func ran(_ s: ServiceProcess) -> Int { s.child.output.filter { $0.contains("job started") }.count }
            #expect(ran(first) + ran(second) == 20)
            #expect(ran(first) > 0 && ran(second) > 0, "jobs run: \(ran(first)) and \(ran(second))")

            // Both instances and the broker stop; a new instance on the restarted broker answers every result.
            #expect(await first.stop() == 0)
            #expect(await second.stop() == 0)
            await broker.kill9()
            try await broker.restart()
            let third = try await start(broker, environment)
            let client2 = try await NATSClient.connect(broker.url)
            for (n, id) in ids.enumerated() {
                let answer = object(try await status(client2, id).payload)
                #expect(answer["status"] as? String == "done", "job \(id): \(answer)")
                let records = (answer["result"] as? [String: Any])?["records"] as? [[String: Any]]
                #expect(records?.first?["sum_b"] as? Int == (0..<60).reduce(0) { $0 + $1 + n } * 60)
            }
            await client2.close()
            #expect(await third.stop() == 0)
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        await first.stop()
        await second.stop()
        await broker.stop()
    }

    @Test func normalisedEventsAreStoredOnceWhenTheirSourceComesTwice() async throws {
        let broker = try await Broker.oursWithStore()
        var service = try await start(broker)
        let client = try await NATSClient.connect(broker.url)
        do {
            let js = try client.jetStream()
            let login = #"{"event_id":"ev-1","user_id":"u-1","email":"Ann@Example.com","time":"2026-11-23T17:02:14Z"}"#
            let sent = #"{"event_id":"ev-2","user_id":"u-1","notification_id":"n-1"}"#
            _ = try await js.publish("user.logged_in", login)
            // The same event again (a publisher that retried after the duplicate window).
            _ = try await js.publish("user.logged_in", login)
            _ = try await js.publish("notification.sent", sent)
            _ = try await js.publish("user.logged_in", "not json")
            func count(_ subject: String) async throws -> UInt64 {
                try await js.streamInfo("EVENTS", subjectsFilter: subject).state.subjects?[subject] ?? 0
            }
            #expect(try await eventually(20) {
                let logins = try await count("events.user.logged_in")
                let notifications = try await count("events.notification.sent")
                return logins == 1 && notifications == 1
            })
            #expect(try await eventually(20) { try await js.streamInfo("DEAD_LETTERS").state.messages == 1 })
            let letter = try await js.getLastMessage("DEAD_LETTERS", subject: "deadletter.data-processing.data-processing-events")
            #expect(letter.headers?["Dead-Letter-Reason"]?.contains("not_json_object") == true)

            // Every source event delivered again: the consumers start over from the streams' first message.
            #expect(await service.stop() == 0)
            try await js.deleteConsumer("USER_EVENTS", name: "data-processing-events")
            try await js.deleteConsumer("NOTIFICATIONS", name: "data-processing-notifications")
            service = try await start(broker)
            #expect(try await eventually(20) {
                let info = try await js.consumerInfo("USER_EVENTS", name: "data-processing-events")
                return info.numPending == 0 && info.numAckPending == 0
            })
            #expect(try await eventually(20) {
                let info = try await js.consumerInfo("NOTIFICATIONS", name: "data-processing-notifications")
                return info.numPending == 0 && info.numAckPending == 0
            })
            #expect(try await count("events.user.logged_in") == 1)
            #expect(try await count("events.notification.sent") == 1)
            #expect(try await js.streamInfo("EVENTS").state.messages == 2)
            let stored = try await js.getLastMessage("EVENTS", subject: "events.user.logged_in")
            let envelope = object(stored.payload)
            #expect(envelope["event_id"] as? String == "ev-1")
            #expect((envelope["enrichment"] as? [String: Any])?["email_domain"] as? String == "example.com")
            #expect(stored.headers?["traceparent"] != nil)
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test(arguments: ["ours", "nats-server 2.9.10"])
    func aFullJobStreamRefusesWith429(_ which: String) async throws {
        guard let broker = which == "ours" ? try await Broker.oursWithStore() : try await Broker.referenceWithStore() else {
            Issue.record("/usr/sbin/nats-server (2.9.10) is not installed")
            return
        }
        // DATA_JOBS holds JOBS_MAX_RUNNING + JOBS_MAX_QUEUED = 1 job: the running one fills it.
        let service = try await start(broker, ["JOBS_MAX_RUNNING": "1", "JOBS_MAX_QUEUED": "0", "TIME_BUDGET_MS": "120000"])
        let client = try await NATSClient.connect(broker.url)
        do {
            let first = try await submit(client, Self.slowJob(700))
            let refused = try await client.request(Array(Self.quickJob.utf8), subject: "data.jobs.submit", timeout: .seconds(5))
            #expect(refused.serviceError?.code == 429, "\(refused.string)")
            #expect(refused.serviceError?.description.contains("job queue full") == true)
            // Once the first is done the stream has room again.
            #expect(try await eventually(60) {
                object(try await status(client, first).payload)["status"] as? String == "done"
            })
            _ = try await submit(client, Self.quickJob)
            let metrics = try await service.request("GET", "/metrics")
            #expect(metrics.body.contains(#"data_jobs_total{result="rejected"} 1"#))
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func aResultOverMaxPayloadIsStoredAsAFailure() async throws {
        let broker = try await Broker.oursWithStore(configuration: "max_payload: 16384\n")
        let service = try await start(broker)
        let client = try await NATSClient.connect(broker.url)
        do {
            let done = try await client.subscribe("data.jobs.*.done")
            try await client.flush()
            // 100 x 100 joined records: a result of about 300 KB from a request of 4 KB.
            let left = (0..<100).map { #"{"k":1,"a":\#($0)}"# }.joined(separator: ",")
            let id = try await submit(client, #"{"data":[\#(left)],"join_with":[\#(left)],"pipeline":[{"op":"join","on":["k"]}]}"#)
            let message = try await within(30, "the done message") { () -> Message? in
                for try await m in done where m.subject == "data.jobs.\(id).done" { return m }
                return nil
            }
            let published = object(try #require(message).payload)
            #expect(published["status"] as? String == "failed")
            let error = try #require(published["error"] as? [String: Any])
            #expect(error["status"] as? Int == 413)
            #expect((error["message"] as? String)?.contains("max_payload") == true)
            let status = try await status(client, id)
            #expect(status.payload == message?.payload)
            // A job over max_payload with its headers is refused at submit.
            let big = try await client.request(Array(repeating: UInt8(ascii: " "), count: 16_300), subject: "data.jobs.submit", timeout: .seconds(5))
            #expect(big.serviceError?.code == 413, "\(big.string)")
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func withoutJetStreamTheServiceStopsNamingTheSetting() async throws {
        let broker = try await Broker.start()
        var environment = ProcessInfo.processInfo.environment
        for key in ServiceProcess.standardVariables { environment[key] = nil }
        environment["NATS_URL"] = broker.url
        environment["HTTP_PORT"] = "0"
        environment["EVENT_DELIVERY"] = "at-least-once"
        let child = try ChildProcess(executable: try builtExecutable(Self.service), environment: environment)
        _ = try await child.waitForLine("the start-up error") { $0.contains("EVENT_DELIVERY=at-most-once") }
        let code = try await offPool { child.process.waitUntilExit(); return child.process.terminationStatus }
        #expect(code != 0)
        await broker.stop()
    }
}
