import NATSProtocol

/// Where a message lives, kept in memory for every sequence from the first to the last stored one:
/// 24 bytes a message (the array's stride), whatever the message size. Removed sequences keep
/// their slot (subject ``IndexEntry/removed``) until the front moves past them.
struct IndexEntry {
    /// Stored time, nanoseconds since the Unix epoch.
    var timestamp: Int64
    /// File backend: the block file's number (unused in memory).
    var block: UInt32
    /// File backend: the record's byte offset in its block.
    var offset: UInt32
    /// Index into the subject table, or ``removed``.
    var subject: UInt32
    /// The message's size as ``StreamStore/messageSize(subject:headers:payload:)`` counts it; for the
    /// file backend also the record's length on disk.
    var bytes: UInt32

    static let removed = UInt32.max
}

/// Per-subject figures. `first`/`last` are recomputed lazily after the message they name is removed.
struct SubjectInfo {
    var name: String
    var messages: UInt64
    var first: UInt64
    var last: UInt64
    var firstStale = false
    var lastStale = false
}

/// What a backend replays into the index when a store is opened.
enum ReplayRecord {
    case message(sequence: UInt64, timestamp: Int64, subject: String, bytes: UInt32, block: UInt32, offset: UInt32)
    /// The message at `sequence` was removed.
    case removal(sequence: UInt64)
    /// Every message below `first` was removed; `lastTime` is the stream's last time when it was written.
    case floor(first: UInt64, lastTime: Int64)
}

/// Keeps (or persists) message contents for ``StreamStore``, which owns the index and the limits.
protocol StoreBackend: AnyObject {
    /// The size a message counts for in `bytes` and `max_bytes`.
    func messageSize(subjectLength: Int, headers: Int, payload: Int) -> UInt64
    /// Discard new at the subject limit with max_bytes reached: whether removing a message of
    /// `replacedSize` (counted) makes room for one of `rawSize` (headers + payload). 2.9.10's
    /// memory store refuses when replaced < raw, its file store when replaced <= raw.
    func replacementFits(replacedSize: UInt64, rawSize: UInt64) -> Bool
    /// Keeps the message; returns its location. Nothing is kept when it throws.
    func append(sequence: UInt64, timestamp: Int64, subject: String, headers: [UInt8], payload: [UInt8],
                pendingSize: UInt64) throws(StreamStoreError) -> (block: UInt32, offset: UInt32)
    func read(sequence: UInt64, entry: IndexEntry) throws(StreamStoreError) -> StoredMessage
    /// The message at `sequence` was removed from the middle of the stream.
    func noteRemoval(sequence: UInt64, timestamp: Int64)
    /// Every message below `first` is gone.
    func noteFloor(first: UInt64, lastTime: Int64)
    /// Makes the noted removals durable as far as a write is (they otherwise go out with the next write).
    func flush() throws(StreamStoreError)
    func sync() throws(StreamStoreError)
    func syncIfDue() throws(StreamStoreError)
    func close()
}

/// The messages of one stream, with its limits enforced as 2.9.10 enforces them.
///
/// Two backends behave the same: memory (``init(memory:)``) and file (``init(directory:limits:options:now:)``,
/// see ``FileBackend`` for the block format). Both keep the same compact index in memory, 24 bytes per
/// sequence plus one entry per distinct subject; the file backend reads payloads back from disk.
///
/// Removals caused by the limits (discard old, max_msgs_per_subject, max_age) are written with the
/// next record or by ``flush()``; reopening re-applies the limits, so losing them in a crash gives
/// the same result. Explicit removals (``remove(_:)``, ``purge(subject:upTo:keep:)``,
/// ``compact(below:)``) are written before the call returns.
///
/// Not thread-safe: one owner at a time (the stream that holds it).
public final class StreamStore {
    /// The limits in force (change them with ``update(limits:)``).
    public private(set) var limits: StreamLimits
    private let backend: any StoreBackend
    private var isClosed = false
    /// entries[i] describes sequence `base + i`.
    private var entries: [IndexEntry] = []
    private var base: UInt64 = 0
    private var figures = StreamState()
    private var subjectIDs: [String: UInt32] = [:]
    private var subjects: [SubjectInfo] = []
    private var freeIDs: [UInt32] = []

