"""API keys through the real gateway app (fake gRPC backends) with VS_GATEWAY_AUTH_ENABLED, a real
redis-server, and keys made and revoked by the real ``visualsearch keys`` command in a subprocess."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from services.devstack.ephemeral import free_port
from services.gateway.auth.deps import Authenticator
from services.gateway.auth.ratelimit import DAY_MS
from tests.service.gateway_fakes import FakeBackends, encode, fake_backends, gateway

RED = encode(Image.new("RGB", (64, 64), (230, 10, 10)))
CHALLENGE = 'Bearer realm="visualsearch"'
NOON = (int(time.time() * 1000) // DAY_MS + 3) * DAY_MS + DAY_MS // 2  # ahead: Redis expires by its clock


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def keys_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "keys", *args],
        env={**os.environ, "VS_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create_key(redis_url: str, name: str, *options: str) -> tuple[str, str]:
    """(key id, secret) of a key made by `visualsearch keys create`."""
    done = keys_cli(redis_url, "create", "--name", name, *options)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert re.fullmatch(r"vs_[A-Za-z0-9_-]{43}", secret), done.stdout  # the key alone on stdout
    found = re.search(r"created key ([0-9a-f]{12}) ", done.stderr)
    assert found, done.stderr
    return found.group(1), secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        fakes.indexer.add("red-bag", (1, 0, 0), title="Red bag", category="bags")
        yield fakes


@pytest.fixture(scope="module")
def client(backends: FakeBackends, redis_url: str) -> Iterator[TestClient]:
    with gateway(backends, redis_url=redis_url, auth_enabled=True) as test_client:
        yield test_client


@pytest.fixture
def clock(client: TestClient) -> Iterator[Clock]:
    """Moves the gateway's rate-limit clock by hand, so no test waits or races real time."""
    auth = cast(Authenticator, cast(FastAPI, client.app).state.auth)
    fake = Clock(NOON)
    auth.limiter.clock = fake
    yield fake
    auth.limiter.clock = time.time


def search(client: TestClient, headers: dict[str, str] | None = None) -> httpx.Response:
    response: httpx.Response = client.post(
        "/v1/search",
        files={"image": ("red.jpg", RED, "image/jpeg")},
        data={"detect": "false"},
        headers=headers,
    )
    return response


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"detail", "code"}, body
    assert body["code"] == code, body
    return body


def test_a_valid_key_searches_by_bearer_or_x_api_key(client: TestClient, redis_url: str) -> None:
    key_id, secret = create_key(redis_url, "shop app", "--scopes", "search")
    for headers in (bearer(secret), {"X-API-Key": secret}):
        found = search(client, headers)
        assert found.status_code == 200, found.text
        assert found.json()["objects"][0]["matches"][0]["product_id"] == "red-bag"
    similar = client.get("/v1/products/red-bag/similar", headers=bearer(secret))
    assert similar.status_code == 200, similar.text
    assert client.get("/v1/products/red-bag", headers=bearer(secret)).status_code == 200
    row = next(line for line in keys_cli(redis_url, "list").stdout.splitlines() if line.startswith(key_id))
    assert re.fullmatch(r"[0-9a-f]{12}\s+search\s+default\s+default\s+4\s+\S+ \S+\s+-\s+shop app", row), row


def test_no_key_or_an_unknown_one_is_401_with_a_challenge(client: TestClient) -> None:
    missing = search(client)
    body = assert_error(missing, 401, "missing_api_key")
    assert missing.headers["www-authenticate"] == CHALLENGE
    assert "X-API-Key" in body["detail"]
    for path in ("/v1/products", "/v1/imports", "/v1/products/red-bag/similar"):
        assert_error(client.get(path), 401, "missing_api_key")
    assert_error(client.put("/v1/products/p1", json={"title": "x"}), 401, "missing_api_key")
    unknown = search(client, {"X-API-Key": "vs_" + "A" * 43})
    assert_error(unknown, 401, "invalid_api_key")
    assert unknown.headers["www-authenticate"] == f'{CHALLENGE}, error="invalid_token"'
    assert_error(search(client, {"Authorization": "Basic dXNlcjpwYXNz"}), 401, "missing_api_key")


