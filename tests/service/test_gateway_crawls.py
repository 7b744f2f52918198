"""POST /v1/crawls on the real gateway app (fake gRPC backends) with a real Redis."""

import asyncio
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from services.common.jobs import Jobs
from services.common.schedules import Schedule, Schedules
from services.common.streams import CRAWLS
from services.gateway.app import create_app
from services.scraper.crawler.spec import CrawlSpec
from tests.service.gateway_fakes import FakeBackends, fake_backends


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        yield fakes


@contextmanager
def gateway(backends: FakeBackends, redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(backends.settings(redis_url=redis_url))) as client:
        yield client


def job_hash(store: redis.Redis, job_id: str) -> dict[str, str]:
    raw: Any = store.hgetall(Jobs.key(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_a_crawl_is_queued_with_every_default_spelled_out(
    backends: FakeBackends, redis_url: str, store: redis.Redis
) -> None:
    with gateway(backends, redis_url) as client:
        reply = client.post(
            "/v1/crawls", json={"start_urls": ["https://Shop.Example/", "https://shop.example/sale"]}
        )
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert reply.json() == {
        "job_id": job_id,
        "status_url": f"/v1/imports/{job_id}",
        "errors_url": f"/v1/imports/{job_id}/errors",
    }
    assert reply.headers["location"] == f"/v1/imports/{job_id}"
    job = job_hash(store, job_id)
    assert (job["kind"], job["status"]) == ("crawl", "queued")
    spec = json.loads(job["spec"])
    assert spec == {
        "start_urls": ["https://Shop.Example/", "https://shop.example/sale"],
        "allowed_domains": ["shop.example"],
        "max_pages": 200,
        "max_depth": 3,
        "rate_per_host": 1.0,
        "concurrency": 4,
        "source": "crawl:shop.example",
        "refresh_interval_s": None,
        "mode": "upsert",
    }
    assert CrawlSpec.from_dict(spec).allowed_domains == ("shop.example",)  # what the crawler reads
    entries: Any = store.xrange(CRAWLS)
    assert [fields for _, fields in entries] == [{b"job_id": job_id.encode()}]


def test_explicit_settings_and_a_refresh_schedule(
    backends: FakeBackends, redis_url: str, store: redis.Redis
) -> None:
    body = {
        "start_urls": ["https://www.shop.example/c/bags"],
        "allowed_domains": ["Shop.Example.", "www.shop.example", "bücher.example", "[::1]"],
        "max_pages": 10_000,
        "max_depth": 0,
        "rate_per_host": 0.5,
        "concurrency": 32,
        "source": "bags-shop",
        "refresh_interval_s": 3600,
        "mode": "sync",
    }
    with gateway(backends, redis_url) as client:
        reply = client.post("/v1/crawls", json=body)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    spec = json.loads(job_hash(store, job_id)["spec"])
    assert spec["allowed_domains"] == ["shop.example", "www.shop.example", "xn--bcher-kva.example", "::1"]
    assert {k: spec[k] for k in ("max_pages", "max_depth", "source", "mode")} == {
        "max_pages": 10_000,
        "max_depth": 0,
        "source": "bags-shop",
        "mode": "sync",
    }

    async def schedule() -> Schedule | None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await Schedules(client).get(job_id)
        finally:
            await client.aclose()

    found = asyncio.run(schedule())
    assert found is not None
    assert (found.kind, found.interval_s, found.spec) == ("crawl", 3600, spec)


URL = "https://shop.example/"


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({}, ["body", "start_urls"], "Field required"),
        ({"start_urls": []}, ["body", "start_urls"], "List should have at least 1 item"),
        ({"start_urls": [URL] * 101}, ["body", "start_urls"], "List should have at most 100 items"),
        (
            {"start_urls": ["ftp://shop.example/"]},
            ["body", "start_urls", 0],
            "must be an absolute http(s) URL",
        ),
        ({"start_urls": [URL, "/c/bags"]}, ["body", "start_urls", 1], "must be an absolute http(s) URL"),
        ({"start_urls": ["https://shop.example/a b"]}, ["body", "start_urls", 0], "must not contain spaces"),
        ({"start_urls": ["https://shop.example:99999/"]}, ["body", "start_urls", 0], "is not a valid URL"),
        (
            {"start_urls": [URL], "allowed_domains": ["https://shop.example"]},
            ["body", "allowed_domains", 0],
            "must be a bare host name, without scheme, port or path",
        ),
        (
            {"start_urls": [URL], "allowed_domains": ["shop..example"]},
            ["body", "allowed_domains", 0],
            "is not a valid host name",
        ),
        (
            {"start_urls": [URL, "https://www.shop.example/"], "allowed_domains": ["shop.example"]},
            ["body"],
            "start_urls[1] (https://www.shop.example/) is on www.shop.example, which is not in allowed_domains",
        ),
        ({"start_urls": [URL], "max_pages": 0}, ["body", "max_pages"], "greater than or equal to 1"),
        ({"start_urls": [URL], "max_pages": 10_001}, ["body", "max_pages"], "less than or equal to 10000"),
        ({"start_urls": [URL], "max_depth": 11}, ["body", "max_depth"], "less than or equal to 10"),
        ({"start_urls": [URL], "rate_per_host": 0}, ["body", "rate_per_host"], "greater than 0"),
        ({"start_urls": [URL], "rate_per_host": 11}, ["body", "rate_per_host"], "less than or equal to 10"),
        ({"start_urls": [URL], "concurrency": 33}, ["body", "concurrency"], "less than or equal to 32"),
        ({"start_urls": [URL], "source": "my shop"}, ["body", "source"], "should match pattern"),
        (
            {"start_urls": [URL], "refresh_interval_s": 10},
            ["body", "refresh_interval_s"],
            "greater than or equal to 60",
        ),
        ({"start_urls": [URL], "mode": "mirror"}, ["body", "mode"], "Input should be 'upsert' or 'sync'"),
        ({"start_urls": [URL], "depth": 2}, ["body", "depth"], "Extra inputs are not permitted"),
    ],
)
def test_invalid_requests_get_precise_422s(
    backends: FakeBackends,
    redis_url: str,
    store: redis.Redis,
    body: dict[str, Any],
    loc: list[Any],
    message: str,
) -> None:
    with gateway(backends, redis_url) as client:
        reply = client.post("/v1/crawls", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "validation_error"
    (error,) = reply.json()["detail"]
    assert error["loc"] == loc
    assert message in error["msg"]
    assert store.xlen(CRAWLS) == 0
    assert store.keys("vs:job:*") == []


def test_redis_down_is_a_503(backends: FakeBackends) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens there once the socket closes
    with gateway(backends, f"redis://127.0.0.1:{closed_port}/0") as client:
        reply = client.post("/v1/crawls", json={"start_urls": [URL]})
    assert reply.status_code == 503
    assert reply.json() == {
        "detail": "the job store (Redis) is unavailable; try again later",
        "code": "queue_unavailable",
    }


def test_a_start_url_on_a_private_address_is_422(backends: FakeBackends, redis_url: str) -> None:
    settings = backends.settings(redis_url=redis_url, allow_private_urls=False)
    with TestClient(create_app(settings)) as strict:
        reply = strict.post("/v1/crawls", json={"start_urls": ["http://169.254.169.254/latest/meta-data/"]})
    assert (reply.status_code, reply.json()["code"]) == (422, "start_url_blocked")
    assert "start_urls[0]" in reply.json()["detail"]
