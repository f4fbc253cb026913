// The real executable with a real broker: data.transform, jobs, the event stream, HTTP, with
// EVENT_DELIVERY=at-most-once (core NATS, a broker without JetStream); DurableTests.swift has the
// at-least-once mode.

import Foundation
import NATSClient
import TestSupport
import Testing

@Suite(.serialized) struct ServiceProcessTests {
    func start(_ broker: Broker, _ extra: [String: String] = [:]) async throws -> ServiceProcess {
        var environment = ["NATS_URL": broker.url, "LOG_LEVEL": "debug", "WORKERS": "2", "EVENT_DELIVERY": "at-most-once"]
        for (k, v) in extra { environment[k] = v }
        let service = try await ServiceProcess.start("data-processing-service", environment: environment)
        #expect(try await eventually { try await service.request("GET", "/readyz").status == 200 })
        return service
    }

    func object(_ payload: [UInt8]) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]) ?? [:]
    }

    static let body = #"""
        {"format":"csv","csv":"user,ms\nann,120\nbo,30\nann,80\ncy,\nbo,70\n",
         "pipeline":[{"op":"filter","where":"not is_null(ms)"},
                     {"op":"derive","field":"slow","expr":"ms >= 75"},
                     {"op":"group","by":["user"],"aggregates":[{"fn":"count"},{"fn":"p50","field":"ms"},{"fn":"max","field":"ms"}]},
                     {"op":"sort","by":[{"field":"count","order":"desc"},"user"]}]}
        """#

    @Test func transformOverNATSAndHTTP() async throws {
        let broker = try await Broker.start()
        let service = try await start(broker, ["MAX_INPUT_BYTES": "4096"])
        let client = try await NATSClient.connect(broker.url)
        do {
            // A service endpoint registers asynchronously after connect: wait until it answers.
            var reply: Message?
            _ = await eventually {
                reply = try? await client.request(Array(Self.body.utf8), subject: "data.transform", timeout: .seconds(2))
                return reply != nil
            }
            let answered = try #require(reply)
            let answer = object(answered.payload)
            let records = try #require(answer["records"] as? [[String: Any]])
            #expect(records.count == 2)
            #expect(records.first?["user"] as? String == "ann")
            #expect(records.first?["count"] as? Int == 2)
            #expect(records.first?["p50_ms"] as? Int == 80)
            #expect(records.last?["user"] as? String == "bo")
            #expect(records.last?["max_ms"] as? Int == 70)
            #expect((answer["stats"] as? [String: Any])?["input_records"] as? Int == 5)

            let bad = try await client.request(Array(#"{"data":[{"a":1}],"pipeline":[{"op":"filter","where":"a >"}]}"#.utf8),
                                               subject: "data.transform", timeout: .seconds(5))
            #expect(bad.serviceError?.code == 422)
            #expect(bad.serviceError?.description.contains("position") == true)
            let big = try await client.request(Array(repeating: UInt8(ascii: " "), count: 5000), subject: "data.transform", timeout: .seconds(5))
            #expect(big.serviceError?.code == 413)

            let http = try await service.request("POST", "/v1/transform", json: Self.body)
            #expect(http.status == 200)
            #expect((http.json["records"] as? [[String: Any]])?.count == 2)
            let badHTTP = try await service.request("POST", "/v1/transform", json: #"{"data":[{"a":1}],"pipeline":[{"op":"nope"}]}"#)
            #expect(badHTTP.status == 422)
            #expect(badHTTP.json["status"] as? Int == 422)
            #expect((badHTTP.string("error") ?? "").contains("unknown op 'nope'"))
            let tooBig = try await service.request("POST", "/v1/transform", json: String(repeating: " ", count: 5000))
            #expect(tooBig.status == 413)
            #expect(tooBig.json["status"] as? Int == 413)
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func jobSubmitPublishesTheResult() async throws {
        let broker = try await Broker.start()
        let service = try await start(broker)
        let client = try await NATSClient.connect(broker.url)
        do {
            let done = try await client.subscribe("data.jobs.*.done")
            try await client.flush()
            var reply: Message?
            _ = await eventually {
                reply = try? await client.request(Array(Self.body.utf8), subject: "data.jobs.submit", timeout: .seconds(2))
                return reply != nil
            }
            let accepted = try #require(reply)
            let id = try #require(object(accepted.payload)["job_id"] as? String)
            let message = try await within(20, "the job's done message") { () -> Message? in
                for try await m in done where m.subject == "data.jobs.\(id).done" { return m }
                return nil
            }
            let doneMessage = try #require(message)
            let result = object(doneMessage.payload)
            #expect(result["job_id"] as? String == id)
            // data.jobs.status answers the same message once the job is done.
            let status = try await client.request(Array(#"{"job_id":"\#(id)"}"#.utf8), subject: "data.jobs.status", timeout: .seconds(5))
            #expect(status.payload == doneMessage.payload)
            let unknown = try await client.request(Array(#"{"job_id":"nope"}"#.utf8), subject: "data.jobs.status", timeout: .seconds(5))
            #expect(unknown.serviceError?.code == 404)
            #expect(result["status"] as? String == "done")
            #expect(((result["result"] as? [String: Any])?["records"] as? [Any])?.count == 2)

            let failing = try await client.request(Array(#"{"data":"x"}"#.utf8), subject: "data.jobs.submit", timeout: .seconds(5))
            let failedID = try #require(object(failing.payload)["job_id"] as? String)
            let failed = try await within(20, "the failed job's message") { () -> Message? in
                for try await m in done where m.subject == "data.jobs.\(failedID).done" { return m }
                return nil
            }
            let failedMessage = try #require(failed)
            let failure = object(failedMessage.payload)
            #expect(failure["status"] as? String == "failed")
            #expect((failure["error"] as? [String: Any])?["status"] as? Int == 422)
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }

    @Test func eventsAreNormalisedWithTheirTrace() async throws {
        let broker = try await Broker.start()
        let service = try await start(broker)
        let client = try await NATSClient.connect(broker.url)
        do {
            let events = try await client.subscribe("events.>")
            try await client.flush()
            // The consumers subscribe after connecting; wait until the service is consuming.
            #expect(await eventually { service.child.output.contains { $0.contains(#""message":"consuming""#) && $0.contains("user.>") } })
            let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
            var headers = Headers()
            try headers.set(name: "traceparent", value: "00-\(traceID)-00f067aa0ba902b7-01")
            try await client.publish(Array("not json".utf8), subject: "user.logged_in", headers: headers)
            let event = #"{"event_id":"ev-1","user_id":"u-1","email":" Ann@Example.COM ","name":"Ann","time":"2026-11-23T17:02:14Z","client_address":"127.0.0.1"}"#
            try await client.publish(Array(event.utf8), subject: "user.logged_in", headers: headers)
            let message = try await within(20, "events.user.logged_in") { () -> Message? in
                for try await m in events where m.subject == "events.user.logged_in" { return m }
                return nil
            }
            let m = try #require(message)
            let envelope = object(m.payload)
            #expect(envelope["event_id"] as? String == "ev-1")
            #expect(envelope["type"] as? String == "user.logged_in")
            #expect(envelope["source_subject"] as? String == "user.logged_in")
            #expect(envelope["user_id"] as? String == "u-1")
            #expect(envelope["occurred_at"] as? String == "2026-11-23T17:02:14.000Z")
            #expect((envelope["received_at"] as? String)?.hasSuffix("Z") == true)
            #expect((envelope["data"] as? [String: Any])?["name"] as? String == "Ann")
            let enrichment = try #require(envelope["enrichment"] as? [String: Any])
            #expect(enrichment["email"] as? String == "ann@example.com")
            #expect(enrichment["email_domain"] as? String == "example.com")
            #expect(enrichment["hour_of_day"] as? Int == 17)
            #expect(enrichment["weekday"] as? String == "monday")
            let traceparent = try #require(m.headers?["traceparent"])
            #expect(traceparent.split(separator: "-").dropFirst().first.map(String.init) == traceID)
            #expect(await eventually {
                service.child.output.contains { $0.contains(#""message":"event normalised""#) && $0.contains(traceID) }
            })
            #expect(service.child.output.contains { $0.contains("malformed event skipped") && $0.contains("not_json_object") })
            let metrics = try await service.request("GET", "/metrics")
            #expect(metrics.body.contains(#"data_events_malformed_total{reason="not_json_object"} 1"#))
        } catch {
            Issue.record("\(error)")
        }
        await client.close()
        #expect(await service.stop() == 0)
        await broker.stop()
    }
}
