import Testing
@testable import AnalyticsService
