import Formats
import Foundation
import HTTPServer
import NATSClient
@testable import NotificationService
import ServiceKit
import Synchronization
import TestSupport
import Testing

private func draft(_ user: String, event: String, message: String = "Welcome back!") -> NotificationDraft {
    NotificationDraft(userID: user, sourceEventID: event, message: message, personalized: false,
                      fallbackReason: "auth unavailable: timeout", loginTime: "2026-11-23T17:02:14.123Z",
                      createdAt: RFC3339.format(Date()))
}

extension NotificationStore.InsertResult {
    /// The notification when created, nil for a duplicate (for `#require`).
    var created: UserNotification? {
        if case .created(let n, _) = self { return n }
        return nil
    }
}

@Suite struct StoreTests {
    @Test func theSameEventTwiceMakesOneNotification() async throws {
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        let store = try NotificationStore(directory: dir, maxPerUser: 10)
        guard case .created(let first, evicted: 0) = try await store.insert(draft("u1", event: "e1")) else {
            Issue.record("first insert did not create"); return
        }
        guard case .duplicate(let again) = try await store.insert(draft("u1", event: "e1", message: "other")) else {
            Issue.record("second insert was not a duplicate"); return
        }
        #expect(again == first)
        #expect(store.count == 1)
        #expect(store.contains(sourceEventID: "e1"))
        #expect(!store.contains(sourceEventID: "e2"))
    }

    @Test func concurrentInsertsOfOneEventMakeOneNotification() async throws {
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        let store = try NotificationStore(directory: dir, maxPerUser: 10)
        let created = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    if case .created = try await store.insert(draft("u1", event: "same")) { return true }
                    return false
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(created == 1)
        #expect(store.page(user: "u1", limit: 100).items.count == 1)
    }

    @Test func historyIsNewestFirstAndPagesWithTheCursor() async throws {
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        let store = try NotificationStore(directory: dir, maxPerUser: 100)
        for i in 0..<7 {
            _ = try await store.insert(draft("u1", event: "e\(i)", message: "m\(i)"))
            _ = try await store.insert(draft("u2", event: "other\(i)"))
        }
        let first = store.page(user: "u1", limit: 3)
        #expect(first.items.map(\.message) == ["m6", "m5", "m4"])
        #expect(first.next != nil)
        let second = store.page(user: "u1", limit: 3, before: first.next)
        #expect(second.items.map(\.message) == ["m3", "m2", "m1"])
        #expect(second.next != nil)
        let third = store.page(user: "u1", limit: 3, before: second.next)
        #expect(third.items.map(\.message) == ["m0"])
        #expect(third.next == nil)
        #expect(store.page(user: "nobody", limit: 3).items.isEmpty)
        // Replay after a notification: oldest first, bounded to the newest `limit`.
        let m2 = try #require(second.items.first { $0.message == "m2" })
        #expect(store.after(user: "u1", sequence: m2.sequence, limit: 100).map(\.message) == ["m3", "m4", "m5", "m6"])
        #expect(store.after(user: "u1", sequence: m2.sequence, limit: 2).map(\.message) == ["m5", "m6"])
    }

    @Test func eachUserKeepsOnlyTheNewestUpToTheCap() async throws {
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        var store = try NotificationStore(directory: dir, maxPerUser: 3)
        var evictedTotal = 0
        for i in 0..<5 {
            if case .created(_, let evicted) = try await store.insert(draft("u1", event: "e\(i)", message: "m\(i)")) { evictedTotal += evicted }
        }
        _ = try await store.insert(draft("u2", event: "x"))
        #expect(evictedTotal == 2)
        #expect(store.page(user: "u1", limit: 100).items.map(\.message) == ["m4", "m3", "m2"])
        #expect(store.page(user: "u2", limit: 100).items.count == 1)
        #expect(store.count == 4)
        // The cap holds after reopening, and a lower cap trims at open.
        store.close()
        store = try NotificationStore(directory: dir, maxPerUser: 3)
        #expect(store.page(user: "u1", limit: 100).items.map(\.message) == ["m4", "m3", "m2"])
        store.close()
        store = try NotificationStore(directory: dir, maxPerUser: 1)
        #expect(store.page(user: "u1", limit: 100).items.map(\.message) == ["m4"])
        store.close()
    }

