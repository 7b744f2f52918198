"""Gateway: the public HTTP API (FastAPI). Holds no model; orchestrates the gRPC backends."""
