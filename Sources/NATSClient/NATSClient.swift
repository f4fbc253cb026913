// Module NATSClient: see docs/ARCHITECTURE.md for what lives here.
