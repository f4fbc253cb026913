// NATSServerTests
