import Dispatch
import EventLoop
import Synchronization

/// A small HTTP/1.1 server on an `EventLoop`: keep-alive, pipelining (answered in order), chunked request
/// bodies, JSON error responses, Server-Sent Events, slow-client timeouts and graceful shutdown.
///
/// ```swift
/// var router = HTTPRouter()
/// router.get("/healthz") { _ in .json(bytes: Array(#"{"status":"ok"}"#.utf8)) }
/// let server = HTTPServer(host: "127.0.0.1", port: 0, router: router)
/// try server.start()
/// print(server.port)          // the bound (ephemeral) port
/// await server.shutdown()
/// ```
///
/// I/O runs on one event loop thread; each request's handler runs in its own `Task`, and its response is
/// handed back to the loop. Requests on one connection are answered one at a time, in order.
public final class HTTPServer: Sendable {
    /// Limits and timeouts.
    public struct Configuration: Sendable {
        /// Request line plus header fields limit in bytes (431 above it).
        public var maxHeadSize = 16 * 1024
        /// Time a client has to send a whole request once it has started one (408 and close after it).
        public var requestTimeout: Duration = .seconds(30)
        /// Time a keep-alive connection may sit idle between requests before it is closed (no response).
        public var idleTimeout: Duration = .seconds(60)
        /// Time to wait for the client's FIN after answering with an error and closing our side,
        /// so the client reads the response instead of a reset.
        public var lingerTimeout: Duration = .seconds(2)
        /// Time `shutdown()` waits for in-flight requests and streams before closing connections anyway.
        public var shutdownTimeout: Duration = .seconds(10)
        /// Open connections beyond this are closed as soon as they are accepted.
        public var maxConnections = 4096
        /// Unsent response bytes per connection above which the server stops answering further pipelined
        /// requests and Server-Sent Events senders wait.
        public var maxBufferedOutput = 1 << 20
        /// Received but unparsed bytes per connection (pipelined requests waiting their turn) above which
        /// the server stops reading from that client.
        public var maxBufferedInput = 64 * 1024

        /// The defaults.
        public init() {}
    }

    /// Why `start()` failed.
    public struct StartError: Error, Sendable, CustomStringConvertible {
        /// What went wrong.
        public let message: String
        public var description: String { "http server: \(message)" }
    }

    /// The host the server binds.
    public let host: String
    /// The router requests are dispatched to.
    public let router: HTTPRouter
    /// Limits and timeouts.
    public let configuration: Configuration

    private let requestedPort: Int
    private let sharedLoop: EventLoop?
    private let state = Mutex<State>(.initial)

    private enum State {
        case initial
        case starting
        case running(Running)
        case stopping([@Sendable () -> Void])
        case stopped
    }

    private struct Running {
        var group: EventLoopGroup?
        var loop: EventLoop
        var core: LoopBound<ServerCore>
        var port: Int
    }

    /// Creates a server; nothing is bound until `start()`.
    /// - Parameters:
    ///   - host: address to bind (`"0.0.0.0"`, `"::"`, `"127.0.0.1"`, a name).
    ///   - port: TCP port; 0 picks an ephemeral port (read it from `port` after `start()`).
    ///   - router: the routes.
    ///   - configuration: limits and timeouts.
    ///   - eventLoop: a running (or not yet running) loop to share, e.g. the broker's; nil to run the
    ///     server on its own loop thread.
    public init(
        host: String = "0.0.0.0", port: Int, router: HTTPRouter,
        configuration: Configuration = Configuration(), eventLoop: EventLoop? = nil
    ) {
        self.host = host
        self.requestedPort = port
        self.router = router
        self.configuration = configuration
        self.sharedLoop = eventLoop
    }

    /// The bound port once started (the ephemeral one when 0 was requested); the requested port before.
    public var port: Int {
        state.withLock { state in
            if case .running(let running) = state { return running.port }
            return requestedPort
        }
    }