    @Test func theStoreKeepsOnlyTheNewestUpToTheTotalCap() async throws {
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        var store = try NotificationStore(directory: dir, maxPerUser: 10, maxTotal: 4)
        var evictedTotal = 0
        for i in 0..<7 {
            // Three users in turn: the oldest overall go first, whoever they belong to.
            if case .created(_, let evicted) = try await store.insert(draft("u\(i % 3)", event: "e\(i)", message: "m\(i)")) {
                evictedTotal += evicted
            }
            #expect(store.count <= 4)
        }
        #expect(evictedTotal == 3 && store.count == 4)
        let kept = ["u0", "u1", "u2"].flatMap { store.page(user: $0, limit: 100).items.map(\.message) }.sorted()
        #expect(kept == ["m3", "m4", "m5", "m6"])
        #expect(!store.contains(sourceEventID: "e0") && store.contains(sourceEventID: "e6"))
        // Per-user evictions and the total cap together: u0 over its own cap of 2 as well.
        store.close()
        store = try NotificationStore(directory: dir, maxPerUser: 2, maxTotal: 3)
        #expect(store.count == 3)
        #expect(["u0", "u1", "u2"].flatMap { store.page(user: $0, limit: 100).items.map(\.message) }.sorted() == ["m4", "m5", "m6"])
        for i in 7..<40 { _ = try await store.insert(draft("u0", event: "e\(i)", message: "m\(i)")) }
        #expect(store.count == 3)
        #expect(store.page(user: "u0", limit: 100).items.map(\.message) == ["m39", "m38"])
        store.close()
        // What was deleted stays deleted after reopening with larger caps.
        store = try NotificationStore(directory: dir, maxPerUser: 100, maxTotal: 100)
        #expect(store.count == 3)
        store.close()
    }

