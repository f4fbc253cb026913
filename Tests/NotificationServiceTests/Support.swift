// Test support for the notification service: a fake auth-service on NATS, a raw-socket
// Server-Sent Events reader, tokens, and the service process with test settings. The generic
// process, HTTP and wait helpers are in TestSupport.

import Formats
import Foundation
import NATSClient
@testable import NotificationService
import ServiceKit
import Synchronization
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

let testSecret = "notification-test-secret-0123456789"

/// A token for `user` signed like auth-service signs them.
func token(for user: String, secret: String = testSecret, audience: String = "microservices-nats",
           lifetime: Int64 = 3600) throws -> String {
    try JWTAuthority(secret: Array(secret.utf8), issuer: "auth-service", audience: audience).issue(subject: user, lifetime: lifetime)
}

func bearer(_ user: String) throws -> [String: String] { ["Authorization": "Bearer " + (try token(for: user))] }

/// A `user.logged_in` payload as auth-service publishes it.
func loginEvent(user: String, eventID: String = UUID().uuidString.lowercased(), time: Date = Date()) -> [UInt8] {
    JSONValue.object([
        "event_id": .string(eventID), "user_id": .string(user), "email": .string("\(user)@example.com"),
        "name": .string("event-name-not-used"), "time": .string(RFC3339.format(time)), "client_address": .string("127.0.0.1"),
    ]).serialized
}

func jsonObject(_ bytes: [UInt8]) -> [String: Any] {
    ((try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]) ?? [:]
}

/// A stand-in for auth-service on NATS: answers `auth.user.get` with a name from `names` (404
/// service error for unknown ids) while `answering`, stays silent otherwise (the caller times
/// out); answers `auth.token.verify` for tokens listed in `tokens`.
final class FakeAuth: Sendable {
    let client: NATSClient
    private let answeringFlag = Atomic(true)
    private let served = Atomic(0)
    private let names: Mutex<[String: String]>
    private let tokens: Mutex<[String: String]>
    private let tasks = Mutex<[Task<Void, Never>]>([])

    var answering: Bool {
        get { answeringFlag.load(ordering: .acquiring) }
        set { answeringFlag.store(newValue, ordering: .releasing) }
    }
    /// `auth.user.get` requests received (answered or not).
    var requests: Int { served.load(ordering: .acquiring) }

    static func start(_ url: String, names: [String: String], tokens: [String: String] = [:]) async throws -> FakeAuth {
        let auth = FakeAuth(client: try await NATSClient.connect(url), names: names, tokens: tokens)
        let users = try await auth.client.subscribe("auth.user.get", queue: "auth")
        let verify = try await auth.client.subscribe("auth.token.verify", queue: "auth")
        try await auth.client.flush()
        let userTask = Task {
            do {
                for try await message in users {
                    auth.served.add(1, ordering: .acquiringAndReleasing)
                    guard auth.answering else { continue }
                    let id = (jsonObject(message.payload)["id"] as? String) ?? ""
                    if let name = auth.names.withLock({ $0[id] }) {
                        try? await message.respond(JSONValue.object(["id": .string(id), "name": .string(name),
                                                                     "email": .string("\(id)@example.com")]).serialized)
                    } else {
                        try? await message.respond(Array("{}".utf8), headers: try Headers([("Nats-Service-Error", "user not found"),
                                                                                          ("Nats-Service-Error-Code", "404")]))
                    }
                }
            } catch {}
        }
        let verifyTask = Task {
            do {
                for try await message in verify {
                    guard auth.answering else { continue }
                    let token = (jsonObject(message.payload)["token"] as? String) ?? ""
                    if let user = auth.tokens.withLock({ $0[token] }) {
                        try? await message.respond(JSONValue.object(["sub": .string(user)]).serialized)
                    } else {
                        try? await message.respond([], headers: try Headers([("Nats-Service-Error", "invalid token"),
                                                                            ("Nats-Service-Error-Code", "401")]))
                    }
                }
            } catch {}
        }
        auth.tasks.withLock { $0 = [userTask, verifyTask] }
        return auth
    }

    private init(client: NATSClient, names: [String: String], tokens: [String: String]) {
        self.client = client
        self.names = Mutex(names)
        self.tokens = Mutex(tokens)
    }

    func stop() async {
        await client.close()
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }
}

