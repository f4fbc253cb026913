import Testing
@testable import JetStream
import TestSupport

/// The simplest possible stream with discard old: a list of messages, limits applied by brute force.
struct ModelStream {
    var messages: [StoredMessage] = []
    var last: UInt64 = 0
    let maxMessages: Int
    let maxPerSubject: Int

    mutating func store(_ subject: String, _ payload: [UInt8], at time: Int64) {
        last += 1
        messages.append(StoredMessage(subject: subject, headers: [], payload: payload, sequence: last, timestamp: time))
        let same = messages.filter { $0.subject == subject }
        if same.count > maxPerSubject { messages.removeAll { $0.sequence == same[0].sequence } }
        if messages.count > maxMessages { messages.removeFirst() }
    }

    mutating func remove(_ sequence: UInt64) -> Bool {
        guard let i = messages.firstIndex(where: { $0.sequence == sequence }) else { return false }
        messages.remove(at: i)
        return true
    }
}

@Suite struct StreamStoreModelTests {
    /// Random stores, removals and filtered purges against the model; after every step the store
    /// reports the model's messages, counts and per-subject lasts (and so after reopening).
    @Test(arguments: Backend.allCases)
    func randomOperationsMatchTheModel(_ backend: Backend) throws {
        let limits = StreamLimits(maxMessages: 40, maxMessagesPerSubject: 3)
        let h = try Harness(backend, limits: limits, options: FileStoreOptions(blockSize: 512))
        defer { h.finish() }
        var model = ModelStream(maxMessages: 40, maxPerSubject: 3)
        var rng = SeededGenerator(seed: 14)
        let subjects = (0..<12).map { "kv.k\($0)" }

        func check(_ step: Int) throws {
            let state = h.store.state
            #expect(state.messages == UInt64(model.messages.count), "step \(step)")
            #expect(state.lastSequence == model.last, "step \(step)")
            if let first = model.messages.first { #expect(state.firstSequence == first.sequence, "step \(step)") }
            for m in model.messages { #expect(try h.store.load(m.sequence) == m, "step \(step)") }
            for subject in subjects {
                let expected = model.messages.last { $0.subject == subject }?.sequence
                let got = try? h.store.last(bySubject: subject).sequence
                #expect(got == expected, "step \(step) \(subject)")
            }
        }

        for step in 0..<600 {
            let roll = Int.random(in: 0..<100, using: &rng)
            if roll < 75 {
                let subject = subjects[Int.random(in: 0..<subjects.count, using: &rng)]
                let payload = rng.bytes(Int.random(in: 0..<40, using: &rng))
                try h.store.store(subject: subject, payload: payload, timestamp: Int64(step))
                model.store(subject, payload, at: Int64(step))
            } else if roll < 95 {
                let seq = UInt64.random(in: 1...max(model.last, 1), using: &rng)
                let removed = model.remove(seq)
                if removed { try h.store.remove(seq) } else { #expect(throws: StreamStoreError.notFound) { try h.store.remove(seq) } }
            } else {
                let subject = subjects[Int.random(in: 0..<subjects.count, using: &rng)]
                let purged = try h.store.purge(subject: subject)
                let before = model.messages.count
                model.messages.removeAll { $0.subject == subject }
                #expect(purged == UInt64(before - model.messages.count), "step \(step)")
            }
            if step % 20 == 0 { try check(step) }
            if backend == .file && step % 150 == 149 {
                h.store.close()
                h.store = try StreamStore(directory: h.directory! + "/stream", limits: limits,
                                          options: FileStoreOptions(blockSize: 512), now: 0)
                try check(step)
            }
        }
        try check(600)
    }
}
