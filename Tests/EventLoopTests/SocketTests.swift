import CSystem
import EventLoop
import Glibc
import Synchronization
import Testing

/// Echo server side of one connection: reads, queues into an OutboundBuffer, flushes at batch end,
/// and asks for writability only while bytes remain. Loop thread only after registration.
final class EchoConnection: IOHandler, @unchecked Sendable {
    let fd: Int32
    unowned let loop: EventLoop
    var input = ReadBuffer()
    var output = OutboundBuffer()
    let stats: EchoStats
    var closed = false

    init(fd: Int32, loop: EventLoop, stats: EchoStats) {
        self.fd = fd
        self.loop = loop
        self.stats = stats
    }

    func readable() {
        switch input.read(from: fd) {
        case .bytes:
            output.append(input.bytes)
            flush()
        case .wouldBlock:
            break
        case .eof, .error:
            close()
        }
    }

    func writable() { flush() }
    func hangup() { close() }

    func flush() {
        guard !closed, !output.isEmpty else { return }
        switch output.flush(to: fd) {
        case .done:
            try? loop.setInterest(fd: fd, .readable)
        case .partial:
            stats.partialFlushes.add(1, ordering: .relaxed)
            try? loop.setInterest(fd: fd, [.readable, .writable])
        case .error:
            close()
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        loop.deregister(fd: fd)
        IO.close(fd)
        stats.closed.add(1, ordering: .relaxed)
    }
}

final class EchoStats: Sendable {
    let accepted = Atomic<Int>(0)
    let partialFlushes = Atomic<Int>(0)
    let closed = Atomic<Int>(0)
    let peers = Mutex<[PeerAddress]>([])
}

/// Accepts connections and registers an EchoConnection for each. Loop thread only.
final class EchoAcceptor: IOHandler, @unchecked Sendable {
    let listener: Listener
    unowned let loop: EventLoop
    let stats: EchoStats

    init(listener: Listener, loop: EventLoop, stats: EchoStats) {
        self.listener = listener
        self.loop = loop
        self.stats = stats
    }

    func readable() {
        while case .accepted(let fd, let peer) = listener.accept() {
            stats.accepted.add(1, ordering: .relaxed)
            stats.peers.withLock { $0.append(peer) }
            try? loop.register(fd: fd, interest: .readable,
                               handler: EchoConnection(fd: fd, loop: loop, stats: stats))
        }
    }

    func writable() {}
    func hangup() {}
}

/// Starts an echo server on `host` port 0 inside `loop`; returns the bound port.
func startEcho(on loop: EventLoop, host: String, stats: EchoStats) throws -> Int {
    let listener = try Listener.bind(host: host, port: 0)
    let ok = onLoop(loop) { () -> Bool in
        (try? loop.register(fd: listener.fd, interest: .readable,
                            handler: EchoAcceptor(listener: listener, loop: loop, stats: stats))) != nil
    }
    #expect(ok == true)
    return listener.port
}

/// Blocking write of everything (the client socket is blocking).
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        offset += n
    }
    return true
}

