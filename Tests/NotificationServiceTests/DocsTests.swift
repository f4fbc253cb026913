import Foundation
@testable import NotificationService
import ServiceKit
import Testing

/// docs/notification-service.md's settings table is generated from the declared settings: this
/// test fails, printing the table to paste, when they differ.
@Suite struct DocsTests {
    @Test func theDocumentListsEveryNotificationServiceSetting() throws {
        // realpath: the test folder may be a symlink (isolated builds).
        guard let resolved = realpath(#filePath, nil) else { throw CocoaError(.fileNoSuchFile) }
        defer { free(resolved) }
        let document = URL(fileURLWithPath: String(cString: resolved))
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/notification-service.md")
        let text = try String(contentsOf: document, encoding: .utf8)
        let table = Configuration.documentationTable(NotificationSettings.all)
        #expect(text.contains(table), "docs/notification-service.md must contain this table:\n\(table)")
    }
}
