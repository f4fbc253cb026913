import CSystem
import EventLoop
import Glibc
import Synchronization
import Testing
import TestSupport

/// The bytes the iovecs point at, concatenated.
func gather(_ iov: [iovec]) -> [UInt8] {
    var out: [UInt8] = []
    for v in iov {
        out.append(contentsOf: UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len))
    }
    return out
}

@Suite struct OutboundBufferTests {
    @Test(arguments: [1 as UInt64, 42, 0xDEAD_BEEF])
    func randomAppendSnapshotConsumeMatchesAReferenceQueue(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var buffer = OutboundBuffer()
        var model: [UInt8] = []
        var modelHead = 0
        var iov: [iovec] = []
        var counter = 0
        // Stream ranges of appends larger than a chunk (each lives in one chunk of its own size),
        // and the stream offset consumed so far.
        var largeAppends: [Range<Int>] = []
        var consumedOffset = 0
        for _ in 0..<3000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                // Mostly small appends, sometimes bigger than a chunk.
                let size = Int.random(in: 0..<10, using: &rng) == 0
                    ? Int.random(in: 0...200_000, using: &rng) : Int.random(in: 0...300, using: &rng)
                let bytes = patternBytes(count: size, offset: counter)
                if size > OutboundBuffer.chunkSize {
                    // It fills the current tail first, at most one chunk's worth.
                    largeAppends.append(counter..<(counter + size))
                }
                counter &+= size
                buffer.append(bytes)
                model.append(contentsOf: bytes)
            case 5:
                let byte = UInt8.random(in: 0...255, using: &rng)
                buffer.append(byte: byte)
                model.append(byte)
                counter &+= 1
            default:
                let maxVectors = Int.random(in: 1...8, using: &rng)
                let n = buffer.snapshotIOVecs(into: &iov, maxVectors: maxVectors)
                #expect(n == iov.count && n <= maxVectors)
                let snap = gather(iov)
                #expect(snap.count <= buffer.pendingBytes)
                #expect(firstDifference(snap, Array(model[modelHead..<(modelHead + snap.count)])) == nil)
                if buffer.pendingBytes > 0 { #expect(n > 0) }
                let take = snap.isEmpty ? 0 : Int.random(in: 0...snap.count, using: &rng)
                buffer.consume(take)
                modelHead += take
                consumedOffset += take
            }
            #expect(buffer.pendingBytes == model.count - modelHead)
            // Bounded memory: pending bytes plus a partly sent head, the tail's room and one spare; an
            // oversized chunk cannot shrink, so its already-sent part still counts while it is the head.
            let straddling = largeAppends.first { $0.lowerBound < consumedOffset && consumedOffset < $0.upperBound }
            let sentOfOversized = straddling.map { consumedOffset - $0.lowerBound } ?? 0
            #expect(buffer.allocatedBytes
                    <= buffer.pendingBytes + 3 * OutboundBuffer.chunkSize + sentOfOversized)
            if modelHead > 1 << 20 {
                model.removeFirst(modelHead)
                modelHead = 0
            }
        }
        // Drain and compare the rest.
        var rest: [UInt8] = []
        while buffer.pendingBytes > 0 {
            buffer.snapshotIOVecs(into: &iov)
            let snap = gather(iov)
            rest += snap
            buffer.consume(snap.count)
        }
        #expect(rest[...] == model[modelHead...])
        #expect(buffer.chunkCount <= 1)
        #expect(buffer.allocatedBytes <= OutboundBuffer.chunkSize)
    }

    @Test func snapshotPointersStayValidWhileMoreIsAppended() {
        var buffer = OutboundBuffer()
        let first = patternBytes(count: 100_000)
        buffer.append(first)
        var iov: [iovec] = []
        buffer.snapshotIOVecs(into: &iov)
        let bases = iov.map { $0.iov_base }
        // Fill the partly used tail chunk and add several more chunks, including a large append.
        for round in 0..<20 {
            buffer.append(patternBytes(count: 7_777, offset: round))
        }
        buffer.append([UInt8](repeating: 0xAB, count: 1 << 20))
        #expect(gather(iov) == first)
        var again: [iovec] = []
        buffer.snapshotIOVecs(into: &again)
        #expect(Array(again.prefix(bases.count).map { $0.iov_base }) == bases)
        buffer.consume(first.count)
        #expect(buffer.pendingBytes == 20 * 7_777 + (1 << 20))
    }

    @Test func aLargeAppendIsOneVectorNotManySmallOnes() {
        var buffer = OutboundBuffer()
        buffer.append(byte: 1)
        buffer.append([UInt8](repeating: 2, count: 1 << 20))
        var iov: [iovec] = []
        let n = buffer.snapshotIOVecs(into: &iov)
        // The tail of the first chunk is filled, then the rest goes into one chunk of its own.
        #expect(n == 2)
        #expect(iov.map { $0.iov_len }.reduce(0, +) == 1 + (1 << 20))
    }

    @Test func consumedChunksAreReleasedAndADrainedBufferKeepsOneChunk() {
        var buffer = OutboundBuffer()
        for _ in 0..<10 { buffer.append([UInt8](repeating: 9, count: OutboundBuffer.chunkSize)) }
        #expect(buffer.allocatedBytes >= 10 * OutboundBuffer.chunkSize)
        // Partly consumed: the emptied chunks are freed except one spare.
        buffer.consume(5 * OutboundBuffer.chunkSize)
        #expect(buffer.allocatedBytes <= buffer.pendingBytes + 3 * OutboundBuffer.chunkSize)
        buffer.consume(buffer.pendingBytes)
        #expect(buffer.pendingBytes == 0)
        #expect(buffer.chunkCount == 1)
        #expect(buffer.allocatedBytes <= OutboundBuffer.chunkSize)
        buffer.removeAll()
        #expect(buffer.chunkCount == 0)
        #expect(buffer.allocatedBytes == 0)
    }

    @Test func aBufferThatOnlySendsSmallBurstsStaysSmall() {
        var buffer = OutboundBuffer()
        for _ in 0..<1000 {
            buffer.append(Array("MSG foo 1 5\r\nhello\r\n".utf8))
            buffer.consume(buffer.pendingBytes)
        }
        #expect(buffer.allocatedBytes == OutboundBuffer.initialChunkSize)
    }

    @Test func copiesAreIndependentValues() {
        var a = OutboundBuffer()
        a.append([1, 2, 3])
        var b = a
        b.append([4])
        a.consume(1)
        var iov: [iovec] = []
        a.snapshotIOVecs(into: &iov)
        #expect(gather(iov) == [2, 3])
        b.snapshotIOVecs(into: &iov)
        #expect(gather(iov) == [1, 2, 3, 4])
    }

    @Test func flushStopsAtAFullSocketAndResumesWhereItLeftOff() {
        let (a, b) = socketPair()
        defer { IO.close(a); IO.close(b) }
        var buffer = OutboundBuffer()
        let payload = patternBytes(count: 8 << 20)
        buffer.append(payload)
        guard case .partial(let remaining) = buffer.flush(to: a) else {
            Issue.record("an 8 MiB flush into an unread socket pair should be partial")
            return
        }
        #expect(remaining == buffer.pendingBytes && remaining > 0)
        var received: [UInt8] = []
        received.reserveCapacity(payload.count)
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = ContinuousClock.now + .seconds(60)
        while received.count < payload.count && ContinuousClock.now < deadline {
            _ = buffer.flush(to: a)
            if case .bytes(let n) = chunk.withUnsafeMutableBytes({ IO.read(b, into: $0) }) {
                chunk.withUnsafeBytes { received.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
        }
        #expect(buffer.flush(to: a) == .done)
        #expect(firstDifference(received, payload) == nil)
    }
}

@Suite struct OutboundBufferConcurrencyTests {
    /// Record: producer id (1 byte), sequence (4 bytes LE), payload length (4 bytes LE), payload.
    static func record(producer: UInt8, seq: UInt32, length: Int) -> [UInt8] {
        var out: [UInt8] = [producer]
        withUnsafeBytes(of: seq.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(length).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: patternBytes(count: length, offset: Int(seq) &* 7 &+ Int(producer)))
        return out
    }

    @Test func producersAppendWhileAFlusherWritesOutsideTheLock() throws {
        let (writeEnd, readEnd) = socketPair()
        defer { IO.close(writeEnd); IO.close(readEnd) }
        let buffer = Mutex(OutboundBuffer())
        let producers = 3
        let perProducer = 3000
        let producing = Atomic<Int>(producers)
        let threads = (0..<producers).map { p in
            TestThread {
                var rng = SeededGenerator(seed: UInt64(p + 1))
                for seq in 0..<perProducer {
                    let length = Int.random(in: 0..<50, using: &rng) == 0
                        ? Int.random(in: 65_000...150_000, using: &rng) : Int.random(in: 0...200, using: &rng)
                    let bytes = Self.record(producer: UInt8(p), seq: UInt32(seq), length: length)
                    bytes.withUnsafeBytes { raw in buffer.withLock { $0.append(raw) } }
                }
                producing.subtract(1, ordering: .releasing)
            }
        }
        let flusher = TestThread {
            var iov: [iovec] = []
            while true {
                let count = buffer.withLock { $0.snapshotIOVecs(into: &iov) }
                if count == 0 {
                    if producing.load(ordering: .acquiring) == 0 && buffer.withLock({ $0.isEmpty }) { break }
                    sched_yield()
                    continue
                }
                // The lock is not held here: producers keep appending while the kernel copies.
                let result = iov.withUnsafeBufferPointer { IO.writev(writeEnd, $0.baseAddress!, count: count) }
                switch result {
                case .bytes(let n): buffer.withLock { $0.consume(n) }
                case .wouldBlock: sched_yield()
                default: return
                }
            }
            shutdown(writeEnd, Int32(SHUT_WR))
        }
        // Reader: parse records and check each producer's sequence and payload.
        let failures = Mutex<[String]>([])
        let received = Atomic<Int>(0)
        let reader = TestThread {
            var pending: [UInt8] = []
            var nextSeq = [UInt32](repeating: 0, count: producers)
            var chunk = [UInt8](repeating: 0, count: 65536)
            loop: while true {
                switch chunk.withUnsafeMutableBytes({ IO.read(readEnd, into: $0) }) {
                case .bytes(let n): pending.append(contentsOf: chunk[0..<n])
                case .wouldBlock: sched_yield(); continue loop
                case .eof, .error: break loop
                }
                var offset = 0
                while pending.count - offset >= 9 {
                    let p = Int(pending[offset])
                    let seq = pending[(offset + 1)..<(offset + 5)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                    let len = Int(pending[(offset + 5)..<(offset + 9)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
                    guard pending.count - offset >= 9 + len else { break }
                    if p >= producers || seq != nextSeq[p] {
                        failures.withLock { $0.append("producer \(p): got seq \(seq)") }
                        return
                    }
                    let expected = Self.record(producer: UInt8(p), seq: seq, length: len)
                    if Array(pending[offset..<(offset + 9 + len)]) != expected {
                        failures.withLock { $0.append("producer \(p) seq \(seq): payload differs") }
                        return
                    }
                    nextSeq[p] += 1
                    received.add(1, ordering: .relaxed)
                    offset += 9 + len
                }
                pending.removeFirst(offset)
            }
        }
        reader.start()
        flusher.start()
        threads.forEach { $0.start() }
        threads.forEach { $0.join() }
        flusher.join()
        reader.join()
        #expect(failures.withLock { $0 } == [])
        #expect(received.load(ordering: .relaxed) == producers * perProducer)
    }
}
