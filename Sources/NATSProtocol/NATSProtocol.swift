// Module NATSProtocol: see docs/ARCHITECTURE.md for what lives here.