def test_ops_routes_and_the_ui_stay_open(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/", "/video", "/catalog", "/static/app.js", "/docs"):
        assert client.get(path).status_code == 200, path
    assert client.get("/readyz").json()["services"]["redis"] == "SERVING"  # keys need Redis


def test_a_search_key_cannot_write_the_catalog(
    client: TestClient, backends: FakeBackends, redis_url: str
) -> None:
    _, secret = create_key(redis_url, "reader", "--scopes", "search")
    put = client.put("/v1/products/new-1", json={"title": "New", "image": ""}, headers=bearer(secret))
    body = assert_error(put, 403, "insufficient_scope")
    assert "`catalog`" in body["detail"]
    assert put.headers["www-authenticate"] == f'{CHALLENGE}, error="insufficient_scope", scope="catalog"'
    assert "new-1" not in backends.indexer.products
    assert_error(client.delete("/v1/products/red-bag", headers=bearer(secret)), 403, "insufficient_scope")
    assert "red-bag" in backends.indexer.products
    feed = {"feed": ("f.csv", b"product_id,title,image_url\np,T,/media/x.jpg\n", "text/csv")}
    assert_error(client.post("/v1/imports", files=feed, headers=bearer(secret)), 403, "insufficient_scope")
    crawl = {"start_urls": ["https://shop.example/"]}
    assert_error(client.post("/v1/crawls", json=crawl, headers=bearer(secret)), 403, "insufficient_scope")
    video = {"video_url": "/media/clip.mp4"}
    assert_error(client.post("/v1/videos", json=video, headers=bearer(secret)), 403, "insufficient_scope")


def test_a_catalog_key_writes_but_does_not_search(
    client: TestClient, backends: FakeBackends, redis_url: str
) -> None:
    _, secret = create_key(redis_url, "feed robot", "--scopes", "catalog")
    put = client.put(
        "/v1/products/cat-1", data={"title": "Cat"}, files={"image": ("r.jpg", RED)}, headers=bearer(secret)
    )
    assert put.status_code == 200, put.text
    assert "cat-1" in backends.indexer.products
    assert client.get("/v1/imports", headers=bearer(secret)).status_code == 200
    assert_error(search(client, bearer(secret)), 403, "insufficient_scope")
    _, both = create_key(redis_url, "admin", "--scopes", "search,catalog")
    assert client.delete("/v1/products/cat-1", headers=bearer(both)).status_code == 200
    assert search(client, bearer(both)).status_code == 200


def test_over_the_rate_is_429_with_retry_after(client: TestClient, redis_url: str, clock: Clock) -> None:
    _, secret = create_key(redis_url, "bursty", "--scopes", "search", "--rate-per-min", "2")
    assert [search(client, bearer(secret)).status_code for _ in range(2)] == [200, 200]
    refused = search(client, bearer(secret))
    body = assert_error(refused, 429, "rate_limited")
    assert refused.headers["retry-after"] == "30"  # 2 per minute: the next slot frees in 30 s
    assert "2 requests per minute" in body["detail"]
    clock.ms += 30_000
    assert search(client, bearer(secret)).status_code == 200


def test_the_daily_quota_is_429_until_utc_midnight(client: TestClient, redis_url: str, clock: Clock) -> None:
    _, secret = create_key(
        redis_url, "trial", "--scopes", "search", "--daily-quota", "3", "--rate-per-min", "0"
    )
    assert [search(client, bearer(secret)).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/v1/products", headers=bearer(secret))
    assert_error(refused, 429, "quota_exceeded")
    assert refused.headers["retry-after"] == str(12 * 3600)  # noon -> midnight UTC
    clock.ms += 12 * 3600 * 1000
    assert client.get("/v1/products", headers=bearer(secret)).status_code == 200


def test_a_revoked_key_is_refused_at_once(client: TestClient, redis_url: str) -> None:
    key_id, secret = create_key(redis_url, "leaked", "--scopes", "search")
    assert search(client, bearer(secret)).status_code == 200
    revoked = keys_cli(redis_url, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    refused = search(client, bearer(secret))
    body = assert_error(refused, 401, "revoked_api_key")
    assert key_id in body["detail"]
    assert refused.headers["www-authenticate"] == f'{CHALLENGE}, error="invalid_token"'
    row = next(line for line in keys_cli(redis_url, "list").stdout.splitlines() if line.startswith(key_id))
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+leaked$", row), row
    assert keys_cli(redis_url, "revoke", "000000000000").returncode == 1


def test_keys_run_gives_a_job_a_key_that_dies_with_it(client: TestClient, redis_url: str) -> None:
    """`keys run` (the compose demo loader): a key in $VS_API_KEY for the command's lifetime only."""
    job = "import os, sys; print(os.environ['VS_API_KEY']); sys.exit(3)"
    done = keys_cli(
        redis_url, "run", "--name", "loader", "--scopes", "search", "--", sys.executable, "-c", job
    )
    assert done.returncode == 3, done.stderr  # the command's own exit code
    secret = done.stdout.strip()
    assert re.fullmatch(r"vs_[A-Za-z0-9_-]{43}", secret), done.stdout
    assert_error(search(client, bearer(secret)), 401, "revoked_api_key")
    assert keys_cli(redis_url, "run", "--name", "x", "--scopes", "search").returncode == 2  # no command


def test_the_cli_refuses_bad_keys(redis_url: str, store: redis.Redis) -> None:
    assert keys_cli(redis_url, "create", "--name", "x", "--scopes", "admin").returncode == 2
    assert (
        keys_cli(redis_url, "create", "--name", "x", "--scopes", "search", "--daily-quota", "-1").returncode
        == 2
    )
    assert keys_cli(redis_url, "create", "--name", "", "--scopes", "search").returncode == 1
    assert store.keys("vs:apikey*") == []
    down = keys_cli(f"redis://127.0.0.1:{free_port()}/0", "list")
    assert down.returncode == 1
    assert "error: Redis at" in down.stderr


def test_rejections_are_counted_by_reason(client: TestClient) -> None:
    def count(reason: str) -> float:
        text = client.get("/metrics").text
        found = re.search(rf'vs_gateway_auth_rejections_total\{{reason="{reason}"\}} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    before = count("missing_api_key")
    search(client)
    assert count("missing_api_key") == before + 1


def test_openapi_declares_both_ways_to_send_a_key(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKeyHeader"]["description"],
    }
    assert (schemes["BearerKey"]["type"], schemes["BearerKey"]["scheme"]) == ("http", "bearer")
    post = schema["paths"]["/v1/search"]["post"]
    assert {name for requirement in post["security"] for name in requirement} == {"ApiKeyHeader", "BearerKey"}
    assert {} not in post["security"]  # auth on: a key is required
    assert {"401", "403", "429", "503"} <= set(post["responses"])
    assert post["responses"]["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "security" not in schema["paths"]["/healthz"]["get"]
    keyed = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "security" in operation
    }
    every_v1 = {(p, m) for p, ops in schema["paths"].items() for m in ops if p.startswith("/v1/")}
    assert every_v1 - keyed == set()


def test_redis_down_is_503_not_500(backends: FakeBackends) -> None:
    with gateway(backends, redis_url=f"redis://127.0.0.1:{free_port()}/0", auth_enabled=True) as down:
        body = assert_error(search(down, {"X-API-Key": "vs_" + "A" * 43}), 503, "auth_unavailable")
        assert "try later" in body["detail"]
        assert_error(search(down), 401, "missing_api_key")  # no key needs no store
        assert down.get("/healthz").status_code == 200
        ready = down.get("/readyz")  # not ready: no call with a key could be answered
        assert ready.status_code == 503, ready.text
        assert ready.json()["services"]["redis"] == "UNAVAILABLE"


def test_with_auth_off_no_key_and_no_redis_are_needed(backends: FakeBackends) -> None:
    with gateway(backends, redis_url=f"redis://127.0.0.1:{free_port()}/0") as open_gateway:
        assert search(open_gateway).status_code == 200
        assert search(open_gateway, {"X-API-Key": "anything"}).status_code == 200
        assert "redis" not in open_gateway.get("/readyz").json()["services"]  # searches never need it
        post = open_gateway.get("/openapi.json").json()["paths"]["/v1/search"]["post"]
        assert {} in post["security"]  # documented as optional
