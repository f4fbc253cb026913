/// A time window of the analytics answers.
public enum Window: String, Sendable, CaseIterable, Comparable {
    /// The last minute: 60 one-second buckets.
    case oneMinute = "1m"
    /// The last five minutes: 300 one-second buckets.
    case fiveMinutes = "5m"
    /// The last hour: 60 one-minute buckets.
    case oneHour = "1h"
    /// Since the counts began (kept across restarts through snapshots).
    case all = "all"

    public static func < (a: Window, b: Window) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!  // every case is in allCases
    }
}

/// Counts per event type in sliding windows, totals since start, and distinct users per window.
///
/// Two rings of buckets keyed by absolute time: 300 one-second buckets (the 1 m and 5 m windows)
/// and 60 one-minute buckets (the 1 h window). A bucket remembers which second (minute) it holds
/// and is cleared when that slot is reused, so there is no background sweeping and a stale
/// bucket never counts. At time `t` (Unix ms), with `s = floor(t / 1000)` and
/// `M = floor(t / 60000)`:
/// - `1m` sums the events whose time falls in seconds `s-59 ... s` (the current partial second
///   and the 59 before it), `5m` in seconds `s-299 ... s`;
/// - `1h` sums minutes `M-59 ... M`.
/// A window is therefore exact to its bucket width (1 s, 1 s, 1 min) at its old end.
///
/// Each bucket also holds a small HyperLogLog (p = ``windowPrecision``, exact up to
/// ``bucketExactLimit`` users) of the users seen in it; a window's distinct users are the merge
/// of its buckets (exact while every bucket is and the union stays within ``windowExactLimit``).
///
/// Event types are interned: at most ``maxTypes`` distinct types get their own counter, later
/// new types are counted under ``otherType``, so memory stays bounded whatever arrives.
struct WindowedCounters: Sendable {
    static let maxTypes = 64
    static let otherType = "(other)"
    static let secondBuckets = 300
    static let minuteBuckets = 60
    static let windowPrecision = 10
    /// Users counted exactly per bucket (and per merged window) before the sketch estimates.
    static let bucketExactLimit = 64
    static let windowExactLimit = 1024

    struct Bucket: Sendable {
        var id: Int64 = .min
        var total: UInt64 = 0
        var perType: [UInt64]
        var users: HyperLogLog
        init() {
            perType = [UInt64](repeating: 0, count: WindowedCounters.maxTypes + 1)
            // Precision 10 is within 4...18.
            users = try! HyperLogLog(precision: WindowedCounters.windowPrecision, exactLimit: WindowedCounters.bucketExactLimit)
        }
        mutating func reset(to id: Int64) {
            self.id = id
            total = 0
            for k in perType.indices { perType[k] = 0 }
            users.reset()
        }
    }

    /// Type names by index (the last slot, `maxTypes`, is "(other)").
    private(set) var typeNames: [String] = []
    private var typeIndex: [String: Int] = [:]
    /// Events per type since start (index as `typeNames`, plus the "(other)" slot).
    private(set) var totals = [UInt64](repeating: 0, count: WindowedCounters.maxTypes + 1)
    private(set) var total: UInt64 = 0
    private var seconds = [Bucket](repeating: Bucket(), count: WindowedCounters.secondBuckets)
    private var minutes = [Bucket](repeating: Bucket(), count: WindowedCounters.minuteBuckets)

    init() {}

    /// The counter index of `type`, interning it if there is room.
    mutating func typeSlot(_ type: String) -> Int {
        if let k = typeIndex[type] { return k }
        guard typeNames.count < WindowedCounters.maxTypes else { return WindowedCounters.maxTypes }
        typeNames.append(type)
        typeIndex[type] = typeNames.count - 1
        return typeNames.count - 1
    }

    /// Counts one event of type slot `slot` that happened at `time` (Unix ms), observed at `now`.
    /// Times in the future count at `now`; times older than a ring still count in the totals
    /// and in any ring that still covers them.
    mutating func record(slot: Int, time: Int64, now: Int64, userHash: UInt64?) {
        totals[slot] &+= 1
        total &+= 1
        let t = min(time, now)
        let second = floorDiv(t, 1000), nowSecond = floorDiv(now, 1000)
        if second > nowSecond - Int64(WindowedCounters.secondBuckets) {
            WindowedCounters.add(&seconds, id: second, slot: slot, userHash: userHash)
        }
        let minute = floorDiv(t, 60_000), nowMinute = floorDiv(now, 60_000)
        if minute > nowMinute - Int64(WindowedCounters.minuteBuckets) {
            WindowedCounters.add(&minutes, id: minute, slot: slot, userHash: userHash)
        }
    }

    private static func add(_ ring: inout [Bucket], id: Int64, slot: Int, userHash: UInt64?) {
        let k = Int(floorMod(id, Int64(ring.count)))
        if ring[k].id != id {
            // A slot holding a newer period means this event is older than the ring: skip it.
            guard ring[k].id < id else { return }
            ring[k].reset(to: id)
        }
        ring[k].total &+= 1
        ring[k].perType[slot] &+= 1
        if let userHash { ring[k].users.insert(hash: userHash) }
    }