/// One parsed Server-Sent Event.
struct ReceivedEvent: Sendable, Equatable {
    var id: String?
    var event: String?
    var data: String
    var json: [String: Any] { jsonObject(Array(data.utf8)) }
    static func == (a: ReceivedEvent, b: ReceivedEvent) -> Bool { a.id == b.id && a.event == b.event && a.data == b.data }
}

/// Parses an SSE byte stream (fields per WHATWG: `id`, `event`, `data`, comments, blank line
/// dispatches). Feed it the de-chunked body bit by bit.
struct SSEParser {
    private var line: [UInt8] = []
    private var id: String?, event: String?, data: [String] = []
    private(set) var events: [ReceivedEvent] = []
    private(set) var comments: [String] = []

    mutating func feed(_ bytes: some Sequence<UInt8>) {
        for b in bytes {
            if b == 0x0A { take(String(decoding: line, as: UTF8.self)); line.removeAll() } else if b != 0x0D { line.append(b) }
        }
    }

    private mutating func take(_ text: String) {
        if text.isEmpty {
            if !data.isEmpty || id != nil || event != nil { events.append(ReceivedEvent(id: id, event: event, data: data.joined(separator: "\n"))) }
            id = nil; event = nil; data = []
            return
        }
        if text.hasPrefix(":") { comments.append(String(text.dropFirst()).trimmingCharacters(in: .whitespaces)); return }
        let (name, value): (Substring, Substring)
        if let colon = text.firstIndex(of: ":") {
            name = text[..<colon]
            var rest = text[text.index(after: colon)...]
            if rest.first == " " { rest = rest.dropFirst() }
            value = rest
        } else {
            (name, value) = (Substring(text), "")
        }
        switch name {
        case "id": id = String(value)
        case "event": event = String(value)
        case "data": data.append(String(value))
        default: break
        }
    }
}

/// An SSE client on a raw socket, read on its own thread: HTTP/1.1 request, head, chunked body.
final class SSEClient: Sendable {
    /// `closed`: the reader saw the end of the stream; `descriptorClosed`: the reader closed the
    /// socket (after which ``cancel()`` must not touch the number, which may be reused).
    private struct State {
        var status: Int?; var parser = SSEParser(); var closed = false; var raw: [UInt8] = []; var descriptorClosed = false
    }
    private let state = Mutex(State())
    private let fd: Int32

    var status: Int? { state.withLock { $0.status } }
    var events: [ReceivedEvent] { state.withLock { $0.parser.events } }
    var comments: [String] { state.withLock { $0.parser.comments } }
    var closed: Bool { state.withLock { $0.closed } }
    var rawText: String { state.withLock { String(decoding: $0.raw, as: UTF8.self) } }

    /// Connects and sends the request; reading runs on a new thread.
    init(port: Int, path: String = "/v1/notifications/stream", headers: [String: String], readBufferBytes: Int? = nil) throws {
        let fd = try connectLoopback(port: port, timeoutSeconds: nil, receiveBufferBytes: readBufferBytes)
        var head = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        let bytes = Array((head + "\r\n").utf8)
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { close(fd); throw TestFailure("send failed") }
        self.fd = fd
        Thread { [self] in readLoop() }.start()
    }

