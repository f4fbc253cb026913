#if canImport(Glibc)
import Glibc
#endif
import ServiceKit
import Synchronization

/// A bounded set of recently seen event ids (their 64-bit hashes): a ring of the last
/// `capacity` ids in arrival order plus a hash set, so an id is remembered until `capacity`
/// newer ids have arrived. Memory is fixed: about 8 bytes (ring) + 16 bytes (set) per id.
struct RecentIDs: Sendable {
    let capacity: Int
    private var ring: [UInt64]
    private var next = 0
    private var filled = false
    private var members: Set<UInt64>

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        ring = [UInt64](repeating: 0, count: self.capacity)
        members = []
        members.reserveCapacity(self.capacity)
    }

    var count: Int { filled ? capacity : next }

    /// Remembers `id`; false when it was already remembered (a duplicate).
    mutating func insert(_ id: UInt64) -> Bool {
        guard members.insert(id).inserted else { return false }
        if filled { members.remove(ring[next]) }
        ring[next] = id
        next += 1
        if next == capacity { next = 0; filled = true }
        return true
    }

    /// The newest `limit` ids, oldest first.
    func newest(_ limit: Int) -> [UInt64] {
        let n = min(limit, count)
        return (0..<n).map { ring[Int(floorMod(Int64(next - n + $0), Int64(capacity)))] }
    }
}

/// The analytics aggregates and how events reach them.
///
/// Each aggregator has its own lock (deduplication, windowed counters, the all-time user
/// sketch, the two top-N summaries, the latency histogram); decoding and hashing happen before
/// any lock is taken, so each critical section is a few array updates. Counting allocates
/// nothing per event once the types and subjects are known.
///
/// Time comes from an injectable wall clock (Unix milliseconds), so tests move windows exactly.
public final class AnalyticsEngine: Sendable {
    /// Sizes of the aggregates.
    public struct Options: Sendable {
        /// Precision of the all-time unique-user HyperLogLog (2^p registers).
        public var hllPrecision: Int
        /// Entries reported per top-N list.
        public var topN: Int
        /// Counters per top-N summary (Space-Saving capacity).
        public var topCapacity: Int
        /// Event ids remembered for deduplication.
        public var dedupCapacity: Int
        /// Event ids kept in a snapshot (the newest ones), so duplicates still arriving right
        /// after a restart are recognised.
        public var snapshotIDs: Int
        /// Defaults: p = 14, top 10 out of 1,000 counters, 262,144 remembered ids, 16,384 saved.
        public init(hllPrecision: Int = 14, topN: Int = 10, topCapacity: Int = 1000,
                    dedupCapacity: Int = 262_144, snapshotIDs: Int = 16_384) {
            self.hllPrecision = hllPrecision; self.topN = topN; self.topCapacity = topCapacity
            self.dedupCapacity = dedupCapacity; self.snapshotIDs = snapshotIDs
        }
    }

    /// How far counting has got in one JetStream stream.
    public struct StreamPosition: Sendable, Equatable {
        /// The last stream sequence counted (0: none yet).
        public var sequence: UInt64
        /// The stream's creation time (Unix ms; 0 unknown) when counting began in it: a stream
        /// deleted and created again starts its sequences over, and this tells the two apart.
        public var streamCreated: Int64
        /// A position at `sequence` in the stream created at `streamCreated`.
        public init(sequence: UInt64, streamCreated: Int64) {
            self.sequence = sequence
            self.streamCreated = streamCreated
        }
    }

    /// What happened to one message.
    public enum Outcome: Sendable {
        /// Counted, as this type (the subject without an `events.` prefix).
        case counted(DecodedEvent, type: String)
        /// Already counted (same event id seen before, through either path).
        case duplicate(DecodedEvent)
        /// Not a JSON object the scanner could read; not counted.
        case invalid
    }

    /// The sizes in use.
    public let options: Options
    /// Wall-clock time in Unix milliseconds.
    public let clock: @Sendable () -> Int64

    private let recent: Mutex<RecentIDs>
    private let counters = Mutex(WindowedCounters())
    private let subjects = Mutex([String: (slot: Int, type: String)]())
    private let users: Mutex<HyperLogLog>
    private let topUsers: Mutex<SpaceSaving>
    private let topDomains: Mutex<SpaceSaving>
    private let latencies = Mutex(LatencyHistogram())
    private let countedEvents = Atomic<UInt64>(0)
    private let duplicateEvents = Atomic<UInt64>(0)
    private let invalidEvents = Atomic<UInt64>(0)
    private let eventsWithoutID = Atomic<UInt64>(0)
    private let startedAt: Mutex<Int64>
    /// The last sequence counted per stream. Its lock is held while a stream message is counted
    /// and while a snapshot copies the aggregates, so a snapshot has a message's count and its
    /// position together or neither (see ``apply(stream:sequence:subject:payload:)``).
    private let positions = Mutex([String: StreamPosition]())

