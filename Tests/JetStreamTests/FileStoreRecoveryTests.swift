import Foundation
import Testing
@testable import JetStream
import TestSupport

func blockFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".blk") }.sorted {
        Int($0.dropLast(4))! < Int($1.dropLast(4))!
    }
}

func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
func writeBytes(_ bytes: [UInt8], to path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

/// Copies the block files of `from` into a new directory `to` (what a crash would leave on disk).
func copyBlocks(from: String, to: String) throws {
    try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: true)
    for name in try blockFiles(from) { try writeBytes(try fileBytes(from + "/" + name), to: to + "/" + name) }
}

/// Everything the store reports, for comparing a store with its reopened self.
func snapshot(_ store: StreamStore) throws -> (StreamState, [StoredMessage], [String: UInt64]) {
    let state = store.state
    var messages: [StoredMessage] = []
    if state.messages > 0 {
        for seq in state.firstSequence...state.lastSequence {
            if let m = try? store.load(seq) { messages.append(m) }
        }
    }
    return (state, messages, store.subjectCounts())
}

@Suite struct FileStoreRecoveryTests {
    @Test func reopeningRestoresMessagesRemovalsAndPurges() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let dir = root + "/s"
        let limits = StreamLimits(maxMessagesPerSubject: 3)
        let store = try StreamStore(directory: dir, limits: limits, now: 0)
        for i in 1...20 {
            try store.store(subject: "k.\(i % 4)", headers: i % 3 == 0 ? Array("NATS/1.0\r\n\r\n".utf8) : [],
                            payload: Array("v\(i)".utf8), timestamp: Int64(i))
        }
        try store.remove(15)
        try store.remove(10)
        _ = try store.purge(subject: "k.1", keep: 1)
        let before = try snapshot(store)
        store.close()

