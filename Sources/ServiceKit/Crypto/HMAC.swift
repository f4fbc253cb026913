// HMAC-SHA256 (RFC 2104, with SHA-256 as H, B = 64, L = 32) and PBKDF2-HMAC-SHA256 (RFC 8018, 5.2).

/// Errors from the key-derivation functions.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// PBKDF2 needs at least one iteration.
    case invalidIterationCount(Int)
    /// PBKDF2's derived key length must be in 1...(2^32 - 1) * 32 bytes.
    case invalidKeyLength(Int)
    /// The system's secure random generator failed (errno value).
    case randomUnavailable(errno: Int32)

    public var description: String {
        switch self {
        case .invalidIterationCount(let n): return "pbkdf2: iteration count must be at least 1, got \(n)"
        case .invalidKeyLength(let n): return "pbkdf2: derived key length must be 1...137438953440 bytes, got \(n)"
        case .randomUnavailable(let e): return "random: the system generator failed (errno \(e))"
        }
    }
}

/// HMAC-SHA256 (RFC 2104). Create it once per key; each `authenticate` call reuses the key's
/// precomputed inner and outer states. Nothing here throws.
public struct HMACSHA256: Sendable {
    /// Chaining state after the block `key XOR ipad`.
    let innerState: SHA256State
    /// Chaining state after the block `key XOR opad`.
    let outerState: SHA256State

    /// Prepares HMAC with `key` (a key longer than 64 bytes is hashed first, as RFC 2104 says).
    public init(key: [UInt8]) {
        var block = key.count > SHA256.blockCount ? SHA256.hash(key) : key
        block.append(contentsOf: repeatElement(0, count: SHA256.blockCount - block.count))
        var inner = SHA256State(), outer = SHA256State()
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            sha256RoundConstants.withUnsafeBufferPointer { k in
                let ipad = block.map { $0 ^ 0x36 }, opad = block.map { $0 ^ 0x5c }
                ipad.withUnsafeBytes { SHA256State.load(block: $0.baseAddress!, into: w.baseAddress!) }
                inner.compress(schedule: w.baseAddress!, constants: k.baseAddress!)
                opad.withUnsafeBytes { SHA256State.load(block: $0.baseAddress!, into: w.baseAddress!) }
                outer.compress(schedule: w.baseAddress!, constants: k.baseAddress!)
            }
        }
        innerState = inner
        outerState = outer
    }

    /// Returns the 32-byte tag HMAC(key, message).
    public func authenticate(_ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { authenticate($0) }
    }

    /// Returns the 32-byte tag HMAC(key, message) for the bytes in `message`.
    public func authenticate(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        var inner = SHA256(resumingAfterOneBlock: innerState)
        inner.update(message)
        var outer = SHA256(resumingAfterOneBlock: outerState)
        outer.update(inner.finalize())
        return outer.finalize()
    }

    /// One-shot HMAC-SHA256 of `message` under `key`.
    public static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        HMACSHA256(key: key).authenticate(message)
    }
}

extension SHA256 {
    /// A hasher whose first 64-byte block has already been compressed into `state`.
    init(resumingAfterOneBlock state: SHA256State) {
        self.init()
        self.state = state
        self.skipLength(SHA256.blockCount)
    }
}

/// PBKDF2 with HMAC-SHA256 as the PRF (RFC 8018, section 5.2).
public enum PBKDF2 {
    /// The iteration count OWASP recommends for PBKDF2-HMAC-SHA256 (2023 Password Storage Cheat Sheet).
    public static let recommendedIterations = 600_000

    /// Derives `keyLength` bytes from `password` and `salt` with `iterations` rounds.
    ///
    /// Each iteration after the first costs exactly two SHA-256 compressions on words kept in
    /// fixed scratch memory: nothing is allocated inside the loop.
    /// - Throws: ``CryptoError/invalidIterationCount(_:)`` when `iterations < 1`;
    ///   ``CryptoError/invalidKeyLength(_:)`` when `keyLength` is not in 1...(2^32 - 1) * 32.
    public static func deriveKey(password: [UInt8], salt: [UInt8], iterations: Int, keyLength: Int = 32) throws(CryptoError) -> [UInt8] {
        guard iterations >= 1 else { throw .invalidIterationCount(iterations) }
        guard keyLength >= 1, keyLength <= Int(UInt32.max) * 32 else { throw .invalidKeyLength(keyLength) }
        let prf = HMACSHA256(key: password)
        let blockCount = (keyLength + 31) / 32
        var output = [UInt8]()
        output.reserveCapacity(blockCount * 32)
        var first = salt
        first.append(contentsOf: [0, 0, 0, 0])
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64 + 8 + 8) { scratch in
            let w = scratch.baseAddress!          // 64-word message schedule
            let u = w + 64                        // U_j as 8 words
            let t = w + 72                        // T_i accumulator as 8 words
            sha256RoundConstants.withUnsafeBufferPointer { kBuffer in
                let k = kBuffer.baseAddress!
                for blockIndex in 1...blockCount {
                    let index = UInt32(truncatingIfNeeded: blockIndex)
                    first[first.count - 4] = UInt8(truncatingIfNeeded: index >> 24)
                    first[first.count - 3] = UInt8(truncatingIfNeeded: index >> 16)
                    first[first.count - 2] = UInt8(truncatingIfNeeded: index >> 8)
                    first[first.count - 1] = UInt8(truncatingIfNeeded: index)
                    let u1 = prf.authenticate(first)
                    u1.withUnsafeBytes { raw in
                        for i in 0..<8 { u[i] = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }
                    }
                    for i in 0..<8 { t[i] = u[i] }
                    if iterations > 1 {
                        for _ in 2...iterations {
                            // Inner hash: one block = U (32 bytes) + padding, message length 64 + 32 bytes.
                            var inner = prf.innerState
                            for i in 0..<8 { w[i] = u[i] }
                            w[8] = 0x8000_0000
                            for i in 9..<15 { w[i] = 0 }
                            w[15] = (64 + 32) * 8
                            inner.compress(schedule: w, constants: k)
                            // Outer hash over the inner digest, same shape.
                            var outer = prf.outerState
                            inner.store(words: w)
                            w[8] = 0x8000_0000
                            for i in 9..<15 { w[i] = 0 }
                            w[15] = (64 + 32) * 8
                            outer.compress(schedule: w, constants: k)
                            outer.store(words: u)
                            for i in 0..<8 { t[i] ^= u[i] }
                        }
                    }
                    for i in 0..<8 {
                        output.append(UInt8(truncatingIfNeeded: t[i] >> 24))
                        output.append(UInt8(truncatingIfNeeded: t[i] >> 16))
                        output.append(UInt8(truncatingIfNeeded: t[i] >> 8))
                        output.append(UInt8(truncatingIfNeeded: t[i]))
                    }
                }
            }
        }
        output.removeLast(output.count - keyLength)
        return output
    }
}
