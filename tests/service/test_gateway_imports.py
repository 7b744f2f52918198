"""Import routes: POST /v1/imports, job status, errors, schedules, against a real redis-server and
the real feed stage (fake gRPC backends behind the gateway)."""

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.streams import FEEDS
from services.gateway.app import create_app
from services.scraper import feed_stage
from services.scraper.config import ScraperSettings
from services.scraper.context import open_context
from tests.service.gateway_fakes import FakeBackends, fake_backends

MAX_FEED_BYTES = 4096
FEED = (
    b"product_id,title,image_url\np1,One,/media/1.jpg\np2,Two,\n,Three,/media/3.jpg\np4,Four,/media/4.jpg\n"
)


def app_with_imports(backends: FakeBackends, **overrides: Any) -> FastAPI:
    return create_app(backends.settings(max_feed_bytes=MAX_FEED_BYTES, **overrides))


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        yield fakes


@pytest.fixture(scope="module")
def client(backends: FakeBackends, redis_url: str) -> Iterator[TestClient]:
    with TestClient(app_with_imports(backends, redis_url=redis_url)) as test_client:
        yield test_client


def spec_of(store: redis.Redis, job_id: str) -> dict[str, Any]:
    return dict(json.loads(store.hget(f"vs:job:{job_id}", "spec") or "{}"))


def read_feed(redis_url: str, job_id: str) -> None:
    """What a feed worker does with the job."""

    async def main() -> None:
        async with open_context(ScraperSettings(redis_url=redis_url)) as ctx:
            await feed_stage.handle_job(ctx, job_id)

    asyncio.run(main())


def test_an_uploaded_feed_is_queued_read_and_reported(
    client: TestClient, store: redis.Redis, redis_url: str
) -> None:
    reply = client.post(
        "/v1/imports", files={"feed": ("catalog.csv", FEED, "text/csv")}, data={"mode": "sync"}
    )
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert reply.json()["status_url"] == reply.headers["location"] == f"/v1/imports/{job_id}"
    spec = spec_of(store, job_id)
    assert (spec["source"], spec["filename"], spec["mode"], spec["format"]) == (
        "catalog.csv",
        "catalog.csv",
        "sync",
        "auto",
    )
    assert store.get(spec["feed_key"]) == FEED
    assert 0 < store.ttl(spec["feed_key"]) <= 86400
    queued: Any = store.xrange(FEEDS)
    assert [f[b"job_id"].decode() for _, f in queued] == [job_id]
    queued = client.get(f"/v1/imports/{job_id}").json()
    assert (queued["status"], queued["total"], queued["next_run_at_ms"]) == ("queued", 0, None)

    read_feed(redis_url, job_id)
    job = client.get(f"/v1/imports/{job_id}").json()
    assert {
        k: job[k] for k in ("kind", "status", "total", "queued", "done", "invalid_rows", "expanded", "sync")
    } == {
        "kind": "import",
        "status": "running",
        "total": 2,
        "queued": 2,
        "done": 0,
        "invalid_rows": 2,
        "expanded": True,
        "sync": "pending",
    }
    first = client.get(f"/v1/imports/{job_id}/errors", params={"limit": 1}).json()
    rest = client.get(f"/v1/imports/{job_id}/errors", params={"offset": first["next_offset"]}).json()
    assert first["next_offset"] == 1
    assert rest["next_offset"] is None
    past_the_end = client.get(f"/v1/imports/{job_id}/errors", params={"offset": 2**32}).json()
    assert (past_the_end["errors"], past_the_end["next_offset"]) == ([], None)
    too_far = client.get(f"/v1/imports/{job_id}/errors", params={"offset": 2**64})  # was a 503 from Redis
    assert too_far.status_code == 422
    assert too_far.json()["code"] == "validation_error"
    assert [(e["row"], e["product_id"], e["code"]) for e in first["errors"] + rest["errors"]] == [
        (3, "p2", "no_image"),
        (4, "", "missing_product_id"),
    ]
    listed = client.get("/v1/imports", params={"kind": "import"}).json()["imports"]
    assert [j["job_id"] for j in listed] == [job_id]


def test_a_feed_url_with_a_refresh_schedule(client: TestClient, store: redis.Redis) -> None:
    before = int(time.time() * 1000)
    reply = client.post(
        "/v1/imports",
        data={"feed_url": "https://shop.example/feed.jsonl", "refresh_interval_s": "3600", "source": ""},
    )
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert spec_of(store, job_id) == {
        "format": "auto",
        "mode": "upsert",
        "feed_url": "https://shop.example/feed.jsonl",
        "source": "https://shop.example/feed.jsonl",
        "refresh_interval_s": 3600,
    }
    job = client.get(f"/v1/imports/{job_id}").json()
    assert job["schedule_id"] == job_id
    assert job["refresh_interval_s"] == 3600
    assert before + 3_600_000 <= job["next_run_at_ms"] <= int(time.time() * 1000) + 3_600_000
    stopped = client.delete(f"/v1/imports/{job_id}/schedule")
    assert stopped.json() == {"job_id": job_id, "schedule_id": job_id, "stopped": True}
    assert client.get(f"/v1/imports/{job_id}").json()["next_run_at_ms"] is None
    again = client.delete(f"/v1/imports/{job_id}/schedule")  # idempotent: nothing left to stop
    assert again.json() == {"job_id": job_id, "schedule_id": job_id, "stopped": False}