    static let maxSubjects = 256
    static let userSeed: UInt64 = 0x5553_4552    // keeps user and event id hashes independent
    static let domainSeed: UInt64 = 0x444F_4D41

    /// The system wall clock in Unix milliseconds.
    public static let systemClock: @Sendable () -> Int64 = {
        let t = ServiceLogger.systemTime()
        return t.seconds * 1000 + Int64(t.nanoseconds / 1_000_000)
    }

    /// Empty aggregates.
    /// - Throws: ``HyperLogLogError/invalidPrecision(_:)`` for a precision outside 4...18.
    public init(options: Options = Options(), clock: @escaping @Sendable () -> Int64 = AnalyticsEngine.systemClock) throws(HyperLogLogError) {
        self.options = options
        self.clock = clock
        users = Mutex(try HyperLogLog(precision: options.hllPrecision))
        recent = Mutex(RecentIDs(capacity: options.dedupCapacity))
        topUsers = Mutex(SpaceSaving(capacity: options.topCapacity))
        topDomains = Mutex(SpaceSaving(capacity: options.topCapacity))
        startedAt = Mutex(clock())
    }

    // MARK: Ingest

    /// The event type for a subject: `events.<subject>` envelopes count as `<subject>`.
    public static func eventType(subject: String) -> String {
        subject.hasPrefix("events.") ? String(subject.dropFirst("events.".count)) : subject
    }

    private func slot(subject: String) -> (slot: Int, type: String) {
        if let known = subjects.withLock({ $0[subject] }) { return known }
        let type = AnalyticsEngine.eventType(subject: subject)
        let slot = counters.withLock { $0.typeSlot(type) }
        subjects.withLock { if $0.count < AnalyticsEngine.maxSubjects { $0[subject] = (slot, type) } }
        return (slot, type)
    }

    /// Decodes and counts one message (`user.*`, `notification.*`, or an `events.*` envelope).
    public func ingest(subject: String, payload: [UInt8]) -> Outcome {
        guard let event = EventScanner.decode(payload) else {
            invalidEvents.add(1, ordering: .relaxed)
            return .invalid
        }
        if let id = event.eventID {
            let hash = ByteHash.hash(event.bytes, id)
            guard recent.withLock({ $0.insert(hash) }) else {
                duplicateEvents.add(1, ordering: .relaxed)
                return .duplicate(event)
            }
        } else {
            eventsWithoutID.add(1, ordering: .relaxed)
        }
        let (slot, type) = self.slot(subject: subject)
        count(event, slot: slot, now: clock())
        return .counted(event, type: type)
    }

    /// Counts a message read from `stream` at stream sequence `sequence` and records that
    /// sequence as the stream's position, as one step under the position lock. ``snapshot()``
    /// takes the same lock, so a snapshot holds a message's count and its position together or
    /// neither: resuming after the saved position counts every later message exactly once, with
    /// no help from the event-id dedupe (which still drops the second copy of an event that
    /// arrives on two streams). A sequence at or before the recorded position was counted
    /// already: it is skipped and nil returned.
    public func apply(stream: String, sequence: UInt64, subject: String, payload: [UInt8]) -> Outcome? {
        positions.withLock { p -> Outcome? in
            let at = p[stream] ?? StreamPosition(sequence: 0, streamCreated: 0)
            guard sequence > at.sequence else { return nil }
            let outcome = ingest(subject: subject, payload: payload)
            p[stream] = StreamPosition(sequence: sequence, streamCreated: at.streamCreated)
            return outcome
        }
    }

    /// Moves the position in `stream` past `sequence` without counting the message (a copy of an
    /// event that is counted from its own stream). Under the same lock as ``apply(stream:sequence:subject:payload:)``.
    public func pass(stream: String, sequence: UInt64) {
        positions.withLock { p in
            let at = p[stream] ?? StreamPosition(sequence: 0, streamCreated: 0)
            if sequence > at.sequence { p[stream] = StreamPosition(sequence: sequence, streamCreated: at.streamCreated) }
        }
    }

