import Foundation
import ServiceKit
import Testing

@testable import DataProcessingService

/// docs/data-processing.md's settings table is generated from the declared settings: this test
/// fails, printing the table to paste, when they differ.
@Suite struct Documentation {
    @Test func theDocumentListsEverySetting() throws {
        let doc = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/data-processing.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let table = Configuration.documentationTable(DataProcessingSettings.all)
        #expect(text.contains(table), "docs/data-processing.md must contain this table:\n\(table)")
    }
}
