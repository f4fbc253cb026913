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
        switch self {
        case .ours: return try Broker.oursExecutable()
        case .reference: return ProcessInfo.processInfo.environment["NATS_REFERENCE_BIN"] ?? Broker.referenceExecutable
        }
    }

    /// A broker of this kind with JetStream (`-js -sd <tmp>`) on a port it chooses.
    func startJetStream() async throws -> Broker {
        try await Broker.start(jetStream: true, executable: executable())
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
    /// Second copies the engine drops as duplicates. None here: the envelopes of logins already
    /// published raw are passed over by their stream reader before the engine sees them
    /// (`StreamReaders.isCopy`), so the engine's duplicate count stays 0.
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
