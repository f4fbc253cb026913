// The text encodings nkeys use: RFC 4648 base32 without padding (keys and seeds), CRC-16/XMODEM
// (their checksum), and base64 (signatures in CONNECT).

/// RFC 4648 base32 (alphabet `A-Z2-7`), written and read without `=` padding, as nkeys encode keys.
public enum Base32 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// `bytes` in base32, without padding.
    public static func encode(_ bytes: [UInt8]) -> String {
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

    /// The bytes of unpadded base32 `text` (upper case only, as nkeys write it).
    /// - Throws: ``NKeyError/invalidEncoding(_:)`` for a character outside the alphabet (padding
    ///   included) or a length no byte count encodes to (1, 3 or 6 characters past a multiple of 8).
    public static func decode(_ text: String) throws(NKeyError) -> [UInt8] {
        let characters = Array(text.utf8)
        switch characters.count % 8 {
        case 1, 3, 6: throw .invalidEncoding("base32 text of \(characters.count) characters")
        default: break
        }
        var out: [UInt8] = []
        out.reserveCapacity(characters.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for (offset, character) in characters.enumerated() {
            let value: UInt32
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = UInt32(character - UInt8(ascii: "A"))
            case UInt8(ascii: "2")...UInt8(ascii: "7"): value = UInt32(character - UInt8(ascii: "2")) + 26
            default: throw .invalidEncoding("character \(offset + 1) is not base32")
            }
            buffer = (buffer << 5) | value
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        return out
    }
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0): the checksum nkeys append, little-endian.
public enum CRC16 {
    static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    /// The checksum of `bytes`.
    public static func checksum<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }
}

/// Base64 as signatures travel in CONNECT's `sig`: clients write the URL alphabet without padding;
/// nats-server 2.9.10 reads that and, failing it, standard base64 with padding.
public enum Base64 {
    static let standard = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let url = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// `bytes` in the URL alphabet (`-`, `_`) without padding.
    public static func urlEncoded(_ bytes: [UInt8]) -> String {
        encode(bytes, alphabet: url, pad: false)
    }

    /// `bytes` in the standard alphabet (`+`, `/`) with `=` padding.
    public static func standardEncoded(_ bytes: [UInt8]) -> String {
        encode(bytes, alphabet: standard, pad: true)
    }

    /// The bytes of a signature as 2.9.10 accepts it: URL alphabet without padding, else standard
    /// alphabet with padding (line breaks are skipped in both, as Go's decoder does). Nil when it
    /// is neither.
    public static func decodeSignature(_ text: String) -> [UInt8]? {
        decode(text, alphabet: url, padded: false) ?? decode(text, alphabet: standard, padded: true)
    }

    static func encode(_ bytes: [UInt8], alphabet: [UInt8], pad: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let b0 = UInt32(bytes[index])
            let b1 = remaining > 1 ? UInt32(bytes[index + 1]) : 0
            let b2 = remaining > 2 ? UInt32(bytes[index + 2]) : 0
            let group = (b0 << 16) | (b1 << 8) | b2
            out.append(alphabet[Int((group >> 18) & 63)])
            out.append(alphabet[Int((group >> 12) & 63)])
            if remaining > 1 { out.append(alphabet[Int((group >> 6) & 63)]) } else if pad { out.append(UInt8(ascii: "=")) }
            if remaining > 2 { out.append(alphabet[Int(group & 63)]) } else if pad { out.append(UInt8(ascii: "=")) }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String, alphabet: [UInt8], padded: Bool) -> [UInt8]? {
        var values = [Int8](repeating: -1, count: 256)
        for (value, character) in alphabet.enumerated() { values[Int(character)] = Int8(value) }
        var characters = text.utf8.filter { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
        if padded {
            guard characters.count % 4 == 0 else { return nil }
            var padding = 0
            while padding < 2, characters.last == UInt8(ascii: "=") {
                characters.removeLast()
                padding += 1
            }
        }
        if characters.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(characters.count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        for character in characters {
            let value = values[Int(character)]
            guard value >= 0 else { return nil }
            buffer = (buffer << 6) | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        return out
    }
}
