import Formats
import Foundation
import HTTPServer
import ServiceKit

/// One notification as stored and served.
public struct UserNotification: Sendable, Equatable {
    /// Notification id (a UUID).
    public var id: String
    /// The user it is for.
    public var userID: String
    /// The `event_id` of the `user.logged_in` event that caused it (the idempotency key).
    public var sourceEventID: String
    /// What it is about (`welcome` for a login).
    public var kind: String
    /// The text shown to the user.
    public var message: String
    /// True when the text uses the user's details from auth-service.
    public var personalized: Bool
    /// Why it is not personalised (auth down, timeout, open circuit ...), nil when it is.
    public var fallbackReason: String?
    /// The login event's `time`.
    public var loginTime: String
    /// When it was created (ISO 8601 UTC with milliseconds); also the `time` of `notification.sent`.
    public var createdAt: String
    /// When the user marked it read, nil while unread.
    public var readAt: String?
    /// Position in the store (increasing with creation): orders a user's history and is the paging cursor.
    public var sequence: UInt64

    /// The public JSON view (HTTP and SSE).
    public var json: JSONValue {
        .object([
            "id": .string(id), "user_id": .string(userID), "source_event_id": .string(sourceEventID),
            "kind": .string(kind), "message": .string(message), "personalized": .bool(personalized),
            "fallback_reason": fallbackReason.map(JSONValue.string) ?? .null, "login_time": .string(loginTime),
            "created_at": .string(createdAt), "read": .bool(readAt != nil), "read_at": readAt.map(JSONValue.string) ?? .null,
            "cursor": .string(String(sequence)),
        ])
    }

    /// The stored form: the public view (its `cursor` holds ``sequence``).
    var stored: [UInt8] { json.serialized }

    /// Decodes the stored form; nil when a field is missing or has the wrong type.
    init?(stored bytes: [UInt8]) {
        guard case .object(let o)? = JSONValue.parse(bytes),
              let id = o["id"]?.stringValue, let user = o["user_id"]?.stringValue,
              let source = o["source_event_id"]?.stringValue, let kind = o["kind"]?.stringValue,
              let message = o["message"]?.stringValue, case .bool(let personalized)? = o["personalized"],
              let login = o["login_time"]?.stringValue, let created = o["created_at"]?.stringValue,
              let cursor = o["cursor"]?.stringValue, let sequence = UInt64(cursor) else { return nil }
        self.init(id: id, userID: user, sourceEventID: source, kind: kind, message: message, personalized: personalized,
                  fallbackReason: o["fallback_reason"]?.stringValue, loginTime: login, createdAt: created,
                  readAt: o["read_at"]?.stringValue, sequence: sequence)
    }

    /// A notification with every field given.
    public init(id: String, userID: String, sourceEventID: String, kind: String, message: String, personalized: Bool,
                fallbackReason: String?, loginTime: String, createdAt: String, readAt: String?, sequence: UInt64) {
        self.id = id; self.userID = userID; self.sourceEventID = sourceEventID; self.kind = kind
        self.message = message; self.personalized = personalized; self.fallbackReason = fallbackReason
        self.loginTime = loginTime; self.createdAt = createdAt; self.readAt = readAt; self.sequence = sequence
    }

    /// The Server-Sent Event for this notification: `id` = notification id, `event: notification`,
    /// `data` = the public JSON on one line.
    public var serverSentEvent: ServerSentEvent {
        ServerSentEvent(data: String(decoding: json.serialized, as: UTF8.self), event: "notification", id: id)
    }

    /// The Server-Sent Event for a notification another instance stored: as ``serverSentEvent``
    /// but with `"cursor": null` (its sequence belongs to the other instance's store).
    public var remoteServerSentEvent: ServerSentEvent {
        guard case .object(var o) = json else { return serverSentEvent }
        o["cursor"] = .null
        return ServerSentEvent(data: String(decoding: JSONValue.object(o).serialized, as: UTF8.self), event: "notification", id: id)
    }
}

