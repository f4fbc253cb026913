// store-torture: the writer process of ServiceKit's SIGKILL durability test.
//
//   store-torture <directory>
//
// Opens the key-value store "torture" in <directory> (running recovery), then applies the
// deterministic workload forever: the operation for sequence number s is a function of s alone
// (see `TortureWorkload` in Tests/ServiceKitTests/StoreDurabilityTests.swift, which must match).
// Before each operation it prints "begin <s>\n"; after the operation returns (fsynced), it prints
// "<s>\n" (each line is one write(2) to stdout); every 97th
// sequence it also compacts. Appends go out in 16-byte pieces so kills can tear a record. The test kills it with SIGKILL at random moments.
#if canImport(Glibc)
import Glibc
#endif
import ServiceKit

func key(_ s: UInt64) -> String { "k\((s &* 7919) % 61)" }
func isDelete(_ s: UInt64) -> Bool { s % 11 == 0 }
func value(_ s: UInt64) -> [UInt8] {
    let length = Int((s &* 131) % 3000) + (s % 17 == 0 ? 70_000 : 0)
    return (0..<length).map { UInt8(truncatingIfNeeded: s &* 31 &+ UInt64($0)) }
}

func say(_ text: String) {
    var line = Array((text + "\n").utf8)
    _ = line.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

guard CommandLine.arguments.count == 2 else {
    say("usage: store-torture <directory>")
    exit(2)
}
do {
    // Small writes, so a SIGKILL can tear a record the way a power cut would.
    let store = try KeyValueStore(directory: CommandLine.arguments[1], name: "torture",
                                  options: StoreOptions(maxWriteChunk: 16))
    while true {
        let next = store.lastSequence + 1
        say("begin \(next)")
        let written = isDelete(next) ? try store.delete(key(next)) : try store.put(key(next), value(next))
        guard written == next else {
            say("error: expected sequence \(next), store wrote \(written)")
            exit(3)
        }
        say("\(written)")
        if written % 97 == 0 { try store.compact() }
    }
} catch {
    say("error: \(error)")
    exit(1)
}