    @Test func readersAreServedWhileWritesRun() async throws {
        // Many inserts in flight on the writer queue while pages are read from several tasks:
        // every page is consistent (newest first, no gaps in what it lists) and every insert lands.
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        let store = try NotificationStore(directory: dir, maxPerUser: 1000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<40 {
                group.addTask { _ = try await store.insert(draft("u1", event: "e\(i)", message: "m\(i)")) }
            }
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<50 {
                        let items = store.page(user: "u1", limit: 100).items
                        let sequences = items.map(\.sequence)
                        #expect(sequences == sequences.sorted(by: >))
                        await Task.yield()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(store.page(user: "u1", limit: 100).items.count == 40)
        store.close()
    }

    @Test func notificationsAndReadMarksSurviveReopening() async throws {
        let dir = try temporaryDirectory("notif-store")
        defer { removeTemporary(dir) }
        var store = try NotificationStore(directory: dir, maxPerUser: 10)
        guard case .created(let n, _) = try await store.insert(draft("u1", event: "e1")) else { Issue.record("not created"); return }
        _ = try await store.insert(draft("u1", event: "e2"))
        #expect(try await store.markRead(id: n.id, user: "someone-else", at: "2026-11-23T18:00:00.000Z") == nil)
        let read = try #require(try await store.markRead(id: n.id, user: "u1", at: "2026-11-23T18:00:00.000Z"))
        #expect(read.readAt == "2026-11-23T18:00:00.000Z")
        #expect(try await store.markRead(id: n.id, user: "u1", at: "2026-11-23T19:00:00.000Z")?.readAt == "2026-11-23T18:00:00.000Z")
        store.close()
        #expect(!store.isOpen)
        await #expect(throws: StoreError.self) { try await store.insert(draft("u1", event: "e3")) }

        store = try NotificationStore(directory: dir, maxPerUser: 10)
        let items = store.page(user: "u1", limit: 10).items
        #expect(items.count == 2)
        #expect(items.last?.id == n.id && items.last?.readAt == "2026-11-23T18:00:00.000Z")
        // Still idempotent, and sequences keep increasing.
        guard case .duplicate = try await store.insert(draft("u1", event: "e1")) else { Issue.record("not a duplicate after reopening"); return }
        guard case .created(let next, _) = try await store.insert(draft("u1", event: "e3")) else { Issue.record("not created"); return }
        #expect(next.sequence > (items.first?.sequence ?? .max))
        store.close()
    }
}

@Suite struct MessageTests {
    @Test func personalisedAndFallbackTexts() throws {
        #expect(WelcomeMessage.personalized(name: "Ann") == "Welcome back, Ann!")
        #expect(WelcomeMessage.personalized(name: "  Ann\n") == "Welcome back, Ann!")
        #expect(WelcomeMessage.personalized(name: " \t ") == nil)
        #expect(WelcomeMessage.personalized(name: String(repeating: "x", count: 500))?.count == "Welcome back, !".count + 100)
        #expect(WelcomeMessage.generic == "Welcome back!")

        #expect(AuthLookup.reason(for: CircuitBreakerError.open(name: "auth.user.get", retryAfter: .seconds(3))) == "circuit open")
        #expect(AuthLookup.reason(for: CircuitBreakerError.timedOut(name: "auth.user.get", after: .seconds(1))) == "auth unavailable: timeout")
        #expect(AuthLookup.reason(for: NATSError.timeout) == "auth unavailable: timeout")
        #expect(AuthLookup.reason(for: NATSError.noResponders(subject: "auth.user.get")) == "auth unavailable: no responders")
        #expect(AuthLookup.reason(for: ServiceRuntimeError.natsUnavailable) == "auth unavailable: not connected to NATS")
        let fallback = AuthLookup.outcome(error: NATSError.timeout)
        #expect(fallback == AuthLookup.Outcome(message: "Welcome back!", personalized: false, fallbackReason: "auth unavailable: timeout"))
        #expect(AuthLookup.metricLabel("circuit open") == "circuit_open")
        #expect(AuthLookup.metricLabel("auth unavailable: timeout") == "timeout")
        #expect(AuthLookup.metricLabel("auth error: 404 user not found") == "auth_error")
    }

    @Test func loginEventsAreValidated() throws {
        let event = try LoginEvent(payload: loginEvent(user: "u1", eventID: "e1"))
        #expect(event.userID == "u1" && event.eventID == "e1")
        let noFraction = Array(#"{"event_id":"e","user_id":"u","time":"2026-11-23T17:02:14Z"}"#.utf8)
        #expect(try LoginEvent(payload: noFraction).date == Date(timeIntervalSince1970: 1_795_453_334))
        for bad in [#"[]"#, #"not json"#, #"{"user_id":"u","time":"2026-11-23T17:02:14Z"}"#,
                    #"{"event_id":"","user_id":"u","time":"2026-11-23T17:02:14Z"}"#,
                    #"{"event_id":"e","user_id":7,"time":"2026-11-23T17:02:14Z"}"#,
                    #"{"event_id":"e","user_id":"u","time":"yesterday"}"#, #"{"event_id":"e","user_id":"u"}"#,
                    #"{"event_id":"\#(String(repeating: "e", count: 300))","user_id":"u","time":"2026-11-23T17:02:14Z"}"#] {
            #expect(throws: LoginEvent.Invalid.self) { try LoginEvent(payload: Array(bad.utf8)) }
        }
    }

    @Test func notificationSentFollowsTheContract() throws {
        let n = UserNotification(id: "n1", userID: "u1", sourceEventID: "e1", kind: "welcome", message: "Welcome back!",
                             personalized: false, fallbackReason: "circuit open", loginTime: "2026-11-23T17:02:14.123Z",
                             createdAt: "2026-11-23T17:02:14.200Z", readAt: nil, sequence: 4)
        guard case .object(let o) = NotificationService.sentEvent(n, latencyMilliseconds: 77, instance: "i1") else { Issue.record("not an object"); return }
        #expect(Set(o.keys) == ["event_id", "notification_id", "user_id", "source_event_id", "kind", "personalized",
                                "fallback_reason", "login_time", "time", "latency_ms", "message", "instance_id"])
        #expect(o["message"] == .string("Welcome back!") && o["instance_id"] == .string("i1"))
        #expect(o["notification_id"] == .string("n1") && o["source_event_id"] == .string("e1") && o["kind"] == .string("welcome"))
        #expect(o["personalized"] == .bool(false) && o["fallback_reason"] == .string("circuit open"))
        #expect(o["login_time"] == .string("2026-11-23T17:02:14.123Z") && o["time"] == .string("2026-11-23T17:02:14.200Z"))
        #expect(o["latency_ms"]?.numberValue == 77)
        #expect(o["event_id"]?.stringValue.map { UUID(uuidString: $0) != nil } == true)
        var personalised = n
        personalised.personalized = true
        personalised.fallbackReason = nil
        guard case .object(let p) = NotificationService.sentEvent(personalised, latencyMilliseconds: 1, instance: "i1") else {
            Issue.record("not an object"); return
        }
        #expect(p["fallback_reason"] == .null)
    }

    @Test func serverSentEventFraming() throws {
        let n = UserNotification(id: "n-1", userID: "u1", sourceEventID: "e1", kind: "welcome", message: "Welcome back,\nAnn!",
                             personalized: true, fallbackReason: nil, loginTime: "t", createdAt: "c", readAt: nil, sequence: 9)
        let text = String(decoding: n.serverSentEvent.encoded, as: UTF8.self)
        // One event: event type, id, a single data line (JSON escapes the newline), blank line.
        #expect(text.hasPrefix("event: notification\nid: n-1\ndata: {"))
        #expect(text.hasSuffix("}\n\n"))
        #expect(text.components(separatedBy: "\n").filter { $0.hasPrefix("data: ") }.count == 1)
        var parser = SSEParser()
        parser.feed(Array(text.utf8))
        let event = try #require(parser.events.first)
        #expect(event.id == "n-1" && event.event == "notification")
        #expect(event.json["message"] as? String == "Welcome back,\nAnn!")
        #expect(event.json["personalized"] as? Bool == true)
        #expect(event.json["id"] as? String == "n-1")
        #expect(UserNotification(stored: n.stored) == n)
    }

    @Test func pageParametersAreChecked() throws {
        let resolve: (String) -> UInt64? = { $0 == "known-id" ? 42 : nil }
        func params(_ items: [(String, String)]) throws(HTTPError) -> (Int, UInt64?) {
            let p = try NotificationService.pageParameters(HTTPQuery(items.map { (name: $0.0, value: $0.1) }), resolveID: resolve)
            return (p.limit, p.before)
        }
        #expect(try params([]) == (20, nil))
        #expect(try params([("limit", "100"), ("before", "7")]) == (100, 7))
        #expect(try params([("before", "known-id")]) == (20, 42))
        for bad in [[("limit", "0")], [("limit", "101")], [("limit", "ten")], [("before", "unknown")], [("before", "0")]] {
            #expect(throws: HTTPError.self) { try params(bad) }
        }
    }
}

@Suite struct TokenTests {
    @Test func localVerificationChecksSignatureExpiryIssuerAndAudience() async throws {
        let verifier = try TokenVerifier.local(secret: testSecret)
        #expect(await verifier.verify(try token(for: "u1")) == .valid(userID: "u1"))
        let expired = try JWTAuthority(secret: Array(testSecret.utf8), issuer: "auth-service", audience: "microservices-nats",
                                       now: { Int64(Date().timeIntervalSince1970) - 7200 }).issue(subject: "u1", lifetime: 60)
        guard case .invalid = await verifier.verify(expired) else { Issue.record("expired token accepted"); return }
        guard case .invalid = await verifier.verify(try token(for: "u1", audience: "someone-else")) else {
            Issue.record("wrong audience accepted"); return
        }
        let otherIssuer = try JWTAuthority(secret: Array(testSecret.utf8), issuer: "mallory", audience: "microservices-nats")
            .issue(subject: "u1", lifetime: 60)
        guard case .invalid = await verifier.verify(otherIssuer) else { Issue.record("wrong issuer accepted"); return }
        guard case .invalid = await verifier.verify(try token(for: "u1", secret: "another-secret-0123456789")) else {
            Issue.record("bad signature accepted"); return
        }
        guard case .invalid = await verifier.verify("not.a.token") else { Issue.record("garbage accepted"); return }
        guard case .invalid = await verifier.verify("") else { Issue.record("empty accepted"); return }
    }

