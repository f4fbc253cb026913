// NATSProtocolTests
