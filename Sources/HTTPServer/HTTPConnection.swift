import EventLoop
import Glibc

/// One client connection: reads, parses, dispatches one request at a time, writes responses in order.
/// Loop thread only (everything in it).
final class HTTPConnection: IOHandler {
    private enum Phase {
        /// Waiting for (or receiving) the next request.
        case idle
        /// A handler is running for the current request.
        case handling
        /// A Server-Sent Events response is being streamed.
        case streaming
        /// Our side is shut down after an error response; waiting for the client's FIN.
        case lingering
        case closed
    }

    private enum TimerKind { case idle, request, linger }

    let fd: Int32
    let peer: String
    private unowned let core: ServerCore
    private var loop: EventLoop { core.loop }
    private var configuration: HTTPServer.Configuration { core.configuration }

    private var phase = Phase.idle
    private var parser: HTTPRequestParser
    private var readBuffer = ReadBuffer()
    /// Bytes received but not parsed yet (pipelined requests waiting for the current one).
    private var input: [UInt8] = []
    private var output = OutboundBuffer()
    /// The client sent FIN (or reading failed): finish what is complete, then close.
    private var readClosed = false
    /// Close once the output is flushed.
    private var closeAfterFlush = false
    private var timer: TimerID?
    private var timerKind: TimerKind?
    /// The request being handled or streamed.
    private var current: HTTPRequestHead?

    // Server-Sent Events state.
    private var streamChunked = false
    private var streamClosed = false
    private var streamTask: Task<Void, Never>?
    private var streamWaiters: [CheckedContinuation<Void, any Error>] = []

    init(fd: Int32, peer: String, core: ServerCore) {
        self.fd = fd
        self.peer = peer
        self.core = core
        self.parser = HTTPRequestParser(maxHeadSize: core.configuration.maxHeadSize)
    }

    /// Called once after registration.
    func start() {
        armTimer(.idle, after: configuration.idleTimeout)
    }

    // MARK: - IOHandler

    func readable() {
        switch readBuffer.read(from: fd) {
        case .bytes:
            switch phase {
            case .lingering, .closed:
                return      // discarded: the connection is going away
            case .idle, .handling, .streaming:
                input.append(contentsOf: readBuffer.bytes)
                if phase == .idle { processInput() }
            }
        case .wouldBlock:
            return
        case .eof:
            readClosed = true
            switch phase {
            case .lingering, .streaming, .closed:
                close()     // lingering: the client acknowledged; streaming: the client went away
                return
            case .idle:
                processInput()
            case .handling:
                break       // answer, then close
            }
        case .error:
            close()
            return
        }
        updateInterest()
    }

    func writable() {
        flush()
    }

    func hangup() {
        close()
    }

    // MARK: - Reading and dispatch

    private struct ParseSink: HTTPParserDelegate {
        let router: HTTPRouter
        var headExpectingContinue = false
        var request: (HTTPRequestHead, [UInt8])?

        mutating func parserDidParseHead(_ head: HTTPRequestHead) -> Int {
            if head.expectsContinue && head.framing != .none { headExpectingContinue = true }
            return router.bodyLimit(method: head.method, target: head.target)
        }

        mutating func parserDidParseRequest(_ head: HTTPRequestHead, body: [UInt8]) -> Bool {
            request = (head, body)
            headExpectingContinue = false
            return false    // one at a time: the next waits for this one's response
        }
    }

