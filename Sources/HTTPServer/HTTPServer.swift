// Module HTTPServer: see docs/ARCHITECTURE.md for what lives here.
