"""API keys without Redis: scopes, hashing, limits resolution, the 401/429 answers, OpenAPI."""

import asyncio
import hashlib
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.gateway.auth.deps import Authenticator, too_many
from services.gateway.auth.keys import ApiKey, KeySpecError, digest, parse_scopes
from services.gateway.auth.openapi import document_operation
from services.gateway.auth.ratelimit import DAY_MS, Limits, Verdict, day_of, quota_key
from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError

ADDRS = {"detector_addr": "127.0.0.1:1", "embedder_addr": "127.0.0.1:2", "indexer_addr": "127.0.0.1:3"}


def settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(**{**ADDRS, **overrides})


def key(rate: int | None = None, quota: int | None = None, scopes: tuple[Any, ...] = ("search",)) -> ApiKey:
    return ApiKey("abc123", "shop", scopes, rate, quota, created_at_ms=1)


@pytest.mark.parametrize(
    ("text", "scopes"),
    [
        ("search", ("search",)),
        ("catalog,search", ("search", "catalog")),
        (" search , catalog ,", ("search", "catalog")),
        ("search,search", ("search",)),
    ],
)
def test_scopes_are_parsed_in_canonical_order(text: str, scopes: tuple[str, ...]) -> None:
    assert parse_scopes(text) == scopes


@pytest.mark.parametrize("text", ["", ",", "admin", "search,admin", "Search"])
def test_unknown_or_no_scopes_are_refused(text: str) -> None:
    with pytest.raises(KeySpecError, match="subset of search,catalog"):
        parse_scopes(text)


def test_a_secret_is_stored_as_its_sha256() -> None:
    secret = "vs_" + "x" * 43
    assert digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert digest("vs_\udcff") != digest("vs_")  # an undecodable header still hashes, never raises


def test_a_key_without_its_own_limits_uses_the_gateway_defaults() -> None:
    auth = Authenticator(
        aioredis.Redis(), settings(auth_enabled=True, auth_rate_per_min=7, auth_daily_quota=99)
    )
    assert auth.enabled
    assert auth.limits_for(key()) == Limits(7, 99)
    assert auth.limits_for(key(rate=3)) == Limits(3, 99)
    assert auth.limits_for(key(rate=0, quota=5)) == Limits(0, 5)  # 0 = unlimited, not "default"


def test_auth_is_off_by_default() -> None:
    config = settings()
    assert (config.auth_enabled, config.auth_rate_per_min, config.auth_daily_quota) == (False, 120, 10_000)


def test_no_key_is_refused_before_any_redis_call() -> None:
    # A client on a port nobody listens on: a Redis call would fail with 503, not this 401.
    auth = Authenticator(aioredis.Redis(port=1), settings(auth_enabled=True))
    with pytest.raises(ApiError) as refused:
        asyncio.run(auth.authorize(None, "search"))
    assert (refused.value.status_code, refused.value.code) == (401, "missing_api_key")
    assert refused.value.headers == {"WWW-Authenticate": 'Bearer realm="visualsearch"'}
    assert "X-API-Key" in str(refused.value.detail)


def test_429_says_which_limit_and_when_to_retry() -> None:
    rate = too_many(key(), Limits(2, 10), Verdict(False, "rate", 30))
    assert (rate.status_code, rate.code, rate.headers) == (429, "rate_limited", {"Retry-After": "30"})
    assert "2 requests per minute" in str(rate.detail)
    quota = too_many(key(), Limits(2, 10), Verdict(False, "quota", 3600))
    assert (quota.code, quota.headers) == ("quota_exceeded", {"Retry-After": "3600"})
    assert "00:00 UTC" in str(quota.detail)


def test_the_quota_counter_is_per_utc_day() -> None:
    midnight = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    assert midnight % DAY_MS == 0
    assert day_of(midnight - 1) == "2025-12-31"
    assert day_of(midnight) == "2026-01-01"
    assert quota_key("abc", midnight) == "vs:apikey:quota:abc:2026-01-01"


def test_openapi_adds_the_key_errors_and_marks_the_key_optional_when_auth_is_off() -> None:
    operation: dict[str, Any] = {
        "security": [{"BearerKey": []}, {"ApiKeyHeader": []}],
        "responses": {"503": {"description": "A backend is unavailable"}},
    }
    document_operation(operation, enabled=False)
    assert set(operation["responses"]) == {"401", "403", "429", "503"}
    assert operation["responses"]["503"] == {"description": "A backend is unavailable"}  # kept as it was
    schema = operation["responses"]["429"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert operation["security"][-1] == {}
    on: dict[str, Any] = {"security": [{"BearerKey": []}]}
    document_operation(on, enabled=True)
    assert on["security"] == [{"BearerKey": []}]
