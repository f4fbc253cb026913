// Server id: an nkey-shaped public key, as nats-server generates one per start.

import NKeys

/// Generates server ids shaped like nats-server's: the base32 (A-Z, 2-7, no padding) encoding of
/// the server prefix byte, 32 random bytes and a CRC-16 (XMODEM, little-endian). 56 characters,
/// starting with `N`.
enum ServerID {
    /// nkeys' prefix byte for server keys (`'N'` once encoded).
    static let prefixByte: UInt8 = 13 << 3

    /// A fresh random id.
    static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return generate(using: &generator)
    }

    /// An id built from `generator`'s bytes (tests pass a seeded generator).
    static func generate<G: RandomNumberGenerator>(using generator: inout G) -> String {
        var raw: [UInt8] = [prefixByte]
        raw.reserveCapacity(35)
        for _ in 0..<32 { raw.append(UInt8.random(in: 0...255, using: &generator)) }
        let crc = CRC16.checksum(raw)
        raw.append(UInt8(truncatingIfNeeded: crc))
        raw.append(UInt8(truncatingIfNeeded: crc >> 8))
        return Base32.encode(raw)
    }
}