    /// The buckets a window covers at `now`: the ring and the id range.
    private func cover(_ window: Window, now: Int64) -> (ring: [Bucket], ids: ClosedRange<Int64>)? {
        switch window {
        case .oneMinute: let s = floorDiv(now, 1000); return (seconds, (s - 59)...s)
        case .fiveMinutes: let s = floorDiv(now, 1000); return (seconds, (s - 299)...s)
        case .oneHour: let m = floorDiv(now, 60_000); return (minutes, (m - 59)...m)
        case .all: return nil
        }
    }

    /// Counts per type name (types with no events left out) and the total, for `window` at `now`.
    func counts(_ window: Window, now: Int64) -> (total: UInt64, byType: [String: UInt64]) {
        var perType: [UInt64]
        var sum: UInt64
        if let (ring, ids) = cover(window, now: now) {
            perType = [UInt64](repeating: 0, count: WindowedCounters.maxTypes + 1)
            sum = 0
            for bucket in ring where ids.contains(bucket.id) {
                sum &+= bucket.total
                for k in 0..<perType.count { perType[k] &+= bucket.perType[k] }
            }
        } else {
            perType = totals
            sum = total
        }
        var byType: [String: UInt64] = [:]
        for (k, n) in perType.enumerated() where n > 0 {
            byType[k < typeNames.count ? typeNames[k] : WindowedCounters.otherType] = n
        }
        return (sum, byType)
    }

    /// The merged user sketch of a window's buckets (nil for `.all`, which is kept elsewhere).
    func users(_ window: Window, now: Int64) -> HyperLogLog? {
        guard let (ring, ids) = cover(window, now: now) else { return nil }
        // Precision 10 is within 4...18.
        var merged = try! HyperLogLog(precision: WindowedCounters.windowPrecision, exactLimit: WindowedCounters.windowExactLimit)
        for bucket in ring where ids.contains(bucket.id) { merged.mergeUnchecked(bucket.users) }
        return merged
    }

    // MARK: Snapshot

    func write(to w: inout ByteWriter) {
        w.u16(UInt16(typeNames.count))
        for name in typeNames { w.string(name) }
        w.u64(total)
        for n in totals { w.u64(n) }
        for ring in [seconds, minutes] {
            let live = ring.filter { $0.id != .min && $0.total > 0 }
            w.u32(UInt32(live.count))
            for bucket in live {
                w.i64(bucket.id)
                w.u64(bucket.total)
                let nonZero = bucket.perType.enumerated().filter { $0.element > 0 }
                w.u16(UInt16(nonZero.count))
                for (k, n) in nonZero { w.u16(UInt16(k)); w.u64(n) }
                w.bytes(bucket.users.serialized())
            }
        }
    }

    /// - Throws: ``SnapshotError``.
    static func read(from r: inout ByteReader) throws(SnapshotError) -> WindowedCounters {
        var c = WindowedCounters()
        let typeCount = Int(try r.u16())
        guard typeCount <= maxTypes else { throw .corrupt("\(typeCount) event types") }
        for _ in 0..<typeCount {
            let name = try r.string(limit: 1024)
            guard c.typeIndex[name] == nil else { throw .corrupt("event type \(name) twice") }
            _ = c.typeSlot(name)
        }
        c.total = try r.u64()
        for k in 0..<c.totals.count { c.totals[k] = try r.u64() }
        for ringNumber in 0..<2 {
            var ring = ringNumber == 0 ? c.seconds : c.minutes
            let n = Int(try r.u32())
            guard n <= ring.count else { throw .corrupt("\(n) buckets") }
            for _ in 0..<n {
                var bucket = Bucket()
                bucket.id = try r.i64()
                bucket.total = try r.u64()
                let nonZero = Int(try r.u16())
                for _ in 0..<nonZero {
                    let k = Int(try r.u16())
                    guard k < bucket.perType.count else { throw .corrupt("type slot \(k)") }
                    bucket.perType[k] = try r.u64()
                }
                let encoded = try r.bytes(limit: 1 << 20)
                do {
                    bucket.users = try HyperLogLog(serialized: encoded)
                } catch {
                    throw .corrupt("\(error)")
                }
                guard bucket.users.precision == windowPrecision, bucket.users.exactLimit == bucketExactLimit, bucket.id != .min else {
                    throw .corrupt("window bucket")
                }
                let slot = Int(floorMod(bucket.id, Int64(ring.count)))
                ring[slot] = bucket
            }
            if ringNumber == 0 { c.seconds = ring } else { c.minutes = ring }
        }
        return c
    }
}

/// Floor division (rounds toward negative infinity).
@inline(__always)
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// The non-negative remainder of floor division.
@inline(__always)
func floorMod(_ a: Int64, _ b: Int64) -> Int64 {
    let r = a % b
    return r < 0 ? r + b : r
}