    /// The recorded position in `stream` (nil: nothing counted from it and none set).
    public func position(_ stream: String) -> StreamPosition? { positions.withLock { $0[stream] } }

    /// Every recorded stream position.
    public var streamPositions: [String: StreamPosition] { positions.withLock { $0 } }

    /// Moves the position in `stream`: forward past messages the stream no longer has (aged
    /// out), back to the start of a stream that was created again, or to record the stream's
    /// creation time before the first message.
    public func setPosition(_ position: StreamPosition, for stream: String) {
        positions.withLock { $0[stream] = position }
    }

    /// Decodes and counts a batch, taking each aggregator's lock once for the whole batch.
    /// Returns how many were counted (not duplicates, not invalid).
    @discardableResult
    public func ingest(batch: [(subject: String, payload: [UInt8])]) -> Int {
        var decoded: [(event: DecodedEvent, slot: Int, id: UInt64?)] = []
        decoded.reserveCapacity(batch.count)
        var invalid: UInt64 = 0
        for message in batch {
            guard let event = EventScanner.decode(message.payload) else { invalid += 1; continue }
            decoded.append((event, slot(subject: message.subject).slot, event.eventID.map { ByteHash.hash(event.bytes, $0) }))
        }
        var keep = [Bool](repeating: true, count: decoded.count)
        var duplicates: UInt64 = 0, withoutID: UInt64 = 0
        recent.withLock { r in
            for k in decoded.indices {
                guard let id = decoded[k].id else { withoutID += 1; continue }
                if !r.insert(id) { keep[k] = false; duplicates += 1 }
            }
        }
        let now = clock()
        var userHashes = [UInt64?](repeating: nil, count: decoded.count)
        var counted = 0
        for k in decoded.indices where keep[k] {
            counted += 1
            if let user = decoded[k].event.userID { userHashes[k] = ByteHash.hash(decoded[k].event.bytes, user, seed: AnalyticsEngine.userSeed) }
        }
        counters.withLock { c in
            for k in decoded.indices where keep[k] {
                c.record(slot: decoded[k].slot, time: decoded[k].event.timeMs ?? now, now: now, userHash: userHashes[k])
            }
        }
        users.withLock { h in for case let hash? in userHashes { h.insert(hash: hash) } }
        topUsers.withLock { s in
            for k in decoded.indices where keep[k] {
                if let hash = userHashes[k], let range = decoded[k].event.userID { s.add(key: hash, label: decoded[k].event.bytes, range) }
            }
        }
        topDomains.withLock { s in
            for k in decoded.indices where keep[k] {
                let e = decoded[k].event
                if let range = e.emailDomain {
                    s.add(key: ByteHash.hash(e.bytes, range, seed: AnalyticsEngine.domainSeed, lowercaseASCII: true), label: e.bytes, range)
                }
            }
        }
        latencies.withLock { h in
            for k in decoded.indices where keep[k] { if let ms = decoded[k].event.latencyMs { h.record(milliseconds: ms) } }
        }
        countedEvents.add(UInt64(counted), ordering: .relaxed)
        duplicateEvents.add(duplicates, ordering: .relaxed)
        invalidEvents.add(invalid, ordering: .relaxed)
        eventsWithoutID.add(withoutID, ordering: .relaxed)
        return counted
    }

    private func count(_ event: DecodedEvent, slot: Int, now: Int64) {
        var userHash: UInt64?
        if let user = event.userID { userHash = ByteHash.hash(event.bytes, user, seed: AnalyticsEngine.userSeed) }
        counters.withLock { $0.record(slot: slot, time: event.timeMs ?? now, now: now, userHash: userHash) }
        if let userHash, let range = event.userID {
            users.withLock { $0.insert(hash: userHash) }
            topUsers.withLock { $0.add(key: userHash, label: event.bytes, range) }
        }
        if let range = event.emailDomain {
            let hash = ByteHash.hash(event.bytes, range, seed: AnalyticsEngine.domainSeed, lowercaseASCII: true)
            topDomains.withLock { $0.add(key: hash, label: event.bytes, range) }
        }
        if let ms = event.latencyMs { latencies.withLock { $0.record(milliseconds: ms) } }
        countedEvents.add(1, ordering: .relaxed)
    }

    // MARK: Reading

    /// Ingest counters.
    public struct IngestStatistics: Sendable, Equatable {
        /// Events counted.
        public var counted: UInt64
        /// Messages dropped as already counted.
        public var duplicates: UInt64
        /// Messages that were not readable events.
        public var invalid: UInt64
        /// Counted events without an `event_id` (these cannot be deduplicated).
        public var withoutID: UInt64
        /// When counting began (Unix ms; kept across restarts).
        public var since: Int64
    }

