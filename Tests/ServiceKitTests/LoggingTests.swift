import Foundation
import Synchronization
import Testing
@testable import ServiceKit

@Suite struct LoggingTests {
    let fixedTime: @Sendable () -> (seconds: Int64, nanoseconds: Int) = { (1_763_910_007, 123_456_789) }

    func decode(_ line: String) throws -> [String: JSONValue] {
        let value = try #require(JSONValue.parse(Array(line.utf8)))
        guard case .object(let o) = value else { Issue.record("not an object: \(line)"); return [:] }
        return o
    }

    @Test func writesOneJSONObjectPerLineWithTheStandardKeys() throws {
        let sink = MemoryLogSink()
        let log = ServiceLogger(service: "auth", level: .info, sink: sink, now: fixedTime)
        log.info("user registered", ["user_id": .string("u1"), "attempt": .int(2)])
        try #require(sink.lines.count == 1)
        #expect(sink.lines[0] == #"{"time":"2025-11-23T15:00:07.123456Z","level":"info","service":"auth","message":"user registered","fields":{"attempt":2,"user_id":"u1"}}"#)
        let object = try decode(sink.lines[0])
        #expect(object["level"] == .string("info"))
    }

    @Test func traceIDAppearsOnlyWhenSetAndBaseFieldsMerge() throws {
        let sink = MemoryLogSink()
        let base = ServiceLogger(service: "svc", sink: sink, now: fixedTime).with(field: "region", .string("eu"))
        base.warning("plain")
        base.with(traceID: "4bf92f3577b34da6a3ce929d0e0e4736").error("traced", ["region": .string("us")])
        let first = try decode(sink.lines[0]), second = try decode(sink.lines[1])
        #expect(first["trace_id"] == nil)
        #expect(first["fields"] == .object(["region": .string("eu")]))
        #expect(second["trace_id"] == .string("4bf92f3577b34da6a3ce929d0e0e4736"))
        #expect(second["fields"] == .object(["region": .string("us")]), "a line's own field wins")
        #expect(second["level"] == .string("error"))
    }

    @Test func disabledLevelsNeverBuildTheirMessage() {
        let sink = MemoryLogSink()
        let log = ServiceLogger(service: "svc", level: .warning, sink: sink, now: fixedTime)
        let built = Mutex(0)
        func expensive() -> String { built.withLock { $0 += 1 }; return "built" }
        log.trace(expensive()); log.debug(expensive()); log.info(expensive()); log.notice(expensive())
        #expect(built.withLock { $0 } == 0)
        #expect(sink.lines.isEmpty)
        log.warning(expensive()); log.critical(expensive())
        #expect(built.withLock { $0 } == 2)
        #expect(sink.lines.count == 2)
    }

    @Test func escapesQuotesBackslashesAndControlCharacters() throws {
        let sink = MemoryLogSink()
        ServiceLogger(service: "s\"v", sink: sink, now: fixedTime).info("a \"q\" \\ \n\t\u{01} é", ["k\n": .string("\u{7f}")])
        let line = sink.lines[0]
        #expect(!line.contains("\n"))
        let object = try decode(line)
        #expect(object["message"] == .string("a \"q\" \\ \n\t\u{01} é"))
        #expect(object["service"] == .string("s\"v"))
        #expect(object["fields"] == .object(["k\n": .string("\u{7f}")]))
    }

    @Test func realClockProducesAParseableUTCTimestamp() throws {
        let sink = MemoryLogSink()
        ServiceLogger(service: "svc", sink: sink).info("now")
        let object = try decode(sink.lines[0])
        let time = try #require(object["time"]?.stringValue)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(formatter.date(from: time))
        #expect(abs(date.timeIntervalSinceNow) < 3600)
    }

    @Test func concurrentLoggersNeverInterleaveLines() async throws {
        let sink = MemoryLogSink()
        let log = ServiceLogger(service: "svc", sink: sink, now: fixedTime)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask { for i in 0..<200 { log.info("task \(task) line \(i)", ["pad": .string(String(repeating: "x", count: 300))]) } }
            }
        }
        #expect(sink.lines.count == 1600)
        for line in sink.lines { _ = try decode(line) }
    }

    @Test func fileDescriptorSinkWritesWholeLinesToAPipe() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let sink = FileDescriptorLogSink(fd: fds[1])
        ServiceLogger(service: "svc", sink: sink, now: fixedTime).notice("to the pipe")
        close(fds[1])
        let data = FileHandle(fileDescriptor: fds[0]).readDataToEndOfFile()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.hasSuffix("}\n"))
        #expect(try decode(String(text.dropLast()))["message"] == .string("to the pipe"))
    }

    @Test func levelNamesParse() {
        #expect(LogLevel(name: "WARN") == .warning)
        #expect(LogLevel(name: "debug") == .debug)
        #expect(LogLevel(name: "verbose") == nil)
        #expect(LogLevel.allCases.map(\.description) == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    }
}
