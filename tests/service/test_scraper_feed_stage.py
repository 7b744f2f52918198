"""The feed stage, sync mode and the refresh scheduler against a real redis-server, feeds served by
a local HTTP server, and (for sync deletions) a fake indexer over real gRPC."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from services.common.jobs import JobStatus
from services.common.schedules import Schedules
from services.common.streams import FEEDS, FETCH, as_text
from services.scraper import feed_stage, schedule, sync
from services.scraper.config import ScraperSettings
from services.scraper.context import WorkerContext, open_context
from services.scraper.items import Item
from tests.service.feed_server import FeedServer, feed_server
from tests.service.gateway_fakes import FakeBackends, fake_backends

T = TypeVar("T")
Scenario = Callable[[WorkerContext], Awaitable[T]]

FEED = (
    "product_id,title,image_url,image_url_2,price,currency,color\n"
    "shoe-1,Red shoe,img/shoe-1.jpg,/img/shoe-1b.jpg,59.9,EUR,red\n"
    "shoe-2,Blue shoe,https://cdn.example/shoe-2.jpg,,45,EUR,blue\n"
    ",No id,img/x.jpg,,,,\n"
    "shoe-3,No image,,,,,\n"
    "shoe-2,Duplicate,img/dup.jpg,,,,\n"
    "shoe-4,Bad price,img/shoe-4.jpg,,cheap,,\n"
)


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        yield fakes


def run(redis_url: str, scenario: Scenario[T], **overrides: Any) -> T:
    async def main() -> T:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "allow_private_urls": True,
            "block_ms": 50,
            "sync_poll_s": 0.05,
            "scheduler_tick_s": 0.05,
            **overrides,
        }
        async with open_context(ScraperSettings(**values), name="test-worker") as ctx:
            await ctx.redis.flushdb()
            return await scenario(ctx)

    return asyncio.run(main())


@asynccontextmanager
async def running(ctx: WorkerContext, stage: Any = feed_stage) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(stage.run(ctx, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(ctx: WorkerContext, job_id: str, check: Callable[[JobStatus], bool]) -> JobStatus:
    deadline = time.monotonic() + 10
    while True:
        status = await ctx.jobs.get(job_id)
        assert status is not None
        if check(status):
            return status
        assert time.monotonic() < deadline, f"job never got there: {status}"
        await asyncio.sleep(0.02)


async def queue_import(ctx: WorkerContext, spec: dict[str, Any]) -> str:
    job_id = await ctx.jobs.create("import", spec)
    await ctx.streams.add(FEEDS, {"job_id": job_id})
    return job_id


async def queued_items(ctx: WorkerContext) -> list[Item]:
    entries: Any = await ctx.redis.xrange(FETCH)
    return [Item.from_json(fields[b"item"]) for _, fields in entries]


async def finish_queued(ctx: WorkerContext) -> None:
    """Plays the fetch/embed/index stages: every queued item is done."""
    entries: Any = await ctx.redis.xrange(FETCH)
    for entry_id, fields in entries:
        await ctx.jobs.finish_item(fields[b"job_id"].decode(), fields[b"product_id"].decode(), "done")
        await ctx.redis.xdel(FETCH, entry_id)


def test_a_feed_url_becomes_items_and_bad_rows_become_errors(redis_url: str, server: FeedServer) -> None:
    url = server.serve("/shop/feeds/feed.csv", FEED.encode())

    async def scenario(ctx: WorkerContext) -> None:
        async with running(ctx):
            job_id = await queue_import(ctx, {"feed_url": url, "source": "shop", "format": "auto"})
            status = await until(ctx, job_id, lambda s: s.expanded)
        assert (status.status, status.total, status.invalid_rows) == ("running", 2, 4)
        items = {item.product_id: item for item in await queued_items(ctx)}
        assert set(items) == {"shoe-1", "shoe-2"}
        shoe = items["shoe-1"]
        assert (shoe.source, shoe.row) == ("shop", 2)
        assert (
            shoe.meta["image_url"] == f"{server.base_url}/shop/feeds/img/shoe-1.jpg"
        )  # relative to the feed
        assert shoe.meta["image_urls"] == [f"{server.base_url}/img/shoe-1b.jpg"]
        assert (shoe.meta["price"], shoe.meta["attributes"]) == (59.9, {"color": "red"})
        errors = await ctx.jobs.errors(job_id)
        assert [(e["row"], e["product_id"], e["stage"], e["code"]) for e in errors] == [
            (4, "", "feed", "missing_product_id"),
            (5, "shoe-3", "feed", "no_image"),
            (6, "shoe-2", "feed", "duplicate_product_id"),
            (7, "shoe-4", "feed", "invalid_field"),
        ]
        await finish_queued(ctx)
        assert (await until(ctx, job_id, lambda s: s.status == "completed")).done == 2

    run(redis_url, scenario)


def test_a_refresh_of_an_unchanged_feed_costs_one_304(redis_url: str, server: FeedServer) -> None:
    url = server.serve(
        "/refresh.jsonl", b'{"product_id": "a", "image_url": "/a.jpg"}\n', "application/x-ndjson"
    )

    async def scenario(ctx: WorkerContext) -> None:
        first = await ctx.jobs.create("import", {"feed_url": url, "source": "s"})
        await feed_stage.handle_job(ctx, first)
        refresh = await ctx.jobs.create("import", {"feed_url": url, "source": "s", "previous_job_id": first})
        await feed_stage.handle_job(ctx, refresh)
        status = await ctx.jobs.get(refresh)
        assert status is not None
        assert (status.status, status.total) == ("completed", 0)
        assert status.message == "feed not modified since Mon, 01 Jan 2024 00:00:00 GMT"
        # A manual re-import (no previous run) reads the feed again, to re-check every item.
        again = await ctx.jobs.create("import", {"feed_url": url, "source": "s"})
        await feed_stage.handle_job(ctx, again)
        assert (await ctx.jobs.get(again)).total == 1  # type: ignore[union-attr]

    server.requests.clear()
    run(redis_url, scenario)
    conditional = [headers.get("If-None-Match") for path, headers in server.requests]
    assert conditional[0] is None
    assert conditional[1] is not None
    assert conditional[2] is None


@pytest.mark.parametrize(
    ("path", "body", "content_type", "message"),
    [
        ("/missing.csv", None, "", "returned HTTP 404"),
        ("/page.html", b"<!doctype html><p>shop</p>", "text/html", "looks like HTML"),
        ("/photo.csv", b"\xff\xd8\xff\xe0JFIF", "text/csv", "a JPEG image"),
        ("/nothing.csv", b"name,price\nshoe,1\n", "text/csv", "no product_id column"),
    ],
)
def test_an_unreadable_feed_fails_the_job_with_the_reason(
    redis_url: str, server: FeedServer, path: str, body: bytes | None, content_type: str, message: str
) -> None:
    url = server.serve(path, body, content_type) if body is not None else server.base_url + path

    async def scenario(ctx: WorkerContext) -> JobStatus:
        job_id = await ctx.jobs.create("import", {"feed_url": url})
        await feed_stage.handle_job(ctx, job_id)
        return await until(ctx, job_id, lambda s: s.status != "running")

    status = run(redis_url, scenario)
    assert status.status == "failed"
    assert message in status.message


def test_an_upload_is_read_once_even_when_the_job_is_retried(redis_url: str) -> None:
    async def scenario(ctx: WorkerContext) -> None:
        await ctx.redis.set("vs:feed:upload:t", FEED.encode())
        job_id = await ctx.jobs.create("import", {"feed_key": "vs:feed:upload:t", "filename": "f.csv"})
        await feed_stage.handle_job(ctx, job_id)
        # A worker that died before acknowledging: the next one reads the feed again.
        await ctx.redis.hdel(f"vs:job:{job_id}", "expanded")
        await ctx.redis.set("vs:feed:upload:t", FEED.encode())
        await feed_stage.handle_job(ctx, job_id)
        status = await ctx.jobs.get(job_id)
        assert status is not None
        # Relative image URLs in an upload have nothing to resolve against: shoe-1 is rejected too.
        assert (status.total, status.invalid_rows, len(await queued_items(ctx))) == (1, 5, 1)
        assert len(await ctx.jobs.errors(job_id)) == 5
        assert (await ctx.jobs.errors(job_id))[0]["product_id"] == "shoe-1"
        assert not await ctx.redis.exists("vs:feed:upload:t")  # dropped once read
        assert (await queued_items(ctx))[0].source == "f.csv"

        expired = await ctx.jobs.create("import", {"feed_key": "vs:feed:upload:gone"})
        await feed_stage.handle_job(ctx, expired)
        failed = await ctx.jobs.get(expired)
        assert failed is not None
        assert failed.status == "failed"
        assert "expired" in failed.message

    run(redis_url, scenario)


def test_sync_mode_deletes_what_the_feed_no_longer_lists(
    redis_url: str, server: FeedServer, backends: FakeBackends
) -> None:
    for product_id in ("keep-1", "keep-2", "bad-row", "gone-1", "gone-2", "other-source"):
        backends.indexer.add(product_id, (1, 0, 0))
    feed = (
        "product_id,image_url,price\n"
        "keep-1,/a.jpg,1\n"
        "keep-2,/b.jpg,2\n"
        "bad-row,/c.jpg,not-a-price\n"  # rejected, but still in the feed: kept
    )
    url = server.serve("/sync.csv", feed.encode())

    async def scenario(ctx: WorkerContext) -> JobStatus:
        await ctx.redis.sadd(sync.source_key("shop"), "keep-1", "keep-2", "bad-row", "gone-1", "gone-2")
        await ctx.redis.sadd(sync.source_key("elsewhere"), "other-source")
        async with running(ctx):
            job_id = await queue_import(ctx, {"feed_url": url, "source": "shop", "mode": "sync"})
            await until(ctx, job_id, lambda s: s.expanded)
            await asyncio.sleep(0.2)  # items still in flight: nothing may be deleted yet
            assert set(backends.indexer.products) >= {"gone-1", "gone-2"}
            await finish_queued(ctx)
            status = await until(ctx, job_id, lambda s: s.sync == "done")
        members = {as_text(m) for m in await ctx.redis.smembers(sync.source_key("shop"))}
        assert members == {"keep-1", "keep-2", "bad-row"}
        return status

    status = run(redis_url, scenario, indexer_addr=backends.addrs["indexer"])
    assert (status.status, status.deleted) == ("completed", 2)
    assert "deleted 2 products" in status.message
    assert set(backends.indexer.products) == {"keep-1", "keep-2", "bad-row", "other-source"}


def test_sync_deletes_nothing_after_a_failed_or_empty_import(redis_url: str, backends: FakeBackends) -> None:
    backends.indexer.add("precious", (0, 1, 0))

    async def scenario(ctx: WorkerContext) -> list[JobStatus]:
        await ctx.redis.sadd(sync.source_key("shop"), "precious")
        failed = await ctx.jobs.create("import", {"source": "shop", "mode": "sync"})
        await ctx.jobs.fail(failed, "the feed at ... returned HTTP 500")
        empty = await ctx.jobs.create("import", {"source": "shop", "mode": "sync"})
        await ctx.jobs.start(empty)
        await ctx.jobs.finish_expansion(empty)
        for job_id in (failed, empty):
            await sync.request(ctx.redis, job_id)
            await sync.settle(ctx, job_id)
        return [s for s in [await ctx.jobs.get(failed), await ctx.jobs.get(empty)] if s]

    statuses = run(redis_url, scenario, indexer_addr=backends.addrs["indexer"])
    assert [(s.sync, s.deleted) for s in statuses] == [("skipped", 0), ("skipped", 0)]
    assert "precious" in backends.indexer.products


def test_the_scheduler_starts_due_runs_once_and_never_over_a_running_one(redis_url: str) -> None:
    async def scenario(ctx: WorkerContext) -> None:
        schedules = Schedules(ctx.redis)
        spec = {"feed_url": "https://shop.example/feed.csv", "source": "shop", "refresh_interval_s": 60}
        first = await ctx.jobs.create("import", spec)
        await schedules.add(first, "import", spec, 60, next_run_at_ms=0)
        assert await schedule.run_due(ctx, schedules, 1000) == []  # the first run has not run yet
        await ctx.jobs.start(first)
        await ctx.jobs.finish_expansion(first)  # completed, no items
        # Two schedulers ticking together: the lock lets one of them start the run.
        async with running(ctx, schedule), running(ctx, schedule):
            await asyncio.sleep(0.3)
        runs = [s for s in await ctx.jobs.recent() if s.job_id != first]
        assert len(runs) == 1
        assert runs[0].spec == {**spec, "schedule_id": first, "previous_job_id": first}
        queued: Any = await ctx.redis.xrange(FEEDS)
        assert [f[b"job_id"].decode() for _, f in queued] == [runs[0].job_id]
        current = await schedules.get(first)
        assert current is not None
        assert current.last_job_id == runs[0].job_id
        assert current.next_run_at_ms is not None
        assert current.next_run_at_ms > time.time() * 1000 + 50_000
        assert await schedules.remove(first)
        assert await schedules.due(2**62) == []

    run(redis_url, scenario, min_refresh_interval_s=1)


def test_a_feed_being_read_is_not_reclaimed_by_another_worker(redis_url: str) -> None:
    async def scenario(ctx: WorkerContext) -> None:
        await ctx.streams.ensure_group(FEEDS, feed_stage.GROUP)
        await ctx.streams.add(FEEDS, {"job_id": "j"})
        (message,) = await ctx.streams.read(FEEDS, feed_stage.GROUP, ctx.consumer, 1, 50)
        heartbeat = asyncio.create_task(feed_stage.keep_claimed(ctx, message))
        await asyncio.sleep(0.5)  # several idle periods: a dead worker's message would be up for grabs
        assert await ctx.streams.reclaim(FEEDS, feed_stage.GROUP, "other", 250, 10) == []
        heartbeat.cancel()
        await asyncio.sleep(0.3)
        (taken,) = await ctx.streams.reclaim(FEEDS, feed_stage.GROUP, "other", 250, 10)
        assert (taken.id, taken.deliveries) == (message.id, 2)  # the heartbeat never counted as a delivery

    run(redis_url, scenario, reclaim_idle_s=0.25)


def test_a_feed_that_keeps_killing_its_workers_fails_the_job(redis_url: str) -> None:
    async def scenario(ctx: WorkerContext) -> JobStatus:
        await ctx.streams.ensure_group(FEEDS, feed_stage.GROUP)
        job_id = await queue_import(ctx, {"feed_url": "https://shop.example/f.csv"})
        # A worker took the job and died: its delivery stays pending.
        await ctx.streams.read(FEEDS, feed_stage.GROUP, "dead-worker", 1, 50)
        async with running(ctx):
            status = await until(ctx, job_id, lambda s: s.status == "failed")
        dead: Any = await ctx.redis.xrange("vs:ingest:dead")
        assert [f[b"job_id"].decode() for _, f in dead] == [job_id]
        assert await ctx.streams.length(FEEDS) == 0
        return status

    status = run(redis_url, scenario, reclaim_idle_s=0.05, max_attempts=1)
    assert (
        status.message == "gave up on the feed after 1 attempt(s): the workers reading it crashed or failed"
    )