    @Test func httpAuthenticationAnswers401And503() async throws {
        let verifier = try TokenVerifier.local(secret: testSecret)
        func request(_ headers: HTTPHeaders) -> HTTPRequest {
            HTTPRequest(method: .get, target: "/v1/notifications", headers: headers)
        }
        #expect(try await verifier.authenticate(request(["Authorization": "Bearer " + token(for: "u9")])) == "u9")
        for headers: HTTPHeaders in [[:], ["Authorization": "Basic abc"], ["Authorization": "Bearer nope"]] {
            do {
                _ = try await verifier.authenticate(request(headers))
                Issue.record("accepted \(headers)")
            } catch {
                #expect(error.status == .unauthorized)
                #expect(error.headers["WWW-Authenticate"]?.hasPrefix("Bearer") == true)
            }
        }
        let down = TokenVerifier(mode: .remote({ _, _ in throw NATSError.noResponders(subject: "auth.token.verify") }))
        do {
            _ = try await down.authenticate(request(["Authorization": "Bearer something"]))
            Issue.record("accepted without auth-service")
        } catch {
            #expect(error.status == .serviceUnavailable)
        }
    }
}

@Suite struct HubTests {
    static func note(_ user: String, _ sequence: UInt64) -> UserNotification {
        UserNotification(id: "n\(sequence)", userID: user, sourceEventID: "e\(sequence)", kind: "welcome", message: "m",
                     personalized: true, fallbackReason: nil, loginTime: "t", createdAt: "c", readAt: nil, sequence: sequence)
    }

