/// A latency distribution in bounded memory: a log-linear histogram over whole microseconds.
///
/// Values below `2^s` µs (s = ``subBucketBits`` = 7, so 128 µs) get one bucket each (exact).
/// Above, each power of two `[2^e, 2^(e+1))` is cut into `2^s` equal buckets, so a bucket
/// `[m·2^k, (m+1)·2^k)` with `m >= 2^s` is at most `1/m <= 2^-s` of its lower bound wide.
/// A percentile is answered with the middle of the bucket holding the wanted rank (clamped to
/// the observed min and max), so it is within `2^-(s+1)` = 1/256 ≈ 0.39 % of the exact
/// nearest-rank percentile, plus the 0.5 µs of rounding the input to microseconds. Values are
/// clamped to 0 ... 2^40 µs (about 12.7 days); memory is fixed (4,480 counters, 35 KiB).
public struct LatencyHistogram: Sendable, Equatable {
    /// `s`: 2^s buckets per power of two.
    public static let subBucketBits = 7
    /// The largest value kept, in µs (larger ones are clamped).
    public static let maxMicroseconds: UInt64 = 1 << 40
    /// Documented bound on a percentile's relative error (besides 0.5 µs of rounding).
    public static let relativeError = 1.0 / Double(1 << (subBucketBits + 1))

    static let subBuckets = 1 << subBucketBits
    static let bucketCount = (40 - subBucketBits + 2) * subBuckets

    private(set) var counts: [UInt64]
    /// Observations recorded.
    public private(set) var count: UInt64 = 0
    /// Sum of the recorded values, in ms.
    public private(set) var sumMs: Double = 0
    private(set) var minMicros: UInt64 = .max
    private(set) var maxMicros: UInt64 = 0

    /// An empty histogram.
    public init() { counts = [UInt64](repeating: 0, count: LatencyHistogram.bucketCount) }

    /// The bucket of a value in µs.
    static func bucket(_ micros: UInt64) -> Int {
        if micros < UInt64(subBuckets) { return Int(micros) }
        let exponent = 63 - micros.leadingZeroBitCount
        let shift = exponent - subBucketBits
        let mantissa = Int(micros >> UInt64(shift))          // in 2^s ..< 2^(s+1)
        return (shift + 1) * subBuckets + (mantissa - subBuckets)
    }

    /// The bucket's lower bound and width in µs.
    static func range(ofBucket index: Int) -> (lower: UInt64, width: UInt64) {
        if index < subBuckets { return (UInt64(index), 1) }
        let shift = index / subBuckets - 1
        let mantissa = UInt64(index % subBuckets + subBuckets)
        return (mantissa << UInt64(shift), 1 << UInt64(shift))
    }

    /// Records one latency in milliseconds (negative values count as 0; NaN is ignored).
    public mutating func record(milliseconds: Double) {
        guard !milliseconds.isNaN else { return }
        let micros: UInt64
        if milliseconds <= 0 { micros = 0 }
        else if milliseconds * 1000 >= Double(LatencyHistogram.maxMicroseconds) { micros = LatencyHistogram.maxMicroseconds }
        else { micros = UInt64((milliseconds * 1000).rounded()) }
        counts[LatencyHistogram.bucket(micros)] &+= 1
        count &+= 1
        sumMs += Double(micros) / 1000
        if micros < minMicros { minMicros = micros }
        if micros > maxMicros { maxMicros = micros }
    }

