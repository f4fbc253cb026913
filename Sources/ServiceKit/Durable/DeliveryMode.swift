/// How a service's events travel: through JetStream streams with acknowledgements (the default),
/// or as plain core NATS messages that are lost when nobody is listening.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// Events are stored in streams and consumed by durable consumers that acknowledge each one
    /// after its effect is stored; with idempotent handlers every event has exactly one effect.
    /// Needs a broker with JetStream (`nats-server -js`).
    case atLeastOnce = "at-least-once"
    /// Core NATS publish and subscribe: an event published while its consumer is down is lost.
    /// Works with any broker.
    case atMostOnce = "at-most-once"
}

extension StandardSettings {
    /// `EVENT_DELIVERY`: `at-least-once` (JetStream, the default) or `at-most-once` (core NATS).
    public static let deliveryMode = Setting<DeliveryMode>(
        key: "event_delivery", environment: "EVENT_DELIVERY", default: .atLeastOnce,
        meaning: "at-least-once: events through JetStream streams and durable consumers (the broker needs JetStream); "
            + "at-most-once: core NATS only, events published while a consumer is down are lost",
        expected: "at-least-once or at-most-once", render: { $0.rawValue }) { input in
            input.text.flatMap { DeliveryMode(rawValue: $0.lowercased()) }
        }
}
