/// The 64-bit checksum that closes every block record.
///
/// Eight bytes per step: each step is a bijection of the running value for a fixed input word
/// (xor, multiply by an odd constant, rotate, multiply), so a change confined to one word always
/// changes the result; the length seeds it, so a cut record never matches. It guards against torn
/// writes and disk damage, not against an adversary.
enum RecordHash {
    private static let p1: UInt64 = 0x9E37_79B9_7F4A_7C15
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F

    @inline(__always)
    private static func step(_ h: UInt64, _ word: UInt64) -> UInt64 {
        let x = (h ^ word) &* p1
        return ((x << 31) | (x >> 33)) &* p2
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let n = bytes.count
        var h = step(0x2545_F491_4F6C_DD1D, UInt64(n))
        var i = 0
        while i + 8 <= n {
            h = step(h, UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            i += 8
        }
        if i < n {
            var tail: UInt64 = 0
            for j in i..<n { tail |= UInt64(bytes[j]) << UInt64(8 * (j - i)) }
            h = step(h, tail)
        }
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}