def test_a_json_body_with_a_feed_url(client: TestClient, store: redis.Redis) -> None:
    reply = client.post("/v1/imports", json={"feed_url": "http://shop.example/f.csv", "format": "csv"})
    assert reply.status_code == 202, reply.text
    assert spec_of(store, reply.json()["job_id"])["format"] == "csv"


@pytest.mark.parametrize(
    ("files", "data", "fragment"),
    [
        (None, {"mode": "upsert"}, "either as a `feed` file upload or as a `feed_url`"),
        ({"feed": ("f.csv", FEED)}, {"feed_url": "https://shop.example/f.csv"}, "not both"),
        ({"feed": ("f.csv", b" \n")}, {}, "the uploaded feed is empty"),
        ({"feed": ("f.csv", FEED)}, {"refresh_interval_s": "3600"}, "needs a feed_url"),
        (None, {"feed_url": "/feeds/f.csv"}, "absolute http(s) URL"),
        (None, {"feed_url": "ftp://shop.example/f.csv"}, "absolute http(s) URL"),
        (
            None,
            {"feed_url": "https://shop.example/f.csv", "refresh_interval_s": "5"},
            "greater than or equal to 60",
        ),
        (None, {"feed_url": "https://shop.example/f.csv", "mode": "mirror"}, "'upsert' or 'sync'"),
        (None, {"feed_url": "https://shop.example/f.csv", "colour": "red"}, "Extra inputs"),
        ({"image": ("f.csv", FEED)}, {}, "upload the feed as `feed`"),
    ],
)
def test_bad_requests_are_422_with_the_reason(
    client: TestClient, store: redis.Redis, files: Any, data: dict[str, str], fragment: str
) -> None:
    reply = client.post("/v1/imports", files=files, data=data)
    assert reply.status_code == 422, reply.text
    assert fragment in json.dumps(reply.json()["detail"])
    assert store.xlen(FEEDS) == 0


def test_size_limits_and_media_types(client: TestClient, store: redis.Redis) -> None:
    over = client.post("/v1/imports", files={"feed": ("f.csv", b"x" * (MAX_FEED_BYTES + 1))})
    assert (over.status_code, over.json()["code"]) == (413, "too_large")
    assert f"limit of {MAX_FEED_BYTES} bytes" in over.json()["detail"]
    way_over = client.post("/v1/imports", files={"feed": ("f.csv", b"x" * (MAX_FEED_BYTES + 200_000))})
    assert way_over.status_code == 413  # refused by the body limit before it is buffered
    text = client.post("/v1/imports", content=b"product_id\n", headers={"content-type": "text/csv"})
    assert text.status_code == 415
    assert store.xlen(FEEDS) == 0


def test_unknown_and_malformed_job_ids(client: TestClient, store: redis.Redis) -> None:
    unknown = "0" * 32
    assert client.get(f"/v1/imports/{unknown}").status_code == 404
    assert client.get(f"/v1/imports/{unknown}/errors").status_code == 404
    assert client.delete(f"/v1/imports/{unknown}/schedule").status_code == 404
    assert client.get("/v1/imports/not-a-job").status_code == 422


def test_without_redis_the_ingest_routes_answer_503(backends: FakeBackends) -> None:
    app = app_with_imports(backends, redis_url="redis://127.0.0.1:1/0")
    with TestClient(app) as offline:
        posted = offline.post("/v1/imports", data={"feed_url": "https://shop.example/f.csv"})
        status = offline.get(f"/v1/imports/{'0' * 32}")
    for reply in (posted, status):
        assert (reply.status_code, reply.json()["code"]) == (503, "queue_unavailable")


def test_the_openapi_schema_describes_the_job(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    job = schema["components"]["schemas"]["ImportJob"]["properties"]
    assert {"total", "queued", "done", "skipped", "failed", "invalid_rows", "rate_per_s", "eta_s"} <= set(job)
    post = schema["paths"]["/v1/imports"]["post"]
    assert "feed" in post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert "202" in post["responses"]


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/feed.csv", "http://169.254.169.254/latest", "ftp://a.example/f"]
)
def test_a_feed_url_a_worker_would_refuse_is_422_before_any_job(
    backends: FakeBackends, redis_url: str, store: redis.Redis, url: str
) -> None:
    app = app_with_imports(backends, redis_url=redis_url, allow_private_urls=False)
    with TestClient(app) as strict:
        reply = strict.post("/v1/imports", json={"feed_url": url})
    assert reply.status_code == 422
    assert reply.json()["code"] in ("feed_url_blocked", "validation_error")  # ftp: the schema's check
    assert not store.keys("vs:job:*")
