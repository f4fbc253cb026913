#if canImport(Glibc)
import Glibc
#endif

/// What a stream does when storing a message would break one of its limits.
public enum DiscardPolicy: Sendable, Equatable {
    /// Remove the oldest messages to make room (2.9.10's default).
    case old
    /// Refuse the new message.
    case new
}

/// The limits of one stream, as in 2.9.10's StreamConfig. A value of -1 (or 0 for `maxAge`) means
/// unlimited.
public struct StreamLimits: Sendable, Equatable {
    /// `max_msgs`: messages kept.
    public var maxMessages: Int64
    /// `max_bytes`: bytes kept, counted per message as ``StreamStore/messageSize(subject:headers:payload:)``.
    public var maxBytes: Int64
    /// `max_age` in nanoseconds: older messages are removed by ``StreamStore/expire(now:)``; 0 = keep forever.
    public var maxAge: Int64
    /// `max_msg_size`: largest headers + payload accepted.
    public var maxMessageSize: Int32
    /// `max_msgs_per_subject`: messages kept per subject.
    public var maxMessagesPerSubject: Int64
    /// `discard`.
    public var discard: DiscardPolicy
    /// `discard_new_per_subject`: with discard new, refuse a message whose subject is at its limit
    /// instead of replacing that subject's oldest message.
    public var discardNewPerSubject: Bool

    /// Limits with 2.9.10's defaults (everything unlimited, discard old).
    public init(maxMessages: Int64 = -1, maxBytes: Int64 = -1, maxAge: Int64 = 0, maxMessageSize: Int32 = -1,
                maxMessagesPerSubject: Int64 = -1, discard: DiscardPolicy = .old, discardNewPerSubject: Bool = false) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAge = maxAge
        self.maxMessageSize = maxMessageSize
        self.maxMessagesPerSubject = maxMessagesPerSubject
        self.discard = discard
        self.discardNewPerSubject = discardNewPerSubject
    }
}

/// One stored message.
public struct StoredMessage: Sendable, Equatable {
    public var subject: String
    /// The `NATS/1.0` header block as published (empty when there is none).
    public var headers: [UInt8]
    public var payload: [UInt8]
    public var sequence: UInt64
    /// Nanoseconds since the Unix epoch.
    public var timestamp: Int64

    public init(subject: String, headers: [UInt8], payload: [UInt8], sequence: UInt64, timestamp: Int64) {
        self.subject = subject
        self.headers = headers
        self.payload = payload
        self.sequence = sequence
        self.timestamp = timestamp
    }
}

/// A stream's figures, as 2.9.10's StreamInfo `state` reports them.
public struct StreamState: Sendable, Equatable {
    /// `messages`.
    public var messages: UInt64 = 0
    /// `bytes`: the sum of ``StreamStore/messageSize(subject:headers:payload:)`` over stored messages.
    public var bytes: UInt64 = 0
    /// `first_seq`: the oldest stored message, or `lastSequence + 1` when the stream is empty after
    /// having held messages (0 before the first store).
    public var firstSequence: UInt64 = 0
    /// `first_ts` in nanoseconds; 0 when empty, except after ``StreamStore/skip(timestamp:)`` (the skip's time, as 2.9.10 reports).
    public var firstTime: Int64 = 0
    /// `last_seq`: the newest sequence ever assigned (it stays when that message is removed).
    public var lastSequence: UInt64 = 0
    /// `last_ts` in nanoseconds.
    public var lastTime: Int64 = 0
    /// `num_deleted`: sequences between first and last that no longer hold a message.
    public var deleted: UInt64 = 0
    /// `num_subjects`: distinct subjects among the stored messages.
    public var subjects: Int = 0

    public init() {}
}

/// Why a store operation failed. The comments name the JetStream error a 2.9.10 API layer answers
/// with (`err_code`, and the description text 2.9.10 uses).
public enum StreamStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Discard new and `max_msgs` reached: 10077 (JSStreamStoreFailedF, "maximum messages exceeded").
    case maximumMessagesExceeded
    /// Discard new and `max_bytes` would be reached (bytes + headers + payload >= max_bytes):
    /// 10077 ("maximum bytes exceeded").
    case maximumBytesExceeded
    /// Discard new per subject and the subject holds `max_msgs_per_subject`: 10077
    /// ("maximum messages per subject exceeded").
    case maximumMessagesPerSubjectExceeded
    /// Headers + payload above `max_msg_size`: 10054 (JSStreamMessageExceedsMaximumErr,
    /// "message size exceeds maximum allowed").
    case messageTooLarge(size: Int, limit: Int)
    /// Empty subject, or one longer than a record can hold (65,535 bytes).
    case invalidSubject
    /// A purge with both a sequence and `keep` (2.9.10's ErrPurgeArgMismatch; its API refuses such
    /// a request before it reaches the store).
    case invalidPurge
    /// No message at that sequence or for that subject: 10037 (JSNoMessageFoundErr) on a get,
    /// 10057 (JSStreamMsgDeleteFailedF) on a delete.
    case notFound
    /// The store was closed.
    case closed
    /// A system call failed: the operation, the file and errno. 10077 when it happens on a store.
    case io(operation: String, path: String, errno: Int32)
    /// A file of the store does not hold what it should: the file, the byte offset and why.
    case corrupt(path: String, offset: Int64, reason: String)
    /// An earlier write failed and could not be undone; the block's state is unknown until the
    /// store is reopened (which runs recovery).
    case failed(path: String)

    public var description: String {
        switch self {
        case .maximumMessagesExceeded: return "maximum messages exceeded"
        case .maximumBytesExceeded: return "maximum bytes exceeded"
        case .maximumMessagesPerSubjectExceeded: return "maximum messages per subject exceeded"
        case .messageTooLarge(let size, let limit): return "message size exceeds maximum allowed (\(size) > \(limit))"
        case .invalidSubject: return "invalid subject"
        case .invalidPurge: return "sequence and keep can not both be set"
        case .notFound: return "no message found"
        case .closed: return "stream store closed"
        case .io(let op, let path, let e): return "stream store: \(op) \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .corrupt(let path, let offset, let reason): return "stream store: \(path) is corrupt at byte \(offset): \(reason)"
        case .failed(let path): return "stream store: \(path) had a failed write; reopen the store to recover"
        }
    }
}

/// Options of the file backend.
public struct FileStoreOptions: Sendable, Equatable {
    /// A block file is closed and a new one started once a record would take it past this size.
    public var blockSize: Int
    /// How often written blocks are fsynced, in nanoseconds (2.9.10: every 2 minutes). Checked on
    /// every write and by ``StreamStore/syncIfDue()``, which the owner calls from a timer.
    public var syncInterval: Int64
    /// fsync (fdatasync) before ``StreamStore/store(subject:headers:payload:timestamp:)`` returns, for
    /// users who need every acknowledged message to survive a power loss.
    public var syncEveryWrite: Bool

    public init(blockSize: Int = 8 << 20, syncInterval: Int64 = 120_000_000_000, syncEveryWrite: Bool = false) {
        self.blockSize = blockSize
        self.syncInterval = syncInterval
        self.syncEveryWrite = syncEveryWrite
    }
}

/// Nanoseconds since the Unix epoch.
public func wallClockNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Nanoseconds of a clock that never goes back (for sync intervals).
func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
