"""One logging set-up for every process of the stack."""

import logging
import sys


def setup_logging(service: str, level: str = "INFO") -> None:
    """Logs go to stderr, one line each, tagged with the service name."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
