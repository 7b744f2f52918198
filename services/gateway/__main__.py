"""``python -m services.gateway``: serves the HTTP API with uvicorn, host/port from settings."""

import logging

import uvicorn

from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.common.settings import load_settings
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings

log = logging.getLogger("services.gateway")


def main() -> None:
    settings = load_settings(GatewaySettings)
    setup_logging("gateway", settings.log_level)
    start_metrics_server(settings.host, settings.metrics_port)  # /metrics is also on the API port
    log.info("listening on %s:%d", settings.host, settings.port)
    # log_config=None keeps the one logging set-up above for uvicorn's own loggers too.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
