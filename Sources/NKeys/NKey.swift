// nkeys: ed25519 public keys and seeds written as base32 text that names the key's role in its
// first letter and ends with a CRC16 (the format nats-server and every NATS client share).

/// The role of a key: its prefix byte (the value's top five bits give the encoded first letter).
public enum NKeyPrefix: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// `A...`: an account.
    case account = 0
    /// `C...`: a cluster.
    case cluster = 16
    /// `N...`: a server (nats-server's id is shaped like one).
    case server = 104
    /// `O...`: an operator.
    case `operator` = 112
    /// `P...`: a raw private key.
    case privateKey = 120
    /// `S...`: a seed (its second letter names the role of the public key it makes).
    case seed = 144
    /// `U...`: a user.
    case user = 160
    /// `X...`: a curve (x25519) key.
    case curve = 184

    /// The roles a public key or a seed can have (not seed, not private).
    public var isPublicRole: Bool { self != .seed && self != .privateKey }

    public var description: String {
        switch self {
        case .account: "account"
        case .cluster: "cluster"
        case .server: "server"
        case .operator: "operator"
        case .privateKey: "private key"
        case .seed: "seed"
        case .user: "user"
        case .curve: "curve"
        }
    }
}

/// Why a key or seed was refused, or a crypto call failed.
public enum NKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not base32 text, or an impossible length.
    case invalidEncoding(String)
    /// The decoded key has the wrong number of bytes for what was asked (public key 35, seed 36).
    case invalidLength(expected: Int, found: Int)
    /// The CRC16 at the end does not match the bytes before it.
    case invalidChecksum
    /// The first byte is not the role asked for (or no role at all).
    case invalidPrefix(expected: String, found: UInt8)
    /// A seed file holds no line that decodes as a seed.
    case noSeedFound
    /// A file could not be read.
    case unreadableFile(path: String, errno: Int32)
    /// OpenSSL refused an operation (its error text).
    case crypto(String)

    public var description: String {
        switch self {
        case .invalidEncoding(let what): "nkeys: invalid encoded key: \(what)"
        case .invalidLength(let expected, let found): "nkeys: invalid key length: \(found) bytes, expected \(expected)"
        case .invalidChecksum: "nkeys: invalid checksum"
        case .invalidPrefix(let expected, let found): "nkeys: invalid prefix byte \(found), expected \(expected)"
        case .noSeedFound: "nkeys: no nkey seed found"
        case .unreadableFile(let path, let errno): "nkeys: cannot read \(path): errno \(errno)"
        case .crypto(let text): "nkeys: \(text)"
        }
    }
}

/// The public half of a key: its role and 32 ed25519 bytes.
public struct NKeyPublicKey: Sendable, Equatable, CustomStringConvertible {
    public let prefix: NKeyPrefix
    /// The raw ed25519 public key.
    public let raw: [UInt8]

    /// Wraps 32 raw bytes. Nil when `raw` is not 32 bytes or `prefix` is not a public role.
    public init?(prefix: NKeyPrefix, raw: [UInt8]) {
        guard raw.count == 32, prefix.isPublicRole else { return nil }
        self.prefix = prefix
        self.raw = raw
    }

    /// Decodes an encoded public key (`U...`, `A...`, ...), of role `expected` when given.
    /// - Throws: ``NKeyError/invalidEncoding(_:)``, ``NKeyError/invalidLength(expected:found:)``,
    ///   ``NKeyError/invalidChecksum`` or ``NKeyError/invalidPrefix(expected:found:)``.
    public init(_ encoded: String, expecting expected: NKeyPrefix? = nil) throws(NKeyError) {
        let bytes = try NKeyCodec.checkedBytes(encoded, count: 35)
        guard let prefix = NKeyPrefix(rawValue: bytes[0]), prefix.isPublicRole else {
            throw .invalidPrefix(expected: expected?.description ?? "a public key", found: bytes[0])
        }
        if let expected, prefix != expected {
            throw .invalidPrefix(expected: expected.description, found: bytes[0])
        }
        self.prefix = prefix
        raw = Array(bytes[1..<33])
    }

    /// The encoded key: the prefix byte, the 32 bytes and their CRC16, in base32 (56 characters).
    public var encoded: String { NKeyCodec.encode([prefix.rawValue] + raw) }

    public var description: String { encoded }

    /// Whether `signature` is this key's ed25519 signature of `message`. False for a signature
    /// that is not 64 bytes.
    public func verify(_ message: [UInt8], signature: [UInt8]) -> Bool {
        Ed25519.verify(publicKey: raw, message: message, signature: signature)
    }

    /// This key parsed once for checking many signatures; nil when OpenSSL refuses it.
    public func verifier() -> Ed25519Verifier? {
        Ed25519Verifier(publicKey: raw)
    }

    /// True when `encoded` decodes as a public key of role `prefix`.
    public static func isValid(_ encoded: String, prefix: NKeyPrefix) -> Bool {
        (try? NKeyPublicKey(encoded, expecting: prefix)) != nil
    }
}

/// A seed (the 32-byte ed25519 private seed and the role of its public key), which signs.
public struct NKeyPair: Sendable {
    public let prefix: NKeyPrefix
    /// The raw 32-byte ed25519 seed.
    let rawSeed: [UInt8]
    public let publicKey: NKeyPublicKey

