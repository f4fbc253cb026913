import Testing
@testable import JetStream
import TestSupport

// Found by scripts/fuzz.sh jsstore: a message record after a skip (a removal past the last message)
// with a sequence at or below the skipped one was replayed into the index out of order, and the
// reopened store counted more messages than it could load.
@Suite struct FileStoreSkipRecoveryTests {
    @Test func aMessageAtOrBelowASkippedSequenceIsRefused() throws {
        let root = try temporaryDirectory("jsstore-skip")
        defer { removeTemporary(root) }
        // Messages 1 and 2, then 3 skipped (written as the removal of 3).
        let skipped = try StreamStore(directory: root + "/skipped", limits: StreamLimits(), now: 0)
        for i in 1...2 { try skipped.store(subject: "s", payload: [UInt8(i)], timestamp: Int64(i)) }
        #expect(try skipped.skip(timestamp: 3) == 3)
        skipped.close()
        // A store whose third message record (sequence 3) is appended after the skip.
        let plain = try StreamStore(directory: root + "/plain", limits: StreamLimits(), now: 0)
        for i in 1...3 { try plain.store(subject: "s", payload: [UInt8(i)], timestamp: Int64(i)) }
        plain.close()
        let records = try fileBytes(root + "/plain/1.blk")
        let third = records.suffix(records.count / 3)
        let block = try fileBytes(root + "/skipped/1.blk")
        try writeBytes(block + third, to: root + "/skipped/1.blk")

        #expect {
            try StreamStore(directory: root + "/skipped", limits: StreamLimits(), now: 0)
        } throws: { error in
            guard case StreamStoreError.corrupt(let file, let offset, _) = error else { return false }
            return file == root + "/skipped/1.blk" && offset == Int64(block.count)
        }
    }

    @Test func aMessageAfterASkipReopens() throws {
        let root = try temporaryDirectory("jsstore-skip")
        defer { removeTemporary(root) }
        let store = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        try store.store(subject: "s", payload: [1], timestamp: 1)
        #expect(try store.skip(timestamp: 2) == 2)
        #expect(try store.store(subject: "s", payload: [3], timestamp: 3) == 3)
        store.close()
        let reopened = try StreamStore(directory: root, limits: StreamLimits(), now: 0)
        defer { reopened.close() }
        #expect(reopened.state.messages == 2)
        #expect(reopened.state.lastSequence == 3)
        #expect(try reopened.load(3).payload == [3])
    }

    // Found by scripts/fuzz.sh jsstore: replay counted a skip with no message before it (the blocks
    // that held them unlinked) as a used sequence, the index did not, so the next message took a
    // sequence at or below the skip and the store no longer reopened.
    @Test func aSkipWithNoMessageBeforeItStaysUsed() throws {
        let root = try temporaryDirectory("jsstore-skip")
        defer { removeTemporary(root) }
        // Message 1, then 2 skipped (written as the removal of 2): keep only the removal's record.
        let source = try StreamStore(directory: root + "/source", limits: StreamLimits(), now: 0)
        try source.store(subject: "s", payload: [1], timestamp: 1)
        #expect(try source.skip(timestamp: 2) == 2)
        source.close()
        let removal = try fileBytes(root + "/source/1.blk").suffix(FileBackend.fixedSize)
        try BlockIO.makeDirectories(root + "/skip")
        try writeBytes(Array(removal), to: root + "/skip/1.blk")

        let store = try StreamStore(directory: root + "/skip", limits: StreamLimits(), now: 0)
        #expect(store.state.messages == 0)
        #expect(store.state.lastSequence == 2)
        #expect(try store.store(subject: "s", payload: [3], timestamp: 3) == 3)
        store.close()
        let reopened = try StreamStore(directory: root + "/skip", limits: StreamLimits(), now: 0)
        defer { reopened.close() }
        #expect(reopened.state.messages == 1)
        #expect(reopened.state.firstSequence == 3)
        #expect(try reopened.load(3).payload == [3])
    }
}
