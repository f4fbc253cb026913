// Module AuthService: the auth service's logic; see docs/ARCHITECTURE.md.