    /// A store that keeps everything in memory.
    public init(memory limits: StreamLimits) {
        self.limits = limits
        self.backend = MemoryBackend()
    }

    /// Opens (creating it if absent) the file store in `directory`: replays its blocks, cuts off a
    /// torn tail, then removes what `limits` and `max_age` at `now` no longer allow.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)`` for a directory or block that cannot
    ///   be created, read or written; ``StreamStoreError/corrupt(path:offset:reason:)`` for a damaged
    ///   block that is not a torn tail (intact records follow the damage, or it is not the last block).
    public init(directory: String, limits: StreamLimits, options: FileStoreOptions = FileStoreOptions(),
                now: Int64 = wallClockNanoseconds()) throws(StreamStoreError) {
        self.limits = limits
        let file = try FileBackend(directory: directory, options: options)
        self.backend = file
        do {
            try file.replay { (record) throws(StreamStoreError) in self.apply(record) }
            enforceLimits()
            _ = expireFront(now: now)
            try backend.flush()
        } catch {
            close()
            throw error
        }
    }

    deinit { if !isClosed { backend.close() } }

    /// Writes what is pending, fsyncs and closes the files. Later calls throw ``StreamStoreError/closed``.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        backend.close()
    }

    /// The size a message counts for in `bytes` and against `max_bytes`, as 2.9.10 counts it:
    /// file storage 22 + subject + payload + 8, plus 4 + headers when there are headers
    /// (fileStoreMsgSize, the record's length on disk); memory storage subject + headers + payload + 16
    /// (memStoreMsgSize).
    public func messageSize(subject: String, headers: [UInt8], payload: [UInt8]) -> UInt64 {
        backend.messageSize(subjectLength: subject.utf8.count, headers: headers.count, payload: payload.count)
    }

    // MARK: Figures

    /// The stream's figures.
    public var state: StreamState {
        var s = figures
        s.deleted = s.messages == 0 ? 0 : (s.lastSequence - s.firstSequence + 1) - s.messages
        s.subjects = subjectIDs.count
        return s
    }

    /// Messages stored under each subject matched by `filter` (all subjects for "" or ">").
    public func subjectCounts(filter: String = ">") -> [String: UInt64] {
        var counts: [String: UInt64] = [:]
        let matcher = SubjectFilter(filter)
        for (name, id) in subjectIDs where matcher.matches(name) { counts[name] = subjects[Int(id)].messages }
        return counts
    }

    /// When the oldest message reaches `max_age` (nanoseconds since the epoch), or nil when nothing
    /// will expire; the owner arms its timer for it.
    public var nextExpiry: Int64? {
        guard limits.maxAge > 0, figures.messages > 0 else { return nil }
        return figures.firstTime + limits.maxAge
    }

    // MARK: Storing

    /// Stores a message under the next sequence and returns that sequence, then removes what the
    /// limits no longer allow (with discard old, possibly this very message if it alone exceeds
    /// `max_bytes`, as 2.9.10 does).
    /// - Throws: ``StreamStoreError/messageTooLarge(size:limit:)`` (10054),
    ///   ``StreamStoreError/maximumMessagesExceeded``, ``StreamStoreError/maximumBytesExceeded``,
    ///   ``StreamStoreError/maximumMessagesPerSubjectExceeded`` (10077, discard new only),
    ///   ``StreamStoreError/invalidSubject``, ``StreamStoreError/closed``, and for the file backend
    ///   ``StreamStoreError/io(operation:path:errno:)`` or ``StreamStoreError/failed(path:)`` (10077);
    ///   nothing is stored when it throws.
    @discardableResult
    public func store(subject: String, headers: [UInt8] = [], payload: [UInt8],
                      timestamp: Int64 = wallClockNanoseconds()) throws(StreamStoreError) -> UInt64 {
        guard !isClosed else { throw .closed }
        let subjectLength = subject.utf8.count
        guard subjectLength > 0, subjectLength <= Int(UInt16.max) else { throw .invalidSubject }
        if limits.maxMessageSize >= 0 && headers.count + payload.count > Int(limits.maxMessageSize) {
            throw .messageTooLarge(size: headers.count + payload.count, limit: Int(limits.maxMessageSize))
        }
        let size = backend.messageSize(subjectLength: subjectLength, headers: headers.count, payload: payload.count)
        guard size < UInt64(Int32.max) else { throw .messageTooLarge(size: Int(size), limit: Int(Int32.max)) }

        let existing = subjectIDs[subject]
        // "At subject limit": storing replaces this subject's oldest message, so the stream-wide
        // discard-new checks let it through (2.9.10's storeRawMsg).
        let atSubjectLimit = limits.maxMessagesPerSubject > 0 && existing.map {
            subjects[Int($0)].messages >= UInt64(limits.maxMessagesPerSubject)
        } == true
        if limits.discard == .new {
            if atSubjectLimit && limits.discardNewPerSubject { throw .maximumMessagesPerSubjectExceeded }
            if limits.maxMessages > 0 && figures.messages >= UInt64(limits.maxMessages) && !atSubjectLimit {
                throw .maximumMessagesExceeded
            }
            // 2.9.10 adds the raw headers + payload (not the counted size) and refuses when the
            // total would reach max_bytes, not only exceed it; at the subject limit it lets the
            // message replace that subject's oldest when the oldest's counted size is large enough.
            let raw = UInt64(headers.count + payload.count)
            if limits.maxBytes > 0 && figures.bytes + raw >= UInt64(limits.maxBytes) {
                guard atSubjectLimit, let id = existing, let oldest = entry(at: freshFirst(id)),
                      backend.replacementFits(replacedSize: UInt64(oldest.bytes), rawSize: raw)
                else { throw .maximumBytesExceeded }
            }
        }

        let sequence = figures.lastSequence + 1
        let location = try backend.append(sequence: sequence, timestamp: timestamp, subject: subject,
                                          headers: headers, payload: payload, pendingSize: size)
        let id = insert(sequence: sequence, timestamp: timestamp, subject: subject, bytes: UInt32(size),
                        block: location.block, offset: location.offset)
        enforcePerSubject(id)
        enforceTotals()
        return sequence
    }

    /// Uses the next sequence without storing a message and returns it (2.9.10's SkipMsg: an
    /// interest stream with no consumer for the subject). The skip is written as a floor when the
    /// stream is empty, else as the removal of that sequence, which replay reads as a skip.
    /// - Throws: ``StreamStoreError/closed``, and for the file backend ``StreamStoreError/io(operation:path:errno:)``
    ///   or ``StreamStoreError/failed(path:)``.
    @discardableResult
    public func skip(timestamp: Int64 = wallClockNanoseconds()) throws(StreamStoreError) -> UInt64 {
        guard !isClosed else { throw .closed }
        let sequence = figures.lastSequence + 1
        if figures.messages == 0 {
            _ = compactIndex(below: sequence + 1)
            // 2.9.10's stores stamp an empty stream's first time with the skip's.
            figures.firstTime = timestamp
            figures.lastTime = timestamp
            backend.noteFloor(first: sequence + 1, lastTime: timestamp)
        } else {
            entries.append(IndexEntry(timestamp: timestamp, block: 0, offset: 0, subject: IndexEntry.removed, bytes: 0))
            figures.lastSequence = sequence
            figures.lastTime = timestamp
            backend.noteRemoval(sequence: sequence, timestamp: timestamp)
        }
        try backend.flush()
        return sequence
    }

    // MARK: Reading

    /// The first sequence holding a message stored at or after `time` (2.9.10's GetSeqFromTime),
    /// from the index alone; nil when every message is older.
    public func firstSequence(storedSince time: Int64) -> UInt64? {
        guard figures.messages > 0 else { return nil }
        var found: UInt64?
        var seq = figures.lastSequence
        // Stored times do not go back, so walk back from the newest while they are recent enough.
        while seq >= figures.firstSequence {
            if let e = entry(at: seq) {
                if e.timestamp < time { break }
                found = seq
            }
            if seq == 0 { break }
            seq -= 1
        }
        return found
    }

    /// The sequences between the first and the last that hold no message (StreamInfo's
    /// `deleted_details`), ascending.
    public var deletedSequences: [UInt64] {
        guard figures.messages > 0 else { return [] }
        var out: [UInt64] = []
        var seq = figures.firstSequence
        while seq <= figures.lastSequence {
            if entry(at: seq) == nil { out.append(seq) }
            seq += 1
        }
        return out
    }

    /// The message at `sequence`.
    /// - Throws: ``StreamStoreError/notFound`` (10037), ``StreamStoreError/closed``, and for the file
    ///   backend ``StreamStoreError/io(operation:path:errno:)`` or ``StreamStoreError/corrupt(path:offset:reason:)``.
    public func load(_ sequence: UInt64) throws(StreamStoreError) -> StoredMessage {
        guard !isClosed else { throw .closed }
        guard let e = entry(at: sequence) else { throw .notFound }
        return try backend.read(sequence: sequence, entry: e)
    }

    /// The newest message whose subject matches `filter` (a subject, a wildcard, or "" / ">" for any),
    /// as MSG.GET's `last_by_subj`.
    /// - Throws: as ``load(_:)``.
    public func last(bySubject filter: String) throws(StreamStoreError) -> StoredMessage {
        guard !isClosed else { throw .closed }
        guard let best = lastSequence(bySubject: filter) else { throw .notFound }
        return try load(best)
    }

    /// The sequence of the newest message whose subject matches `filter`, from the index alone
    /// (Nats-Expected-Last-Subject-Sequence and republish need no payload); nil when none matches.
    public func lastSequence(bySubject filter: String) -> UInt64? {
        let matcher = SubjectFilter(filter)
        var best: UInt64 = 0
        if matcher.isAll {
            var seq = figures.lastSequence
            while figures.messages > 0 && seq >= figures.firstSequence {
                if entry(at: seq) != nil { best = seq; break }
                seq -= 1
            }
        } else if !matcher.hasWildcard {
            if let id = subjectIDs[filter] { best = freshLast(id) }
        } else {
            for (name, id) in subjectIDs where matcher.matches(name) { best = max(best, freshLast(id)) }
        }
        return best > 0 ? best : nil
    }

    /// The first message at or after `start` whose subject matches `filter`, as MSG.GET's `next_by_subj`.
    /// - Throws: as ``load(_:)``.
    public func next(bySubject filter: String, from start: UInt64) throws(StreamStoreError) -> StoredMessage {
        guard !isClosed else { throw .closed }
        let matcher = SubjectFilter(filter)
        guard figures.messages > 0 else { throw .notFound }
        var cache: [UInt32: Bool] = [:]
        var seq = max(start, figures.firstSequence)
        while seq <= figures.lastSequence {
            if let e = entry(at: seq) {
                let hit: Bool
                if let known = cache[e.subject] { hit = known } else {
                    hit = matcher.matches(subjects[Int(e.subject)].name)
                    cache[e.subject] = hit
                }
                if hit { return try load(seq) }
            }
            seq += 1
        }
        throw .notFound
    }

    // MARK: Consumer queries (index only, no payload reads)

    /// The subject stored at `sequence`, or nil when no message is there.
    public func subject(at sequence: UInt64) -> String? {
        guard !isClosed, let e = entry(at: sequence) else { return nil }
        return subjects[Int(e.subject)].name
    }

    /// The number of messages at or after `start` whose subject matches `filter` ("" or ">" for any),
    /// and the last such sequence (0 when there is none): a consumer's `num_pending`.
    public func pending(filter: String, from start: UInt64) -> (count: UInt64, last: UInt64) {
        guard !isClosed, figures.messages > 0 else { return (0, 0) }
        let matcher = SubjectFilter(filter)
        let first = max(start, figures.firstSequence)
        guard first <= figures.lastSequence else { return (0, 0) }
        if matcher.isAll && first == figures.firstSequence {
            return (figures.messages, freshLastSequence())
        }
        if matcher.isAll && figures.lastSequence - figures.firstSequence + 1 == figures.messages {
            // No gaps: a plain difference.
            return (figures.lastSequence - first + 1, figures.lastSequence)
        }
        if !matcher.hasWildcard && !matcher.isAll {
            guard let id = subjectIDs[filter] else { return (0, 0) }
            let info = subjects[Int(id)]
            if first <= freshFirst(id) { return (info.messages, freshLast(id)) }
        }
        var count: UInt64 = 0, last: UInt64 = 0
        var cache: [UInt32: Bool] = [:]
        var seq = first
        while seq <= figures.lastSequence {
            if let e = entry(at: seq) {
                let hit: Bool
                if let known = cache[e.subject] { hit = known } else {
                    hit = matcher.matches(subjects[Int(e.subject)].name)
                    cache[e.subject] = hit
                }
                if hit { count += 1; last = seq }
            }
            seq += 1
        }
        return (count, last)
    }

    /// The last sequence of every subject matching `filter`: deliver policy `last_per_subject`.
    public func lastSequences(filter: String) -> [String: UInt64] {
        guard !isClosed else { return [:] }
        let matcher = SubjectFilter(filter)
        var result: [String: UInt64] = [:]
        for (name, id) in subjectIDs where matcher.matches(name) { result[name] = freshLast(id) }
        return result
    }

    /// The first sequence stored at or after `time` (nanoseconds since the epoch), or the last
    /// sequence + 1 when every message is older: deliver policy `by_start_time` (2.9.10's GetSeqFromTime).
    public func firstSequence(atOrAfter time: Int64) -> UInt64 {
        guard !isClosed, figures.messages > 0 else { return figures.lastSequence + 1 }
        var seq = figures.firstSequence
        while seq <= figures.lastSequence {
            if let e = entry(at: seq), e.timestamp >= time { return seq }
            seq += 1
        }
        return figures.lastSequence + 1
    }

    private func freshLastSequence() -> UInt64 {
        var seq = figures.lastSequence
        while seq > figures.firstSequence && entry(at: seq) == nil { seq -= 1 }
        return seq
    }

    // MARK: Removing

    /// Removes the message at `sequence` (MSG.DELETE); the removal is written before returning.
    /// - Throws: ``StreamStoreError/notFound`` (10057), ``StreamStoreError/closed``, and for the file
    ///   backend ``StreamStoreError/io(operation:path:errno:)`` or ``StreamStoreError/failed(path:)``.
    public func remove(_ sequence: UInt64) throws(StreamStoreError) {
        guard !isClosed else { throw .closed }
        guard removeRecorded(sequence) else { throw .notFound }
        try backend.flush()
    }

    /// Removes every message below `sequence` and returns how many. With `sequence` past the last
    /// one, the stream becomes empty and numbering resumes at `sequence` (2.9.10's Compact).
    /// - Throws: ``StreamStoreError/closed``, and for the file backend ``StreamStoreError/io(operation:path:errno:)``
    ///   or ``StreamStoreError/failed(path:)``.
    @discardableResult
    public func compact(below sequence: UInt64) throws(StreamStoreError) -> UInt64 {
        guard !isClosed else { throw .closed }
        let removed = compactIndex(below: sequence)
        backend.noteFloor(first: figures.firstSequence, lastTime: figures.lastTime)
        try backend.flush()
        return removed
    }

    /// PURGE with 2.9.10's rules, returning how many messages went. Without a filter ("" or ">"):
    /// everything; or, with `upTo` > 1, everything below `upTo`; or, with `keep` > 0, everything
    /// below `last - keep + 1` (so interior gaps can leave fewer than `keep`). With a filter: the
    /// matching messages below `upTo` (when > 1), or all matching but the newest `keep`.
    /// - Throws: ``StreamStoreError/invalidPurge`` for `upTo` > 1 together with `keep` > 0, else as
    ///   ``compact(below:)``.
    @discardableResult
    public func purge(subject filter: String = "", upTo sequence: UInt64 = 0, keep: UInt64 = 0) throws(StreamStoreError) -> UInt64 {
        guard !isClosed else { throw .closed }
        guard sequence <= 1 || keep == 0 else { throw .invalidPurge }
        let matcher = SubjectFilter(filter)
        if matcher.isAll {
            if keep == 0 && sequence <= 1 { return try compact(below: figures.lastSequence + 1) }
            if sequence > 1 { return try compact(below: sequence) }
            if keep >= figures.messages { return 0 }
            return try compact(below: figures.lastSequence - keep + 1)
        }
        var limit: UInt64 = 0
        if keep > 0 {
            var matching: UInt64 = 0
            for (name, id) in subjectIDs where matcher.matches(name) { matching += subjects[Int(id)].messages }
            if keep >= matching { return 0 }
            limit = matching - keep
        }
        guard figures.messages > 0 else { return 0 }
        var end = figures.lastSequence
        if sequence > 1 { end = min(end, sequence - 1) }
        var purged: UInt64 = 0
        var cache: [UInt32: Bool] = [:]
        var seq = figures.firstSequence
        while seq <= end && figures.messages > 0 {
            if let e = entry(at: seq) {
                let hit: Bool
                if let known = cache[e.subject] { hit = known } else {
                    hit = matcher.matches(subjects[Int(e.subject)].name)
                    cache[e.subject] = hit
                }
                if hit {
                    _ = removeRecorded(seq)
                    purged += 1
                    if limit > 0 && purged >= limit { break }
                }
            }
            seq += 1
        }
        try backend.flush()
        return purged
    }

    /// Removes the messages older than `max_age` at `now` (nanoseconds since the epoch) and returns
    /// how many; the owner calls it from a timer (see ``nextExpiry``), and opening a file store does it.
    /// It works from the front and stops at the first message young enough, since stored times do
    /// not go back (the owner stamps them).
    /// - Throws: ``StreamStoreError/closed``, and for the file backend ``StreamStoreError/io(operation:path:errno:)``
    ///   or ``StreamStoreError/failed(path:)``.
    @discardableResult
    public func expire(now: Int64) throws(StreamStoreError) -> UInt64 {
        guard !isClosed else { throw .closed }
        let removed = expireFront(now: now)
        if removed > 0 { try backend.flush() }
        return removed
    }

    /// Replaces the limits and removes what the new ones no longer allow.
    /// - Throws: as ``expire(now:)``.
    public func update(limits newLimits: StreamLimits) throws(StreamStoreError) {
        guard !isClosed else { throw .closed }
        limits = newLimits
        enforceLimits()
        try backend.flush()
    }

    // MARK: Durability

    /// Writes pending removals and fsyncs now.
    /// - Throws: ``StreamStoreError/closed``, ``StreamStoreError/io(operation:path:errno:)``,
    ///   ``StreamStoreError/failed(path:)``.
    public func sync() throws(StreamStoreError) {
        guard !isClosed else { throw .closed }
        try backend.flush()
        try backend.sync()
    }

    /// fsyncs when `syncInterval` has passed since the last fsync and something was written since;
    /// the owner calls it from a timer so an idle stream's last writes are synced too.
    /// - Throws: as ``sync()``.
    public func syncIfDue() throws(StreamStoreError) {
        guard !isClosed else { throw .closed }
        try backend.syncIfDue()
    }

    /// Writes pending removals (limit and expiry removals otherwise go out with the next write).
    /// - Throws: as ``sync()``.
    public func flush() throws(StreamStoreError) {
        guard !isClosed else { throw .closed }
        try backend.flush()
    }

    // MARK: Index

    private func entry(at sequence: UInt64) -> IndexEntry? {
        guard figures.messages > 0, sequence >= figures.firstSequence, sequence <= figures.lastSequence,
              sequence >= base, sequence - base < UInt64(entries.count) else { return nil }
        let e = entries[Int(sequence - base)]
        return e.subject == IndexEntry.removed ? nil : e
    }

    /// Adds a message to the index and the figures; returns its subject's id.
    private func insert(sequence: UInt64, timestamp: Int64, subject: String, bytes: UInt32,
                        block: UInt32, offset: UInt32) -> UInt32 {
        if figures.messages == 0 {
            entries.removeAll(keepingCapacity: entries.capacity <= 4096)
            base = sequence
            figures.firstSequence = sequence
            figures.firstTime = timestamp
        } else {
            // Only replay meets a gap (messages removed below a floor that was later lost).
            while base + UInt64(entries.count) < sequence {
                entries.append(IndexEntry(timestamp: 0, block: 0, offset: 0, subject: IndexEntry.removed, bytes: 0))
            }
        }
        let id: UInt32
        if let known = subjectIDs[subject] {
            id = known
            subjects[Int(id)].messages += 1
            subjects[Int(id)].last = sequence
            subjects[Int(id)].lastStale = false
        } else {
            let info = SubjectInfo(name: subject, messages: 1, first: sequence, last: sequence)
            if let free = freeIDs.popLast() {
                id = free
                subjects[Int(id)] = info
            } else {
                id = UInt32(subjects.count)
                subjects.append(info)
            }
            subjectIDs[subject] = id
        }
        entries.append(IndexEntry(timestamp: timestamp, block: block, offset: offset, subject: id, bytes: bytes))
        figures.messages += 1
        figures.bytes += UInt64(bytes)
        figures.lastSequence = sequence
        figures.lastTime = timestamp
        return id
    }

    /// Removes `sequence` from the index and the figures; false when it holds no message.
    private func drop(_ sequence: UInt64) -> Bool {
        guard let e = entry(at: sequence) else { return false }
        let i = Int(sequence - base)
        entries[i].subject = IndexEntry.removed
        figures.messages -= 1
        figures.bytes -= UInt64(e.bytes)
        let id = Int(e.subject)
        subjects[id].messages -= 1
        if subjects[id].messages == 0 {
            subjectIDs[subjects[id].name] = nil
            subjects[id] = SubjectInfo(name: "", messages: 0, first: 0, last: 0)
            freeIDs.append(UInt32(id))
        } else {
            if sequence == subjects[id].first { subjects[id].firstStale = true }
            if sequence == subjects[id].last { subjects[id].lastStale = true }
        }
        if figures.messages == 0 {
            figures.firstSequence = figures.lastSequence + 1
            figures.firstTime = 0
            entries.removeAll(keepingCapacity: entries.capacity <= 4096)
            base = figures.firstSequence
        } else if sequence == figures.firstSequence {
            var j = i + 1
            while entries[j].subject == IndexEntry.removed { j += 1 }
            figures.firstSequence = base + UInt64(j)
            figures.firstTime = entries[j].timestamp
            // Drop the dead prefix once it is at least half the array, so trimming stays amortised O(1).
            if j >= 4096 && 2 * j >= entries.count {
                entries.removeFirst(j)
                base += UInt64(j)
            }
        }
        return true
    }

    /// Drops `sequence` and tells the backend (a floor when it was the first, else a removal).
    private func removeRecorded(_ sequence: UInt64) -> Bool {
        let wasFirst = sequence == figures.firstSequence
        let timestamp = entry(at: sequence)?.timestamp ?? 0
        guard drop(sequence) else { return false }
        if wasFirst {
            backend.noteFloor(first: figures.firstSequence, lastTime: figures.lastTime)
        } else {
            backend.noteRemoval(sequence: sequence, timestamp: timestamp)
        }
        return true
    }

    private func compactIndex(below sequence: UInt64) -> UInt64 {
        var removed: UInt64 = 0
        while figures.messages > 0 && figures.firstSequence < sequence {
            _ = drop(figures.firstSequence)
            removed += 1
        }
        if figures.messages == 0 && sequence > figures.firstSequence {
            figures.firstSequence = sequence
            figures.lastSequence = max(figures.lastSequence, sequence - 1)
            base = sequence
        }
        return removed
    }

    private func freshFirst(_ id: UInt32) -> UInt64 {
        let i = Int(id)
        if subjects[i].firstStale && subjects[i].messages == 1 && !subjects[i].lastStale {
            // One message left (a KV key with history 1): it is the last, no scan needed.
            subjects[i].first = subjects[i].last
            subjects[i].firstStale = false
        }
        if subjects[i].firstStale {
            var seq = subjects[i].first + 1
            while entry(at: seq)?.subject != id { seq += 1 }
            subjects[i].first = seq
            subjects[i].firstStale = false
        }
        return subjects[i].first
    }

    private func freshLast(_ id: UInt32) -> UInt64 {
        let i = Int(id)
        if subjects[i].lastStale && subjects[i].messages == 1 && !subjects[i].firstStale {
            subjects[i].last = subjects[i].first
            subjects[i].lastStale = false
        }
        if subjects[i].lastStale {
            var seq = subjects[i].last - 1
            while entry(at: seq)?.subject != id { seq -= 1 }
            subjects[i].last = seq
            subjects[i].lastStale = false
        }
        return subjects[i].last
    }

    // MARK: Limits

    private func enforcePerSubject(_ id: UInt32) {
        guard limits.maxMessagesPerSubject > 0 else { return }
        while subjects[Int(id)].messages > UInt64(limits.maxMessagesPerSubject) {
            _ = removeRecorded(freshFirst(id))
        }
    }

    private func enforceTotals() {
        if limits.maxMessages > 0 {
            while figures.messages > UInt64(limits.maxMessages) { _ = removeRecorded(figures.firstSequence) }
        }
        if limits.maxBytes > 0 {
            while figures.bytes > UInt64(limits.maxBytes) { _ = removeRecorded(figures.firstSequence) }
        }
    }

    private func enforceLimits() {
        if limits.maxMessagesPerSubject > 0 {
            for id in subjectIDs.values where subjects[Int(id)].messages > UInt64(limits.maxMessagesPerSubject) {
                enforcePerSubject(id)
            }
        }
        enforceTotals()
    }

    private func expireFront(now: Int64) -> UInt64 {
        guard limits.maxAge > 0 else { return 0 }
        let cutoff = now - limits.maxAge
        var removed: UInt64 = 0
        while figures.messages > 0, let e = entry(at: figures.firstSequence), e.timestamp <= cutoff {
            _ = removeRecorded(figures.firstSequence)
            removed += 1
        }
        return removed
    }

    // MARK: Replay

    private func apply(_ record: ReplayRecord) {
        switch record {
        case .message(let sequence, let timestamp, let subject, let bytes, let block, let offset):
            if figures.messages == 0 && sequence < figures.firstSequence { return }
            _ = insert(sequence: sequence, timestamp: timestamp, subject: subject, bytes: bytes, block: block, offset: offset)
        case .removal(let sequence):
            guard !drop(sequence) && sequence > figures.lastSequence else { return }
            // A skipped sequence after the last message (see skip(timestamp:)). Replay refuses a
            // later message at or below it, so the sequence counts as used here too even when no
            // message is left (the front blocks that held them unlinked): else the next store would
            // reuse it and write a block that does not reopen.
            if figures.messages > 0 {
                while base + UInt64(entries.count) <= sequence {
                    entries.append(IndexEntry(timestamp: 0, block: 0, offset: 0, subject: IndexEntry.removed, bytes: 0))
                }
                figures.lastSequence = sequence
            } else {
                _ = compactIndex(below: sequence + 1)
            }
        case .floor(let first, let lastTime):
            figures.lastTime = max(figures.lastTime, lastTime)
            _ = compactIndex(below: first)
        }
    }
}

