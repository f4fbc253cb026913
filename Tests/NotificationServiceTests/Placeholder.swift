import Testing
@testable import NotificationService
