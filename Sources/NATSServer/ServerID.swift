// Server id: an nkey-shaped public key, as nats-server generates one per start.

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
        let crc = crc16(raw)
        raw.append(UInt8(truncatingIfNeeded: crc))
        raw.append(UInt8(truncatingIfNeeded: crc >> 8))
        return base32(raw)
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum nkeys uses.
    static func crc16(_ bytes: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    /// RFC 4648 base32 without padding.
    static func base32(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int((buffer >> UInt32(bits)) & 31)])
            }
        }
        if bits > 0 {
            out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
