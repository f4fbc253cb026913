// Publishers and subscribers spread over several event loops: nothing lost, nothing duplicated,
// each publisher's order kept, and subscription changes seen by every loop.

import Foundation
import Synchronization
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

    /// Publishers' loops write straight to receivers owned by other loops. A receiver with a tiny
    /// receive buffer makes those writes short (the owner takes over and waits for EPOLLOUT), and
    /// receivers that close while publishers on other loops are writing to them must not take the
    /// broker or anyone's bytes with them.
    @Test func directWritesFromOtherLoopsSurviveShortWritesAndReceiversClosingMidStream() throws {
        let broker = try TestBroker { $0.eventLoopCount = 4 }
        let steady = try RawClient(port: broker.port, receiveBuffer: 4096)
        _ = try steady.readInfo()
        try steady.send("CONNECT {\"verbose\":false}\r\nSUB wide 1\r\n")
        try steady.sync()
        let publishers = try (0..<3).map { _ in try broker.connected() }
        let perPublisher = 3000
        let padding = String(repeating: "x", count: 1500)   // 13.5 MB in all: more than a socket send buffer holds
        for chunk in stride(from: 0, to: perPublisher, by: 300) {
            // Receivers that subscribe, take some traffic into a small buffer, and vanish.
            let doomed = try (0..<4).map { _ -> RawClient in
                let client = try RawClient(port: broker.port, receiveBuffer: 2048)
                _ = try client.readInfo()
                try client.send("CONNECT {\"verbose\":false}\r\nSUB wide 7\r\n")
                try client.sync()
                return client
            }
            for (p, publisher) in publishers.enumerated() {
                var batch = ""
                for i in chunk..<(chunk + 300) {
                    let body = "\(p):\(i):\(padding)"
                    batch += "PUB wide \(body.utf8.count)\r\n\(body)\r\n"
                }
                try publisher.send(batch)
            }
            _ = doomed   // closed here, while the publishers' loops are still delivering
        }
        for publisher in publishers { try publisher.sync() }
        var next = [Int](repeating: 0, count: publishers.count)
        for _ in 0..<(perPublisher * publishers.count) {
            let head = try #require(try steady.readLine(), "missing messages after \(next)")
            try #require(head.hasPrefix("MSG wide 1 "), "unexpected \(head)")
            let body = try #require(try steady.readLine())
            let fields = body.split(separator: ":")
            let p = try #require(Int(fields[0]))
            #expect(fields[1] == "\(next[p])", "publisher \(p) out of order or duplicated")
            next[p] += 1
        }
        #expect(next == [Int](repeating: perPublisher, count: publishers.count))
        #expect(try steady.sync() == [], "nothing after the last message")
        // The broker is still whole: a newcomer gets served, the doomed connections are gone.
        let late = try broker.connected()
        try late.send("SUB wide 2\r\n")
        try late.sync()
        try publishers[0].send("PUB wide 4\r\nlast\r\n")
        try publishers[0].sync()
        #expect(try late.sync() == ["MSG wide 2 4", "last"])
        #expect(eventually { broker.server.statistics().connections == 5 })
    }

    /// Eight requesters and one responder on two loops: every request and reply crosses loops, and
    /// replies from the responder's loop race with each other into the same requester sockets. A
    /// flush lost between the loops leaves a requester waiting (its read times out).
    @Test func concurrentRequestersAcrossLoopsEachGetEveryReply() throws {
        let broker = try TestBroker { $0.eventLoopCount = 2 }
        let responding = try broker.connected()
        try responding.send("SUB svc 1\r\n")
        try responding.sync()
        let requesters = 8
        let perRequester = 1500
        let stop = Atomic<Bool>(false)
        let answered = Atomic<Int>(0)
        // Used by one thread at a time: the responder thread, then (after it ends) nobody.
        nonisolated(unsafe) let responder = responding
        let port = broker.port
        let responderDone = DispatchGroup()
        responderDone.enter()
        let responderThread = Thread {
            defer { responderDone.leave() }
            // Echo each request to its reply subject until told to stop.
            while !stop.load(ordering: .relaxed) {
                guard let head = try? responder.readLine(timeout: 0.2) else { continue }
                let parts = head.split(separator: " ")
                guard parts.count == 5, parts[0] == "MSG", let body = try? responder.readLine() else { continue }
                // Counted before the send: a requester may read the answer (and the test end) before
                // this thread runs again.
                answered.wrappingAdd(1, ordering: .relaxed)
                try? responder.send("PUB \(parts[3]) \(body.utf8.count)\r\n\(body)\r\n")
            }
        }
        responderThread.start()
        defer {
            stop.store(true, ordering: .relaxed)
            responderDone.wait()
        }
        let failures = Mutex<[String]>([])
        let done = DispatchGroup()
        for r in 0..<requesters {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    let client = try RawClient(port: port)
                    _ = try client.readInfo()
                    try client.send("CONNECT {\"verbose\":false}\r\nSUB reply.\(r) 1\r\n")
                    try client.sync()
                    for i in 0..<perRequester {
                        try client.send("PUB svc reply.\(r) \("\(r)-\(i)".utf8.count)\r\n\(r)-\(i)\r\n")
                        guard let head = try client.readLine(), head.hasPrefix("MSG reply.\(r) 1 ") else {
                            throw HarnessError("requester \(r): no reply to request \(i)")
                        }
                        let body = try client.readLine()
                        if body != "\(r)-\(i)" { throw HarnessError("requester \(r): reply \(body ?? "nil") to request \(i)") }
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }.start()
        }
        done.wait()
        #expect(failures.withLock { $0 } == [])
        #expect(answered.load(ordering: .relaxed) == requesters * perRequester)
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
