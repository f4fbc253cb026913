#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import ServiceKit
import Synchronization

/// A stored password: PBKDF2-HMAC-SHA256 of the UTF-8 password with a per-user random salt.
/// The iteration count is kept per hash, so raising the setting does not lock out old users.
public struct PasswordRecord: Sendable, Equatable, Codable {
    /// Always `pbkdf2-sha256`.
    public var algorithm: String
    /// Rounds used for this hash.
    public var iterations: Int
    /// 16 random bytes, base64url.
    public var salt: String
    /// 32-byte derived key, base64url.
    public var hash: String
}

/// The server is saturated with password hashing (answer 503 and let the client retry).
public struct HashingBusy: Error, Sendable, Equatable {}

/// Hashes and checks passwords off the cooperative thread pool, with bounded concurrency and a
/// bounded queue (PBKDF2 is deliberately slow: a flood of logins must not starve other work or
/// grow memory without limit).
public final class PasswordHasher: Sendable {
    /// Rounds for new hashes.
    public let iterations: Int
    static let saltLength = 16
    static let keyLength = 32
    private let dummySalt: [UInt8]
    private let gate: WorkGate

    /// - Parameters:
    ///   - iterations: PBKDF2 rounds for new hashes (and for the work done for unknown users).
    ///   - concurrency: hashes computed at once (nil: the number of cores).
    ///   - queueLimit: hashes waiting for a slot before ``HashingBusy`` is thrown.
    /// - Throws: ``CryptoError`` when the system random source fails.
    public init(iterations: Int, concurrency: Int? = nil, queueLimit: Int = 256) throws {
        self.iterations = iterations
        dummySalt = try SecureRandom.bytes(Self.saltLength)
        gate = WorkGate(concurrency: concurrency ?? max(1, System.coreCount), queueLimit: queueLimit)
    }

    /// A new record for `password` with a fresh random salt.
    /// - Throws: ``HashingBusy``; ``CryptoError``.
    public func makeRecord(_ password: String) async throws -> PasswordRecord {
        let salt = try SecureRandom.bytes(Self.saltLength)
        let iterations = self.iterations
        let key = try await gate.run { () throws(CryptoError) -> [UInt8] in
            try PBKDF2.deriveKey(password: Array(password.utf8), salt: salt, iterations: iterations, keyLength: Self.keyLength)
        }
        return PasswordRecord(algorithm: "pbkdf2-sha256", iterations: iterations,
                              salt: Base64URL.encode(salt), hash: Base64URL.encode(key))
    }

    /// True when `password` matches `record`. With no record (unknown user) the same PBKDF2 work
    /// is done against a dummy salt and the answer is false, so timing does not tell the cases apart.
    /// - Throws: ``HashingBusy``.
    public func verify(_ password: String, against record: PasswordRecord?) async throws(HashingBusy) -> Bool {
        let salt: [UInt8], expected: [UInt8]?, rounds: Int
        if let record, record.algorithm == "pbkdf2-sha256", let s = Base64URL.decode(record.salt),
           let h = Base64URL.decode(record.hash), (1...100_000_000).contains(record.iterations) {
            salt = s; expected = h; rounds = record.iterations
        } else {
            salt = dummySalt; expected = nil; rounds = iterations
        }
        let derived = try await gate.run { () -> [UInt8]? in
            try? PBKDF2.deriveKey(password: Array(password.utf8), salt: salt, iterations: rounds, keyLength: Self.keyLength)
        }
        guard let derived, let expected else { return false }
        return ConstantTime.equals(derived, expected)
    }
}

/// Runs blocking work on Dispatch threads, at most `concurrency` at once, with at most
/// `queueLimit` callers waiting; beyond that it refuses at once.
final class WorkGate: Sendable {
    private struct State {
        var running = 0
        var waiting: [CheckedContinuation<Bool, Never>] = []
        var head = 0
        var waitingCount: Int { waiting.count - head }
    }
    private let state = Mutex(State())
    private let concurrency: Int
    private let queueLimit: Int
    private let queue = DispatchQueue(label: "auth.password-hashing", attributes: .concurrent)

    init(concurrency: Int, queueLimit: Int) {
        self.concurrency = max(1, concurrency)
        self.queueLimit = max(0, queueLimit)
    }

    func run<T: Sendable, E: Error>(_ work: @escaping @Sendable () throws(E) -> T) async throws -> T {
        try await acquire()
        defer { release() }
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: Result { () throws(E) -> T in try work() }) }
        }
        return try result.get()
    }

    func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws(HashingBusy) -> T {
        try await acquire()
        defer { release() }
        return await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: work()) }
        }
    }

    /// Callers waiting for a slot now.
    var queued: Int { state.withLock { $0.waitingCount } }

    private enum Admission { case now, wait, busy }

    private func acquire() async throws(HashingBusy) {
        let admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let admission = state.withLock { s -> Admission in
                if s.running < concurrency { s.running += 1; return .now }
                guard s.waitingCount < queueLimit else { return .busy }
                s.waiting.append(continuation)
                return .wait
            }
            switch admission {
            case .now: continuation.resume(returning: true)
            case .busy: continuation.resume(returning: false)
            case .wait: break   // resumed by release()
            }
        }
        if !admitted { throw HashingBusy() }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            if s.head < s.waiting.count {
                let c = s.waiting[s.head]
                s.head += 1
                if s.head > 64 && s.head * 2 > s.waiting.count {
                    s.waiting.removeFirst(s.head)
                    s.head = 0
                }
                return c   // the slot passes to the waiter: `running` is unchanged
            }
            s.running -= 1
            return nil
        }
        next?.resume(returning: true)
    }
}

enum System {
    static var coreCount: Int {
#if canImport(Glibc)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
#else
        return 1
#endif
    }
}
