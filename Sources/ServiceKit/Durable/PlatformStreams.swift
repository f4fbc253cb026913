import NATSClient

/// The platform's streams, declared in one place: its owner declares each (creates or updates it),
/// the services that read it only require it (``ServiceRuntime/require(stream:)``: they wait for it
/// and may not change it). docs/ARCHITECTURE.md has the table.
public enum PlatformStreams {
    /// `user.>`: auth-service's events (`user.registered`, `user.logged_in`).
    public static var userEvents: StreamSpec {
        var c = StreamConfig(name: "USER_EVENTS", subjects: ["user.>"])
        c.description = "auth-service events: user.registered, user.logged_in"
        c.maxAge = .seconds(7 * 24 * 3600)
        c.maxBytes = 1 << 30
        c.duplicateWindow = .seconds(120)
        return StreamSpec(c, owner: "auth")
    }

    /// `notification.>`: every notification (`notification.sent`) and read mark (`notification.read`):
    /// the notification service's one store, which every instance's view follows.
    public static var notifications: StreamSpec {
        var c = StreamConfig(name: "NOTIFICATIONS", subjects: ["notification.>"])
        c.description = "notification-service: notification.sent, notification.read (the store every instance's view follows)"
        c.maxAge = .seconds(30 * 24 * 3600)
        c.maxMsgs = 2_000_000
        c.maxBytes = 2 << 30
        c.duplicateWindow = .seconds(600)
        return StreamSpec(c, owner: "notification")
    }

    /// `events.>`: data-processing's normalised events.
    public static var events: StreamSpec {
        var c = StreamConfig(name: "EVENTS", subjects: ["events.>"])
        c.description = "data-processing-service: normalised events (events.<source subject>)"
        c.maxAge = .seconds(7 * 24 * 3600)
        c.maxBytes = 1 << 30
        c.duplicateWindow = .seconds(120)
        return StreamSpec(c, owner: "data-processing")
    }
}
