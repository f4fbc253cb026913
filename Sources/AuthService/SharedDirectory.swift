import Foundation
import NATSClient
import ServiceKit
import Synchronization

/// At-least-once mode: the user directory every auth instance shares (the JetStream KV bucket
/// `auth_users`, one key per normalized email) with this instance's replica, and the publisher
/// of the outbox's events.
///
/// - Registration records the pending create and its event in the outbox, then tries the
///   bucket's `create` at once; when the broker is away, the publisher does it later.
/// - The publisher sends pending events in order with `Nats-Msg-Id` = `event_id`, creating a
///   user's bucket entry before its first event, and removes what the stream acknowledged.
/// - The watch copies every bucket change into the replica (``UserDirectory/apply(_:)``), so
///   lookups and logins need no broker.
final class SharedDirectory: Sendable {
    /// The bucket's name.
    static let bucketName = "auth_users"
    /// The bucket's declaration (one revision per key is all the directory needs).
    static var bucketConfig: KeyValueConfig {
        var config = KeyValueConfig(bucket: bucketName, history: 1)
        config.description = "auth-service user directory (key email.<hex of the normalized email>)"
        return config
    }

    /// The bucket key of a normalized email: `email.` and the lower-case hex of its UTF-8 bytes
    /// (keys allow only `[-/_=.a-zA-Z0-9]`).
    static func key(email: String) -> String {
        var key = "email."
        for byte in email.utf8 {
            let digits = Array("0123456789abcdef".utf8)
            key.unicodeScalars.append(UnicodeScalar(digits[Int(byte >> 4)]))
            key.unicodeScalars.append(UnicodeScalar(digits[Int(byte & 0xF)]))
        }
        return key
    }

