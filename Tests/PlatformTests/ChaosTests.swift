import Foundation
import TestSupport
import Testing

/// A short run of platform-chaos (scripts/chaos): logins and jobs for 30 s while the broker and every
/// service are SIGKILLed and restarted; nothing a 200 promised may be lost or duplicated. Against
/// our broker and nats-server 2.9.10 -js.
@Suite(.serialized) struct ChaosTests {
    @Test(arguments: BrokerKind.allCases)
    func aShortChaosRunLosesNothingAndDuplicatesNothing(_ broker: BrokerKind) async throws {
        guard let executable = broker.executable else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but \(BrokerKind.referencePath) is missing") }
            return
        }
        let tool = try builtExecutable("platform-chaos")
        let bin = URL(fileURLWithPath: tool).deletingLastPathComponent().path
        // Every kind of component is killed once in a seeded order before any is killed twice; a kill
        // every ~2.5 s (plus its recovery) reaches all five within 30 s.
        let result = try await runCommand(tool, ["--duration", "30", "--seed", "15", "--kill-every", "2.5", "--clients", "3",
                                                 "--users", "4", "--settle", "90", "--bin", bin, "--broker", executable,
                                                 "--permissions", Identities.permissionsFile],
                                          timeout: 400)
        let output = result.output
        let tail = "\n" + output.split(separator: "\n").suffix(40).joined(separator: "\n") + "\n" + result.error
        let line = output.split(separator: "\n").last { $0.hasPrefix("chaos-summary: ") }
        let summary = try #require(line.flatMap { jsonObject(String($0.dropFirst("chaos-summary: ".count))) }, "no summary:\(tail)")

        #expect(result.status == 0, "platform-chaos exited with \(result.status) against \(broker):\(tail)")
        #expect(summary["lost"] as? Int == 0, "lost:\(tail)")
        #expect(summary["duplicated"] as? Int == 0, "duplicated:\(tail)")
        // The tool prints up to 10 of the violating log lines; named first, in case the tail is cut.
        let violations = output.split(separator: "\n").filter { $0.contains("Violation") && !$0.hasPrefix("chaos-summary: ") }
        #expect(summary["permission_violations"] as? Int == 0,
                "a component left its row of the permission matrix:\n\(violations.joined(separator: "\n"))\(tail)")
        #expect((summary["logins_ok"] as? Int ?? 0) > 0, "no login succeeded:\(tail)")
        #expect((summary["jobs_accepted"] as? Int ?? 0) > 0, "no job was accepted:\(tail)")
        #expect(summary["jobs_missing"] as? Int == 0, "jobs without a result:\(tail)")
        let kills = summary["kills"] as? [String: Int] ?? [:]
        for component in ["nats-server"] + Contract.services {
            #expect((kills[component] ?? 0) >= 1, "\(component) was never killed: \(kills)")
        }
        let ready = summary["ready"] as? [String: Bool] ?? [:]
        #expect(!ready.isEmpty && ready.values.allSatisfy { $0 }, "not ready at the end: \(ready)")
        let recoveries = summary["recovery_seconds"] as? [[String: Any]] ?? []
        #expect(recoveries.allSatisfy { ($0["seconds"] as? Double ?? -1) >= 0 }, "a component never recovered: \(recoveries)")
    }
}
