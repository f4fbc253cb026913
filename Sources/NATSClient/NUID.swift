// Random identifiers for inboxes and service instances.

/// Random base-62 identifiers (22 characters, about 131 bits), as NATS uses for inboxes and ids.
public enum NUID {
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// A new random identifier such as `k3Jx0YbUQ2FFdL0Y9PcM1a`.
    public static func next() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 22)
        for index in bytes.indices {
            bytes[index] = alphabet[Int(generator.next(upperBound: UInt8(62)))]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
