// SHA-256 as specified in FIPS 180-4, section 6.2.
//
// The compression function works on a fixed eight-word state and a 64-word message schedule held
// in caller-provided scratch memory, so hashing (and PBKDF2's two compressions per iteration)
// allocates nothing per block.

/// The SHA-256 round constants (FIPS 180-4, 4.2.2).
let sha256RoundConstants: [UInt32] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]

/// The eight words of a SHA-256 chaining state, kept inline (no heap storage).
struct SHA256State: Equatable {
    var h0: UInt32 = 0x6a09e667, h1: UInt32 = 0xbb67ae85, h2: UInt32 = 0x3c6ef372, h3: UInt32 = 0xa54ff53a
    var h4: UInt32 = 0x510e527f, h5: UInt32 = 0x9b05688c, h6: UInt32 = 0x1f83d9ab, h7: UInt32 = 0x5be0cd19

    /// Processes one 64-byte block given as 16 big-endian words already loaded into `w[0..<16]`.
    /// `w` must have room for 64 words; `k` points at the 64 round constants. Allocates nothing.
    @inline(__always)
    mutating func compress(schedule w: UnsafeMutablePointer<UInt32>, constants k: UnsafePointer<UInt32>) {
        for t in 16..<64 {
            let x = w[t - 15], y = w[t - 2]
            let s0 = x.rotatedRight(7) ^ x.rotatedRight(18) ^ (x >> 3)
            let s1 = y.rotatedRight(17) ^ y.rotatedRight(19) ^ (y >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7
        for t in 0..<64 {
            let bigS1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
            let ch = (e & f) ^ (~e & g)
            let t1 = h &+ bigS1 &+ ch &+ k[t] &+ w[t]
            let bigS0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = bigS0 &+ maj
            h = g; g = f; f = e; e = d &+ t1
            d = c; c = b; b = a; a = t1 &+ t2
        }
        h0 &+= a; h1 &+= b; h2 &+= c; h3 &+= d
        h4 &+= e; h5 &+= f; h6 &+= g; h7 &+= h
    }

    /// Loads a 64-byte block from `bytes` into `w[0..<16]` as big-endian words.
    @inline(__always)
    static func load(block bytes: UnsafeRawPointer, into w: UnsafeMutablePointer<UInt32>) {
        for i in 0..<16 {
            w[i] = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        }
    }

    /// Writes the state as 8 big-endian words (32 bytes) into `w[0..<8]`.
    @inline(__always)
    func store(words w: UnsafeMutablePointer<UInt32>) {
        w[0] = h0; w[1] = h1; w[2] = h2; w[3] = h3; w[4] = h4; w[5] = h5; w[6] = h6; w[7] = h7
    }

    /// The 32-byte digest for this state.
    var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for word in [h0, h1, h2, h3, h4, h5, h6, h7] {
            out.append(UInt8(truncatingIfNeeded: word >> 24))
            out.append(UInt8(truncatingIfNeeded: word >> 16))
            out.append(UInt8(truncatingIfNeeded: word >> 8))
            out.append(UInt8(truncatingIfNeeded: word))
        }
        return out
    }
}

extension UInt32 {
    @inline(__always)
    func rotatedRight(_ n: UInt32) -> UInt32 { (self >> n) | (self << (32 &- n)) }
}

/// An incremental SHA-256 hash (FIPS 180-4).
///
/// ```swift
/// var hasher = SHA256()
/// hasher.update(Array("abc".utf8))
/// let digest = hasher.finalize()   // 32 bytes
/// ```
/// Feed any number of `update` calls, then call `finalize()` once. Nothing here throws.
public struct SHA256: Sendable {
    /// Digest length in bytes.
    public static let digestCount = 32
    /// Block length in bytes.
    public static let blockCount = 64

    var state = SHA256State()
    /// Bytes of a partial block not yet compressed (fewer than 64).
    private var pending: [UInt8] = []
    /// Total message length in bytes so far.
    private var length: UInt64 = 0

    /// A fresh hash of the empty message.
    public init() {
        pending.reserveCapacity(SHA256.blockCount)
    }

    /// Hashes `bytes` in one call and returns the 32-byte digest.
    public static func hash<Bytes: Sequence>(_ bytes: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        var hasher = SHA256()
        hasher.update(Array(bytes))
        return hasher.finalize()
    }

    /// Appends `bytes` to the message.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Appends the bytes in `buffer` to the message.
    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        length &+= UInt64(buffer.count)
        var offset = 0
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            let wp = w.baseAddress!  // capacity 64 > 0: always non-nil
            sha256RoundConstants.withUnsafeBufferPointer { k in
                let kp = k.baseAddress!  // 64 constants: non-nil
                if !pending.isEmpty {
                    let take = min(SHA256.blockCount - pending.count, buffer.count)
                    pending.append(contentsOf: UnsafeRawBufferPointer(start: base, count: take))
                    offset = take
                    if pending.count == SHA256.blockCount {
                        pending.withUnsafeBytes { SHA256State.load(block: $0.baseAddress!, into: wp) }
                        state.compress(schedule: wp, constants: kp)
                        pending.removeAll(keepingCapacity: true)
                    }
                }
                while buffer.count - offset >= SHA256.blockCount {
                    SHA256State.load(block: base + offset, into: wp)
                    state.compress(schedule: wp, constants: kp)
                    offset += SHA256.blockCount
                }
            }
        }
        if offset < buffer.count {
            pending.append(contentsOf: UnsafeRawBufferPointer(start: base + offset, count: buffer.count - offset))
        }
    }

    /// Counts `count` bytes as already hashed (used when `state` was set from a precomputed block).
    mutating func skipLength(_ count: Int) { length &+= UInt64(count) }

    /// Pads the message (FIPS 180-4, 5.1.1) and returns the 32-byte digest. Consumes the hasher's
    /// state: call it once.
    public mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail = pending
        tail.append(0x80)
        while tail.count % SHA256.blockCount != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) {
            tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            sha256RoundConstants.withUnsafeBufferPointer { k in
                tail.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        SHA256State.load(block: raw.baseAddress! + offset, into: w.baseAddress!)
                        state.compress(schedule: w.baseAddress!, constants: k.baseAddress!)
                        offset += SHA256.blockCount
                    }
                }
            }
        }
        pending.removeAll()
        return state.bytes
    }
}
