// A connection whose epoll registration cannot be changed is closed with the reason logged, not
// left waiting for events it will never get (a paused publisher would never be read again).

import Glibc
import Synchronization
import Testing
@testable import NATSServer

@Suite("Failed event registration")
struct EventRegistrationFailureTests {
    /// Runs `body` on `connection`'s loop thread and waits for it.
    private func onLoop(of connection: ClientConnection, _ body: @escaping @Sendable () -> Void) throws {
        let done = Flag()
        connection.context.loop.execute {
            body()
            done.set()
        }
        try #require(eventually { done.isSet })
    }

    @Test func aPublisherWhoseReadsCannotResumeIsClosedNotLeftPaused() throws {
        let broker = try TestBroker { $0.eventLoopCount = 1 }
        let client = try broker.connected()
        let core = try #require(broker.server.runningBroker)
        let connection = try #require(core.connections.withLock { $0.values.first })
        let cid = connection.cid
        try onLoop(of: connection) {
            // Paused as a fast-producer stall pauses it.
            connection.readPaused = true
            _ = connection.setInterest([], orClose: .readError)
            replaceWithUnwatchedDescriptor(connection.fd)
            connection.resumeReading()
        }
        #expect(eventually { core.connections.withLock { $0[cid] == nil } })
        let closed = core.closedConnections.all().first { $0.cid == cid }
        #expect(closed?.reason == "Read Error")
        _ = client
    }

    @Test func aConnectionThatCannotWaitForWritableIsClosedAsAWriteError() throws {
        let broker = try TestBroker { $0.eventLoopCount = 1 }
        let client = try broker.connected()
        let core = try #require(broker.server.runningBroker)
        let connection = try #require(core.connections.withLock { $0.values.first })
        let cid = connection.cid
        try onLoop(of: connection) {
            replaceWithUnwatchedDescriptor(connection.fd)
            connection.waitForWritable()
        }
        #expect(eventually { core.connections.withLock { $0[cid] == nil } })
        let closed = core.closedConnections.all().first { $0.cid == cid }
        #expect(closed?.reason == "Write Error")
        _ = client
    }
}

/// Puts a pipe, which epoll does not watch, under the socket's descriptor number: the next
/// epoll_ctl(MOD) on it fails (ENOENT), as a failing one would in production, and the socket
/// itself is closed.
private func replaceWithUnwatchedDescriptor(_ fd: Int32) {
    var ends: [Int32] = [-1, -1]
    guard pipe(&ends) == 0 else { return }
    _ = dup2(ends[0], fd)
    _ = close(ends[0])
    _ = close(ends[1])
}

/// A one-shot flag set on one thread and polled on another.
private final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
