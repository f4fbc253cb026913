// auth-service: thin main (see Sources/AuthService).