/// A stream filter: a subject, a wildcard pattern, or "" / ">" for every subject.
struct SubjectFilter {
    let pattern: String
    let isAll: Bool
    let hasWildcard: Bool

    init(_ pattern: String) {
        self.pattern = pattern
        isAll = pattern.isEmpty || pattern == ">"
        var copy = pattern
        hasWildcard = copy.withUTF8 { Subject.hasWildcard(UnsafeRawBufferPointer($0)) }
    }

    func matches(_ subject: String) -> Bool {
        if isAll { return true }
        if !hasWildcard { return subject == pattern }
        return Subject.matches(pattern: pattern, subject: subject)
    }
}

/// Keeps message contents in a dictionary; nothing to persist.
final class MemoryBackend: StoreBackend {
    private var messages: [UInt64: StoredMessage] = [:]
    /// No message below this sequence is kept.
    private var low: UInt64 = 0

    func messageSize(subjectLength: Int, headers: Int, payload: Int) -> UInt64 {
        UInt64(subjectLength + headers + payload + 16)
    }

    func replacementFits(replacedSize: UInt64, rawSize: UInt64) -> Bool { replacedSize >= rawSize }

    func append(sequence: UInt64, timestamp: Int64, subject: String, headers: [UInt8], payload: [UInt8],
                pendingSize: UInt64) throws(StreamStoreError) -> (block: UInt32, offset: UInt32) {
        messages[sequence] = StoredMessage(subject: subject, headers: headers, payload: payload,
                                           sequence: sequence, timestamp: timestamp)
        return (0, 0)
    }

    func read(sequence: UInt64, entry: IndexEntry) throws(StreamStoreError) -> StoredMessage {
        guard let message = messages[sequence] else { throw .notFound }
        return message
    }

    func noteRemoval(sequence: UInt64, timestamp: Int64) { messages[sequence] = nil }

    func noteFloor(first: UInt64, lastTime: Int64) {
        guard first > low else { return }
        if first - low > 4 * UInt64(messages.count) {
            messages = messages.filter { $0.key >= first }
            low = first
            return
        }
        // Everything below `low` is already gone, so each sequence is visited once over the store's life.
        while low < first {
            messages[low] = nil
            low += 1
        }
    }

    func flush() throws(StreamStoreError) {}
    func sync() throws(StreamStoreError) {}
    func syncIfDue() throws(StreamStoreError) {}
    func close() { messages = [:] }
}
