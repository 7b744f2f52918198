"""Prometheus helpers: every process can expose /metrics on its own port."""

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def start_metrics_server(host: str, port: int) -> None:
    """Serves /metrics in a background thread; port 0 leaves it off."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
