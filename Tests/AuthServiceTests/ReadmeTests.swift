import Foundation
import TestSupport
import ServiceKit
import Testing

@testable import AuthService

/// The README's configuration table is generated from the settings the service declares, so it
/// cannot drift from the code: this test fails, printing the table to paste, when they differ.
@Suite("README")
struct ReadmeTests {
    @Test func theReadmeDocumentsEveryAuthServiceSetting() throws {
        let readme = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let table = Configuration.documentationTable(AuthSettings.all)
        #expect(text.contains(table), "README.md must contain this table (auth-service settings):\n\(table)")
    }
}
