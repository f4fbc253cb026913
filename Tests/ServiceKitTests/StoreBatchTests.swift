import Foundation
import Testing
import TestSupport
@testable import ServiceKit

/// `KeyValueStore.write`: many changes, one fsync; all of them durable when it returns, none of
/// them applied when it fails.
@Suite struct StoreBatchTests {
    @Test func aBatchIsAppliedInOrderAndReopensIntact() throws {
        let dir = try temporaryDirectory("kv-batch")
        defer { removeTemporary(dir) }
        let store = try KeyValueStore(directory: dir, name: "notifications")
        try store.put("n/0", Array("zero".utf8))
        let last = try store.write([
            .put("n/1", Array("one".utf8)),
            .put("n/2", Array("two".utf8)),
            .delete("n/0"),
            .put("n/1", Array("one, again".utf8)),
            .delete("never-written"),
        ])
        #expect(last == 6)
        #expect(store.lastSequence == 6)
        #expect(store.get("n/0") == nil)
        #expect(store.get("n/1") == Array("one, again".utf8))
        #expect(store.scan(prefix: "n/").map(\.key) == ["n/1", "n/2"])
        #expect(try store.write([]) == 0)
        #expect(store.lastSequence == 6)
        store.close()

        let reopened = try KeyValueStore(directory: dir, name: "notifications")
        #expect(reopened.recovery == RecoveryReport(records: 6, truncatedBytes: 0, truncatedAt: nil))
        #expect(reopened.lastSequence == 6)
        #expect(reopened.get("n/0") == nil)
        #expect(reopened.get("n/1") == Array("one, again".utf8))
        #expect(reopened.get("n/2") == Array("two".utf8))
        #expect(reopened.count == 2)
        // Numbering goes on after the batch.
        #expect(try reopened.put("n/3", Array("three".utf8)) == 7)
    }

    @Test func batchesFromManyTasksAtOnceAreAllKeptWithDistinctSequences() async throws {
        let dir = try temporaryDirectory("kv-batch-concurrent")
        defer { removeTemporary(dir) }
        let store = try KeyValueStore(directory: dir, name: "events")
        let lasts = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    try await offPool {
                        var last: UInt64 = 0
                        for round in 0..<10 {
                            last = try store.write((0..<5).map { .put("w\(writer)/r\(round)/\($0)", Array("\(writer).\(round).\($0)".utf8)) })
                        }
                        return last
                    }
                }
            }
            var lasts: [UInt64] = []
            for try await last in group { lasts.append(last) }
            return lasts
        }
        #expect(Set(lasts).count == 8)
        #expect(store.lastSequence == 400)
        #expect(store.count == 400)
        store.close()

        let reopened = try KeyValueStore(directory: dir, name: "events")
        #expect(reopened.count == 400)
        #expect(reopened.lastSequence == 400)
        for writer in 0..<8 {
            for round in 0..<10 {
                for i in 0..<5 {
                    #expect(reopened.get("w\(writer)/r\(round)/\(i)") == Array("\(writer).\(round).\(i)".utf8))
                }
            }
        }
    }

    @Test func aFailedBatchAppliesNothingInMemoryOrOnDisk() throws {
        let dir = try temporaryDirectory("kv-batch-fail")
        defer { removeTemporary(dir) }
        let options = StoreOptions(maxRecordSize: 64)
        let store = try KeyValueStore(directory: dir, name: "jobs", options: options)
        try store.put("job/1", Array("queued".utf8))

        // The last change is too large: the ones before it must not be applied either.
        #expect(throws: StoreError.recordTooLarge(size: 1 + 4 + 5 + 100, limit: 64)) {
            try store.write([.put("job/1", Array("done".utf8)), .delete("job/1"), .put("job/2", [UInt8](repeating: 1, count: 100))])
        }
        #expect(store.get("job/1") == Array("queued".utf8))
        #expect(store.get("job/2") == nil)
        #expect(store.lastSequence == 1)

        // The store stays usable, and the next batch gets the next sequence numbers.
        #expect(try store.write([.put("job/1", Array("done".utf8)), .put("job/2", Array("queued".utf8))]) == 3)
        store.close()
        #expect(throws: StoreError.closed) { try store.write([.delete("job/1")]) }
        #expect(store.get("job/1") == Array("done".utf8))

        let reopened = try KeyValueStore(directory: dir, name: "jobs", options: options)
        #expect(reopened.recovery.records == 3)
        #expect(reopened.get("job/1") == Array("done".utf8))
        #expect(reopened.get("job/2") == Array("queued".utf8))
    }
}
