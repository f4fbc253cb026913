import Foundation
import Testing
import TestSupport
@testable import AnalyticsService

@Suite("HyperLogLog")
struct HyperLogLogTests {
    static func sketch(_ range: Range<UInt64>, seed: UInt64, precision: Int = 14) throws -> HyperLogLog {
        var h = try HyperLogLog(precision: precision)
        for n in range { h.insert(item(n, seed: seed)) }
        return h
    }

    /// Sizes 1k ... 1M on several seeds: the error stays within 3 standard errors (p = 14: 2.44 %).
    @Test(arguments: [(1_000, 1), (1_000, 2), (1_000, 3), (10_000, 4), (10_000, 5), (10_000, 6), (50_000, 7),
                      (100_000, 8), (100_000, 9), (300_000, 10), (1_000_000, 11)] as [(Int, UInt64)])
    func estimateIsWithinThreeStandardErrors(_ n: Int, _ seed: UInt64) throws {
        let h = try Self.sketch(0..<UInt64(n), seed: seed)
        let error = abs(h.estimate() - Double(n)) / Double(n)
        #expect(error <= 3 * h.standardError, "n \(n) seed \(seed): estimate \(h.estimate()), error \(error)")
    }

    @Test func windowPrecisionIsWithinThreeStandardErrorsToo() throws {
        for (n, seed) in [(500, UInt64(21)), (5_000, 22), (50_000, 23)] {
            let h = try Self.sketch(0..<UInt64(n), seed: seed, precision: 10)
            #expect(abs(h.estimate() - Double(n)) / Double(n) <= 3 * h.standardError, "n \(n)")
        }
    }

    @Test func standardErrorIsTheDocumentedBound() throws {
        #expect(try HyperLogLog(precision: 14).standardError == 1.04 / 128)
        #expect(abs(try HyperLogLog(precision: 10).standardError - 0.0325) < 1e-12)
    }

