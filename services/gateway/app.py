"""The FastAPI application: the only public entry of the stack. It holds no model; it decodes
images once, fans out to the detector, embedder and indexer over gRPC, and maps every failure
to a precise HTTP error."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.common.jobs import Jobs
from services.common.streams import Streams, open_redis
from services.gateway.auth.deps import Authenticator
from services.gateway.auth.openapi import document_auth
from services.gateway.clients import Backends
from services.gateway.config import GatewaySettings
from services.gateway.deps import GatewayState
from services.gateway.errors import install_error_handlers
from services.gateway.fetch import Fetcher
from services.gateway.limits import BodyLimitMiddleware, RouteBodyLimits
from services.gateway.metrics import MetricsMiddleware
from services.gateway.openapi_forms import document_forms
from services.gateway.routes import crawls, imports, ops, products, search, ui, videos


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backends = Backends(settings)
        # trust_env=False: no proxy from the environment, so the address checks see the real target.
        http = httpx.AsyncClient(
            timeout=settings.fetch_timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "visualsearch-gateway/0.1"},
        )
        # Connects lazily: without API keys the query path never needs Redis, so a Redis outage
        # fails only ingest calls (with VS_GATEWAY_AUTH_ENABLED, every call that takes a key: 503).
        queue = open_redis(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        app.state.gateway = GatewayState(
            settings, backends, Fetcher(http, settings), Jobs(queue), Streams(queue)
        )
        app.state.auth = Authenticator(queue, settings)
        try:
            yield
        finally:
            await queue.aclose()
            await http.aclose()
            await backends.close()

    app = FastAPI(
        title="visualsearch",
        version="0.1.0",
        summary="Visual product search: photo in, look-alike catalog products out.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    document_auth(app, settings.auth_enabled)
    document_forms(app, lambda schema: products.document_image_limit(schema, settings.max_images_per_product))
    for module in (search, products, imports, crawls, videos, ops, ui):
        app.include_router(module.router)
    if settings.media_dir is not None:
        app.mount("/media", StaticFiles(directory=settings.media_dir), name="media")
    app.add_middleware(BodyLimitMiddleware, limit_for=RouteBodyLimits(settings))
    app.add_middleware(MetricsMiddleware)  # added last = outermost: also counts 413s from the limit
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory services.gateway.app:app_from_env`` (settings from env)."""
    return create_app(GatewaySettings())  # required fields come from the environment
