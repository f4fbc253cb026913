// Module ServiceKit: see docs/ARCHITECTURE.md.
