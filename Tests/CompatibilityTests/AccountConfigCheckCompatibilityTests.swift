// Account configurations both brokers refuse at `-t`: the same message from ours and nats-server 2.9.10.
import Foundation
import Testing

@Suite("Accounts refused at config check: our broker against nats-server 2.9.10")
struct AccountConfigCheckCompatibilityTests {
    /// Runs `kind` with `-t -c` on `text`; its exit status and the first line after `file:line:col: `
    /// (the columns of a whole-file error differ: 2.9.10 counts from 0).
    static func check(_ kind: BrokerKind, _ text: String) throws -> (status: Int32, message: String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("compat-check-\(UUID().uuidString).conf")
        defer { try? FileManager.default.removeItem(at: file) }
        try text.write(to: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Peers.path(for: kind))
        process.arguments = ["-t", "-c", file.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        guard let range = output.range(of: file.path + ":") else { return (process.terminationStatus, output) }
        let rest = output[range.upperBound...].split(separator: ": ", maxSplits: 1)
        // Ours adds a line pointing at --help; the message is the first.
        let message = rest.count == 2 ? String(rest[1].prefix { $0 != "\n" }) : output
        return (process.terminationStatus, message)
    }

    @Test("an import that leads back to its own account is refused with 2.9.10's text", arguments: [
        ["accounts {",
         "  A { exports [{stream: foo}], imports [{stream: {account: B, subject: foo}}] }",
         "  B { exports [{stream: foo}], imports [{stream: {account: A, subject: foo}}] }",
         "}"],
        ["accounts {",
         "  A { exports [{service: q}], imports [{service: {account: B, subject: q}}] }",
         "  B { exports [{service: q}], imports [{service: {account: A, subject: q}}] }",
         "}"],
    ])
    func importCycles(lines: [String]) throws {
        let text = lines.joined(separator: "\n") + "\n"
        let reference = try Self.check(.reference, text)
        let ours = try Self.check(.ours, text)
        #expect(reference.status != 0)
        #expect(reference.message.hasSuffix("import forms a cycle"))
        #expect(ours.status == reference.status)
        #expect(ours.message == reference.message)
    }
}
