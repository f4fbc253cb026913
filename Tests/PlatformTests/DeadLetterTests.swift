import Foundation
import NATSClient
import TestSupport
import Testing

/// A message that can never succeed goes to the dead-letter stream (an operator sees it with
/// `nats stream view DEAD_LETTERS`), never silently dropped, and does not hold up the good ones.
@Suite struct DeadLetterTests {
    /// A poison user.logged_in (not JSON) in USER_EVENTS goes to DEAD_LETTERS with headers naming
    /// where it came from, while the good events around it still become notifications.
    @Test func aPoisonLoginReachesTheDeadLettersAndGoodEventsStillBecomeNotifications() async throws {
        if DurableFaultTests.curlMissing { return }
        try await Platform.with(["auth-service", "notification-service"]) { platform in
            try await platform.withClient { try await Self.poison(platform, $0) }
        }
    }

    /// The dead letter notification-service's consumer made of USER_EVENTS' message `sequence`, if any.
    static func deadLetter(_ js: JetStreamContext, sequence: UInt64) async -> StoredMessage? {
        guard let info = try? await js.streamInfo("DEAD_LETTERS"), info.state.lastSequence > 0 else { return nil }
        for candidate in info.state.firstSequence...info.state.lastSequence {
            guard let message = try? await js.getMessage("DEAD_LETTERS", sequence: candidate) else { continue }
            if message.headers?["Dead-Letter-Stream"] == "USER_EVENTS", message.headers?["Dead-Letter-Sequence"] == String(sequence),
               message.subject.contains("notification") {
                return message
            }
        }
        return nil
    }

    static func poison(_ platform: Platform, _ client: NATSClient) async throws {
            let email = uniqueEmail("poison")
            let (userID, token) = try await platform.registerAndLogin(name: "Kathleen Booth", email: email)
            do {
                let js = try client.jetStream(timeout: .seconds(10))
                let before = try await publishDurableLogins(client, user: (userID, email, "Kathleen Booth"), count: 3)
                let poison = try await js.publish("user.logged_in", payload: Array(#"{"event_id": "poison", this is not json"#.utf8),
                                                  options: PublishOptions(msgID: "poison-\(UUID().uuidString)"))
                let after = try await publishDurableLogins(client, user: (userID, email, "Kathleen Booth"), count: 3)

                var sources: [String] = []
                let good = try await eventually(30) {
                    sources = try await historySources(platform, token: token)
                    return Set(sources).isSuperset(of: before + after)
                }
                #expect(good, "good events around the poison not notified: \(sources)")
                #expect(sources.count == 7, "\(sources.count) notifications for 7 good logins")

                // The dead letter: a copy of the poison with its origin in the headers.
                let dead = await eventually(60) { await deadLetter(js, sequence: poison.sequence) != nil }
                let letter = await deadLetter(js, sequence: poison.sequence)
                #expect(dead, "no dead letter from notification-service for USER_EVENTS sequence \(poison.sequence)")
                if let letter {
                    #expect(String(decoding: letter.payload, as: UTF8.self).contains("this is not json"))
                    #expect(letter.headers?["Dead-Letter-Reason"]?.isEmpty == false)
                }
            }
    }
}
