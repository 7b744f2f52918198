"""What the routes share: settings, backend clients and the URL fetcher, built by the lifespan."""

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Path, Request

from services.common.ids import PRODUCT_ID_PATTERN
from services.common.jobs import Jobs
from services.common.streams import Streams
from services.gateway.clients import Backends
from services.gateway.config import GatewaySettings
from services.gateway.fetch import Fetcher


@dataclass(frozen=True)
class GatewayState:
    settings: GatewaySettings
    backends: Backends
    fetcher: Fetcher
    jobs: Jobs  # ingest jobs (imports, crawls) in Redis
    streams: Streams  # the ingest queues the jobs start on


def gateway_state(request: Request) -> GatewayState:
    return cast(GatewayState, request.app.state.gateway)


State = Annotated[GatewayState, Depends(gateway_state)]

ProductId = Annotated[
    str,
    Path(
        pattern=PRODUCT_ID_PATTERN,
        description="1-128 characters from A-Z a-z 0-9 . _ : @ -, starting with a letter or digit",
    ),
]
