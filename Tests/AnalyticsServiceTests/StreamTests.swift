import Foundation
import NATSClient
import ServiceKit
import Testing
import TestSupport

/// analytics-service in at-least-once mode (the default): it reads USER_EVENTS, NOTIFICATIONS
/// and EVENTS, and its snapshot records how far it counted in each.
@Suite("analytics-service on streams")
struct StreamTests {
    static let streams = ["USER_EVENTS", "NOTIFICATIONS", "EVENTS"]

    /// A JetStream broker of `kind`, a client on it, a data folder; everything stopped after `body`.
    static func withBroker(_ kind: BrokerKind, _ tag: String,
                           _ body: (_ broker: Broker, _ js: JetStreamContext, _ data: String) async throws -> Void) async throws {
        let broker = try await kind.startJetStream()
        let data: String
        let client: NATSClient
        do {
            data = try temporaryDirectory(tag)
            client = try await NATSClient.connect(broker.url)
        } catch {
            await broker.stop()
            throw error
        }
        defer { removeTemporary(data) }
        do {
            try await body(broker, try client.jetStream(), data)
        } catch {
            await client.close(); await broker.stop()
            throw error
        }
        await client.close()
        await broker.stop()
    }

    static func environment(_ broker: Broker, data: String, snapshotSeconds: Int = 3600) -> [String: String] {
        ["NATS_URL": broker.url, "DATA_DIR": data, "LOG_LEVEL": "info", "SNAPSHOT_INTERVAL_SECONDS": String(snapshotSeconds)]
    }

