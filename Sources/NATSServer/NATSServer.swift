// Module NATSServer: see docs/ARCHITECTURE.md for what lives here.