    /// Binds, listens and starts serving.
    /// - Throws: `HTTPServer.StartError` when already started; `EventLoop.AddressResolutionError` when the
    ///   host does not resolve; `EventLoop.SystemError` when socket/bind/listen (e.g. EADDRINUSE), the loop
    ///   or the listener's registration fails.
    public func start() throws {
        try state.withLock { state in
            guard case .initial = state else { throw StartError(message: "already started") }
            state = .starting
        }
        do {
            let listener = try Listener.bind(host: host, port: requestedPort)
            let group: EventLoopGroup?
            let loop: EventLoop
            if let sharedLoop {
                group = nil
                loop = sharedLoop
            } else {
                do {
                    let own = try EventLoopGroup(loopCount: 1)
                    group = own
                    loop = own.loops[0]
                } catch {
                    listener.close()
                    throw error
                }
            }
            let core = ServerCore(loop: loop, listener: listener, router: router, configuration: configuration)
            let bound = LoopBound(core, loop: loop)
            if let group {
                // The loop is not running yet, so registering from this thread is allowed.
                do { try core.startAccepting() } catch {
                    listener.close()
                    throw error
                }
                group.start()
            } else {
                loop.execute { bound.value.startAcceptingOrLog() }
            }
            state.withLock { $0 = .running(Running(group: group, loop: loop, core: bound, port: listener.port)) }
        } catch {
            state.withLock { $0 = .initial }
            throw error
        }
    }

    /// Stops accepting, lets in-flight requests finish (their responses say `Connection: close`), ends
    /// Server-Sent Events streams, closes idle connections, then stops the loop thread. Connections still
    /// open after `configuration.shutdownTimeout` are closed. Calling it again waits for the first call;
    /// calling it on a server that never started does nothing.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            beginStopping { continuation.resume() }
        }
    }

    /// `shutdown()` for callers that are not async: blocks the calling thread until the server has stopped.
    /// Never call it on the server's event loop thread (it would wait for itself); from an async context
    /// use `shutdown()` instead, which does not tie up a thread.
    public func shutdownAndWait() {
        precondition(!(sharedLoop?.isCurrent ?? false), "HTTPServer.shutdownAndWait on its own event loop")
        let done = DispatchSemaphore(value: 0)
        beginStopping { done.signal() }
        done.wait()
    }

    /// Starts the shutdown (or joins one in progress); calls `done` once the server has stopped.
    private func beginStopping(_ done: @escaping @Sendable () -> Void) {
        enum Step { case run(Running), waiting, done }
        let step: Step = state.withLock { state in
            switch state {
            case .running(let running):
                state = .stopping([])
                return .run(running)
            case .stopping(var waiters):
                waiters.append(done)
                state = .stopping(waiters)
                return .waiting
            case .initial, .starting, .stopped:
                return .done
            }
        }
        switch step {
        case .done:
            done()
        case .waiting:
            break
        case .run(let running):
            let core = running.core
            running.loop.execute {
                core.value.beginShutdown {
                    // Off the loop thread: joining the loop from itself would deadlock. Not on
                    // DispatchQueue.global() either: Swift's tasks run on its few threads here, and
                    // the join would hold one of them; a queue of our own gets a thread of its own.
                    DispatchQueue(label: "HTTPServer.stop").async { self.finishStopping(running, done) }
                }
            }
        }
    }

    private func finishStopping(_ running: Running, _ done: @Sendable () -> Void) {
        // Joins the loop thread; the loop has nothing left to do, so this returns promptly.
        running.group?.shutdown()
        let waiters: [@Sendable () -> Void] = state.withLock { state in
            var waiters: [@Sendable () -> Void] = []
            if case .stopping(let list) = state { waiters = list }
            state = .stopped
            return waiters
        }
        done()
        for waiter in waiters { waiter() }
    }
}

/// A reference that may cross threads but is only dereferenced on its loop's thread.
///
/// `@unchecked Sendable` is sound because `value` is read only on `loop` (checked), so the non-Sendable
/// object is never touched by two threads; carrying the reference itself across threads is harmless.
struct LoopBound<Value: AnyObject>: @unchecked Sendable {
    private let storage: Value
    let loop: EventLoop

    init(_ value: Value, loop: EventLoop) {
        storage = value
        self.loop = loop
    }

    /// The object. Loop thread only.
    var value: Value {
        precondition(loop.isCurrent, "LoopBound: accessed off its loop thread")
        return storage
    }
}
