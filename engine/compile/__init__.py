"""IR → executable engines: durable_rules (production) and the reference evaluator (oracle)."""
