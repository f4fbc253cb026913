import Foundation
import Testing
@testable import ServiceKit

/// External reference programs the tests cross-check against (python3's hashlib/hmac).
enum Peers {
    /// REQUIRE_PEERS=1 turns a missing peer into a failure instead of a skip.
    static let required = ProcessInfo.processInfo.environment["REQUIRE_PEERS"] == "1"

    static let python3: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    /// Run python tests when python3 exists, or when peers are required (then they fail loudly).
    static let runPython = python3 != nil || required

    /// Runs `script` with python3, giving it the path of a file holding `input` as argv[1];
    /// returns its stdout lines. Fails the test if python3 is missing or exits non-zero.
    static func python(_ script: String, input: String) throws -> [String] {
        guard let python3 else {
            Issue.record("python3 not found but REQUIRE_PEERS=1")
            throw PeerError(description: "python3 missing")
        }
        let inputURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("servicekit-peer-\(UUID().uuidString).txt")
        try Data(input.utf8).write(to: inputURL)
        defer { try? FileManager.default.removeItem(at: inputURL) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python3)
        process.arguments = ["-c", script, inputURL.path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PeerError(description: "python3 exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

struct PeerError: Error, CustomStringConvertible { var description: String }


func hex(_ s: String) -> [UInt8] { Hex.decode(s) ?? [] }
func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