    /// Small sets are exact: up to the exact limit (p = 14: 1,024) the estimate is the number of
    /// distinct items, and past it the sketch estimates within 3 standard errors.
    @Test func smallSetsAreCountedExactly() throws {
        for seed: UInt64 in 1...3 {
            var h = try HyperLogLog(precision: 14)
            #expect(h.estimate() == 0 && h.isEmpty && h.exactLimit == 1024)
            for n in 0..<UInt64(1024) {
                h.insert(item(n, seed: seed))
                if n % 7 == 0 || n == 1023 { #expect(h.estimate() == Double(n + 1), "seed \(seed)") }
            }
            // Duplicates change nothing.
            let before = h
            for n in 0..<UInt64(1024) { h.insert(item(n, seed: seed)) }
            #expect(h == before && h.isExact)
            h.insert(item(5000, seed: seed))
            #expect(!h.isExact)
            #expect(abs(h.estimate() - 1025) / 1025 <= 3 * h.standardError)
        }
    }

    /// Without the exact set, the small-range correction (linear-counting behaviour while many
    /// registers are zero) keeps small counts within 3 of linear counting's standard deviations,
    /// sqrt(m (e^t - t - 1)) with t = n / m.
    @Test func smallRangeCorrectionWithoutTheExactSet() throws {
        let m = 16_384.0
        for seed: UInt64 in 1...3 {
            var h = try HyperLogLog(precision: 14, exactLimit: 0)
            #expect(h.estimate() == 0)
            for n in 1...UInt64(5_000) {
                h.insert(item(n, seed: seed))
                guard n % 50 == 0 || n < 20 else { continue }
                let t = Double(n) / m
                let sigma = (m * (exp(t) - t - 1)).squareRoot()
                #expect(abs(h.estimate() - Double(n)) <= 3 * sigma + 1, "seed \(seed) n \(n): \(h.estimate())")
            }
        }
    }

    @Test func mergeIsTheSketchOfTheUnion() throws {
        var a = try Self.sketch(0..<60_000, seed: 7)
        let b = try Self.sketch(40_000..<100_000, seed: 7)
        let union = try Self.sketch(0..<100_000, seed: 7)
        try a.merge(b)
        #expect(a == union)
        #expect(abs(a.estimate() - 100_000) / 100_000 <= 3 * a.standardError)
        var other = try HyperLogLog(precision: 12)
        #expect(throws: HyperLogLogError.precisionMismatch(12, 14)) { try other.merge(b) }
        // Exact sketches merge into the exact sketch of the union, until the union outgrows the limit.
        var small = try Self.sketch(0..<300, seed: 8)
        try small.merge(try Self.sketch(200..<600, seed: 8))
        let union600 = try Self.sketch(0..<600, seed: 8)
        #expect(small == union600 && small.estimate() == 600)
        try small.merge(try Self.sketch(600..<1100, seed: 8))
        let union1100 = try Self.sketch(0..<1100, seed: 8)
        #expect(!small.isExact)
        #expect(small == union1100)
    }

    @Test func serialisationRoundTripsDenseAndSparse() throws {
        for n: UInt64 in [0, 1, 100, 3_000, 200_000] {
            let h = try Self.sketch(0..<n, seed: 3)
            let bytes = h.serialized()
            #expect(try HyperLogLog(serialized: bytes) == h)
            if n <= 100 { #expect(bytes.count <= 16 + 13 * Int(n), "sparse registers and the exact hashes for small sets") }
        }
    }

    @Test func refusesBadPrecisionAndBadBytes() throws {
        #expect(throws: HyperLogLogError.invalidPrecision(3)) { try HyperLogLog(precision: 3) }
        #expect(throws: HyperLogLogError.invalidPrecision(19)) { try HyperLogLog(precision: 19) }
        let good = try Self.sketch(0..<10, seed: 1).serialized()
        for bad in [[], Array(good.dropLast()), [0x48, 1, 14, 7], [0x48, 2] + Array(good.dropFirst(2)),
                    Array(good.prefix(3)) + [0] + [UInt8](repeating: 99, count: 1 << 14)] {
            #expect(throws: HyperLogLogError.self) { try HyperLogLog(serialized: bad) }
        }
    }
}

@Suite("Space-Saving top-N")
struct SpaceSavingTests {
    /// A skewed stream with a long tail: every count brackets the truth, everything above
    /// N / capacity is monitored, and the clear heavy hitters come out in order.
    @Test func guaranteesHoldOnASkewedStream() {
        var rng = SeededGenerator(seed: 99)
        var summary = SpaceSaving(capacity: 100)
        var truth: [String: UInt64] = [:]
        var n: UInt64 = 0
        for _ in 0..<200_000 {
            // Items 0...9 heavy (Zipf-like weights), then a uniform tail of 50,000 items.
            let r = Double.random(in: 0..<1, using: &rng)
            let key: String
            if r < 0.5 { key = "heavy-\(Int(-log2(Double.random(in: 0.001..<1, using: &rng))) % 10)" }
            else { key = "tail-\(Int.random(in: 0..<50_000, using: &rng))" }
            let bytes = Array(key.utf8)
            summary.add(key: ByteHash.hash(bytes, 0..<bytes.count), label: bytes, 0..<bytes.count)
            truth[key, default: 0] += 1
            n += 1
        }
        #expect(summary.total == n)
        let monitored = summary.top(summary.capacity)
        #expect(monitored.count == 100)
        for entry in monitored {
            let exact = truth[entry.key] ?? 0
            #expect(entry.count >= exact && entry.count - entry.error <= exact, "\(entry) vs \(exact)")
            #expect(entry.error <= n / 100)
        }
        let listed = Set(monitored.map(\.key))
        for (key, count) in truth where count > n / 100 { #expect(listed.contains(key), "\(key) with \(count) missing") }
        let exactTop = truth.sorted { $0.value > $1.value }.prefix(5).map(\.key)
        #expect(summary.top(5).map(\.key) == exactTop)
    }

    @Test func topSelectsWhatAFullSortLists() {
        // Many ties (counts 1...8) so the label order decides; every n from 0 to past the size.
        var summary = SpaceSaving(capacity: 300)
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<1200 {
            let bytes = Array("u\(Int.random(in: 0..<250, using: &rng))".utf8)
            summary.add(key: ByteHash.hash(bytes, 0..<bytes.count), label: bytes, 0..<bytes.count)
        }
        let all = summary.top(1000)
        #expect(all.count == summary.monitored)
        let reference = all.sorted { $0.count != $1.count ? $0.count > $1.count : Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        #expect(all == reference)
        for n in [0, 1, 2, 7, 10, 99, 249, 250, 251] {
            #expect(summary.top(n) == Array(reference.prefix(n)), "n = \(n)")
        }
        #expect(summary.top(-1).isEmpty)
    }

    @Test func exactWhileThereIsRoomAndLabelsAreCut() {
        var summary = SpaceSaving(capacity: 10)
        let long = Array(String(repeating: "x", count: 100).utf8)
        for (k, times) in [(0, 5), (1, 3), (2, 9)] {
            let bytes = k == 2 ? long : Array("k\(k)".utf8)
            for _ in 0..<times { summary.add(key: ByteHash.hash(bytes, 0..<bytes.count), label: bytes, 0..<bytes.count) }
        }
        let top = summary.top(3)
        #expect(top.map(\.count) == [9, 5, 3])
        #expect(top.allSatisfy { $0.error == 0 })
        #expect(top[0].key.utf8.count == SpaceSaving.labelLimit)
        #expect(summary.minimum == 0)
    }

    @Test func snapshotKeepsCountsAndShrinksSafely() throws {
        var summary = SpaceSaving(capacity: 50)
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<5000 {
            let bytes = Array("i\(Int.random(in: 0..<200, using: &rng))".utf8)
            summary.add(key: ByteHash.hash(bytes, 0..<bytes.count), label: bytes, 0..<bytes.count)
        }
        var w = ByteWriter()
        summary.write(to: &w)
        var r = ByteReader(w.out)
        let same = try SpaceSaving.read(from: &r, capacity: 50)
        #expect(same.top(50) == summary.top(50) && same.total == summary.total && same.minimum == summary.minimum)
        r = ByteReader(w.out)
        let smaller = try SpaceSaving.read(from: &r, capacity: 10)
        #expect(smaller.top(10) == summary.top(10))
    }
}

@Suite("Latency histogram")
struct LatencyHistogramTests {
    static func exactPercentile(_ sorted: [Double], _ q: Double) -> Double {
        let rank = max(1, Int((q * Double(sorted.count)).rounded(.up)))
        return sorted[min(rank, sorted.count) - 1]
    }

    @Test func bucketsCoverTheirValuesWithinTheRelativeWidth() {
        var rng = SeededGenerator(seed: 17)
        for _ in 0..<20_000 {
            let micros = UInt64.random(in: 0...LatencyHistogram.maxMicroseconds >> UInt64.random(in: 0...39, using: &rng), using: &rng)
            let index = LatencyHistogram.bucket(micros)
            #expect(index >= 0 && index < LatencyHistogram.bucketCount)
            let (lower, width) = LatencyHistogram.range(ofBucket: index)
            #expect(lower <= micros && micros < lower + width)
            #expect(width == 1 || Double(width) / Double(lower) <= 1.0 / 128)
        }
    }

    /// Percentiles of several distributions are within the documented relative error of the
    /// exact nearest-rank percentiles.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func percentilesAreWithinTheDocumentedError(_ seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var h = LatencyHistogram()
        var values: [Double] = []
        for _ in 0..<50_000 {
            // Log-uniform over 0.05 ms ... 60 s, in whole microseconds.
            let ms = (exp(Double.random(in: log(0.05)..<log(60_000), using: &rng)) * 1000).rounded() / 1000
            values.append(ms)
            h.record(milliseconds: ms)
        }
        values.sort()
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = Self.exactPercentile(values, q)
            let estimate = h.percentile(q) ?? -1
            #expect(abs(estimate - exact) <= exact * LatencyHistogram.relativeError + 0.0005, "q \(q): \(estimate) vs \(exact)")
        }
        #expect(h.count == 50_000)
        #expect(h.minimumMs == values.first && h.maximumMs == values.last)
    }

    @Test func smallValuesAreExactAndOddInputIsClamped() {
        var h = LatencyHistogram()
        #expect(h.percentile(0.5) == nil)
        for ms in [0.001, 0.002, 0.003, 0.1] { h.record(milliseconds: ms) }
        #expect(h.percentile(0.5) == 0.002)
        #expect(h.percentile(1) == 0.1)
        h.record(milliseconds: -5)
        h.record(milliseconds: .nan)
        h.record(milliseconds: 1e30)
        #expect(h.count == 6)
        #expect(h.minimumMs == 0)
        #expect(h.maximumMs == Double(LatencyHistogram.maxMicroseconds) / 1000)
    }
}
