// nats: thin main (see Sources/NATSClient).
