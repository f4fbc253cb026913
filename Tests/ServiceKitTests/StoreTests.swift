import Foundation
import Testing
@testable import ServiceKit
import TestSupport

/// Opens the raw log at `path`, returning its records.
func readLog(_ path: String, options: StoreOptions = StoreOptions()) throws -> (log: AppendLog, records: [(UInt64, [UInt8])]) {
    var records: [(UInt64, [UInt8])] = []
    let log = try AppendLog(path: path, options: options) { records.append(($0, $1)) }
    return (log, records)
}

func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
func writeBytes(_ bytes: [UInt8], to path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

@Suite struct AppendLogTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func appendedRecordsComeBackInOrderAfterReopen() throws {
        let dir = try temporaryDirectory("log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/a.log"
        let (log, empty) = try readLog(path)
        #expect(empty.isEmpty && log.lastSequence == 0)
        #expect(try log.append(Array("one".utf8)) == 1)
        #expect(try log.append([]) == 2)
        #expect(try log.append([UInt8](repeating: 7, count: 100_000)) == 3)
        log.close()
        #expect(throws: StoreError.closed) { try log.append([1]) }
        let (again, records) = try readLog(path)
        #expect(records.map(\.0) == [1, 2, 3])
        #expect(records[0].1 == Array("one".utf8) && records[1].1 == [] && records[2].1.count == 100_000)
        #expect(again.recovery == RecoveryReport(records: 3, truncatedBytes: 0, truncatedAt: nil))
        #expect(try again.append([9]) == 4)
    }

    /// A crash can stop the last append after any byte: every such prefix must recover to the
    /// records before it, cut the partial one, and accept the next append.
    @Test func tornLastRecordIsCutAtEveryByteOffset() throws {
        let dir = try temporaryDirectory("torn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/t.log"
        let (log, _) = try readLog(path)
        try log.append(Array("first record".utf8))
        try log.append(Array("second".utf8))
        let intactSize = try fileBytes(path).count
        try log.append(Array("the last record, which a crash tears".utf8))
        log.close()
        let full = try fileBytes(path)
        for cut in intactSize..<full.count {
            try writeBytes(Array(full[0..<cut]), to: path)
            let (reopened, records) = try readLog(path)
            #expect(records.map(\.1) == [Array("first record".utf8), Array("second".utf8)], "cut at \(cut)")
            #expect(reopened.recovery.truncatedBytes == Int64(cut - intactSize), "cut at \(cut)")
            #expect(try fileBytes(path).count == intactSize)
            #expect(try reopened.append([42]) == 3, "cut at \(cut)")
            reopened.close()
            let (_, after) = try readLog(path)
            #expect(after.map(\.1).last == [42])
        }
    }

    @Test func bitFlipAnywhereInTheLastRecordIsCutAsATornTail() throws {
        let dir = try temporaryDirectory("flip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/f.log"
        let (log, _) = try readLog(path)
        try log.append(Array("keep me".utf8))
        let intactSize = try fileBytes(path).count
        try log.append(Array("flip me".utf8))
        log.close()
        let original = try fileBytes(path)
        for byte in intactSize..<original.count {
            for bit in [0, 3, 7] {
                var damaged = original
                damaged[byte] ^= UInt8(1 << bit)
                try writeBytes(damaged, to: path)
                let (reopened, records) = try readLog(path)
                #expect(records.map(\.1) == [Array("keep me".utf8)], "byte \(byte) bit \(bit)")
                #expect(reopened.recovery.truncatedAt == Int64(intactSize))
                reopened.close()
            }
        }
    }

    @Test func damageFollowedByIntactRecordsRefusesToOpenInsteadOfDroppingThem() throws {
        let dir = try temporaryDirectory("mid")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.log"
        let (log, _) = try readLog(path)
        try log.append(Array("one".utf8))
        let secondAt = try fileBytes(path).count
        try log.append(Array("two".utf8))
        let thirdAt = try fileBytes(path).count
        try log.append(Array("three".utf8))
        log.close()
        var damaged = try fileBytes(path)
        damaged[secondAt + 17] ^= 0x10   // a payload byte of record 2
        try writeBytes(damaged, to: path)
        #expect(throws: StoreError.corruption(path: path, offset: Int64(secondAt), nextValidRecord: Int64(thirdAt))) {
            try readLog(path)
        }
        #expect(try fileBytes(path) == damaged, "nothing was cut")
    }

    @Test func corruptLengthFieldNeverCausesAHugeReadOrAllocation() throws {
        let dir = try temporaryDirectory("len")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/l.log"
        let (log, _) = try readLog(path)
        try log.append(Array("ok".utf8))
        let tailAt = try fileBytes(path).count
        try log.append(Array("tail".utf8))
        log.close()
        var damaged = try fileBytes(path)
        for (i, b) in [UInt8](arrayLiteral: 0xff, 0xff, 0xff, 0xff).enumerated() { damaged[tailAt + i] = b }
        try writeBytes(damaged, to: path)
        // 4 GiB claimed, limit 1 KiB: judged as damage from the header alone.
        let (reopened, records) = try readLog(path, options: StoreOptions(maxRecordSize: 1024))
        #expect(records.map(\.1) == [Array("ok".utf8)])
        #expect(reopened.recovery.truncatedAt == Int64(tailAt))
    }

    @Test func damagedFileHeaderIsReportedNotOverwritten() throws {
        let dir = try temporaryDirectory("hdr")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/h.log"
        let (log, _) = try readLog(path)
        try log.append([1])
        log.close()
        var damaged = try fileBytes(path)
        damaged[9] ^= 1
        try writeBytes(damaged, to: path)
        #expect(throws: StoreError.badHeader(path: path)) { try readLog(path) }
        try writeBytes(Array("not a store at all".utf8), to: path)
        #expect(throws: StoreError.badHeader(path: path)) { try readLog(path) }
    }

    @Test func oversizedAppendIsRefusedAndTheLogStaysUsable() throws {
        let dir = try temporaryDirectory("big")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (log, _) = try readLog(dir + "/b.log", options: StoreOptions(maxRecordSize: 10))
        #expect(throws: StoreError.recordTooLarge(size: 11, limit: 10)) { try log.append([UInt8](repeating: 0, count: 11)) }
        #expect(try log.append([UInt8](repeating: 0, count: 10)) == 1)
    }
}

@Suite struct KeyValueStoreTests {
    @Test func putGetDeleteAndScanWithLastWriteWinsAcrossReopen() throws {
        let dir = try temporaryDirectory("kv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try KeyValueStore(directory: dir + "/nested", name: "users")
        try store.put("user/1", Array("alice".utf8))
        try store.put("user/2", Array("bob".utf8))
        try store.put("user/1", Array("alice v2".utf8))
        try store.put("email/a", Array("1".utf8))
        try store.delete("user/2")
        #expect(store.get("user/1") == Array("alice v2".utf8))
        #expect(store.get("user/2") == nil)
        #expect(store.scan(prefix: "user/").map(\.key) == ["user/1"])
        #expect(store.scan(prefix: "").map(\.key) == ["email/a", "user/1"])
        store.close()
        #expect(throws: StoreError.closed) { try store.put("x", []) }

        let reopened = try KeyValueStore(directory: dir + "/nested", name: "users")
        #expect(reopened.get("user/1") == Array("alice v2".utf8))
        #expect(reopened.get("user/2") == nil)
        #expect(reopened.count == 2)
        #expect(reopened.lastSequence == 5)
    }

    @Test func compactionKeepsExactlyTheLiveSetAndTheSequence() throws {
        let dir = try temporaryDirectory("compact")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try KeyValueStore(directory: dir, name: "c")
        var expected: [String: [UInt8]] = [:]
        var rng = SeededGenerator(seed: 11)
        for i in 0..<300 {
            let key = "k\(Int.random(in: 0..<20, using: &rng))"
            if i % 7 == 0 { try store.delete(key); expected[key] = nil }
            else { let v = rng.bytes(Int.random(in: 0...200, using: &rng)); try store.put(key, v); expected[key] = v }
        }
        try store.delete("never-existed")
        let before = try fileBytes(store.path).count
        let last = store.lastSequence
        try store.compact()
        let after = try fileBytes(store.path).count
        #expect(after < before)
        #expect(!FileManager.default.fileExists(atPath: store.path + ".compact"))
        let snapshot = Dictionary(uniqueKeysWithValues: store.scan(prefix: "").map { ($0.key, $0.value) })
        #expect(snapshot == expected)
        // The compacted log holds exactly one record per live key.
        store.close()
        let (_, records) = try readLog(store.path)
        #expect(records.count == expected.count)
        let reopened = try KeyValueStore(directory: dir, name: "c")
        #expect(Dictionary(uniqueKeysWithValues: reopened.scan(prefix: "").map { ($0.key, $0.value) }) == expected)
        #expect(reopened.lastSequence == last, "the sequence survives even though the newest record (a tombstone) is gone")
        #expect(try reopened.put("new", [1]) == last + 1)
    }

    @Test func leftoverCompactionScratchFileIsIgnoredAndRemoved() throws {
        let dir = try temporaryDirectory("scratch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try KeyValueStore(directory: dir, name: "s")
        try store.put("a", [1])
        store.close()
        try writeBytes(Array("half-written compaction".utf8), to: store.path + ".compact")
        let reopened = try KeyValueStore(directory: dir, name: "s")
        #expect(reopened.get("a") == [1])
        #expect(!FileManager.default.fileExists(atPath: store.path + ".compact"))
    }

    @Test func checksummedRecordThatDoesNotDecodeIsReported() throws {
        let dir = try temporaryDirectory("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/x.log"
        let (log, _) = try readLog(path)
        try log.append([9, 9])  // not a key-value operation
        log.close()
        #expect(throws: StoreError.invalidRecord(path: path, sequence: 1)) { try KeyValueStore(directory: dir, name: "x") }
    }
}