    @Test func deliversToTheUsersStreamsAndDropsASlowOne() async throws {
        let counts = Counter()
        let hub = NotificationHub(bufferSize: 2, maxPerUser: 2, onCountChange: { counts.set($0) })
        let a = try #require(hub.open(user: "u1"))
        let b = try #require(hub.open(user: "u1"))
        #expect(hub.open(user: "u1") == nil)          // over the per-user limit
        let c = try #require(hub.open(user: "u2"))
        #expect(hub.count == 3 && counts.value == 3)

        #expect(hub.deliver(Self.note("u1", 1)) == 2)
        #expect(hub.deliver(Self.note("u1", 2)) == 2)
        // Nobody reads: the third item overflows both u1 streams, which are dropped and removed.
        #expect(hub.deliver(Self.note("u1", 3)) == 0)
        #expect(a.isDropped && b.isDropped && !c.isDropped)
        #expect(hub.count == 1 && hub.count(user: "u1") == 0 && counts.value == 1)
        var received: [NotificationHub.Item] = []
        for await item in a.items { received.append(item) }   // finished: ends after what was queued
        #expect(received == [.notification(Self.note("u1", 1)), .notification(Self.note("u1", 2))])

        hub.keepAlive()
        var iterator = c.items.makeAsyncIterator()
        #expect(await iterator.next() == .keepAlive)
        c.close()
        #expect(await eventually(5) { hub.count == 0 })
        #expect(hub.open(user: "u1") != nil)          // room again
    }
}

extension HubTests {
    @Test func streamsFinishedAsSoonAsTheyOpenAreAllRemoved() async throws {
        // Streams opened while deliveries overflow them (buffer 1) and closed at once: however
        // the finishing races the opening, every stream leaves the hub. (A guard: with 2 pool
        // threads it did not catch the old order, onTermination set after the insert.)
        let hub = NotificationHub(bufferSize: 1, maxPerUser: 1000)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for k in 0..<500 { hub.deliver(Self.note("u1", UInt64(k))) } }
            }
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<200 { hub.open(user: "u1")?.close() }
                }
            }
        }
        #expect(await eventually(5) { hub.count == 0 })
        #expect(hub.count(user: "u1") == 0)
    }
}

