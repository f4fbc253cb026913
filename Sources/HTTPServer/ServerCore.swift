import EventLoop
import Glibc

/// The server's loop-thread state: the listener, the open connections and the shutdown progress.
/// Loop thread only (everything in it).
final class ServerCore: IOHandler {
    let loop: EventLoop
    let listener: Listener
    let router: HTTPRouter
    let configuration: HTTPServer.Configuration
    private(set) var stopping = false
    private var accepting = false
    private var listenerClosed = false
    private var connections: [ObjectIdentifier: HTTPConnection] = [:]
    private var onStopped: (() -> Void)?
    private var shutdownTimer: TimerID?

    init(loop: EventLoop, listener: Listener, router: HTTPRouter, configuration: HTTPServer.Configuration) {
        self.loop = loop
        self.listener = listener
        self.router = router
        self.configuration = configuration
    }

    /// Registers the listener. Loop thread only (or before the loop runs).
    func startAccepting() throws {
        try loop.register(fd: listener.fd, interest: .readable, handler: self)
        accepting = true
    }

    /// `startAccepting` for a shared loop, where there is no caller to throw to. Loop thread only.
    func startAcceptingOrLog() {
        guard !stopping else { return }
        do { try startAccepting() } catch {
            print("http server: cannot watch the listening socket on port \(listener.port): \(error)")
            closeListener()
        }
    }

    func readable() {
        // Bounded per wake-up so one busy listener cannot starve the connections on the loop.
        for _ in 0..<64 {
            switch listener.accept() {
            case .accepted(let fd, let peer):
                if connections.count >= configuration.maxConnections || stopping {
                    IO.close(fd)
                    continue
                }
                let connection = HTTPConnection(fd: fd, peer: peer.description, core: self)
                do {
                    try loop.register(fd: fd, interest: .readable, handler: connection)
                } catch {
                    IO.close(fd)
                    continue
                }
                connections[ObjectIdentifier(connection)] = connection
                connection.start()
            case .wouldBlock:
                return
            case .error(let code):
                if code == ECONNABORTED { continue }
                // EMFILE/ENFILE: the connection stays queued and the listener stays readable, so stop
                // watching it for a moment instead of spinning, then try again.
                backOffAccepting()
                return
            }
        }
    }

    private func backOffAccepting() {
        guard accepting, !listenerClosed else { return }
        // A failed pause leaves the listener watched: the next turn accepts (and backs off) again.
        do { try loop.setInterest(fd: listener.fd, []) } catch { return }
        resumeAccepting()
    }

    /// Watches the listener again after 100 ms; a failure is retried, since giving up would stop
    /// the server from accepting for good.
    private func resumeAccepting() {
        loop.schedule(after: .milliseconds(100)) { [weak self] in
            guard let self, self.accepting, !self.listenerClosed else { return }
            do {
                try self.loop.setInterest(fd: self.listener.fd, .readable)
            } catch {
                self.resumeAccepting()
            }
        }
    }

    func writable() {}
    func hangup() {}

    /// A connection closed itself. Loop thread only.
    func connectionClosed(_ connection: HTTPConnection) {
        connections[ObjectIdentifier(connection)] = nil
        if stopping { finishIfDrained() }
    }

    /// Stops accepting and asks every connection to finish; calls `done` once all are closed. Loop thread only.
    func beginShutdown(done: @escaping () -> Void) {
        stopping = true
        onStopped = done
        closeListener()
        for connection in Array(connections.values) { connection.serverStopping() }
        if !connections.isEmpty {
            shutdownTimer = loop.schedule(after: configuration.shutdownTimeout) { [weak self] in
                guard let self else { return }
                for connection in Array(self.connections.values) { connection.close() }
            }
        }
        finishIfDrained()
    }

    private func closeListener() {
        guard !listenerClosed else { return }
        listenerClosed = true
        if accepting { loop.deregister(fd: listener.fd) }
        accepting = false
        listener.close()
    }

    private func finishIfDrained() {
        guard connections.isEmpty, let done = onStopped else { return }
        onStopped = nil
        if let shutdownTimer { loop.cancel(shutdownTimer) }
        shutdownTimer = nil
        done()
    }
}