    /// The ingest counters.
    public var statistics: IngestStatistics {
        IngestStatistics(counted: countedEvents.load(ordering: .relaxed), duplicates: duplicateEvents.load(ordering: .relaxed),
                         invalid: invalidEvents.load(ordering: .relaxed), withoutID: eventsWithoutID.load(ordering: .relaxed),
                         since: startedAt.withLock { $0 })
    }

    /// Events per type and in total in `window`, at the clock's current time.
    public func counts(_ window: Window) -> (total: UInt64, byType: [String: UInt64]) {
        let now = clock()
        // A copy-on-write copy (a few retains) under the lock; the sums run outside it.
        let copy = counters.withLock { $0 }
        return copy.counts(window, now: now)
    }

    /// Estimated distinct users in `window` and the estimate's relative standard error.
    public func uniqueUsers(_ window: Window) -> (estimate: Double, standardError: Double) {
        if window == .all {
            let sketch = users.withLock { $0 }
            return (sketch.estimate(), sketch.standardError)
        }
        let now = clock()
        // Only a copy-on-write copy of the counters is taken under the lock (a few retains); merging
        // the window's bucket sketches (up to 300) and the estimate run outside it.
        let copy = counters.withLock { $0 }
        guard let sketch = copy.users(window, now: now) else { return (0, 0) }
        return (sketch.estimate(), sketch.standardError)
    }

    /// The most active users (events per user id), largest first.
    /// (A copy-on-write copy is taken under the lock; the selection runs outside it.)
    public func topUsers(_ n: Int? = nil) -> [TopEntry] { topUsers.withLock { $0 }.top(n ?? options.topN) }
    /// The most frequent email domains (user events), largest first.
    public func topEmailDomains(_ n: Int? = nil) -> [TopEntry] { topDomains.withLock { $0 }.top(n ?? options.topN) }
    /// Items counted by the user and domain summaries, and their current minimum counters (the
    /// bound on any item not listed).
    public func topBounds() -> (users: (total: UInt64, minimum: UInt64), domains: (total: UInt64, minimum: UInt64)) {
        (topUsers.withLock { ($0.total, $0.minimum) }, topDomains.withLock { ($0.total, $0.minimum) })
    }
    /// A copy of the latency histogram.
    public var latency: LatencyHistogram { latencies.withLock { $0 } }

    // MARK: Snapshot

    private static let magic: [UInt8] = Array("ANSNAP".utf8)
    /// 2 added the stream positions at the end; 1 (without them) is still read.
    private static let version: UInt16 = 2

    /// Everything needed to continue counting after a restart, as bytes: ingest counters,
    /// types, totals, both window rings (with their user sketches), the all-time sketch, the
    /// top-N summaries, the latency histogram and the newest event ids. Each lock is held only
    /// to take a copy-on-write copy of its aggregate (a few retains); encoding happens outside.
    ///
    /// The copies are taken under the position lock, so every message counted through
    /// ``apply(stream:sequence:subject:payload:)`` is in the snapshot with its position or not
    /// at all, and the stream positions (written last) say exactly what was counted. Messages
    /// counted through ``ingest(subject:payload:)`` (core NATS) do not take that lock: for them
    /// the parts are copied in the order an event reaches them, the event ids first, then the
    /// aggregates. Such an event counted meanwhile can be in the aggregates without its id (a
    /// later copy of it would count twice after a restart), never the reverse (its id saved,
    /// its count lost, and every later copy of it dropped as a duplicate, so it would never count).
    public func snapshot() -> [UInt8] {
        let (ids, s, counters, users, topUsers, topDomains, latencies, positions) = self.positions.withLock { p in
            let ids = recent.withLock { $0.newest(options.snapshotIDs) }
            let s = statistics
            let counters = self.counters.withLock { $0 }
            let users = self.users.withLock { $0 }
            let topUsers = self.topUsers.withLock { $0 }, topDomains = self.topDomains.withLock { $0 }
            let latencies = self.latencies.withLock { $0 }
            return (ids, s, counters, users, topUsers, topDomains, latencies, p)
        }
        var w = ByteWriter()
        w.out.append(contentsOf: AnalyticsEngine.magic)
        w.u16(AnalyticsEngine.version)
        w.i64(clock())
        w.i64(s.since); w.u64(s.counted); w.u64(s.duplicates); w.u64(s.invalid); w.u64(s.withoutID)
        counters.write(to: &w)
        w.bytes(users.serialized())
        topUsers.write(to: &w)
        topDomains.write(to: &w)
        latencies.write(to: &w)
        w.u32(UInt32(ids.count))
        for id in ids { w.u64(id) }
        w.u32(UInt32(positions.count))
        for (stream, position) in positions.sorted(by: { $0.key < $1.key }) {
            w.string(stream)
            w.u64(position.sequence)
            w.i64(position.streamCreated)
        }
        return w.out
    }

