// Publishers and subscribers spread over several event loops: nothing lost, nothing duplicated,
// each publisher's order kept, and subscription changes seen by every loop.

import Foundation
import Testing
@testable import NATSServer

@Suite("Across event loops")
struct ConcurrencyTests {
    @Test func publishersOnEveryLoopReachOneSubscriberInPublisherOrder() throws {
        let broker = try TestBroker { $0.eventLoopCount = 3 }
        let subscriber = try broker.connected()
        try subscriber.send("SUB load.* 1\r\n")
        try subscriber.sync()
        let publishers = try (0..<4).map { _ in try broker.connected() }
        let perPublisher = 2000
        // Interleave the writes so the loops publish at the same time.
        for chunk in stride(from: 0, to: perPublisher, by: 250) {
            for (p, publisher) in publishers.enumerated() {
                var batch = ""
                for i in chunk..<(chunk + 250) {
                    let body = "\(i)"
                    batch += "PUB load.\(p) \(body.utf8.count)\r\n\(body)\r\n"
                }
                try publisher.send(batch)
            }
        }
        for publisher in publishers { try publisher.sync() }
        var next = [Int](repeating: 0, count: publishers.count)
        for _ in 0..<(perPublisher * publishers.count) {
            let head = try #require(try subscriber.readLine(), "missing messages after \(next)")
            let parts = head.split(separator: " ")
            try #require(parts.count == 4 && parts[0] == "MSG")
            let p = try #require(Int(parts[1].dropFirst("load.".count)))
            let body = try #require(try subscriber.readLine())
            #expect(body == "\(next[p])", "publisher \(p) out of order")
            next[p] += 1
        }
        #expect(next == [Int](repeating: perPublisher, count: publishers.count))
        #expect(try subscriber.sync() == [], "no duplicates")
    }

    @Test func aSubscriptionMadeOnOneLoopIsSeenByPublishersOnTheOthers() throws {
        let broker = try TestBroker { $0.eventLoopCount = 2 }
        let publisher = try broker.connected()
        // Warm the publisher loop's match cache with "no subscribers".
        try publisher.send("PUB topic 1\r\na\r\n")
        try publisher.sync()
        let subscriber = try broker.connected()
        try subscriber.send("SUB topic 5\r\n")
        try subscriber.sync()
        try publisher.send("PUB topic 1\r\nb\r\n")
        try publisher.sync()
        #expect(try subscriber.sync() == ["MSG topic 5 1", "b"])
        try subscriber.send("UNSUB 5\r\n")
        try subscriber.sync()
        try publisher.send("PUB topic 1\r\nc\r\n")
        try publisher.sync()
        #expect(try subscriber.sync() == [])
    }

    @Test func queueMembersOnDifferentLoopsShareTheWorkWithoutDuplicates() throws {
        let broker = try TestBroker { $0.eventLoopCount = 2 }
        let members = try (0..<4).map { _ in try broker.connected() }
        for member in members {
            try member.send("SUB jobs g 1\r\n")
            try member.sync()
        }
        let publishers = try (0..<2).map { _ in try broker.connected() }
        for (p, publisher) in publishers.enumerated() {
            var batch = ""
            for i in 0..<500 {
                let body = "\(p)-\(i)"
                batch += "PUB jobs \(body.utf8.count)\r\n\(body)\r\n"
            }
            try publisher.send(batch)
        }
        for publisher in publishers { try publisher.sync() }
        var seen = Set<String>()
        var total = 0
        for member in members {
            let lines = try member.sync()
            #expect(lines.count > 0, "every member gets work")
            for index in stride(from: 1, to: lines.count, by: 2) {
                seen.insert(lines[index])
                total += 1
            }
        }
        #expect(total == 1000)
        #expect(seen.count == 1000)
    }
}
