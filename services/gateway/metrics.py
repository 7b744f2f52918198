"""Prometheus metrics of the gateway: requests by route template and status, per-stage latency,
API-key rejections by reason."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "vs_gateway_requests_total", "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "vs_gateway_request_seconds", "HTTP request latency by method and route template.",
    ["method", "route"], buckets=_BUCKETS,
)  # fmt: skip
AUTH_REJECTIONS = Counter(
    "vs_gateway_auth_rejections_total", "Requests refused by API-key checks, by reason (the error code).",
    ["reason"],
)  # fmt: skip
STAGE_SECONDS = Histogram(
    "vs_gateway_stage_seconds", "Latency of one pipeline stage (fetch, decode, detect, embed, search...).",
    ["stage"], buckets=_BUCKETS,
)  # fmt: skip


class StageTimer:
    """Accumulates per-stage wall time in milliseconds and feeds the stage histogram."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            STAGE_SECONDS.labels(name).observe(elapsed)
            self.ms[name] = self.ms.get(name, 0.0) + elapsed * 1000.0

    def get(self, name: str) -> float:
        return round(self.ms.get(name, 0.0), 2)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


def route_label(scope: Scope) -> str:
    """The matched route template ("/v1/products/{product_id}"), never the raw path: raw paths
    would give one time series per product id."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("endpoint") is not None:  # a mounted app such as /media
        return f"{scope.get('root_path', '')}/{{path}}"
    return "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering): counts and times every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method, route = scope["method"], route_label(scope)
            REQUESTS.labels(method, route, str(status)).inc()
            REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - start)
