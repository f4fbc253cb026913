import ServiceKit

/// Turns a raw `user.*` / `notification.*` event into the `events.<subject>` envelope of the
/// platform contract: `{"event_id", "type", "user_id", "occurred_at", "received_at",
/// "source_subject", "data", "enrichment"}`.
public enum EventNormalizer {
    /// Why an event could not be normalised (the metric label).
    public enum Malformed: String, Error, Sendable {
        /// The payload is not a JSON object.
        case notAnObject = "not_json_object"
        /// No non-empty string `event_id`.
        case missingEventID = "missing_event_id"
    }

    /// The envelope for an event received on `subject` at `receivedAt` (ms since the epoch).
    ///
    /// `occurred_at` is the event's `time` (ISO 8601 or epoch seconds/ms) as ISO 8601 ms UTC;
    /// when `time` is missing or unreadable it is `received_at` and `enrichment.occurred_at_source`
    /// says so. `enrichment` holds the lower-cased trimmed `email` and its `email_domain`,
    /// `hour_of_day` (0-23 UTC), `weekday`, `date` (UTC) of `occurred_at`, and `login_time` as
    /// ISO 8601 ms UTC when the event has one.
    public static func envelope(subject: String, payload: [UInt8], receivedAt: Int64) -> Result<JSONValue, Malformed> {
        guard case .object(let data)? = JSONValue.parse(payload) else { return .failure(.notAnObject) }
        guard let eventID = data["event_id"]?.stringValue, !eventID.isEmpty else { return .failure(.missingEventID) }
        var enrichment: [String: JSONValue] = [:]
        let occurred: Int64
        if let time = data["time"].flatMap(value), let ms = DatasetTime.milliseconds(time) {
            occurred = ms
            enrichment["occurred_at_source"] = .string("time")
        } else {
            occurred = receivedAt
            enrichment["occurred_at_source"] = .string("received_at")
        }
        if let email = data["email"]?.stringValue {
            let normal = trimmed(email).lowercased()
            enrichment["email"] = .string(normal)
            if let at = normal.lastIndex(of: "@") {
                let domain = normal[normal.index(after: at)...]
                if !domain.isEmpty { enrichment["email_domain"] = .string(String(domain)) }
            }
        }
        enrichment["hour_of_day"] = .int(Int64(DatasetTime.hourOfDay(occurred)))
        enrichment["weekday"] = .string(DatasetTime.weekday(occurred))
        enrichment["date"] = .string(DatasetTime.date(occurred))
        if let login = data["login_time"].flatMap(value), let ms = DatasetTime.milliseconds(login), let text = DatasetTime.format(ms) {
            enrichment["login_time"] = .string(text)
        }
        let userID: JSONValue
        switch data["user_id"] {
        case .string(let s)?: userID = .string(s)
        case .int(let n)?: userID = .string(String(n))
        default: userID = .null
        }
        let envelope: [String: JSONValue] = [
            "event_id": .string(eventID),
            "type": .string(subject),
            "user_id": userID,
            "occurred_at": .string(DatasetTime.format(occurred) ?? ""),
            "received_at": .string(DatasetTime.format(receivedAt) ?? ""),
            "source_subject": .string(subject),
            "data": .object(data),
            "enrichment": .object(enrichment),
        ]
        return .success(.object(envelope))
    }

    private static func value(_ json: JSONValue) -> Value? {
        switch json {
        case .string(let s): return .string(s)
        case .int(let n): return .int(n)
        case .double(let d): return .number(d)
        default: return nil
        }
    }
}
