import Foundation
import Testing
@testable import ServiceKit
import TestSupport

/// The workload of Tests/Tools/store-torture (must match it): the operation for sequence s.
enum TortureWorkload {
    static func key(_ s: UInt64) -> String { "k\((s &* 7919) % 61)" }
    static func isDelete(_ s: UInt64) -> Bool { s % 11 == 0 }
    static func value(_ s: UInt64) -> [UInt8] {
        let length = Int((s &* 131) % 3000) + (s % 17 == 0 ? 70_000 : 0)
        return (0..<length).map { UInt8(truncatingIfNeeded: s &* 31 &+ UInt64($0)) }
    }
    /// The key-value contents after operations 1...last.
    static func state(through last: UInt64) -> [String: [UInt8]] {
        var map: [String: [UInt8]] = [:]
        guard last > 0 else { return map }
        for s in 1...last { map[key(s)] = isDelete(s) ? nil : value(s) }
        return map
    }
}

func tortureExecutable() -> String? {
    ProcessInfo.processInfo.environment["STORE_TORTURE_BIN"] ?? (try? builtExecutable("store-torture"))
}

@Suite struct StoreDurabilityTests {
    /// Kills the writer with SIGKILL at seeded random moments (a random delay after it begins a
    /// random operation), at least 30 times, and after each
    /// kill checks that the reopened store holds exactly the effect of every acknowledged write
    /// (plus at most the one write in flight), and that it accepts new writes.
    @Test func everyAcknowledgedWriteSurvivesSIGKILL() async throws {
        let executable = try #require(tortureExecutable(), "store-torture not built next to the tests")
        // The kill loop blocks (pipe reads, sleeps, waits): keep it off the cooperative pool.
        try await offPool { try Self.tortureRounds(executable: executable) }
    }

    static func tortureRounds(executable: String) throws {
        let directory = try temporaryDirectory("torture")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var rng = SeededGenerator(seed: 0xD0_0D_1E)
        var acknowledged: UInt64 = 0
        let started = ContinuousClock.now
        var rounds = 0
        var killsMidStream = 0
        var tornTails = 0
        while rounds < 30 || (rounds < 60 && ContinuousClock.now - started < .seconds(20)) {
            rounds += 1
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = [directory]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            // Kill a random time after the writer starts its k-th operation (k = 0: while it may
            // still be recovering). Appends go out in 16-byte writes, so short delays tear records.
            let target = Int.random(in: 0...40, using: &rng)
            var buffered = [UInt8]()
            let reader = out.fileHandleForReading
            if target > 0 {
                var begins = 0
                while begins < target {
                    let chunk = reader.availableData
                    if chunk.isEmpty { break }  // the writer exited on its own: reported below
                    buffered.append(contentsOf: chunk)
                    begins = String(decoding: buffered, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("begin ") }.count
                }
                if begins >= target { killsMidStream += 1 }
            }
            usleep(UInt32.random(in: 0...(target == 0 ? 3000 : 300), using: &rng))
            kill(process.processIdentifier, SIGKILL)
            buffered.append(contentsOf: reader.readDataToEndOfFile())
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal, "writer exited by itself: \(String(decoding: buffered, as: UTF8.self))")
            // Every complete line is an acknowledged write (each is one write(2) of a few bytes).
            let text = String(decoding: buffered, as: UTF8.self)
            for line in text.split(separator: "\n") where !line.hasPrefix("begin ") {
                let sequence = try #require(UInt64(line), "unexpected writer output: \(line)")
                #expect(sequence == acknowledged + 1, "acknowledgements must be consecutive")
                acknowledged = max(acknowledged, sequence)
            }

            let store = try KeyValueStore(directory: directory, name: "torture")
            let last = store.lastSequence
            if store.recovery.truncatedBytes > 0 { tornTails += 1 }
            #expect(last == acknowledged || last == acknowledged + 1,
                    "round \(rounds): store ends at \(last), acknowledged \(acknowledged)")
            let expected = TortureWorkload.state(through: last)
            let actual = Dictionary(uniqueKeysWithValues: store.scan(prefix: "").map { ($0.key, $0.value) })
            #expect(actual == expected, "round \(rounds): contents differ from operations 1...\(last)")
            store.close()
            acknowledged = last  // the in-flight write, if it landed, is now part of history
        }
        // The store still takes writes after all that.
        let store = try KeyValueStore(directory: directory, name: "torture")
        let next = store.lastSequence + 1
        #expect(try store.put("after", [1, 2, 3]) == next)
        #expect(store.get("after") == [1, 2, 3])
        #expect(rounds >= 30)
        #expect(killsMidStream > 0)
        print("store torture: \(rounds) SIGKILLs, \(acknowledged) acknowledged writes, \(tornTails) torn tails cut, \(ContinuousClock.now - started)")
    }
}
