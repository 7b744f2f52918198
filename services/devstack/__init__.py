"""Runs the whole stack as plain processes on loopback: the no-Docker path of ``./scripts/up``."""
