// Module EventLoop: see docs/ARCHITECTURE.md for what lives here.
