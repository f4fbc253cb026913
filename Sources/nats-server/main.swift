// nats-server: thin main (see Sources/NATSServer).
