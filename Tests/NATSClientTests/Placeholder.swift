// NATSClientTests
