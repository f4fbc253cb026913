import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing
@testable import HTTPServer

@Suite("HTTP server over real sockets")
struct LiveServerTests {
    @Test func bindsAnEphemeralPortAndAnswers200() async throws {
        try await withServer { server in
            #expect(server.port > 0)
            let port = server.port
            let response = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                return try client.readResponse()
            }
            #expect(response.status == 200)
            #expect(response.text == "hello")
            #expect(response.header("Content-Type") == "text/plain; charset=utf-8")
        }
    }

    @Test func passesPathParametersQueryAndRemoteAddress() async throws {
        try await withServer { server in
            let port = server.port
            let (item, remote) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /v1/items/a%2Fb?q=x+y HTTP/1.1\r\nHost: t\r\n\r\nGET /remote HTTP/1.1\r\nHost: t\r\n\r\n")
                return (try client.readResponse(), try client.readResponse())
            }
            #expect(item.json?["id"] as? String == "a/b")
            #expect(item.json?["q"] as? String == "x y")
            #expect(remote.text.hasPrefix("127.0.0.1:"))
        }
    }

    @Test(arguments: [
        ("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        ("DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n", 405),
        ("GET /hello HTTP/1.1\r\n\r\n", 400),
        ("GET /hello HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n" + String(repeating: "b", count: 65), 413),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n" + String(repeating: "c", count: 65) + "\r\n0\r\n\r\n", 413),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + String(repeating: "h", count: 20_000) + "\r\n\r\n", 431),
    ])
    func answersErrorsWithJSONAndTheExactStatus(_ request: String, _ status: Int) async throws {
        try await withServer { server in
            let port = server.port
            let response = try await offPool {
                let client = try TestClient(port: port)
                try client.send(request)
                return try client.readResponse()
            }
            #expect(response.status == status)
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.json?["status"] as? Int == status)
            #expect((response.json?["error"] as? String)?.isEmpty == false)
            if status == 405 { #expect(response.header("Allow") == "GET, HEAD") }
            if status >= 400 && status != 404 && status != 405 { #expect(response.header("Connection") == "close") }
        }
    }

    @Test func closesAfterAParseErrorSoTheClientSeesEOF() async throws {
        try await withServer { server in
            let port = server.port
            let closed = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GARBAGE\r\n\r\n")
                let response = try client.readResponse()
                guard response.status == 400 else { return false }
                return try client.isClosedByServer()
            }
            #expect(closed)
        }
    }

    @Test func answers408ToAClientThatSendsAPartialRequestTooSlowly() async throws {
        var configuration = HTTPServer.Configuration()
        configuration.requestTimeout = .milliseconds(300)
        try await withServer(configuration: configuration) { server in
            let port = server.port
            let (response, closed) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /hello HTTP/1.1\r\nHost: t\r\n")     // never finished
                let response = try client.readResponse()
                return (response, try client.isClosedByServer())
            }
            #expect(response.status == 408)
            #expect(response.json?["status"] as? Int == 408)
            #expect(closed)
        }
    }

    @Test func closesIdleKeepAliveConnectionsWithoutAResponse() async throws {
        var configuration = HTTPServer.Configuration()
        configuration.idleTimeout = .milliseconds(200)
        try await withServer(configuration: configuration) { server in
            let port = server.port
            let (first, closed) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                let first = try client.readResponse()
                return (first, try client.isClosedByServer())
            }
            #expect(first.status == 200)
            #expect(closed)
        }
    }

    @Test func keepsTheConnectionAliveForTwoRequests() async throws {
        try await withServer { server in
            let port = server.port
            let responses = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                let first = try client.readResponse()
                try client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nping")
                let second = try client.readResponse()
                try client.send("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                let third = try client.readResponse()
                return (first, second, third, try client.isClosedByServer())
            }
            #expect(responses.0.status == 200 && responses.0.header("Connection") == nil)
            #expect(responses.1.text == "ping")
            #expect(responses.2.header("Connection") == "close")
            #expect(responses.3)
        }
    }

    @Test func answersHTTP10WithKeepAliveOnlyWhenAsked() async throws {
        try await withServer { server in
            let port = server.port
            let (kept, closedAfterPlain) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                let kept = try client.readResponse()
                try client.send("GET /hello HTTP/1.0\r\n\r\n")
                let plain = try client.readResponse()
                let closed = try client.isClosedByServer()
                return (kept, plain.status == 200 && closed)
            }
            #expect(kept.header("Connection") == "keep-alive")
            #expect(closedAfterPlain)
        }
    }

    @Test func answersPipelinedRequestsInOrderEvenWhenTheFirstIsSlow() async throws {
        try await withServer { server in
            let port = server.port
            let texts = try await offPool {
                let client = try TestClient(port: port)
                try client.send(
                    "GET /slow/150 HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                        + "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                        + "GET /slow/0 HTTP/1.1\r\nHost: t\r\n\r\n")
                return try (0..<4).map { _ in try client.readResponse().text }
            }
            #expect(texts == ["slept 150", "hello", "abc", "slept 0"])
        }
    }

    @Test func keepsOrderUnderBackPressureWithManyPipelinedRequests() async throws {
        var router = HTTPRouter()
        router.get("/big/{n}") { request in
            let n = request.pathParameters["n"] ?? "?"
            return .text(n + ":" + String(repeating: "x", count: 8192))
        }
        var configuration = HTTPServer.Configuration()
        configuration.maxBufferedOutput = 32 * 1024      // small, so the server must pause and resume
        configuration.maxBufferedInput = 4 * 1024
        try await withServer(router, configuration: configuration) { server in
            let port = server.port
            let client = try TestClient(port: port)
            let count = 400
            let request = (0..<count).map { "GET /big/\($0) HTTP/1.1\r\nHost: t\r\n\r\n" }.joined()
            async let sent: Void = offPool { try client.send(request) }   // blocks while the server pauses
            let prefixes = try await offPool {
                try (0..<count).map { _ in String(try client.readResponse().text.prefix { $0 != ":" }) }
            }
            try await sent
            #expect(prefixes == (0..<count).map(String.init))
        }
    }

    @Test func sends100ContinueBeforeTheBody() async throws {
        try await withServer { server in
            let port = server.port
            let (interim, final) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
                // Read the raw interim response before sending the body.
                var raw = [UInt8](repeating: 0, count: 64)
                let n = raw.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, 25, Int32(MSG_WAITALL)) }
                let interim = String(decoding: raw[0..<max(0, n)], as: UTF8.self)
                try client.send("hi")
                return (interim, try client.readResponse())
            }
            #expect(interim == "HTTP/1.1 100 Continue\r\n\r\n")
            #expect(final.text == "hi")
        }
    }

    @Test func servesHeadWithoutABody() async throws {
        try await withServer { server in
            let port = server.port
            let (head, next) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                return (try client.readResponse(head: true), try client.readResponse())
            }
            #expect(head.status == 200)
            #expect(head.header("Content-Length") == "5")
            #expect(next.text == "hello")     // proves no body bytes followed the HEAD response
        }
    }

    @Test func streamsServerSentEventsAndEndsWithTheStream() async throws {
        var router = liveRouter()
        router.get("/events") { request in
            let count = Int(request.query["n"] ?? "") ?? 3
            return .serverSentEvents { writer in
                for i in 1...count { try await writer.send(data: "tick \(i)", event: "tick", id: String(i)) }
            }
        }
        try await withServer(router) { server in
            let port = server.port
            let (response, body, after) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /events?n=3 HTTP/1.1\r\nHost: t\r\n\r\n")
                let response = try client.readResponse()
                try client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                return (response, response.text, try client.readResponse())
            }
            #expect(response.header("Content-Type") == "text/event-stream")
            #expect(response.header("Transfer-Encoding") == "chunked")
            #expect(body == (1...3).map { "event: tick\nid: \($0)\ndata: tick \($0)\n\n" }.joined())
            #expect(after.text == "hello")      // keep-alive continues after the stream
        }
    }

    @Test func answersHeadOnAnEventStreamRouteWithoutStartingTheStream() async throws {
        let started = Mutex<Bool>(false)
        var router = liveRouter()
        router.get("/events") { _ in
            .serverSentEvents { writer in
                started.withLock { $0 = true }
                try await writer.send(data: "never for HEAD")
            }
        }
        try await withServer(router) { server in
            let port = server.port
            let (head, next) = try await offPool {
                let client = try TestClient(port: port)
                try client.send("HEAD /events HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                return (try client.readResponse(head: true), try client.readResponse())
            }
            #expect(head.status == 200)
            #expect(head.header("Content-Type") == "text/event-stream")
            #expect(next.text == "hello")
            #expect(!started.withLock { $0 })
        }
    }

    @Test func stopsTheEventProducerWhenTheClientGoesAway() async throws {
        let stopped = Mutex<Bool>(false)
        let sent = Mutex<Int>(0)
        var router = HTTPRouter()
        router.get("/forever") { _ in
            .serverSentEvents { writer in
                do {
                    while true {
                        try await writer.send(data: "x")
                        sent.withLock { $0 += 1 }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                } catch {
                    stopped.withLock { $0 = true }
                    throw error
                }
            }
        }
        try await withServer(router) { server in
            let port = server.port
            let firstEvents = try await offPool {
                let client = try TestClient(port: port)
                try client.send("GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
                _ = try client.readResponse(head: true)
                return try client.readChunks { $0.components(separatedBy: "\n\n").count > 3 }
            }   // the client is closed here
            #expect(firstEvents.hasPrefix("data: x\n\n"))
            let deadline = ContinuousClock.now + .seconds(10)
            while !stopped.withLock({ $0 }) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(stopped.withLock { $0 })
        }
    }

    @Test func gracefulShutdownFinishesInFlightRequestsAndEndsStreams() async throws {
        var router = liveRouter()
        let held = Gate()
        router.get("/held") { _ in
            await held.enter()
            return .text("released")
        }
        router.get("/stream") { _ in
            .serverSentEvents { writer in
                try await writer.send(data: "first")
                while true { try await writer.comment("keep-alive"); try await Task.sleep(for: .milliseconds(20)) }
            }
        }
        let server = HTTPServer(host: "127.0.0.1", port: 0, router: router)
        try server.start()
        let port = server.port
        // A request whose handler is still running when shutdown begins, and an open event stream.
        let slowClient = try await offPool { () -> TestClient in
            let client = try TestClient(port: port)
            try client.send("GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
            return client
        }
        let streamClient = try await offPool { () -> TestClient in
            let client = try TestClient(port: port)
            try client.send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try client.readResponse(head: true)
            _ = try client.readChunks { $0.contains("data: first") }
            return client
        }
        #expect(await eventually { held.waiting == 1 }, "the held request reached its handler")
        // Shutdown has begun once the listener is closed; only then may the handler answer.
        let stopping = Task { await server.shutdown() }
        #expect(await eventually { (try? TestClient(port: port)) == nil }, "the listener closed")
        held.open()
        await stopping.value
        let (slow, slowClosed) = try await offPool { (try slowClient.readResponse(), try slowClient.isClosedByServer()) }
        #expect(slow.text == "released")
        #expect(slow.header("Connection") == "close")
        #expect(slowClosed)
        let streamEnded = try await offPool { () -> Bool in
            _ = try streamClient.readChunksToEnd()
            return try streamClient.isClosedByServer()
        }
        #expect(streamEnded)
        // Nothing listens any more.
        #expect(throws: (any Error).self) { _ = try TestClient(port: port) }
    }

    @Test func shutdownAndWaitWorksFromAPlainThreadAlongsideAnAsyncShutdown() async throws {
        let server = HTTPServer(host: "127.0.0.1", port: 0, router: liveRouter())
        try server.start()
        let port = server.port
        let answered = try await offPool {
            let client = try TestClient(port: port)
            try client.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            return try client.readResponse().status
        }
        #expect(answered == 200)
        async let other: Void = server.shutdown()
        try await offPool { server.shutdownAndWait() }
        await other
        #expect(throws: (any Error).self) { _ = try TestClient(port: port) }
        #expect(throws: HTTPServer.StartError.self) { try server.start() }
        await HTTPServer(port: 0, router: HTTPRouter()).shutdown()     // never started: returns at once
    }

    @Test func worksWithTheRealCurlBinary() async throws {
        let curlPath = ["/usr/bin/curl", "/usr/local/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let curlPath else {
            if ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1" {
                Issue.record("curl is required (REQUIRE_PEERS=1) but not installed")
            }
            return
        }
        try await withServer { server in
            let base = "http://127.0.0.1:\(server.port)"
            func curl(_ arguments: [String]) async throws -> String {
                try await offPool {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: curlPath)
                    process.arguments = ["-sS", "--max-time", "10"] + arguments
                    let pipe = Pipe()
                    process.standardOutput = pipe
                    try process.run()
                    let data = pipe.fileHandleForReading.readDataToEndOfFile()
                    process.waitUntilExit()
                    return String(decoding: data, as: UTF8.self)
                }
            }
            // Two URLs in one invocation: curl reuses the connection (keep-alive).
            let two = try await curl(["-w", " %{http_code} %{num_connects}\n", "\(base)/hello", "\(base)/hello"])
            #expect(two == "hello 200 1\nhello 200 0\n")
            let item = try await curl(["\(base)/v1/items/7?q=z"])
            #expect(item.contains(#""id":"7""#) && item.contains(#""q":"z""#))
            let posted = try await curl(["-X", "POST", "--data-binary", "payload", "\(base)/echo"])
            #expect(posted == "payload")
            let chunked = try await curl(["-H", "Transfer-Encoding: chunked", "--data-binary", "chunky", "\(base)/echo"])
            #expect(chunked == "chunky")
            let missing = try await curl(["-w", "%{http_code}", "\(base)/none"])
            #expect(missing.hasSuffix("404") && missing.contains(#""status":404"#))
            let big = try await curl(["-w", "%{http_code}", "--data-binary", String(repeating: "z", count: 2000), "\(base)/echo"])
            #expect(big.hasSuffix("413"))
        }
    }
}