final class Counter: Sendable {
    private let storage = Mutex(0)
    var value: Int { storage.withLock { $0 } }
    func set(_ v: Int) { storage.withLock { $0 = v } }
}

/// A sink for a `ServerSentEventWriter` that records what is written and, while closed, holds
/// each write until it is opened (a client that stopped reading).
final class GatedSink: Sendable {
    private struct State { var bytes: [UInt8] = []; var open = true; var waiters: [CheckedContinuation<Void, Never>] = [] }
    private let state = Mutex(State())

    var text: String { state.withLock { String(decoding: $0.bytes, as: UTF8.self) } }
    var events: [ReceivedEvent] { var parser = SSEParser(); parser.feed(state.withLock { $0.bytes }); return parser.events }

    func write(_ bytes: [UInt8]) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                s.bytes += bytes
                if s.open { return true }
                s.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func setOpen(_ open: Bool) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = open
            guard open else { return [] }
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

@Suite struct StreamProducerTests {
    static func service(_ dir: String, buffer: Int) throws -> NotificationService {
        let configuration = try Configuration.load(NotificationSettings.all, arguments: [], environment: [
            "DATA_DIR": dir, "JWT_SECRET": testSecret, "SSE_BUFFER_EVENTS": String(buffer), "EVENT_DELIVERY": "at-most-once",
        ], workingDirectory: dir)
        return try NotificationService(configuration: configuration, logger: ServiceLogger(service: "notification", level: .critical, sink: MemoryLogSink()))
    }

    static func producer(_ response: HTTPResponse) throws -> @Sendable (ServerSentEventWriter) async throws -> Void {
        guard case .serverSentEvents(let produce) = response.body else { throw TestFailure("not an event stream") }
        return produce
    }

    @Test func replaysAfterLastEventIDThenStreamsLive() async throws {
        let dir = try temporaryDirectory("notif-sse")
        defer { removeTemporary(dir) }
        let service = try Self.service(dir, buffer: 8)
        var created: [UserNotification] = []
        for i in 0..<3 {
            if case .created(let n, _) = try await service.store.insert(draft("u1", event: "e\(i)", message: "m\(i)")) { created.append(n) }
        }
        let sink = GatedSink()
        let response = try service.stream(HTTPRequest(method: .get, target: "/v1/notifications/stream", headers: ["Last-Event-ID": created[0].id]),
                                          user: "u1", logger: ServiceLogger(service: "t", level: .critical, sink: MemoryLogSink()), metrics: MetricsRegistry())
        #expect(response.headers["Content-Type"] == "text/event-stream")
        let produce = try Self.producer(response)
        let task = Task { try await produce(ServerSentEventWriter { await sink.write($0) }) }
        #expect(await eventually(5) { sink.events.count == 2 && service.hub.count(user: "u1") == 1 })
        #expect(sink.text.hasPrefix(": notifications for u1\n\n"))
        #expect(sink.events.map(\.id) == [created[1].id, created[2].id])
        // Live: a new one is sent; one already replayed is not sent twice.
        let live = try #require(try await service.store.insert(draft("u1", event: "e3", message: "m3")).created)
        service.hub.deliver(created[2])
        service.hub.deliver(live)
        #expect(await eventually(5) { sink.events.count == 3 })
        #expect(sink.events.map(\.id) == [created[1].id, created[2].id, live.id])
        service.hub.keepAlive()
        #expect(await eventually(5) { sink.text.hasSuffix(": keep-alive\n\n") })
        task.cancel()
        _ = try? await task.value
        #expect(await eventually(5) { service.hub.count == 0 })
        service.store.close()
    }

