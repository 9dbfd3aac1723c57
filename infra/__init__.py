"""Infrastructure at the edges: event store, outbox relay, inbox, Kafka and PostgreSQL wiring."""
