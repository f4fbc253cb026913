// ADR-32 Service API wire types: the PING, INFO and STATS responses with nats.go's JSON keys.

import Foundation

/// The response to `$SRV.PING` (type `io.nats.micro.v1.ping_response`).
public struct ServicePing: Codable, Sendable, Equatable {
    /// The service name.
    public var name: String
    /// The instance id.
    public var id: String
    /// The service version (SemVer).
    public var version: String
    /// Service metadata.
    public var metadata: [String: String]
    /// `io.nats.micro.v1.ping_response`.
    public var type: String

    /// The wire type string of a ping response.
    public static let responseType = "io.nats.micro.v1.ping_response"
}

/// One endpoint as `$SRV.INFO` describes it.
public struct ServiceEndpointInfo: Codable, Sendable, Equatable {
    /// The endpoint name.
    public var name: String
    /// The subject it listens on.
    public var subject: String
    /// Its queue group (empty when it has none).
    public var queueGroup: String
    /// Endpoint metadata, or nil (`null` on the wire) when none was given.
    public var metadata: [String: String]?

    enum CodingKeys: String, CodingKey { case name, subject, queueGroup = "queue_group", metadata }

    /// Writes `metadata` as `null` when absent, as nats.go does.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(subject, forKey: .subject)
        try c.encode(queueGroup, forKey: .queueGroup)
        if let metadata { try c.encode(metadata, forKey: .metadata) } else { try c.encodeNil(forKey: .metadata) }
    }

    /// Reads an endpoint; a missing `queue_group` is empty.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        subject = try c.decode(String.self, forKey: .subject)
        queueGroup = try c.decodeIfPresent(String.self, forKey: .queueGroup) ?? ""
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata)
    }

    init(name: String, subject: String, queueGroup: String, metadata: [String: String]?) {
        self.name = name
        self.subject = subject
        self.queueGroup = queueGroup
        self.metadata = metadata
    }
}

/// The response to `$SRV.INFO` (type `io.nats.micro.v1.info_response`).
public struct ServiceInfo: Codable, Sendable, Equatable {
    /// The service name.
    public var name: String
    /// The instance id.
    public var id: String
    /// The service version.
    public var version: String
    /// Service metadata.
    public var metadata: [String: String]
    /// `io.nats.micro.v1.info_response`.
    public var type: String
    /// What the service does.
    public var description: String
    /// The endpoints.
    public var endpoints: [ServiceEndpointInfo]

    /// The wire type string of an info response.
    public static let responseType = "io.nats.micro.v1.info_response"
}

/// Request statistics of one endpoint.
public struct ServiceEndpointStats: Codable, Sendable, Equatable {
    /// The endpoint name.
    public var name: String
    /// The subject it listens on.
    public var subject: String
    /// Its queue group (empty when it has none).
    public var queueGroup: String
    /// Requests handled.
    public var numRequests: Int
    /// Requests answered with an error.
    public var numErrors: Int
    /// The last error as `"<code>:<description>"`, empty when none.
    public var lastError: String
    /// Total handling time in nanoseconds.
    public var processingTime: Int64
    /// Average handling time in nanoseconds.
    public var averageProcessingTime: Int64

    enum CodingKeys: String, CodingKey {
        case name, subject, queueGroup = "queue_group", numRequests = "num_requests", numErrors = "num_errors"
        case lastError = "last_error", processingTime = "processing_time", averageProcessingTime = "average_processing_time"
    }

    /// Reads endpoint stats; missing counters are zero.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        subject = try c.decodeIfPresent(String.self, forKey: .subject) ?? ""
        queueGroup = try c.decodeIfPresent(String.self, forKey: .queueGroup) ?? ""
        numRequests = try c.decodeIfPresent(Int.self, forKey: .numRequests) ?? 0
        numErrors = try c.decodeIfPresent(Int.self, forKey: .numErrors) ?? 0
        lastError = try c.decodeIfPresent(String.self, forKey: .lastError) ?? ""
        processingTime = try c.decodeIfPresent(Int64.self, forKey: .processingTime) ?? 0
        averageProcessingTime = try c.decodeIfPresent(Int64.self, forKey: .averageProcessingTime) ?? 0
    }

    init(name: String, subject: String, queueGroup: String) {
        self.name = name
        self.subject = subject
        self.queueGroup = queueGroup
        numRequests = 0
        numErrors = 0
        lastError = ""
        processingTime = 0
        averageProcessingTime = 0
    }
}

/// The response to `$SRV.STATS` (type `io.nats.micro.v1.stats_response`).
public struct ServiceStats: Codable, Sendable, Equatable {
    /// The service name.
    public var name: String
    /// The instance id.
    public var id: String
    /// The service version.
    public var version: String
    /// Service metadata.
    public var metadata: [String: String]
    /// `io.nats.micro.v1.stats_response`.
    public var type: String
    /// When the service started, RFC 3339 in UTC (`2026-01-01T00:00:00.000000Z`).
    public var started: String
    /// Per-endpoint statistics.
    public var endpoints: [ServiceEndpointStats]

    /// The wire type string of a stats response.
    public static let responseType = "io.nats.micro.v1.stats_response"
}

enum RFC3339 {
    /// `date` in UTC with microseconds: `2026-11-23T14:50:01.123456Z`.
    static func string(from date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let micros = Int(((interval - Double(seconds)) * 1_000_000).rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(micros), 6))Z"
    }
}