    /// The nearest-rank percentile `q` (0...1) in ms, nil when empty.
    public func percentile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = max(1, min(count, UInt64((q * Double(count)).rounded(.up))))
        var seen: UInt64 = 0
        for (index, n) in counts.enumerated() where n > 0 {
            seen += n
            if seen >= rank {
                let (lower, width) = LatencyHistogram.range(ofBucket: index)
                let middle = width == 1 ? Double(lower) : Double(lower) + Double(width) / 2
                return min(max(middle, Double(minMicros)), Double(maxMicros)) / 1000
            }
        }
        return Double(maxMicros) / 1000
    }

    /// Smallest recorded value in ms.
    public var minimumMs: Double? { count > 0 ? Double(minMicros) / 1000 : nil }
    /// Largest recorded value in ms.
    public var maximumMs: Double? { count > 0 ? Double(maxMicros) / 1000 : nil }
    /// Mean in ms.
    public var meanMs: Double? { count > 0 ? sumMs / Double(count) : nil }

    // MARK: Snapshot

    func write(to w: inout ByteWriter) {
        w.u64(count); w.f64(sumMs); w.u64(minMicros); w.u64(maxMicros)
        var nonZero = 0
        for n in counts where n > 0 { nonZero += 1 }
        w.u32(UInt32(nonZero))
        for (index, n) in counts.enumerated() where n > 0 { w.u32(UInt32(index)); w.u64(n) }
    }

    /// - Throws: ``SnapshotError``.
    static func read(from r: inout ByteReader) throws(SnapshotError) -> LatencyHistogram {
        var h = LatencyHistogram()
        h.count = try r.u64(); h.sumMs = try r.f64(); h.minMicros = try r.u64(); h.maxMicros = try r.u64()
        let n = Int(try r.u32())
        guard n <= bucketCount else { throw .corrupt("latency buckets \(n)") }
        var total: UInt64 = 0
        for _ in 0..<n {
            let index = Int(try r.u32())
            let value = try r.u64()
            guard index < bucketCount else { throw .corrupt("latency bucket \(index)") }
            h.counts[index] = value
            total &+= value
        }
        guard total == h.count else { throw .corrupt("latency count \(h.count) != bucket sum \(total)") }
        return h
    }
}

/// Why a snapshot could not be read.
public enum SnapshotError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not a snapshot, a newer version, or damaged content.
    case corrupt(String)

    public var description: String {
        switch self { case .corrupt(let why): return "analytics snapshot: \(why)" }
    }
}

/// Little-endian binary output for snapshots.
struct ByteWriter {
    var out: [UInt8] = []
    mutating func u8(_ v: UInt8) { out.append(v) }
    mutating func u16(_ v: UInt16) { out.append(UInt8(truncatingIfNeeded: v)); out.append(UInt8(truncatingIfNeeded: v >> 8)) }
    mutating func u32(_ v: UInt32) { appendLE(v, to: &out) }
    mutating func u64(_ v: UInt64) { u32(UInt32(truncatingIfNeeded: v)); u32(UInt32(truncatingIfNeeded: v >> 32)) }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func f64(_ v: Double) { u64(v.bitPattern) }
    mutating func bytes(_ b: [UInt8]) { u32(UInt32(b.count)); out.append(contentsOf: b) }
    mutating func string(_ s: String) { bytes(Array(s.utf8)) }
}

/// Little-endian binary input for snapshots; every read is bounds-checked.
struct ByteReader {
    let data: [UInt8]
    var at = 0
    init(_ data: [UInt8]) { self.data = data }

    var isAtEnd: Bool { at == data.count }

    private mutating func take(_ n: Int) throws(SnapshotError) -> Int {
        guard n >= 0, data.count - at >= n else { throw .corrupt("truncated at byte \(at)") }
        defer { at += n }
        return at
    }
    mutating func u8() throws(SnapshotError) -> UInt8 { data[try take(1)] }
    mutating func u16() throws(SnapshotError) -> UInt16 { let i = try take(2); return UInt16(data[i]) | UInt16(data[i + 1]) << 8 }
    mutating func u32() throws(SnapshotError) -> UInt32 { readLE(data, try take(4)) }
    mutating func u64() throws(SnapshotError) -> UInt64 { let lo = try u32(); let hi = try u32(); return UInt64(lo) | UInt64(hi) << 32 }
    mutating func i64() throws(SnapshotError) -> Int64 { Int64(bitPattern: try u64()) }
    mutating func f64() throws(SnapshotError) -> Double { Double(bitPattern: try u64()) }
    mutating func bytes(limit: Int) throws(SnapshotError) -> [UInt8] {
        let n = Int(try u32())
        guard n <= limit else { throw .corrupt("field of \(n) bytes (limit \(limit))") }
        let i = try take(n)
        return Array(data[i..<i + n])
    }
    mutating func string(limit: Int) throws(SnapshotError) -> String {
        String(decoding: try bytes(limit: limit), as: UTF8.self)
    }
}