@Suite struct SocketEchoTests {
    @Test func echoesEveryByteInOrderWhenTheReaderStartsLate() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let stats = EchoStats()
        let port = try startEcho(on: loop, host: "127.0.0.1", stats: stats)
        let client = try Socket.connect(host: "127.0.0.1", port: port, nonBlocking: false)
        defer { IO.close(client) }
        // Far more than the kernel's socket buffers on both sides, so the server's writes go partial.
        let total = 16 << 20
        let payload = patternBytes(count: total)
        let wrote = Atomic<Bool>(false)
        let writer = TestThread {
            let ok = payload.withUnsafeBytes { writeAll(client, $0) }
            wrote.store(ok, ordering: .relaxed)
        }
        writer.start()
        // The reader starts only once the server has hit a full socket at least once.
        #expect(eventually { stats.partialFlushes.load(ordering: .relaxed) > 0 })
        var received = [UInt8](repeating: 0, count: total)
        var got = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while got < total && ContinuousClock.now < deadline {
            let n = received.withUnsafeMutableBytes { Glibc.read(client, $0.baseAddress! + got, total - got) }
            if n <= 0 { break }
            got += n
        }
        writer.join()
        let allWritten = wrote.load(ordering: .relaxed)
        #expect(allWritten)
        #expect(got == total)
        let firstMismatch = firstDifference(received, payload)
        #expect(firstMismatch == nil, "first differing byte at \(firstMismatch ?? -1)")
        #expect(stats.accepted.load(ordering: .relaxed) == 1)
    }

    @Test func acceptReportsThePeerAddressAndIPv6Works() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let stats = EchoStats()
        let port = try startEcho(on: loop, host: "::1", stats: stats)
        let client = try Socket.connect(host: "::1", port: port, nonBlocking: false)
        defer { IO.close(client) }
        let message: [UInt8] = Array("ping over v6".utf8)
        #expect(message.withUnsafeBytes { writeAll(client, $0) })
        var reply = [UInt8](repeating: 0, count: message.count)
        var got = 0
        while got < reply.count {
            let n = reply.withUnsafeMutableBytes { Glibc.read(client, $0.baseAddress! + got, message.count - got) }
            if n <= 0 { break }
            got += n
        }
        #expect(reply == message)
        let local = try #require(Socket.localAddress(client))
        #expect(stats.peers.withLock { $0 } == [PeerAddress(ip: "::1", port: local.port)])
    }

    @Test func closingTheClientClosesTheServerSide() throws {
        let (group, loop) = try startedLoop()
        defer { group.shutdown() }
        let stats = EchoStats()
        let port = try startEcho(on: loop, host: "127.0.0.1", stats: stats)
        let client = try Socket.connect(host: "localhost", port: port)
        #expect(eventually { stats.accepted.load(ordering: .relaxed) == 1 })
        IO.close(client)
        #expect(eventually { stats.closed.load(ordering: .relaxed) == 1 })
    }

    @Test func bindingAPortInUseThrowsEADDRINUSE() throws {
        let first = try Listener.bind(host: "127.0.0.1", port: 0)
        defer { first.close() }
        #expect(throws: SystemError("bind", EADDRINUSE)) {
            _ = try Listener.bind(host: "127.0.0.1", port: first.port)
        }
        #expect(throws: AddressResolutionError.self) {
            _ = try Listener.bind(host: "no such host.invalid", port: 0)
        }
        #expect(throws: AddressResolutionError.self) {
            _ = try Socket.connect(host: "127.0.0.1", port: 70000)
        }
    }

    @Test func connectingToAClosedPortThrowsECONNREFUSED() throws {
        let listener = try Listener.bind(host: "127.0.0.1", port: 0)
        let port = listener.port
        listener.close()
        #expect(throws: SystemError("connect", ECONNREFUSED)) {
            _ = try Socket.connect(host: "127.0.0.1", port: port)
        }
    }

    @Test func acceptWithoutAPendingConnectionWouldBlock() throws {
        let listener = try Listener.bind(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        #expect(listener.accept() == .wouldBlock)
    }
}

@Suite struct IOTests {
    @Test func readReportsWouldBlockDataAndEOF() {
        let (a, b) = socketPair()
        defer { IO.close(a) }
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(buffer.withUnsafeMutableBytes { IO.read(a, into: $0) } == .wouldBlock)
        #expect([UInt8]([1, 2, 3]).withUnsafeBytes { IO.write(b, $0) } == .bytes(3))
        #expect(buffer.withUnsafeMutableBytes { IO.read(a, into: $0) } == .bytes(3))
        #expect(buffer.prefix(3) == [1, 2, 3])
        IO.close(b)
        #expect(buffer.withUnsafeMutableBytes { IO.read(a, into: $0) } == .eof)
    }

    @Test func writingToAClosedPeerReturnsEPIPEInsteadOfRaisingSIGPIPE() {
        let (a, b) = socketPair()
        defer { IO.close(a) }
        IO.close(b)
        #expect([UInt8]([1]).withUnsafeBytes { IO.write(a, $0) } == .error(EPIPE))
    }

    @Test func writevFallsBackToWriteOnAPipe() {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { IO.close(fds[0]) }
        let parts: [[UInt8]] = [[1, 2], [3], [4, 5, 6]]
        var buffer = OutboundBuffer()
        for part in parts { buffer.append(part) }
        #expect(buffer.flush(to: fds[1]) == .done)
        IO.close(fds[1])
        var out = [UInt8](repeating: 0, count: 16)
        #expect(out.withUnsafeMutableBytes { IO.read(fds[0], into: $0) } == .bytes(6))
        #expect(out.prefix(6) == [1, 2, 3, 4, 5, 6])
    }