    /// Parses buffered input while idle; dispatches at most one request. Loop thread only.
    private func processInput() {
        guard phase == .idle else { return }
        if !input.isEmpty && output.pendingBytes < configuration.maxBufferedOutput {
            var sink = ParseSink(router: core.router)
            let result = input.withUnsafeBytes { parser.parse($0, into: &sink) }
            switch result {
            case .ok:
                input.removeAll(keepingCapacity: input.capacity <= 64 * 1024)
                if sink.headExpectingContinue {
                    output.append(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                    flush()
                    guard phase == .idle else { return }
                }
            case .stopped(let consumed):
                input.removeFirst(consumed)
                if let (head, body) = sink.request {
                    dispatch(head, body: body)
                    return
                }
            case .error(let error):
                input.removeAll()
                failAndClose(error.status, error.message)
                return
            }
        }
        if readClosed && input.isEmpty {
            // The client is done sending; whatever is partial will never complete.
            if output.isEmpty { close() } else { closeAfterFlush = true }
            return
        }
        if parser.hasPartialRequest || !input.isEmpty {
            if timerKind != .request { armTimer(.request, after: configuration.requestTimeout) }
        } else if timerKind != .idle {
            armTimer(.idle, after: configuration.idleTimeout)
        }
    }

    private func dispatch(_ head: HTTPRequestHead, body: [UInt8]) {
        phase = .handling
        cancelTimer()
        current = head
        let request = HTTPRequest(
            method: head.method, target: head.target, headers: head.headers, body: body,
            remoteAddress: peer, version: head.version)
        let router = core.router
        let bound = LoopBound(self, loop: loop)
        Task {
            let response = await router.respond(to: request)
            bound.loop.execute { bound.value.deliver(response) }
        }
    }

    // MARK: - Writing

    /// Takes a handler's response. Loop thread only.
    private func deliver(_ response: HTTPResponse) {
        guard phase == .handling, let head = current else { return }     // closed meanwhile
        let keepAlive = head.keepAlive && !core.stopping
        switch response.body {
        case .bytes(let body):
            writeHead(response, version: head.version, keepAlive: keepAlive, isHead: head.method == .head,
                      framing: .length(body.count))
            if head.method != .head && !response.status.forbidsBody { output.append(body) }
            finishResponse(keepAlive: keepAlive)
        case .serverSentEvents(let produce):
            if head.method == .head {
                // HEAD of a stream: the head only, with nothing to frame and no producer started.
                writeHead(response, version: head.version, keepAlive: keepAlive, isHead: true, framing: .untilClose)
                finishResponse(keepAlive: keepAlive)
            } else {
                startStream(response, head: head, keepAlive: keepAlive, produce: produce)
            }
        }
    }

    private func finishResponse(keepAlive: Bool) {
        current = nil
        phase = .idle
        if !keepAlive { closeAfterFlush = true }
        flush()
        if phase == .idle && !closeAfterFlush { processInput() }
        if phase != .closed { updateInterest() }
    }

    private enum BodyFraming { case length(Int), chunked, untilClose }

    private func writeHead(
        _ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, isHead: Bool, framing: BodyFraming
    ) {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(contentsOf: "HTTP/1.1 \(response.status.code) \(response.status.reasonPhrase)\r\n".utf8)
        // HEAD keeps the Content-Length the route announced; otherwise framing is ours to set.
        let keepLength = isHead && response.headers.contains("Content-Length")
        for field in response.headers {
            if HTTPHeaders.equalsIgnoringCase(field.name, "Connection")
                || HTTPHeaders.equalsIgnoringCase(field.name, "Transfer-Encoding")
                || (!keepLength && HTTPHeaders.equalsIgnoringCase(field.name, "Content-Length")) {
                continue
            }
            guard Self.isSafeField(field.name, field.value) else { continue }
            out.append(contentsOf: field.name.utf8)
            out.append(contentsOf: [0x3A, 0x20])
            out.append(contentsOf: field.value.utf8)
            out.append(contentsOf: [0x0D, 0x0A])
        }
        switch framing {
        case .length(let count):
            if !keepLength && !response.status.forbidsBody {
                out.append(contentsOf: "Content-Length: \(count)\r\n".utf8)
            }
        case .chunked:
            out.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
        case .untilClose:
            break
        }
        if !keepAlive {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if version.minor == 0 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(contentsOf: [0x0D, 0x0A])
        output.append(out)
    }

    /// A header a handler set must not break the response's framing (no CR/LF/NUL, a token name).
    private static func isSafeField(_ name: String, _ value: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy(HTTPRequestParser.isTokenByte)
            && value.utf8.allSatisfy { $0 >= 0x20 ? $0 != 0x7F : $0 == 0x09 }
    }

    /// Answers with a JSON error, then closes (lingering so the client reads it). Loop thread only.
    private func failAndClose(_ status: HTTPStatus, _ message: String) {
        cancelTimer()
        let response = HTTPResponse.error(status, message)
        writeHead(response, version: .http1_1, keepAlive: false, isHead: false,
                  framing: .length(response.bodyBytes.count))
        output.append(response.bodyBytes)
        phase = .idle
        closeAfterFlush = true
        flush()
    }

    /// Writes what the socket takes; handles completion, back-pressure and errors. Loop thread only.
    private func flush() {
        if !output.isEmpty {
            switch output.flush(to: fd) {
            case .done:
                break
            case .partial:
                resumeStreamWaiters()
                updateInterest()
                return
            case .error:
                close()
                return
            }
        }
        resumeStreamWaiters()
        if closeAfterFlush && phase != .streaming && phase != .handling {
            if readClosed { close() } else { beginLinger() }
            return
        }
        if phase == .idle && !input.isEmpty && current == nil { processInput() }
        updateInterest()
    }

    private func updateInterest() {
        guard phase != .closed else { return }
        var interest: Interest = []
        if !readClosed && input.count < configuration.maxBufferedInput { interest.insert(.readable) }
        if !output.isEmpty { interest.insert(.writable) }
        do { try loop.setInterest(fd: fd, interest) } catch { close() }
    }

    // MARK: - Server-Sent Events

    private func startStream(
        _ response: HTTPResponse, head: HTTPRequestHead, keepAlive: Bool,
        produce: @escaping @Sendable (ServerSentEventWriter) async throws -> Void
    ) {
        phase = .streaming
        streamClosed = false
        streamChunked = head.version.minor >= 1
        let keep = keepAlive && streamChunked
        if !keep { closeAfterFlush = true }
        writeHead(response, version: head.version, keepAlive: keep, isHead: false,
                  framing: streamChunked ? .chunked : .untilClose)
        flush()
        guard phase == .streaming else { return }
        let bound = LoopBound(self, loop: loop)
        let loop = self.loop
        let writer = ServerSentEventWriter { bytes in
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                loop.execute { bound.value.streamWrite(bytes, continuation) }
            }
        }
        streamTask = Task {
            do { try await produce(writer) } catch {}
            loop.execute { bound.value.streamProducerFinished() }
        }
    }

    private func streamWrite(_ bytes: [UInt8], _ continuation: CheckedContinuation<Void, any Error>) {
        guard phase == .streaming, !streamClosed else {
            continuation.resume(throwing: ServerSentEventStreamClosed())
            return
        }
        if bytes.isEmpty {
            continuation.resume()
            return
        }
        if streamChunked {
            output.append(Array((String(bytes.count, radix: 16) + "\r\n").utf8))
            output.append(bytes)
            output.append([0x0D, 0x0A])
        } else {
            output.append(bytes)
        }
        streamWaiters.append(continuation)
        flush()
    }

    /// Resumes stream senders once the unsent output is under the limit (or with an error when closed).
    private func resumeStreamWaiters() {
        guard !streamWaiters.isEmpty else { return }
        let failed = phase != .streaming || streamClosed
        guard failed || output.pendingBytes <= configuration.maxBufferedOutput else { return }
        let waiters = streamWaiters
        streamWaiters.removeAll()
        for waiter in waiters {
            if failed { waiter.resume(throwing: ServerSentEventStreamClosed()) } else { waiter.resume() }
        }
    }

    private func streamProducerFinished() {
        streamTask = nil
        guard phase == .streaming else { return }
        streamClosed = true
        resumeStreamWaitersClosed()
        if streamChunked { output.append(Array("0\r\n\r\n".utf8)) }
        finishResponse(keepAlive: !closeAfterFlush && !core.stopping)
    }

    private func resumeStreamWaitersClosed() {
        let waiters = streamWaiters
        streamWaiters.removeAll()
        for waiter in waiters { waiter.resume(throwing: ServerSentEventStreamClosed()) }
    }

    // MARK: - Timers, shutdown, close

    private func armTimer(_ kind: TimerKind, after delay: Duration) {
        cancelTimer()
        timerKind = kind
        timer = loop.schedule(after: delay) { [weak self] in self?.timerFired(kind) }
    }

    private func cancelTimer() {
        if let timer { loop.cancel(timer) }
        timer = nil
        timerKind = nil
    }

    private func timerFired(_ kind: TimerKind) {
        timer = nil
        timerKind = nil
        switch kind {
        case .idle:
            if phase == .idle && !parser.hasPartialRequest && input.isEmpty { close() }
        case .request:
            if phase == .idle { failAndClose(.requestTimeout, "http: request not received in time") }
        case .linger:
            close()
        }
    }

    private func beginLinger() {
        phase = .lingering
        input = []
        if core.stopping {
            close()
            return
        }
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
        armTimer(.linger, after: configuration.lingerTimeout)
        updateInterest()
    }

    /// The server is shutting down. Loop thread only.
    func serverStopping() {
        switch phase {
        case .idle:
            if output.isEmpty { close() } else { closeAfterFlush = true }
        case .handling:
            break       // deliver() answers with Connection: close
        case .streaming:
            streamClosed = true
            closeAfterFlush = true
            resumeStreamWaitersClosed()
            streamTask?.cancel()
        case .lingering:
            close()
        case .closed:
            break
        }
    }

    /// Closes the socket and forgets the connection. Loop thread only. Idempotent.
    func close() {
        guard phase != .closed else { return }
        phase = .closed
        cancelTimer()
        loop.deregister(fd: fd)
        IO.close(fd)
        output.removeAll()
        input = []
        current = nil
        streamClosed = true
        resumeStreamWaitersClosed()
        streamTask?.cancel()
        streamTask = nil
        core.connectionClosed(self)
    }
}
