import Testing
@testable import DataProcessingService