    @Test func readBufferGrowsWhenReadsFillItAndShrinksAfterShortReads() throws {
        let (a, b) = socketPair()
        defer { IO.close(a); IO.close(b) }
        var buffer = ReadBuffer()
        #expect(buffer.capacity == ReadBuffer.startSize)
        let big = [UInt8](repeating: 7, count: 200_000)
        var sent = 0
        var capacities: [Int] = []
        var received = 0
        while received < big.count {
            if sent < big.count {
                if case .bytes(let n) = big[sent...].withUnsafeBytes({ IO.write(b, $0) }) { sent += n }
            }
            if case .bytes(let n) = buffer.read(from: a) {
                capacities.append(buffer.capacity)
                #expect(n <= buffer.capacity)
                received += n
            }
        }
        #expect(capacities.first == 512)
        #expect(capacities.contains(1024))
        #expect(capacities.max() == ReadBuffer.maximumSize)
        #expect(buffer.capacity == ReadBuffer.maximumSize)
        // A full read resets the short-read count (retried: the kernel may split a 64 KiB write).
        let block = [UInt8](repeating: 3, count: ReadBuffer.maximumSize)
        var sawFullRead = false
        for _ in 0..<20 where !sawFullRead {
            #expect(block.withUnsafeBytes { IO.write(b, $0) } == .bytes(block.count))
            var got = 0
            while got < block.count {
                if case .bytes(let n) = buffer.read(from: a) {
                    if got == 0 && n == block.count { sawFullRead = true }
                    got += n
                }
            }
        }
        try #require(sawFullRead)
        // Three short reads are tolerated; after that every short read halves it, down to the minimum.
        var shrinks: [Int] = []
        for _ in 0..<40 {
            _ = [UInt8]([1]).withUnsafeBytes { IO.write(b, $0) }
            if case .bytes(1) = buffer.read(from: a) { shrinks.append(buffer.capacity) }
        }
        #expect(shrinks.count == 40)
        #expect(shrinks.prefix(3).allSatisfy { $0 == ReadBuffer.maximumSize })
        #expect(shrinks[3] == ReadBuffer.maximumSize / 2)
        #expect(shrinks.last == ReadBuffer.minimumSize)
        #expect(zip(shrinks, shrinks.dropFirst()).allSatisfy { $0.1 <= $0.0 })
    }

    @Test func aReadBufferGrowsToTheMaximumItWasGivenAndNoFurther() throws {
        let (a, b) = socketPair()
        defer { IO.close(a); IO.close(b) }
        var buffer = ReadBuffer(maximum: 256 * 1024)
        let big = [UInt8](repeating: 9, count: 2_000_000)
        var sent = 0
        var received = 0
        var largest = 0
        while received < big.count {
            if sent < big.count {
                if case .bytes(let n) = big[sent...].withUnsafeBytes({ IO.write(b, $0) }) { sent += n }
            }
            if case .bytes(let n) = buffer.read(from: a) {
                largest = max(largest, buffer.capacity)
                #expect(n <= buffer.capacity)
                received += n
            }
        }
        #expect(largest == 256 * 1024)
        #expect(ReadBuffer(maximum: 10).maximum == ReadBuffer.startSize)
    }
}

@Suite struct FileDescriptorTests {
    /// A socket pair's other end reports EPIPE (sendmsg, no SIGPIPE) once this end is closed.
    func readEndIsClosed(_ writeEnd: Int32) -> Bool {
        [UInt8]([1]).withUnsafeBytes { IO.write(writeEnd, $0) } == .error(EPIPE)
    }

    func makePipe() -> (read: Int32, write: Int32) {
        let (a, b) = socketPair()
        return (a, b)
    }

    @Test func droppingTheOwnerClosesTheDescriptor() {
        let p = makePipe()
        defer { IO.close(p.write) }
        do {
            let owner = FileDescriptor(p.read)
            #expect(owner.rawValue == p.read)
            #expect(!readEndIsClosed(p.write))
        }
        #expect(readEndIsClosed(p.write))
    }

    @Test func closeClosesAndReleaseHandsOwnershipBack() {
        let a = makePipe()
        defer { IO.close(a.write) }
        FileDescriptor(a.read).close()
        #expect(readEndIsClosed(a.write))

        let b = makePipe()
        defer { IO.close(b.write) }
        let raw = FileDescriptor(b.read).release()
        #expect(raw == b.read)
        #expect(!readEndIsClosed(b.write))
        IO.close(raw)
        #expect(readEndIsClosed(b.write))
    }
}
