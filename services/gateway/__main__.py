"""``python -m services.gateway``: serves the HTTP API with uvicorn, host/port from settings."""

import logging

import uvicorn
from pydantic import ValidationError

from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings

log = logging.getLogger("services.gateway")


def load_settings() -> GatewaySettings:
    """Settings from the environment; a missing or bad value stops start-up with a clear message."""
    try:
        return GatewaySettings()  # required fields come from the environment
    except ValidationError as exc:
        problems = "; ".join(
            f"VS_GATEWAY_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(f"gateway: invalid settings: {problems}") from None


def main() -> None:
    settings = load_settings()
    setup_logging("gateway", settings.log_level)
    start_metrics_server(settings.host, settings.metrics_port)  # /metrics is also on the API port
    log.info("listening on %s:%d", settings.host, settings.port)
    # log_config=None keeps the one logging set-up above for uvicorn's own loggers too.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
