import Foundation
import TestSupport
import Testing
@testable import AuthService
import ServiceKit

/// The outbox, the bucket keys and the replica's rules, without a broker.
@Suite struct OutboxTests {
    static func user(_ id: String, _ email: String) -> User {
        User(id: id, email: email, name: "N", createdAt: "2026-01-01T00:00:00.000Z",
             password: PasswordRecord(algorithm: "pbkdf2-sha256", iterations: 1000, salt: "c2FsdA", hash: "aGFzaA"))
    }

    static func event(_ n: Int, user: String = "u1") -> OutboxEvent {
        OutboxEvent(subject: "user.logged_in", eventID: "e\(n)", userID: user, payload: #"{"n":\#(n)}"#,
                    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    }

    @Test func bucketKeysEncodeAnyEmailInTheAllowedCharactersAndDecodeBack() {
        for email in ["ann@example.com", "a.b+tag@x.example", "ü@example.com", ""] {
            let key = SharedDirectory.key(email: email)
            #expect(key.hasPrefix("email."))
            #expect(key.dropFirst(6).allSatisfy { "0123456789abcdef".contains($0) })
            #expect(SharedDirectory.email(key: key) == email)
        }
        #expect(SharedDirectory.key(email: "A@b.c") == "email.4140622e63")
        for bad in ["user.41", "email.4", "email.zz", "email.ff"] {
            #expect(SharedDirectory.email(key: bad) == nil, "\(bad)")
        }
    }

    @Test func concurrentRecordsAreAllDurableInOrderAndSurviveReopening() async throws {
        let directory = try temporaryDirectory("outbox")
        defer { removeTemporary(directory) }
        let outbox = try Outbox(directory: directory)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<200 {
                group.addTask { try await outbox.record([Self.event(n)]) }
            }
            try await group.waitForAll()
        }
        try await outbox.record([Self.event(1000, user: "u2")], creating: Self.user("u2", "b@example.com"))
        #expect(outbox.pendingCount == 201)
        let pending = outbox.pendingEvents(limit: 1000)
        #expect(pending.map(\.key) == pending.map(\.key).sorted())
        #expect(Set(pending.map(\.event.eventID)).count == 201)
        #expect(pending.last?.event.eventID == "e1000")
        outbox.close()

        let reopened = try Outbox(directory: directory)
        #expect(reopened.pendingCount == 201)
        #expect(reopened.pendingCreates().map(\.id) == ["u2"])
        #expect(reopened.pendingEvents(limit: 5).map(\.key) == Array(pending.prefix(5).map(\.key)))
        // New records go after the old ones.
        try await reopened.record([Self.event(2000)])
        #expect(reopened.pendingEvents(limit: 1000).last?.event.eventID == "e2000")

        #expect(try reopened.drop(userID: "u2") == 1)
        #expect(reopened.pendingCreate(id: "u2") == nil)
        try reopened.remove(reopened.pendingEvents(limit: 10).map(\.key))
        #expect(reopened.pendingCount == 191)
        // Acknowledged: no longer pending at once, removed from the file in one batch later.
        let acknowledged = reopened.pendingEvents(limit: 5).map(\.key)
        reopened.markSent(acknowledged)
        #expect(reopened.pendingCount == 186 && reopened.sentCount == 5)
        #expect(Set(reopened.pendingEvents(limit: 1000).map(\.key)).isDisjoint(with: acknowledged))
        try reopened.removeSent()
        #expect(reopened.sentCount == 0 && reopened.pendingCount == 186)
        reopened.close()
        let third = try Outbox(directory: directory)
        #expect(third.pendingCount == 186)
        third.close()
        await #expect(throws: OutboxError.self) { try await reopened.record([Self.event(3000)]) }
    }

    @Test func aRecordThatIsNotOursStopsTheOpenNamingIt() throws {
        let directory = try temporaryDirectory("outbox-bad")
        defer { removeTemporary(directory) }
        let store = try KeyValueStore(directory: directory, name: "outbox")
        _ = try store.put("event:00000000000000000001", Array("not json".utf8))
        store.close()
        do {
            _ = try Outbox(directory: directory)
            Issue.record("a record that does not decode was accepted")
        } catch {
            guard case .corruptRecord(let key) = error else { throw error }
            #expect(key == "event:00000000000000000001")
        }
    }

    @Test func theBucketDecidesWhoOwnsAnEmailOverAProvisionalUser() throws {
        let folder = try temporaryDirectory("replica")
        defer { removeTemporary(folder) }
        let directory = try UserDirectory(directory: folder)
        let mine = Self.user("mine", "x@example.com"), theirs = Self.user("theirs", "x@example.com")
        #expect(directory.reserve(email: "x@example.com"))
        directory.addProvisional(mine)
        #expect(directory.user(email: "x@example.com")?.id == "mine")
        #expect(!directory.reserve(email: "x@example.com"))
        // The other instance's user arrives through the watch: it owns the email now.
        try directory.apply([.put(theirs)])
        #expect(directory.user(email: "x@example.com")?.id == "theirs")
        directory.removeProvisional(id: "mine")
        #expect(directory.user(id: "mine") == nil)
        #expect(directory.user(email: "x@example.com")?.id == "theirs")
        // A provisional user is not durable in the replica; a confirmed one is.
        directory.addProvisional(Self.user("p", "p@example.com"))
        try directory.confirm(Self.user("c", "c@example.com"))
        try directory.apply([.deleteEmail("x@example.com")])
        directory.close()
        let reopened = try UserDirectory(directory: folder)
        #expect(reopened.user(id: "p") == nil)
        #expect(reopened.user(id: "c") != nil)
        #expect(reopened.user(id: "theirs") == nil)
        reopened.close()
    }
}