    /// What ``restore(_:)`` did.
    public struct RestoreReport: Sendable, Equatable {
        /// When the snapshot was taken (Unix ms).
        public var savedAt: Int64
        /// Events counted up to the snapshot.
        public var counted: UInt64
        /// The saved all-time user sketch had another precision than configured, so unique
        /// users start again from zero.
        public var uniqueUsersReset: Bool
        /// The stream positions saved with it (none in a version 1 snapshot, taken before
        /// analytics read streams).
        public var positions: [String: StreamPosition]
    }

    /// Replaces the aggregates with a snapshot's. Nothing changes when it throws.
    ///
    /// Window buckets keep their absolute times, so after a restart the windows are read against
    /// the wall clock: a restart within the hour keeps what is still inside each window; after a
    /// gap longer than a window, that window is empty, while totals, all-time unique users,
    /// top-N and latency carry on.
    /// - Throws: ``SnapshotError/corrupt(_:)`` for bytes that are not a complete snapshot of
    ///   this version or version 1.
    @discardableResult
    public func restore(_ bytes: [UInt8]) throws(SnapshotError) -> RestoreReport {
        var r = ByteReader(bytes)
        for expected in AnalyticsEngine.magic { guard try r.u8() == expected else { throw .corrupt("not an analytics snapshot") } }
        let version = try r.u16()
        guard version == 1 || version == AnalyticsEngine.version else { throw .corrupt("version \(version)") }
        let savedAt = try r.i64()
        let since = try r.i64()
        let counted = try r.u64(), duplicates = try r.u64(), invalid = try r.u64(), withoutID = try r.u64()
        let restoredCounters = try WindowedCounters.read(from: &r)
        let sketchBytes = try r.bytes(limit: 1 << 20)
        var sketch: HyperLogLog
        var reset = false
        do {
            sketch = try HyperLogLog(serialized: sketchBytes)
        } catch {
            throw .corrupt("\(error)")
        }
        if sketch.precision != options.hllPrecision {
            reset = true
            // The configured precision was accepted by init.
            sketch = try! HyperLogLog(precision: options.hllPrecision)
        }
        let restoredUsers = try SpaceSaving.read(from: &r, capacity: options.topCapacity)
        let restoredDomains = try SpaceSaving.read(from: &r, capacity: options.topCapacity)
        let restoredLatency = try LatencyHistogram.read(from: &r)
        let idCount = Int(try r.u32())
        guard idCount <= 16_777_216 else { throw .corrupt("\(idCount) event ids") }
        var ids = RecentIDs(capacity: options.dedupCapacity)
        for _ in 0..<idCount { _ = ids.insert(try r.u64()) }
        var restoredPositions: [String: StreamPosition] = [:]
        if version >= 2 {
            let streams = Int(try r.u32())
            guard streams <= 1024 else { throw .corrupt("\(streams) stream positions") }
            for _ in 0..<streams {
                let name = try r.string(limit: 256)
                restoredPositions[name] = StreamPosition(sequence: try r.u64(), streamCreated: try r.i64())
            }
        }
        guard r.isAtEnd else { throw .corrupt("\(bytes.count - r.at) bytes after the end") }

        counters.withLock { $0 = restoredCounters }
        subjects.withLock { $0 = [:] }
        users.withLock { $0 = sketch }
        topUsers.withLock { $0 = restoredUsers }
        topDomains.withLock { $0 = restoredDomains }
        latencies.withLock { $0 = restoredLatency }
        recent.withLock { $0 = ids }
        positions.withLock { $0 = restoredPositions }
        startedAt.withLock { $0 = since }
        countedEvents.store(counted, ordering: .relaxed)
        duplicateEvents.store(duplicates, ordering: .relaxed)
        invalidEvents.store(invalid, ordering: .relaxed)
        eventsWithoutID.store(withoutID, ordering: .relaxed)
        return RestoreReport(savedAt: savedAt, counted: counted, uniqueUsersReset: reset, positions: restoredPositions)
    }
}