    /// The email a ``key(email:)`` encodes, or nil for another key.
    static func email(key: String) -> String? {
        guard key.hasPrefix("email.") else { return nil }
        let hex = Array(key.utf8.dropFirst(6))
        guard hex.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var bytes: [UInt8] = []
        var index = 0
        while index < hex.count {
            guard let high = nibble(hex[index]), let low = nibble(hex[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// What a bucket create came to.
    enum CreateOutcome: Sendable {
        /// The entry is this user's (created now, or by an earlier attempt).
        case created
        /// Another user owns the email.
        case taken(by: User)
        /// The broker did not answer or refused; try again later.
        case failed(String)
    }

    let outbox: Outbox
    let directory: UserDirectory
    let runtime: ServiceRuntime
    private let logger: ServiceLogger
    /// Users whose create the registration request is doing right now (the publisher waits).
    private let creatingInline = Mutex<Set<String>>([])
    private let bucket = Mutex<KeyValue?>(nil)

    init(outbox: Outbox, directory: UserDirectory, runtime: ServiceRuntime) {
        self.outbox = outbox
        self.directory = directory
        self.runtime = runtime
        self.logger = runtime.logger
    }

    /// Declares the stream and bucket, the metrics, and starts the publisher and the watch.
    func install() {
        runtime.declare(stream: PlatformStreams.userEvents)
        runtime.declare(bucket: Self.bucketConfig, owner: "auth")
        let m = runtime.metrics
        m.declareGauge("auth_outbox_pending", help: "events in the outbox waiting for the stream's acknowledgement")
        m.declareCounter("auth_registration_conflicts_total",
                         help: "registrations accepted while the broker was away whose email another instance had given to another user (removed)")
        m.set("auth_outbox_pending", to: Double(outbox.pendingCount))
        runtime.spawn("outbox publisher") { [self] in await runPublisher() }
        runtime.spawn("user directory watch") { [self] in await runWatch() }
    }

    // MARK: Registration and login

    /// Registration, after the password is hashed: records the pending create and the
    /// `user.registered` event (one fsync), indexes the user here, then tries the bucket create.
    /// Returns false when the email belongs to another user (both records are removed again).
    /// - Throws: ``OutboxError`` when the records could not be stored (the user is not registered).
    func register(_ user: User, event: OutboxEvent) async throws(OutboxError) -> Bool {
        creatingInline.withLock { _ = $0.insert(user.id) }
        defer {
            creatingInline.withLock { _ = $0.remove(user.id) }
            outbox.wake()
        }
        do {
            try await outbox.record([event], creating: user)
        } catch {
            directory.release(email: user.email)
            throw error
        }
        directory.addProvisional(user)
        updatePendingGauge()
        // Without a connection the create would wait out its timeout: leave it to the publisher.
        guard runtime.natsClient?.isConnected == true, let kv = await currentBucket() else { return true }
        switch await create(user, in: kv) {
        case .created, .failed: return true
        case .taken:
            // Out of the index first, so that no login records an event for it after the drop.
            directory.removeProvisional(id: user.id)
            do { try outbox.drop(userID: user.id) } catch {
                logger.error("outbox: could not remove a refused registration", ["user_id": .string(user.id), "error": .string("\(error)")])
            }
            updatePendingGauge()
            return false
        }
    }

    /// Login: records the `user.logged_in` event.
    /// - Throws: ``OutboxError``.
    func recordLogin(_ event: OutboxEvent) async throws(OutboxError) {
        try await outbox.record([event])
        updatePendingGauge()
    }

    /// Creates `user`'s bucket entry; an entry that is already this user's counts as created.
    /// When created, the replica stores the user and the pending create is removed.
    func create(_ user: User, in kv: KeyValue) async -> CreateOutcome {
        let key = Self.key(email: user.email)
        do {
            _ = try await kv.create(key, JSONCoding.encode(user))
        } catch {
            guard case .wrongLastRevision = error else { return .failed("\(error)") }
            let existing: User
            do {
                let entry = try await kv.get(key)
                existing = try JSONDecoder().decode(User.self, from: Data(entry.value))
            } catch {
                return .failed("reading the existing entry: \(error)")
            }
            guard existing.id == user.id else {
                try? directory.apply([.put(existing)])
                return .taken(by: existing)
            }
        }
        do {
            try directory.confirm(user)
            try outbox.remove([Outbox.createPrefix + user.id])
        } catch {
            return .failed("\(error)")
        }
        return .created
    }

    private func updatePendingGauge() {
        runtime.metrics.set("auth_outbox_pending", to: Double(outbox.pendingCount))
    }

    /// The bucket once JetStream is set up (cached), else nil.
    private func currentBucket() async -> KeyValue? {
        if let kv = bucket.withLock({ $0 }) { return kv }
        guard let client = runtime.natsClient, runtime.jetStreamIfReady != nil,
              let js = try? client.jetStream(timeout: .seconds(3)),
              let kv = try? await js.keyValue(Self.bucketName) else { return nil }
        bucket.withLock { $0 = kv }
        return kv
    }

    // MARK: Publisher

    /// How a publishing round ended.
    private enum Round {
        /// Everything taken was sent (or dropped).
        case done
        /// A registration request is creating the user of the next event.
        case waitForRegistration
        /// The broker refused or did not answer; back off.
        case failed
    }

    /// Sends pending events until cancelled (at shutdown), backing off while the broker or
    /// JetStream is away; then has one last go within a quarter of the shutdown deadline.
    func runPublisher() async {
        var wakes = outbox.wakes.makeAsyncIterator()
        var backoff = Duration.milliseconds(100)
        var sender: AsyncPublisher?
        var lastRemoval = ContinuousClock.now
        sending: while !Task.isCancelled {
            // Acknowledged records go in batches: when idle, every 250 ms or 512 events under load.
            let idle = outbox.pendingCount == 0 && outbox.pendingCreates().isEmpty
            if outbox.sentCount > 0 && (idle || outbox.sentCount >= 512 || ContinuousClock.now - lastRemoval >= .milliseconds(250)) {
                removeSent()
                lastRemoval = .now
            }
            if idle {
                if await wakes.next() == nil { break sending }
                continue
            }
            var round = Round.failed
            if runtime.natsClient?.isConnected == true, let kv = await currentBucket() {
                if sender == nil, let client = runtime.natsClient {
                    sender = try? await client.jetStream(timeout: .seconds(5)).asyncPublisher(maxPending: 256)
                }
                if let sender { round = await publishRound(kv: kv, sender: sender) }
            }
            switch round {
            case .done:
                backoff = .milliseconds(100)
            case .waitForRegistration:
                if await wakes.next() == nil { break sending }
            case .failed:
                do { try await Task.sleep(for: backoff) } catch { break sending }
                backoff = min(backoff * 2, .seconds(3))
            }
        }
        defer { removeSent() }
        guard outbox.pendingCount > 0, runtime.natsClient?.isConnected == true, let client = runtime.natsClient,
              let kv = await currentBucket() else { return }
        // Cancelled: the last round runs in a task of its own (not cancelled), its acks bounded
        // by the timeout of its context.
        let budget = runtime.shutdownDeadline / 4
        let last = Task { [self] in
            let deadline = ContinuousClock.now + budget
            guard let sender = try? await client.jetStream(timeout: budget).asyncPublisher(maxPending: 256) else { return }
            while outbox.pendingCount > 0 && ContinuousClock.now < deadline {
                guard case .done = await publishRound(kv: kv, sender: sender) else { return }
            }
        }
        await last.value
        if outbox.pendingCount > 0 {
            logger.notice("outbox not empty at shutdown; sent at the next start", ["pending": .int(Int64(outbox.pendingCount))])
        }
    }

    /// Takes up to 256 pending events in order, creates the bucket entries they depend on,
    /// sends them in one window of acks and marks the acknowledged ones sent (their records are
    /// removed in batches, see ``Outbox/markSent(_:)``).
    private func publishRound(kv: KeyValue, sender: AsyncPublisher) async -> Round {
        let metrics = runtime.metrics
        var sendable: [(key: String, event: OutboxEvent)] = []
        var dropped: Set<String> = []
        var outcome = Round.done
        let batch = outbox.pendingEvents(limit: 256)
        if batch.isEmpty {
            // A pending create without events (none is left so normally: a registration's event
            // goes only after its create is done).
            var waiting = false
            for user in outbox.pendingCreates() {
                if creatingInline.withLock({ $0.contains(user.id) }) {
                    waiting = true
                    continue
                }
                switch await create(user, in: kv) {
                case .created: break
                case .taken(let owner): loseRegistration(user, to: owner)
                case .failed: return .failed
                }
            }
            return waiting ? .waitForRegistration : .done
        }
        for (key, event) in batch {
            if dropped.contains(event.userID) { continue }
            if let user = outbox.pendingCreate(id: event.userID) {
                if creatingInline.withLock({ $0.contains(user.id) }) {
                    outcome = .waitForRegistration
                    break
                }
                switch await create(user, in: kv) {
                case .created:
                    break
                case .taken(let owner):
                    dropped.insert(user.id)
                    loseRegistration(user, to: owner)
                    continue
                case .failed(let reason):
                    metrics.increment("auth_events_failed_total", labels: [("subject", event.subject)])
                    logger.debug("directory create failed; retrying", ["user_id": .string(user.id), "error": .string(reason)])
                    outcome = .failed
                }
                if case .failed = outcome { break }
            }
            sendable.append((key, event))
        }
        var futures: [(key: String, subject: String, future: PubAckFuture?)] = []
        // A registration refused meanwhile (the inline create found the email taken while this
        // round awaited another create) has had its records removed: its event must not go.
        sendable.removeAll { outbox.record($0.key) == nil }
        for (key, event) in sendable {
            var headers = Headers()
            try? headers.set(name: TraceContext.headerName, value: event.traceparent)
            let future = try? await sender.publish(event.subject, payload: Array(event.payload.utf8), headers: headers,
                                                   options: PublishOptions(msgID: event.eventID))
            futures.append((key, event.subject, future))
        }
        var sent: [String] = []
        for (key, subject, future) in futures {
            do {
                guard let future else { throw JetStreamError.cancelled }
                _ = try await future.value()
                sent.append(key)
                metrics.increment("auth_events_published_total", labels: [("subject", subject)])
            } catch {
                metrics.increment("auth_events_failed_total", labels: [("subject", subject)])
                if case .done = outcome {
                    logger.debug("event publish failed; retrying", ["subject": .string(subject), "error": .string("\(error)")])
                }
                outcome = .failed
            }
        }
        outbox.markSent(sent)
        updatePendingGauge()
        return outcome
    }

    private func removeSent() {
        do {
            try outbox.removeSent()
        } catch {
            logger.error("outbox: sent events could not be removed (a restart sends them again, and the stream drops them as duplicates)",
                         ["error": .string("\(error)")])
        }
    }

    /// A registration accepted while the broker was away lost its email to another user: the
    /// user is removed here and its events dropped.
    private func loseRegistration(_ user: User, to owner: User) {
        var dropped = 0
        directory.removeProvisional(id: user.id)
        do { dropped = try outbox.drop(userID: user.id) } catch {
            logger.error("outbox: could not remove a lost registration", ["user_id": .string(user.id), "error": .string("\(error)")])
        }
        runtime.metrics.increment("auth_registration_conflicts_total")
        logger.error("registration removed: another instance registered the same email while the broker was away",
                     ["user_id": .string(user.id), "email": .string(user.email), "owner_id": .string(owner.id),
                      "events_dropped": .int(Int64(dropped))])
    }

    // MARK: Watch

    /// Copies the bucket into the replica: every entry at start, then each change; starts again
    /// after an error.
    func runWatch() async {
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                _ = try await runtime.jetStream()
                guard let kv = await currentBucket() else { throw JetStreamError.timeout }
                var changes: [UserDirectory.Change] = []
                var initial = 0
                for try await update in try kv.watch(">", includeHistory: true) {
                    switch update {
                    case .initialValuesDone:
                        try directory.apply(changes)
                        changes = []
                        logger.info("user directory in sync with the shared bucket", ["entries": .int(Int64(initial)),
                                                                                      "users": .int(Int64(directory.count))])
                        attempt = 0
                    case .entry(let entry):
                        initial += 1
                        if entry.operation == .put {
                            guard let user = try? JSONDecoder().decode(User.self, from: Data(entry.value)),
                                  Self.key(email: user.email) == entry.key else {
                                logger.error("auth_users: entry is not a user; ignored", ["key": .string(entry.key), "revision": .int(Int64(entry.revision))])
                                continue
                            }
                            changes.append(.put(user))
                        } else if let email = Self.email(key: entry.key) {
                            changes.append(.deleteEmail(email))
                        }
                        if entry.delta == 0 || changes.count >= 512 {
                            try directory.apply(changes)
                            changes = []
                        }
                    }
                }
                return
            } catch {
                if Task.isCancelled || error is CancellationError { return }
                if attempt == 1 || attempt % 10 == 0 {
                    logger.warning("user directory watch failed; starting it again", ["error": .string("\(error)")])
                }
                do { try await Task.sleep(for: .seconds(1)) } catch { return }
            }
        }
    }
}