        let reopened = try StreamStore(directory: dir, limits: limits, now: 0)
        defer { reopened.close() }
        let after = try snapshot(reopened)
        #expect(after.0 == before.0)
        #expect(after.1 == before.1)
        #expect(after.2 == before.2)
        #expect(try reopened.store(subject: "k.9", payload: [1], timestamp: 21) == 21)
    }

    @Test func anEmptiedStreamKeepsItsSequenceAcrossRestarts() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let store = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        for i in 1...5 { try store.store(subject: "s", payload: [UInt8(i)], timestamp: Int64(i * 10)) }
        _ = try store.compact(below: 42)
        store.close()
        let reopened = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        defer { reopened.close() }
        let state = reopened.state
        #expect(state.messages == 0 && state.firstSequence == 42 && state.lastSequence == 41 && state.lastTime == 50)
        #expect(try reopened.store(subject: "s", payload: [], timestamp: 60) == 42)
    }

    @Test func aTornTailIsCutAtEveryByteOfTheLastRecord() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let source = root + "/source"
        let store = try StreamStore(directory: source, limits: StreamLimits(), now: 0)
        for i in 1...4 { try store.store(subject: "s.\(i)", payload: Array("payload \(i)".utf8), timestamp: Int64(i)) }
        let lastHeaders = Array("NATS/1.0\r\nX: y\r\n\r\n".utf8)
        let lastSize = store.messageSize(subject: "torn", headers: lastHeaders, payload: Array("last one".utf8))
        try store.store(subject: "torn", headers: lastHeaders, payload: Array("last one".utf8), timestamp: 5)
        store.close()
        let whole = try fileBytes(source + "/1.blk")
        let start = whole.count - Int(lastSize)

        for cut in start..<whole.count {
            let dir = root + "/cut\(cut)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try writeBytes(Array(whole[0..<cut]), to: dir + "/1.blk")
            let reopened = try StreamStore(directory: dir, limits: StreamLimits(), now: 0)
            let state = reopened.state
            #expect(state.messages == 4 && state.lastSequence == 4, "cut at \(cut)")
            #expect(try fileBytes(dir + "/1.blk").count == start, "cut at \(cut)")
            #expect(try reopened.store(subject: "again", payload: [7], timestamp: 6) == 5, "cut at \(cut)")
            reopened.close()
            let again = try StreamStore(directory: dir, limits: StreamLimits(), now: 0)
            #expect(try again.load(5).subject == "again", "cut at \(cut)")
            #expect(try again.load(4).payload == Array("payload 4".utf8), "cut at \(cut)")
            again.close()
            removeTemporary(dir)
        }
    }

    @Test func aDamagedRecordFollowedByIntactOnesIsRefusedNamingTheFile() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let store = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        var offsets: [Int] = []
        var offset = 0
        for i in 1...5 {
            offsets.append(offset)
            let payload = Array("payload \(i)".utf8)
            offset += Int(store.messageSize(subject: "s", headers: [], payload: payload))
            try store.store(subject: "s", payload: payload, timestamp: Int64(i))
        }
        store.close()
        let path = root + "/1.blk"
        var bytes = try fileBytes(path)
        bytes[offsets[3] - 1] ^= 0x40  // the last byte of record 3's checksum
        try writeBytes(bytes, to: path)
        #expect {
            try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        } throws: { error in
            guard case StreamStoreError.corrupt(let file, let at, _) = error else { return false }
            return file == path && at == Int64(offsets[2])
        }
        // A payload byte flipped in the middle is found the same way.
        bytes[offsets[3] - 1] ^= 0x40
        bytes[offsets[1] + 25] ^= 0x01
        try writeBytes(bytes, to: path)
        #expect(throws: StreamStoreError.self) { try StreamStore(directory: root, limits: StreamLimits(), now: 0) }
    }

    @Test func anUnusableDirectoryIsAnErrorNamingThePath() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        try writeBytes([1, 2, 3], to: root + "/file")
        #expect(throws: StreamStoreError.io(operation: "mkdir", path: root + "/file", errno: ENOTDIR)) {
            try StreamStore(directory: root + "/file/stream", limits: StreamLimits(), now: 0)
        }
        // A block that cannot be read as a block: a directory in its place.
        try FileManager.default.createDirectory(atPath: root + "/s/1.blk", withIntermediateDirectories: true)
        #expect(throws: StreamStoreError.io(operation: "open", path: root + "/s/1.blk", errno: EISDIR)) {
            try StreamStore(directory: root + "/s", limits: StreamLimits(), now: 0)
        }
    }

    @Test func blocksRotateAndEmptiedFrontBlocksAreDeleted() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let options = FileStoreOptions(blockSize: 256)
        let store = try StreamStore(directory: root, limits: StreamLimits(), options: options, now: 0)
        for i in 1...40 { try store.store(subject: "s.\(i % 3)", payload: Array(repeating: UInt8(i), count: 40), timestamp: Int64(i)) }
        #expect(try blockFiles(root).count > 5)
        try store.remove(2)  // an interior removal in an early block
        _ = try store.purge(upTo: 35)
        let before = try snapshot(store)
        #expect(try blockFiles(root).count <= 3)
        store.close()
        let reopened = try StreamStore(directory: root, limits: StreamLimits(), options: options, now: 0)
        defer { reopened.close() }
        let after = try snapshot(reopened)
        #expect(after.0 == before.0 && after.1 == before.1)
        #expect(try reopened.load(35).payload == Array(repeating: 35, count: 40))
    }

    @Test func limitRemovalsNotYetWrittenAreRedoneAfterACrash() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let limits = StreamLimits(maxMessages: 3, maxMessagesPerSubject: 2)
        let store = try StreamStore(directory: root + "/live", limits: limits, now: 0)
        defer { store.close() }
        for i in 1...10 { try store.store(subject: "s.\(i % 2)", payload: [UInt8(i)], timestamp: Int64(i)) }
        try store.remove(9)
        try store.store(subject: "s.0", payload: [11], timestamp: 11)
        // The last store's limit removals are only in memory; the copy is what a crash leaves.
        try copyBlocks(from: root + "/live", to: root + "/crashed")
        let recovered = try StreamStore(directory: root + "/crashed", limits: limits, now: 0)
        defer { recovered.close() }
        let live = try snapshot(store), after = try snapshot(recovered)
        #expect(after.0 == live.0 && after.1 == live.1 && after.2 == live.2)
    }

    @Test func maxAgeIsEnforcedWhenOpening() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let limits = StreamLimits(maxAge: 1_000)
        let store = try StreamStore(directory: root, limits: limits, now: 0)
        for i in 1...5 { try store.store(subject: "s", payload: [UInt8(i)], timestamp: Int64(i) * 100) }
        store.close()
        let reopened = try StreamStore(directory: root, limits: limits, now: 1_300)
        defer { reopened.close() }
        #expect(reopened.state.messages == 2 && reopened.state.firstSequence == 4)
    }

    @Test func syncEveryWriteStoresAsUsual() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let store = try StreamStore(directory: root, limits: StreamLimits(),
                                    options: FileStoreOptions(syncEveryWrite: true), now: 0)
        try store.store(subject: "s", payload: [1], timestamp: 1)
        try store.sync()
        try store.syncIfDue()
        store.close()
        let reopened = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        defer { reopened.close() }
        #expect(try reopened.load(1).payload == [1])
    }

    @Test func aTornRemovalRecordIsCutAndTheMessageComesBack() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let source = root + "/source"
        let store = try StreamStore(directory: source, limits: StreamLimits(), now: 0)
        for i in 1...3 { try store.store(subject: "s", payload: [UInt8(i)], timestamp: Int64(i)) }
        try store.remove(2)  // the last write: one 30-byte removal record
        store.close()
        let whole = try fileBytes(source + "/1.blk")
        let start = whole.count - 30
        for cut in start..<whole.count {
            let dir = root + "/cut\(cut)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try writeBytes(Array(whole[0..<cut]), to: dir + "/1.blk")
            let reopened = try StreamStore(directory: dir, limits: StreamLimits(), now: 0)
            #expect(reopened.state.messages == 3, "cut at \(cut)")
            #expect(try reopened.load(2).payload == [2], "cut at \(cut)")
            #expect(try fileBytes(dir + "/1.blk").count == start, "cut at \(cut)")
            reopened.close()
            removeTemporary(dir)
        }
        let intact = try StreamStore(directory: source, limits: StreamLimits(), now: 0)
        defer { intact.close() }
        #expect(throws: StreamStoreError.notFound) { try intact.load(2) }
    }

    @Test func damageInABlockThatIsNotTheLastIsRefused() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let options = FileStoreOptions(blockSize: 200)
        let store = try StreamStore(directory: root, limits: StreamLimits(), options: options, now: 0)
        for i in 1...20 { try store.store(subject: "s", payload: Array(repeating: UInt8(i), count: 30), timestamp: Int64(i)) }
        store.close()
        #expect(try blockFiles(root).count > 2)
        // A cut tail in the first block is not a crash artefact: later blocks were written after it.
        let first = root + "/1.blk"
        let bytes = try fileBytes(first)
        try writeBytes(Array(bytes.dropLast(3)), to: first)
        #expect {
            try StreamStore(directory: root, limits: StreamLimits(), options: options, now: 0)
        } throws: { error in
            guard case StreamStoreError.corrupt(let file, _, _) = error else { return false }
            return file == first
        }
    }

    @Test func damageFoundWhenLoadingIsReportedNotReturned() throws {
        let root = try temporaryDirectory("jsstore")
        defer { removeTemporary(root) }
        let store = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        defer { store.close() }
        try store.store(subject: "s", payload: Array("intact".utf8), timestamp: 1)
        try store.sync()
        var bytes = try fileBytes(root + "/1.blk")
        bytes[24] ^= 0xFF  // the first payload byte ("s" is one byte at offset 22, payload from 23)
        bytes[23] ^= 0xFF
        try writeBytes(bytes, to: root + "/1.blk")
        #expect {
            try store.load(1)
        } throws: { error in
            guard case StreamStoreError.corrupt(let file, let offset, _) = error else { return false }
            return file == root + "/1.blk" && offset == 0
        }
    }
}