/// What a notification will say, before the store gives it an id and a sequence (and before it
/// is read). Each field means what the ``UserNotification`` field of the same name means.
public struct NotificationDraft: Sendable, Equatable {
    public var userID: String
    public var sourceEventID: String
    public var kind: String
    public var message: String
    public var personalized: Bool
    public var fallbackReason: String?
    public var loginTime: String
    public var createdAt: String

    /// A draft with every field given.
    public init(userID: String, sourceEventID: String, kind: String = "welcome", message: String, personalized: Bool,
                fallbackReason: String?, loginTime: String, createdAt: String) {
        self.userID = userID; self.sourceEventID = sourceEventID; self.kind = kind; self.message = message
        self.personalized = personalized; self.fallbackReason = fallbackReason; self.loginTime = loginTime
        self.createdAt = createdAt
    }
}

/// A `user.logged_in` event, validated.
public struct LoginEvent: Sendable, Equatable {
    /// `event_id`.
    public var eventID: String
    /// `user_id`.
    public var userID: String
    /// `time`, as sent.
    public var time: String
    /// `time`, parsed.
    public var date: Date

    /// Longest `event_id` / `user_id` accepted (they become store keys).
    public static let maxIdentifierLength = 256

    /// Why an event was refused.
    public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    /// Parses and validates the event payload.
    /// - Throws: ``Invalid`` when it is not a JSON object, or `event_id`, `user_id` or `time` is
    ///   missing, not a string, empty, too long, or (for `time`) not ISO 8601.
    public init(payload: [UInt8]) throws(Invalid) {
        guard case .object(let o)? = JSONValue.parse(payload) else { throw Invalid(description: "payload is not a JSON object") }
        func identifier(_ key: String) throws(Invalid) -> String {
            guard let value = o[key]?.stringValue else { throw Invalid(description: "\(key) is missing or not a string") }
            guard !value.isEmpty, value.utf8.count <= Self.maxIdentifierLength else {
                throw Invalid(description: "\(key) must have 1...\(Self.maxIdentifierLength) bytes")
            }
            return value
        }
        eventID = try identifier("event_id")
        userID = try identifier("user_id")
        guard let time = o["time"]?.stringValue else { throw Invalid(description: "time is missing or not a string") }
        guard let date = RFC3339.date(time) else { throw Invalid(description: "time is not ISO 8601") }
        self.time = time
        self.date = date
    }
}

/// The platform's timestamps as dates: RFC 3339 in UTC with milliseconds (`2026-11-23T17:02:14.123Z`).
extension RFC3339 {
    /// `date` with its milliseconds (the rest dropped, towards the past).
    static func format(_ date: Date) -> String {
        format(UnixTime(milliseconds: Int64((date.timeIntervalSince1970 * 1000).rounded(.down))), fractionDigits: 3)
    }

    /// The date of an RFC 3339 timestamp, with or without fractional seconds; nil otherwise.
    static func date(_ text: String) -> Date? {
        guard text.utf8.count <= 64, let time = parse(text) else { return nil }
        return Date(timeIntervalSince1970: Double(time.seconds) + Double(time.nanoseconds) / 1e9)
    }
}

/// The texts of a login notification.
public enum WelcomeMessage {
    /// Shown when auth-service cannot tell us who the user is.
    public static let generic = "Welcome back!"
    /// Longest name used in a message, in characters (longer names are cut).
    public static let maxNameLength = 100

    /// "Welcome back, <name>!" for a usable name, else nil (empty or only whitespace and controls).
    public static func personalized(name: String) -> String? {
        let cleaned = String(String.UnicodeScalarView(name.unicodeScalars.filter {
            !CharacterSet.controlCharacters.contains($0)
        })).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !cleaned.isEmpty else { return nil }
        return "Welcome back, \(String(cleaned.prefix(maxNameLength)))!"
    }
}