    /// Reads until the server closes or ``cancel()``; then closes the socket.
    private func readLoop() {
        var buffer = [UInt8]()
        var headDone = false
        var chunk = [UInt8](repeating: 0, count: 16384)
        var chunked = false
        loop: while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            buffer.append(contentsOf: chunk[0..<n])
            state.withLock { $0.raw.append(contentsOf: chunk[0..<n]) }
            if !headDone {
                guard let end = Self.find(buffer, [0x0D, 0x0A, 0x0D, 0x0A]) else { continue }
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
                chunked = head.lowercased().contains("transfer-encoding: chunked")
                state.withLock { $0.status = status }
                buffer.removeFirst(end + 4)
                headDone = true
            }
            if !chunked {
                let body = buffer
                state.withLock { $0.parser.feed(body) }
                buffer.removeAll()
                continue
            }
            while let lineEnd = Self.find(buffer, [0x0D, 0x0A]) {
                guard let size = Int(String(decoding: buffer[..<lineEnd], as: UTF8.self), radix: 16) else { break loop }
                if size == 0 { break loop }
                guard buffer.count >= lineEnd + 2 + size + 2 else { break }
                let data = Array(buffer[(lineEnd + 2)..<(lineEnd + 2 + size)])
                state.withLock { $0.parser.feed(data) }
                buffer.removeFirst(lineEnd + 2 + size + 2)
            }
        }
        // Marked under the lock first: cancel() shuts the socket down only while it is still ours.
        state.withLock { $0.closed = true; $0.descriptorClosed = true }
        close(fd)
    }

    private static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }

    /// Waits until the stream sent its opening comment (the subscription is live).
    func waitUntilOpen(_ seconds: Double = 15) async throws {
        guard await eventually(seconds, { self.comments.contains { $0.hasPrefix("notifications for") } || self.closed }),
              !closed || comments.contains(where: { $0.hasPrefix("notifications for") }) else {
            throw TestFailure("SSE stream did not open; status \(status.map(String.init) ?? "none"), received: \(rawText)")
        }
    }

    /// Ends the connection (the reader thread then closes the socket). Does nothing once the
    /// reader has closed it: the check and the shutdown happen under the lock the reader takes
    /// before closing, so exactly one side acts on the descriptor.
    func cancel() {
        state.withLock { s in
            if !s.descriptorClosed { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

}

/// The notification-service executable (at-most-once) with a private data folder, on `broker`.
/// `secret` nil leaves JWT_SECRET unset (tokens are then checked by auth-service).
func startService(_ broker: Broker, data: String, secret: String? = testSecret, extra: [String: String] = [:]) async throws -> ServiceProcess {
    // Today's core-NATS behaviour: these tests run a broker without JetStream.
    var environment = ["NATS_URL": broker.url, "DATA_DIR": data, "AUTH_TIMEOUT_MS": "5000", "EVENT_DELIVERY": "at-most-once"]
    if let secret { environment["JWT_SECRET"] = secret }
    for (k, v) in extra { environment[k] = v }
    let service = try await ServiceProcess.start("notification-service", environment: environment)
    do {
        try await waitForSubscriptions(service, broker)
    } catch {
        await service.stop()
        throw error
    }
    return service
}

/// Barrier: the runtime logs "consuming" once it has sent SUB, not once the broker has it, so
/// probes go to both consumed subjects until the service shows it received one on each: a
/// refused (malformed) login event in its log, and a message counted by the SSE fan-out
/// consumer (which ignores it). The login probe may land on another instance of the queue
/// group; probing continues until one reaches this one.
func waitForSubscriptions(_ service: ServiceProcess, _ broker: Broker) async throws {
    let client = try await NATSClient.connect(broker.url)
    let live = await eventually(20) {
        try? await client.publish(Array("probe".utf8), subject: "user.logged_in")
        try? await client.publish(Array("probe".utf8), subject: "notification.sent")
        try? await client.flush()
        guard service.child.output.contains(where: { $0.contains(#""message":"login event refused""#) }) else { return false }
        return ((try? await metric(service, #"nats_consumer_messages_total{consumer="sse-fanout"}"#)) ?? 0) > 0
    }
    await client.close()
    if !live { throw TestFailure("notification-service did not receive probes on both subjects; output:\n" + service.child.output.suffix(20).joined(separator: "\n")) }
}

/// `GET /v1/notifications` for `user`: the notifications and the next cursor.
func history(_ service: ServiceProcess, _ user: String, query: String = "") async throws -> (items: [[String: Any]], next: String?) {
    let result = try await service.request("GET", "/v1/notifications" + query, headers: try bearer(user))
    guard result.status == 200 else { throw TestFailure("history \(result.status): \(result.body)") }
    return ((result.json["notifications"] as? [[String: Any]]) ?? [], result.json["next_before"] as? String)
}

/// A Prometheus sample value from `/metrics` (0 when absent).
func metric(_ service: ServiceProcess, _ sample: String) async throws -> Double {
    let text = try await service.request("GET", "/metrics").body
    for line in text.split(separator: "\n") where line.hasPrefix(sample + " ") {
        return Double(line.split(separator: " ").last ?? "") ?? 0
    }
    return 0
}

/// Runs `body`, then awaits `stop`, whether `body` throws or not, and rethrows: a process or
/// runtime started for a test is stopped before the test ends (a `defer { Task { ... } }`
/// would only start stopping it).
func stopping<T>(_ stop: () async -> Void, _ body: () async throws -> T) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        await stop()
        throw error
    }
    await stop()
    return result
}
