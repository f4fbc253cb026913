// NATSClient's key-value buckets against a broker with -js: the stream conventions, put/get,
// create/update with revisions, delete and purge markers, keys, history and watch.

import Foundation
import TestSupport
import Testing
@testable import NATSClient

@Suite("JetStream key-value", .timeLimit(.minutes(2)))
struct JetStreamKeyValueTests {
    @Test("a bucket is the KV_ stream nats.go and nats.py create", arguments: JetStreamBrokers.enabled)
    func bucketStream(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            let kv = try await js.createKeyValue(bucket: "config", history: 5, ttl: .seconds(60), storage: .memory)
            #expect(kv.streamName == "KV_config")
            let config = try await js.streamInfo("KV_config").config
            #expect(config.subjects == ["$KV.config.>"])
            #expect(config.maxMsgsPerSubject == 5)
            #expect(config.maxAge == .seconds(60))
            #expect(config.duplicateWindow == .seconds(60))
            #expect(config.discard == .new)
            #expect(config.denyDelete)
            #expect(config.allowRollup)
            #expect(config.storage == .memory)
            #expect(try await js.keyValueBuckets() == ["config"])
            #expect(try await js.keyValue("config").bucket == "config")
            #expect(await apiErrorCode { _ = try await js.keyValue("missing") } == 10059)
            #expect(throws: JetStreamError.self) { try JetStreamContext.validateBucket("bad.name") }
            #expect(await thrownError { _ = try await js.createKeyValue(bucket: "h", history: 65) } is JetStreamError)
            try await js.deleteKeyValue("config")
            #expect(try await js.keyValueBuckets().isEmpty)
        }
    }

    @Test("put, get, create, update, delete and purge follow the revision rules", arguments: JetStreamBrokers.enabled)
    func operations(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            let kv = try await js.createKeyValue(bucket: "ops", history: 10)
            let first = try await kv.put("user.ann", "v1")
            #expect(first == 1)
            let entry = try await kv.get("user.ann")
            #expect(entry.string == "v1")
            #expect(entry.revision == 1)
            #expect(entry.operation == .put)
            #expect(entry.key == "user.ann")
            #expect(entry.created != nil)

            let created = try await kv.create("user.bob", Array("b1".utf8))
            #expect(created == 2)
            let exists = await thrownError { _ = try await kv.create("user.bob", Array("b2".utf8)) }
            guard case .wrongLastRevision(let key, _) = exists as? JetStreamError else {
                Issue.record("create on an existing key gave \(String(describing: exists))")
                return
            }
            #expect(key == "user.bob")
            let updated = try await kv.update("user.bob", Array("b2".utf8), revision: created)
            #expect(updated == 3)
            let stale = await thrownError { _ = try await kv.update("user.bob", Array("b3".utf8), revision: created) }
            #expect(stale is JetStreamError)
            #expect(try await kv.get("user.bob", revision: 2).string == "b1")

            try await kv.delete("user.bob")
            #expect(await thrownError { _ = try await kv.get("user.bob") } as? JetStreamError == .keyNotFound(key: "user.bob"))
            // A key whose last entry is a delete marker can be created again.
            #expect(try await kv.create("user.bob", Array("b4".utf8)) == 5)
            #expect(try await kv.get("user.bob").string == "b4")

            _ = try await kv.put("user.ann", "v2")
            try await kv.purge("user.ann")
            #expect(await thrownError { _ = try await kv.get("user.ann") } as? JetStreamError == .keyNotFound(key: "user.ann"))
            let history = try await kv.history("user.ann")
            #expect(history.map(\.operation) == [.purge])

            let bobHistory = try await kv.history("user.bob")
            #expect(bobHistory.map(\.revision) == [2, 3, 4, 5])
            #expect(bobHistory.map(\.operation) == [.put, .put, .delete, .put])
            #expect(bobHistory.map(\.string) == ["b1", "b2", "", "b4"])
            #expect(await thrownError { _ = try await kv.history("nobody") } as? JetStreamError == .keyNotFound(key: "nobody"))

            #expect(try await kv.keys() == ["user.bob"])
            #expect(await thrownError { _ = try await kv.get("bad key") } is JetStreamError)
            #expect(await thrownError { _ = try await kv.get("missing") } as? JetStreamError == .keyNotFound(key: "missing"))
        }
    }

    @Test("reads go through Direct Get when the bucket allows it", arguments: JetStreamBrokers.enabled)
    func directGet(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            var config = KeyValueConfig(bucket: "direct")
            config.allowDirect = true
            let kv = try await js.createKeyValue(config)
            #expect(kv.allowDirect)
            try await kv.put("k", "value")
            let entry = try await kv.get("k")
            #expect(entry.string == "value")
            #expect(entry.revision == 1)
            #expect(entry.created != nil)
            #expect(await thrownError { _ = try await kv.get("other") } as? JetStreamError == .keyNotFound(key: "other"))
            let bySequence = try await js.directGet("KV_direct", sequence: 1)
            #expect(bySequence?.subject == "$KV.direct.k")
            #expect(try await js.keyValue("direct").allowDirect)
        }
    }

    @Test("a watch gives the current values, then the end-of-initial marker, then every change", arguments: JetStreamBrokers.enabled)
    func watch(broker: Broker) async throws {
        try await withJetStream(broker) { _, js in
            let kv = try await js.createKeyValue(bucket: "watched", history: 3)
            try await kv.put("a", "1")
            try await kv.put("b", "1")
            try await kv.put("a", "2")
            let start = try kv.watch().makeAsyncIterator()
            let initial = try await within(10, "initial values") {
                var iterator = start
                var updates: [KeyValueWatchUpdate] = []
                while let update = try await iterator.next() {
                    updates.append(update)
                    if update == .initialValuesDone { break }
                }
                return updates
            }
            let entries = initial.compactMap { update -> KeyValueEntry? in
                if case .entry(let entry) = update { return entry }
                return nil
            }
            #expect(entries.map(\.key) == ["b", "a"])
            #expect(entries.map(\.string) == ["1", "2"])
            #expect(initial.last == .initialValuesDone)

            try await kv.put("c", "3")
            try await kv.delete("b")
            let changes = try await within(10, "changes") {
                var iterator = start
                var entries: [KeyValueEntry] = []
                while entries.count < 2, let update = try await iterator.next() {
                    if case .entry(let entry) = update { entries.append(entry) }
                }
                return entries
            }
            #expect(changes.map(\.key) == ["c", "b"])
            #expect(changes.map(\.operation) == [.put, .delete])

            // An empty bucket marks the end of initial values at once.
            let empty = try await js.createKeyValue(bucket: "empty")
            let first = try await within(10, "marker of an empty bucket") {
                var iterator = try empty.watch().makeAsyncIterator()
                return try await iterator.next()
            }
            #expect(first == .initialValuesDone)
            #expect(try await empty.keys().isEmpty)
        }
    }
}