    /// Waits until the service has counted exactly `expected` (and then checks it stays there
    /// once its lag is zero on every stream, so a double count would show).
    static func expectCounts(_ service: ServiceProcess, events: Int, duplicates: Int, withoutID: Int? = nil,
                             sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let reached = try await eventually(30) { try await ingest(service).counted >= events }
        #expect(reached, "expected \(events) events counted", sourceLocation: sourceLocation)
        // Every stream read to its end (lag 0, the gauges refresh every second or two).
        let caughtUp = try await eventually(15) {
            for stream in streams where try await metric(service, #"analytics_stream_lag{stream="\#(stream)"}"#) != 0 { return false }
            return true
        }
        #expect(caughtUp, sourceLocation: sourceLocation)
        let (counted, dropped, noID) = try await ingest(service)
        #expect(counted == events, "counted", sourceLocation: sourceLocation)
        #expect(dropped == duplicates, "duplicates", sourceLocation: sourceLocation)
        if let withoutID { #expect(noID == withoutID, "without event id", sourceLocation: sourceLocation) }
    }

    /// Events published while the service is down are counted when it starts (and after a clean
    /// restart, only the new ones); the same with nats-server 2.9.10.
    @Test(arguments: BrokerKind.allCases)
    func countsWhatWasPublishedWhileItWasDown(_ kind: BrokerKind) async throws {
        if kind == .reference, !FileManager.default.isExecutableFile(atPath: try kind.executable()) {
            #expect(ProcessInfo.processInfo.environment["REQUIRE_PEERS"] != "1", "nats-server 2.9.10 is missing")
            return
        }
        try await Self.withBroker(kind, "analytics-streams-\(kind)") { broker, js, data in
            try await createPlatformStreams(js)
            var total = try await publishEvents(js, from: 0, count: 90)
            let environment = Self.environment(broker, data: data)
            var service = try await ServiceProcess.start("analytics-service", environment: environment)
            do {
                // 30 logins counted once (their envelopes in EVENTS passed over), 30 registrations without
                // an id: no dedupe can help those, only the position.
                try await Self.expectCounts(service, events: total.events, duplicates: total.duplicates, withoutID: 30)
                let ready = try await service.request("GET", "/readyz")
                #expect(ready.status == 200)
                // Per stream: NOTIFICATIONS' 30 events are its own; a login counts from USER_EVENTS,
                // never from its envelope in EVENTS.
                var perStream: [String: Double] = [:]
                for stream in Self.streams {
                    perStream[stream] = try await metric(service, #"analytics_stream_events_total{stream="\#(stream)"}"#) ?? 0
                }
                #expect(perStream["NOTIFICATIONS"] == 30 && perStream.values.reduce(0, +) == Double(total.events))
                #expect(perStream["EVENTS"] == 0, "EVENTS holds only copies of events counted from their own streams")
                #expect(try await metric(service, #"analytics_stream_position{stream="USER_EVENTS"}"#) == 60)
                #expect(try await metric(service, #"analytics_stream_position{stream="EVENTS"}"#) == 30)

                // While it runs.
                let live = try await publishEvents(js, from: 90, count: 30)
                total.events += live.events; total.duplicates += live.duplicates
                try await Self.expectCounts(service, events: total.events, duplicates: total.duplicates, withoutID: 40)

                // A clean stop, more events while it is down, a start: only those are added.
                #expect(await service.stop() == 0)
                let whileDown = try await publishEvents(js, from: 120, count: 60)
                total.events += whileDown.events; total.duplicates += whileDown.duplicates
                service = try await ServiceProcess.start("analytics-service", environment: environment)
                try await Self.expectCounts(service, events: total.events, duplicates: total.duplicates, withoutID: 60)
                let counts = try await service.request("GET", "/v1/stats/counts?window=all").json
                #expect(counts["by_type"] as? [String: Int] == ["user.logged_in": 60, "notification.sent": 60, "user.registered": 60])
            } catch {
                await service.kill9()
                throw error
            }
            #expect(await service.stop() == 0)
        }
    }

    /// SIGKILL (no snapshot on exit) while events keep coming: after the restart the service
    /// resumes where its last periodic snapshot ends, and every event is counted exactly once.
    @Test func aKilledServiceCountsEveryEventExactlyOnce() async throws {
        try await Self.withBroker(.ours, "analytics-streams-kill") { broker, js, data in
            try await createPlatformStreams(js)
            let environment = Self.environment(broker, data: data, snapshotSeconds: 1)
            var service = try await ServiceProcess.start("analytics-service", environment: environment)
            var total = Published()
            do {
                for round in 0..<3 {
                    let batch = try await publishEvents(js, from: round * 150, count: 150)
                    total.events += batch.events; total.duplicates += batch.duplicates
                    // Some of this round counted, and at least one snapshot taken since the
                    // start; then kill while the rest may still be arriving.
                    let before = try await ingest(service).counted
                    _ = try await eventually(10) { try await ingest(service).counted > before }
                    let written = try await metric(service, "analytics_snapshots_total") ?? 0
                    _ = try await eventually(10) { try await metric(service, "analytics_snapshots_total") ?? 0 > written }
                    let more = try await publishEvents(js, from: round * 150 + 10_000, count: 60)
                    total.events += more.events; total.duplicates += more.duplicates
                    await service.kill9()
                    service = try await ServiceProcess.start("analytics-service", environment: environment)
                }
                try await Self.expectCounts(service, events: total.events, duplicates: total.duplicates,
                                            withoutID: total.events / 3)
                // The restart resumed from a position, not from the start.
                #expect(service.child.output.contains { $0.contains(#""message":"snapshot restored""#) && $0.contains("USER_EVENTS") })
            } catch {
                await service.kill9()
                throw error
            }
            #expect(await service.stop() == 0)
        }
    }

    /// Two instances (each with its own data folder) both count every event once; started
    /// before the streams exist, they wait for them and are not ready meanwhile.
    @Test func twoInstancesEachCountEveryEventAndWaitForTheStreams() async throws {
        try await Self.withBroker(.ours, "analytics-streams-two") { broker, js, data in
            var services: [ServiceProcess] = []
            do {
                for k in 0..<2 {
                    let folder = data + "/instance-\(k)"
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                    services.append(try await ServiceProcess.start("analytics-service", environment: Self.environment(broker, data: folder)))
                }
                for service in services {
                    _ = try await service.child.waitForLine("the missing-stream warning") {
                        $0.contains("stream not found; waiting for its owner") && $0.contains("USER_EVENTS")
                    }
                    let notReady = try await service.request("GET", "/readyz")
                    #expect(notReady.status == 503)
                    #expect((notReady.json["checks"] as? [String: Bool])?["streams"] == false)
                }
                try await createPlatformStreams(js)
                let published = try await publishEvents(js, from: 0, count: 120)
                for service in services {
                    #expect(try await eventually(20) { try await service.request("GET", "/readyz").status == 200 })
                    try await Self.expectCounts(service, events: published.events, duplicates: published.duplicates, withoutID: 40)
                }
            } catch {
                for service in services { await service.kill9() }
                throw error
            }
            for service in services { #expect(await service.stop() == 0) }
        }
    }

    /// Messages that left the stream (its limits) before the service read them are logged and
    /// counted as missed, and reading continues from the stream's first message.
    @Test func messagesAgedOutWhileDownAreReportedAndSkipped() async throws {
        try await Self.withBroker(.ours, "analytics-streams-aged") { broker, js, data in
            var small = PlatformStreams.userEvents.config
            small.maxMsgs = 20
            _ = try await js.addStream(small)
            try await JetStreamSetup.ensure(PlatformStreams.notifications, js)
            try await JetStreamSetup.ensure(PlatformStreams.events, js)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            func logins(_ range: Range<Int>) async throws {
                for n in range { _ = try await js.publish("user.logged_in", payload: login("aged-\(n)", user: "u\(n)", at: now)) }
            }
            try await logins(0..<10)
            let environment = Self.environment(broker, data: data)
            var service = try await ServiceProcess.start("analytics-service", environment: environment)
            do {
                try await Self.expectCounts(service, events: 10, duplicates: 0)
                #expect(await service.stop() == 0)
                // 50 more while it is down: the stream keeps the newest 20 (sequences 41-60).
                try await logins(10..<60)
                service = try await ServiceProcess.start("analytics-service", environment: environment)
                try await Self.expectCounts(service, events: 30, duplicates: 0)
                #expect(try await metric(service, #"analytics_stream_missed_total{stream="USER_EVENTS"}"#) == 30)
                _ = try await service.child.waitForLine("the aged-out warning") {
                    $0.contains("aged out before they were counted") && $0.contains(#""missed":30"#) && $0.contains(#""resumed_at":41"#)
                }
            } catch {
                await service.kill9()
                throw error
            }
            #expect(await service.stop() == 0)
        }
    }

    /// At-least-once against a broker without JetStream stops the service with a message that
    /// names the at-most-once setting.
    @Test func aBrokerWithoutJetStreamIsAClearStartupError() async throws {
        let broker = try await Broker.start()
        let data: String
        do { data = try temporaryDirectory("analytics-nojs") } catch { await broker.stop(); throw error }
        defer { removeTemporary(data) }
        var environment = ProcessInfo.processInfo.environment
        for key in ServiceProcess.standardVariables { environment[key] = nil }
        environment.merge(["NATS_URL": broker.url, "DATA_DIR": data, "HTTP_PORT": "0", "EVENT_DELIVERY": "at-least-once"]) { $1 }
        do {
            let child = try ChildProcess(executable: try builtExecutable("analytics-service"), environment: environment)
            _ = try await child.waitForLine("the missing JetStream error") { $0.contains("EVENT_DELIVERY=at-most-once") }
            let exited = await eventually(20) { !child.process.isRunning }
            if !exited { await child.stop() }
            #expect(exited && child.process.terminationStatus == 1)
        } catch {
            await broker.stop()
            throw error
        }
        await broker.stop()
    }
}
