"""bench/scaling: replicas of the stateless services (throughput, a killed replica, ingest workers,
and a paper model of the replicas a cloud deployment needs)."""
