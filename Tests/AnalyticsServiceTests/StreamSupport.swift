// Test support for analytics on streams: a broker with JetStream (ours or nats-server 2.9.10),
// the platform's streams created as their owners would, and events published into them.

import Foundation
import NATSClient
import ServiceKit
import TestSupport
@testable import AnalyticsService

/// Which broker a test runs against.
enum BrokerKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case ours, reference
    var description: String { rawValue }

    /// Our broker: `NATS_SERVER_BIN`, else the product built next to the test bundle;
    /// nats-server 2.9.10: `NATS_REFERENCE_BIN`, else /usr/sbin/nats-server.
    func executable() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        switch self {
        case .ours:
            if let path = environment["NATS_SERVER_BIN"], !path.isEmpty { return path }
            return try builtExecutable("nats-server")
        case .reference:
            return environment["NATS_REFERENCE_BIN"] ?? "/usr/sbin/nats-server"
        }
    }
}

/// A broker with JetStream (`-js -sd <tmp>`) on a random port.
final class JetStreamBroker: Sendable {
    let child: ChildProcess
    let url: String
    let directory: String

    static func start(_ kind: BrokerKind) async throws -> JetStreamBroker {
        let directory = try temporaryDirectory("js-broker-\(kind)")
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: try kind.executable(),
                                     arguments: ["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", directory,
                                                 "-js", "-sd", directory + "/store"],
                                     environment: ProcessInfo.processInfo.environment)
        } catch {
            removeTemporary(directory)
            throw error
        }
        let portsFile = directory + "/nats-server_\(child.process.processIdentifier).ports"
        var url: String?
        _ = await eventually(20) {
            guard let data = FileManager.default.contents(atPath: portsFile),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let urls = object["nats"] as? [String], let first = urls.first else { return false }
            url = first
            return true
        }
        guard let url else {
            await child.stop()
            removeTemporary(directory)
            throw TestFailure("\(kind) broker wrote no ports file; output: \(child.output.joined(separator: "\n"))")
        }
        return JetStreamBroker(child: child, url: url, directory: directory)
    }

    private init(child: ChildProcess, url: String, directory: String) {
        self.child = child; self.url = url; self.directory = directory
    }

    func stop() async {
        await child.stop()
        removeTemporary(directory)
    }
}

/// Creates USER_EVENTS, NOTIFICATIONS and EVENTS with the platform's declarations (as auth,
/// notification and data-processing do).
func createPlatformStreams(_ js: JetStreamContext) async throws {
    for spec in [PlatformStreams.userEvents, PlatformStreams.notifications, PlatformStreams.events] {
        try await JetStreamSetup.ensure(spec, js)
    }
}

/// What a batch of published events should count as.
struct Published {
    /// Distinct events (each counted once).
    var events = 0
    /// Second copies (envelopes of logins already published raw): dropped as duplicates.
    var duplicates = 0
}

/// Publishes `count` events numbered from `first` into the streams, waiting for each PubAck:
/// every third one a login with its `events.user.logged_in` envelope (same event id, a
/// duplicate across streams), every third a `notification.sent`, every third a
/// `user.registered` without `event_id` (only its stream position can keep it from counting twice).
@discardableResult
func publishEvents(_ js: JetStreamContext, from first: Int, count: Int, tag: String = "e") async throws -> Published {
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    var published = Published()
    for n in first..<(first + count) {
        let id = "\(tag)-\(n)"
        switch n % 3 {
        case 0:
            let raw = login(id, user: "user-\(n % 7)", email: "u\(n)@example.com", at: now)
            _ = try await js.publish("user.logged_in", payload: raw)
            _ = try await js.publish("events.user.logged_in", payload: envelope(of: raw, id: id, user: "user-\(n % 7)", at: now))
            published.duplicates += 1
        case 1:
            _ = try await js.publish("notification.sent", payload: notificationSent(id, user: "user-\(n % 7)", loginAt: now - 50, latency: 50))
        default:
            let body = #"{"user_id":"user-\#(n % 7)","email":"u\#(n)@example.com","time":"\#(iso(now))"}"#
            _ = try await js.publish("user.registered", payload: Array(body.utf8))
        }
        published.events += 1
    }
    return published
}

/// The service's ingest counters (`GET /v1/stats/ingest`).
func ingest(_ service: ServiceProcess) async throws -> (counted: Int, duplicates: Int, withoutID: Int) {
    let json = try await service.request("GET", "/v1/stats/ingest").json
    return (json["counted"] as? Int ?? -1, json["duplicates"] as? Int ?? -1, json["without_event_id"] as? Int ?? -1)
}

/// One sample of a metric from `/metrics` (`name` with its labels, as written there).
func metric(_ service: ServiceProcess, _ name: String) async throws -> Double? {
    let text = try await service.request("GET", "/metrics").body
    let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
    return line.flatMap { Double($0.split(separator: " ").last ?? "") }
}
