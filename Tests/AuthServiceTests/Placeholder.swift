// AuthServiceTests
