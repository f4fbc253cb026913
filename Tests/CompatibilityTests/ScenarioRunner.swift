// Plays a scenario's steps against one broker process and returns each connection's transcript.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum ScenarioRunner {
    /// Starts `kind` with the scenario's config, plays the steps, stops the broker.
    /// Throws when the broker cannot be started or a connection cannot be opened.
    static func run(_ scenario: Scenario, on kind: BrokerKind) throws -> [ConnectionTranscript] {
        let broker = try BrokerProcess.start(kind, config: scenario.config)
        defer { broker.stop() }
        return try play(scenario, port: broker.port, pid: broker.pid)
    }

    static func play(_ scenario: Scenario, port: Int, pid: Int32) throws -> [ConnectionTranscript] {
        let timeout = Peers.readTimeout
        var clients: [Int: RawClient] = [:]
        let ping = Array("PING\r\n".utf8)
        let pong = Array("PONG\r\n".utf8)

        func client(_ index: Int) throws -> RawClient {
            if let existing = clients[index] { return existing }
            let fresh = try RawClient(port: port)
            // The INFO line (or whatever the broker sends first).
            fresh.read(timeout: timeout) { $0.contains(UInt8(ascii: "\n")) }
            clients[index] = fresh
            return fresh
        }

        func awaitPong(_ c: RawClient, write bytes: [UInt8]) {
            let before = frameCount(c.received, pong)
            c.send(bytes)
            c.read(timeout: timeout) { frameCount($0, pong) > before }
        }

        for step in scenario.steps {
            let c = try client(step.connection)
            switch step {
            case .open:
                break
            case .send(let text, _):
                c.send(NKeyScenarios.signed(text, info: c.received))
            case .exchange(let text, _):
                awaitPong(c, write: NKeyScenarios.signed(text, info: c.received) + ping)
            case .sendAwaitingPong(let text, _):
                awaitPong(c, write: NKeyScenarios.signed(text, info: c.received))
            case .sendExpectingClose(let text, _):
                c.send(NKeyScenarios.signed(text, info: c.received))
                c.readUntilClosed(timeout: timeout)
            case .awaitClose:
                c.readUntilClosed(timeout: timeout)
            case .awaitServerPing:
                let before = frameCount(c.received, ping)
                c.read(timeout: timeout) { frameCount($0, ping) > before }
            case .signalBroker(let signal, _):
                kill(pid, signal)
            case .awaitInfo:
                let before = Frames.split(c.received).filter(Frames.isInfo).count
                c.read(timeout: timeout) { Frames.split($0).filter(Frames.isInfo).count > before }
            case .request(let text, let replies, _):
                let pongs = frameCount(c.received, pong)
                let messages = Frames.split(c.received).filter(Frames.isMessage).count
                c.send(Array(text.utf8) + ping)
                c.read(timeout: timeout) {
                    frameCount($0, pong) > pongs && Frames.split($0).filter(Frames.isMessage).count >= messages + replies
                }
            }
        }

        return (0..<scenario.expect.count).map { index in
            guard let c = clients[index] else {
                return ConnectionTranscript(output: "<connection \(index) never opened>", closed: false)
            }
            return ConnectionTranscript(
                output: Normalizer.normalize(c.received, scenario.normalization),
                closed: c.closedByServer)
        }
    }

    /// A readable per-connection account of where two transcripts differ.
    static func describeDifference(scenario: Scenario, expected: [ConnectionTranscript], expectedLabel: String,
                                   actual: [ConnectionTranscript], actualLabel: String) -> String {
        var lines = ["scenario: \(scenario.name)"]
        for index in 0..<max(expected.count, actual.count) {
            let e = index < expected.count ? expected[index].description : "<none>"
            let a = index < actual.count ? actual[index].description : "<none>"
            if e == a { continue }
            let ef = Array(e.replacingOccurrences(of: "\n", with: ""))
            let af = Array(a.replacingOccurrences(of: "\n", with: ""))
            var same = 0
            while same < min(ef.count, af.count), ef[same] == af[same] { same += 1 }
            // Long transcripts: show a window that starts a little before the first difference.
            let start = max(ef.count, af.count) > 1200 ? max(0, same - 200) : 0
            func window(_ chars: [Character]) -> String {
                let lower = min(start, chars.count)
                let upper = min(chars.count, lower + 1200)
                return (lower > 0 ? "..." : "") + String(chars[lower..<upper]) + (upper < chars.count ? "..." : "")
            }
            lines.append("connection \(index) (first difference at character \(same)):")
            lines.append("  \(expectedLabel): \(window(ef))")
            lines.append("  \(actualLabel): \(window(af))")
        }
        return lines.joined(separator: "\n")
    }

    /// Appends `text` to the file named by `COMPAT_REPORT` (if set): the differences report.
    static func report(_ text: String) {
        guard let path = Peers.environment["COMPAT_REPORT"], !path.isEmpty else { return }
        let block = Array((text + "\n\n").utf8)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
