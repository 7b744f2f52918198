"""Catalog ingest. For now: load a catalog manifest (CSV) into a running stack through the gateway."""