    /// A key pair from a raw 32-byte seed.
    /// - Throws: ``NKeyError/invalidLength(expected:found:)`` unless `rawSeed` is 32 bytes,
    ///   ``NKeyError/invalidPrefix(expected:found:)`` for a role that is not public, or
    ///   ``NKeyError/crypto(_:)`` when OpenSSL refuses the seed.
    public init(prefix: NKeyPrefix, rawSeed: [UInt8]) throws(NKeyError) {
        guard rawSeed.count == 32 else { throw .invalidLength(expected: 32, found: rawSeed.count) }
        guard prefix.isPublicRole else { throw .invalidPrefix(expected: "a public role", found: prefix.rawValue) }
        let publicRaw = try Ed25519.publicKey(seed: rawSeed)
        self.prefix = prefix
        self.rawSeed = rawSeed
        publicKey = NKeyPublicKey(prefix: prefix, raw: publicRaw)!
    }

    /// Decodes an encoded seed (`SU...` for a user, `SA...` for an account, ...).
    /// - Throws: ``NKeyError/invalidEncoding(_:)``, ``NKeyError/invalidLength(expected:found:)``,
    ///   ``NKeyError/invalidChecksum``, ``NKeyError/invalidPrefix(expected:found:)`` (not a seed,
    ///   or a seed of no public role) or ``NKeyError/crypto(_:)``.
    public init(seed encoded: String) throws(NKeyError) {
        let bytes = try NKeyCodec.checkedBytes(encoded, count: 36)
        guard bytes[0] & 0xF8 == NKeyPrefix.seed.rawValue else {
            throw .invalidPrefix(expected: "seed", found: bytes[0] & 0xF8)
        }
        let role = (bytes[0] & 0x07) << 5 | (bytes[1] & 0xF8) >> 3
        guard let prefix = NKeyPrefix(rawValue: role), prefix.isPublicRole else {
            throw .invalidPrefix(expected: "a public role in the seed", found: role)
        }
        try self.init(prefix: prefix, rawSeed: Array(bytes[2..<34]))
    }

    /// A new key pair of role `prefix` from 32 bytes of OpenSSL's RAND_bytes.
    /// - Throws: ``NKeyError/crypto(_:)`` when no random bytes are available, or
    ///   ``NKeyError/invalidPrefix(expected:found:)`` for a role that is not public.
    public static func generate(_ prefix: NKeyPrefix) throws(NKeyError) -> NKeyPair {
        try NKeyPair(prefix: prefix, rawSeed: Ed25519.randomSeed())
    }

    /// Reads a seed from a file as nats.go and the nats CLI do: the first line (trimmed) that
    /// decodes as a seed, which also finds it between `-----BEGIN ... NKEY SEED-----` markers.
    /// - Throws: ``NKeyError/unreadableFile(path:errno:)``, or ``NKeyError/noSeedFound`` when no
    ///   line is a seed.
    public static func fromSeedFile(_ path: String) throws(NKeyError) -> NKeyPair {
        let text = try SeedFile.read(path)
        return try fromSeedText(text)
    }

    /// The first line of `text` (trimmed) that decodes as a seed. Text of one line must be a seed
    /// itself, so that its error says what is wrong with it.
    /// - Throws: ``NKeyError/noSeedFound`` when no line is a seed; for one line, the error of
    ///   ``init(seed:)`` (``NKeyError/invalidEncoding(_:)``, ``NKeyError/invalidLength(expected:found:)``,
    ///   ``NKeyError/invalidChecksum``, ``NKeyError/invalidPrefix(expected:found:)``).
    public static func fromSeedText(_ text: String) throws(NKeyError) -> NKeyPair {
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .filter { !$0.trimmingCharacters().isEmpty }
        if lines.count == 1 { return try NKeyPair(seed: lines[0].trimmingCharacters()) }
        for line in lines {
            let trimmed = line.trimmingCharacters()
            guard trimmed.hasPrefix("S") else { continue }
            if let pair = try? NKeyPair(seed: trimmed) { return pair }
        }
        throw .noSeedFound
    }

    /// The encoded seed: `S` and the role's letter, the 32 bytes and a CRC16, in base32
    /// (58 characters).
    public var seed: String {
        let b1 = NKeyPrefix.seed.rawValue | (prefix.rawValue >> 5)
        let b2 = (prefix.rawValue & 31) << 3
        return NKeyCodec.encode([b1, b2] + rawSeed)
    }

    /// The 64-byte ed25519 signature of `message`.
    /// - Throws: ``NKeyError/crypto(_:)`` when OpenSSL fails.
    public func sign(_ message: [UInt8]) throws(NKeyError) -> [UInt8] {
        try Ed25519.sign(seed: rawSeed, message: message)
    }
}

// Printing a key pair shows its public key only: a seed must not reach a log by accident.
extension NKeyPair: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "NKeyPair(\(publicKey.encoded))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["publicKey": publicKey.encoded]) }
}

/// Encoding with the CRC16 and the checked decoding shared by keys and seeds.
enum NKeyCodec {
    static func encode(_ payload: [UInt8]) -> String {
        let crc = CRC16.checksum(payload)
        return Base32.encode(payload + [UInt8(truncatingIfNeeded: crc), UInt8(truncatingIfNeeded: crc >> 8)])
    }

    /// The payload (without the CRC) of `encoded`, which must decode to `count` bytes.
    static func checkedBytes(_ encoded: String, count: Int) throws(NKeyError) -> [UInt8] {
        let bytes = try Base32.decode(encoded)
        guard bytes.count == count else { throw .invalidLength(expected: count, found: bytes.count) }
        let payload = bytes[0..<(count - 2)]
        let stored = UInt16(bytes[count - 2]) | UInt16(bytes[count - 1]) << 8
        guard CRC16.checksum(payload) == stored else { throw .invalidChecksum }
        return Array(payload)
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