    @Test func aUserWithTheMostStreamsAllowedGets429() throws {
        let dir = try temporaryDirectory("notif-sse")
        defer { removeTemporary(dir) }
        let service = try Self.service(dir, buffer: 2)
        let open = (0..<service.hub.maxPerUser).compactMap { _ in service.hub.open(user: "u1") }
        #expect(open.count == 8)
        let logger = ServiceLogger(service: "t", level: .critical, sink: MemoryLogSink())
        #expect(throws: HTTPError(.tooManyRequests, "too many open notification streams for this user", headers: ["Retry-After": "5"])) {
            try service.stream(HTTPRequest(method: .get, target: "/v1/notifications/stream"), user: "u1", logger: logger, metrics: MetricsRegistry())
        }
        #expect(try service.stream(HTTPRequest(method: .get, target: "/v1/notifications/stream"), user: "u2", logger: logger,
                                   metrics: MetricsRegistry()).status == .ok)
        for stream in open { stream.close() }
        service.store.close()
    }

    @Test func theLimitIsCheckedWhenTheResponseIsMadeAndAnUnusedResponseFreesItsStream() throws {
        let dir = try temporaryDirectory("notif-sse")
        defer { removeTemporary(dir) }
        let service = try Self.service(dir, buffer: 2)
        let open = (0..<(service.hub.maxPerUser - 1)).compactMap { _ in service.hub.open(user: "u1") }
        let logger = ServiceLogger(service: "t", level: .critical, sink: MemoryLogSink())
        let request = HTTPRequest(method: .get, target: "/v1/notifications/stream")
        // Two requests for the last place before either response is written: one 200, one 429.
        var first: HTTPResponse? = try service.stream(request, user: "u1", logger: logger, metrics: MetricsRegistry())
        #expect(first?.status == .ok)
        #expect(service.hub.count(user: "u1") == service.hub.maxPerUser)
        #expect(throws: HTTPError.self) { try service.stream(request, user: "u1", logger: logger, metrics: MetricsRegistry()) }
        // A response dropped without its producer ever running (the connection closed first)
        // gives its place back.
        first = nil
        #expect(first == nil)
        #expect(service.hub.count(user: "u1") == service.hub.maxPerUser - 1)
        for stream in open { stream.close() }
        service.store.close()
    }

    @Test func markingReadWhileShuttingDownAnswers503() async throws {
        let dir = try temporaryDirectory("notif-sse")
        defer { removeTemporary(dir) }
        let service = try Self.service(dir, buffer: 2)
        let n = try #require(try await service.store.insert(draft("u1", event: "e1")).created)
        var request = HTTPRequest(method: .post, target: "/v1/notifications/\(n.id)/read")
        request.pathParameters = ["id": n.id]
        service.store.close()
        await #expect(throws: HTTPError(.serviceUnavailable, "the service is shutting down", headers: ["Retry-After": "5"])) {
            try await service.markRead(request, user: "u1", metrics: MetricsRegistry())
        }
        request.pathParameters = ["id": "nope"]
        await #expect(throws: HTTPError(.notFound, "notification not found")) {
            try await service.markRead(request, user: "u1", metrics: MetricsRegistry())
        }
    }

    @Test func notificationsOfOtherInstancesArePushedOwnOnesAreNot() async throws {
        let dir = try temporaryDirectory("notif-sse")
        defer { removeTemporary(dir) }
        let service = try Self.service(dir, buffer: 8)
        let stream = try #require(service.hub.open(user: "u1"))
        let logger = ServiceLogger(service: "t", level: .critical, sink: MemoryLogSink())
        let n = UserNotification(id: "n1", userID: "u1", sourceEventID: "e1", kind: "welcome", message: "Welcome back, Ann!",
                                 personalized: true, fallbackReason: nil, loginTime: "2026-11-23T17:02:14.123Z",
                                 createdAt: "2026-11-23T17:02:14.200Z", readAt: nil, sequence: 7)
        service.fanOut(NotificationService.sentEvent(n, latencyMilliseconds: 1, instance: service.instanceID).serialized, logger: logger)
        var other = n
        other.userID = "u2"   // nobody streams here
        service.fanOut(NotificationService.sentEvent(other, latencyMilliseconds: 1, instance: "another").serialized, logger: logger)
        service.fanOut(Array(#"{"instance_id":"another","user_id":"u1"}"#.utf8), logger: logger)   // fields missing
        service.fanOut(NotificationService.sentEvent(n, latencyMilliseconds: 1, instance: "another").serialized, logger: logger)
        stream.close()
        var received: [NotificationHub.Item] = []
        for await item in stream.items { received.append(item) }
        var expected = n
        expected.sequence = 0
        #expect(received == [.remote(expected)])
        let event = expected.remoteServerSentEvent
        #expect(event.id == "n1" && event.data.contains(#""cursor":null"#) && event.data.contains("Welcome back, Ann!"))
        service.store.close()
    }

    @Test func latencyIsNeverNegative() {
        let login = Date(timeIntervalSince1970: 1_795_453_334.123)
        #expect(NotificationService.latencyMilliseconds(from: login, to: login.addingTimeInterval(0.0042)) == 4.2)
        #expect(NotificationService.latencyMilliseconds(from: login, to: login.addingTimeInterval(-2)) == 0)   // clock skew
    }

    @Test func aClientThatStopsReadingIsDroppedAndItsProducerEnds() async throws {
        let dir = try temporaryDirectory("notif-sse")
        defer { removeTemporary(dir) }
        let service = try Self.service(dir, buffer: 2)
        let sink = GatedSink()
        let response = try service.stream(HTTPRequest(method: .get, target: "/v1/notifications/stream"),
                                          user: "u1", logger: ServiceLogger(service: "t", level: .critical, sink: MemoryLogSink()), metrics: MetricsRegistry())
        let produce = try Self.producer(response)
        let task = Task { try await produce(ServerSentEventWriter { await sink.write($0) }) }
        #expect(await eventually(5) { service.hub.count(user: "u1") == 1 && sink.text.hasPrefix(": notifications") })

        sink.setOpen(false)                       // the client stops reading
        var notes: [UserNotification] = []
        for i in 0..<6 {
            if case .created(let n, _) = try await service.store.insert(draft("u1", event: "e\(i)", message: "m\(i)")) { notes.append(n) }
        }
        #expect(service.hub.deliver(notes[0]) == 1)
        #expect(await eventually(5) { sink.events.count == 1 })   // taken, its write is held
        var offered = 1
        while service.hub.count(user: "u1") == 1 && offered < notes.count {
            service.hub.deliver(notes[offered])
            offered += 1
        }
        #expect(service.hub.count == 0)           // dropped once 2 more were queued
        #expect(offered == 4)
        sink.setOpen(true)                        // the held write completes: the producer stops
        try await within(5, "the dropped stream's producer to end") { try await task.value }
        #expect(sink.events.map(\.id) == [notes[0].id])
        // A new stream is accepted again.
        #expect(try service.stream(HTTPRequest(method: .get, target: "/v1/notifications/stream"), user: "u1",
                                   logger: ServiceLogger(service: "t", level: .critical, sink: MemoryLogSink()), metrics: MetricsRegistry()).status == .ok)
        service.store.close()
    }
}
