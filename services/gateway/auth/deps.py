"""The API-key check of the /v1 routes: who is calling (401), may it (403), has it room left (429).

Routes declare the scope they need with ``dependencies=[SEARCH_KEY]`` or ``[CATALOG_KEY]``. The
security schemes below make every such route declare both ways of sending a key in OpenAPI.
"""

import logging
import time
from collections.abc import Callable
from typing import Annotated, cast

import redis.asyncio as aioredis
from fastapi import Depends, Request, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError

from services.gateway.auth.keys import ApiKey, KeyStore, Scope
from services.gateway.auth.ratelimit import Limits, RateLimiter, Verdict
from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError
from services.gateway.metrics import AUTH_REJECTIONS

log = logging.getLogger(__name__)

REALM = 'Bearer realm="visualsearch"'
HOW_TO = "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
# auto_error=False: a missing key is answered here, in the API's own error format, not by FastAPI.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyHeader",
    description="an API key from `visualsearch keys create` (vs_...)",
    auto_error=False,
)
BEARER = HTTPBearer(
    scheme_name="BearerKey",
    bearerFormat="vs_...",
    description="the same API key as a bearer token",
    auto_error=False,
)


def rejection(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> ApiError:
    AUTH_REJECTIONS.labels(code).inc()
    return ApiError(status, code, detail, headers)


def unauthorized(code: str, detail: str, error: str | None = None) -> ApiError:
    """RFC 6750: a 401 names the scheme to use, and why the token given was refused."""
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return rejection(401, code, detail, {"WWW-Authenticate": challenge})


def too_many(key: ApiKey, limits: Limits, verdict: Verdict) -> ApiError:
    wait = verdict.retry_after_s
    headers = {"Retry-After": str(wait)}
    if verdict.reason == "rate":
        detail = (
            f"API key {key.key_id} is over its {limits.rate_per_min} requests per minute; retry in {wait} s"
        )
        return rejection(429, "rate_limited", detail, headers)
    detail = (
        f"API key {key.key_id} has used its {limits.daily_quota} requests for today; "
        f"the quota renews at 00:00 UTC, in {wait} s"
    )
    return rejection(429, "quota_exceeded", detail, headers)


class Authenticator:
    """Checks a request's key against the store and counts it against the key's limits."""

    def __init__(
        self, client: aioredis.Redis, settings: GatewaySettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.enabled = settings.auth_enabled
        self.keys = KeyStore(client)
        self.limiter = RateLimiter(client, clock)
        self.defaults = Limits(settings.auth_rate_per_min, settings.auth_daily_quota)

    def limits_for(self, key: ApiKey) -> Limits:
        """The key's own limits where it has them, the gateway's defaults otherwise."""
        rate, quota = key.rate_per_min, key.daily_quota
        return Limits(
            self.defaults.rate_per_min if rate is None else rate,
            self.defaults.daily_quota if quota is None else quota,
        )

    async def authorize(self, secret: str | None, scope: Scope) -> ApiKey:
        if not secret:
            raise unauthorized("missing_api_key", f"this API needs a key: {HOW_TO}")
        try:
            key = await self.keys.find(secret)
            if key is None:
                raise unauthorized("invalid_api_key", "unknown API key", "invalid_token")
            if key.revoked:
                raise unauthorized("revoked_api_key", f"API key {key.key_id} is revoked", "invalid_token")
            if not key.allows(scope):
                raise rejection(
                    403,
                    "insufficient_scope",
                    f"API key {key.key_id} lacks the `{scope}` scope this route needs",
                    {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
                )
            limits = self.limits_for(key)
            verdict = await self.limiter.hit(key.key_id, limits)
        except RedisError as exc:
            # Failing closed: without the store no key can be told from a forged one.
            log.warning("the API key store (Redis) failed: %s", exc)
            raise rejection(
                503, "auth_unavailable", "API keys cannot be checked now (their store is down); try later"
            ) from None
        if not verdict.allowed:
            raise too_many(key, limits, verdict)
        return key


def authenticator(request: Request) -> Authenticator:
    return cast(Authenticator, request.app.state.auth)


def require(scope: Scope) -> params.Depends:
    """A route dependency: with auth on, a valid key with ``scope`` and room left, else an error."""

    async def check_key(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        header_key: Annotated[str | None, Depends(API_KEY_HEADER)],
    ) -> ApiKey | None:
        auth = authenticator(request)
        if not auth.enabled:
            return None
        key = await auth.authorize(bearer.credentials if bearer is not None else header_key, scope)
        request.state.api_key = key  # for whoever logs or bills per key downstream
        return key

    check_key.__name__ = f"require_{scope}_key"
    return params.Depends(check_key)


SEARCH_KEY = require("search")
CATALOG_KEY = require("catalog")
