"""Streams and job accounting against a real redis-server."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from services.common.jobs import ItemError, Jobs
from services.common.streams import Streams
from services.scraper.config import ScraperSettings
from services.scraper.context import open_context
from services.scraper.stages.actions import Ack, Finish, Forward
from services.scraper.stages.settle import settle

T = TypeVar("T")


def run(redis_url: str, scenario: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushdb()
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_dead_workers_message_is_reclaimed_and_acked_messages_are_deleted(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        streams = Streams(client)
        await streams.ensure_group("s", "g")
        await streams.ensure_group("s", "g")  # idempotent
        await streams.add("s", {"product_id": "p1"})
        taken = await streams.read("s", "g", "worker-a", count=10, block_ms=100)
        assert [m.text("product_id") for m in taken] == ["p1"]
        # worker-a dies without acknowledging; worker-b takes over once the message is idle.
        assert await streams.reclaim("s", "g", "worker-b", min_idle_ms=60_000, count=10) == []
        await asyncio.sleep(0.05)
        reclaimed = await streams.reclaim("s", "g", "worker-b", min_idle_ms=10, count=10)
        assert [m.text("product_id") for m in reclaimed] == ["p1"]
        assert reclaimed[0].deliveries == 2
        await streams.forward(reclaimed[0], "g", "next", {"product_id": "p1"})
        assert await streams.length("s") == 0  # acknowledged and deleted
        assert await streams.length("next") == 1

    run(redis_url, scenario)


def test_back_pressure_waits_for_the_consumers(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        streams = Streams(client)
        await streams.ensure_group("s", "g")
        for i in range(3):
            await streams.add("s", {"n": str(i)})
        waiter = asyncio.create_task(streams.wait_below("s", high_water=3, poll_s=0.01))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        (first,) = await streams.read("s", "g", "c", count=1, block_ms=100)
        await streams.ack(first, "g")
        await asyncio.wait_for(waiter, 2)

    run(redis_url, scenario)


def test_each_item_counts_once_and_the_job_completes(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        jobs = Jobs(client)
        job_id = await jobs.create("import", {"feed_url": "https://shop.example/feed.csv"})
        assert (await jobs.get(job_id)).status == "queued"  # type: ignore[union-attr]
        await jobs.start(job_id)
        streams = Streams(client)
        for product_id in ("a", "b", "c"):
            assert await jobs.emit(job_id, product_id, "fetch", {"product_id": product_id})
        assert not await jobs.emit(job_id, "a", "fetch", {"product_id": "a"})  # once per job
        assert await streams.length("fetch") == 3
        assert await jobs.finish_item(job_id, "a", "done")
        assert not await jobs.finish_item(job_id, "a", "done")  # a redelivered item counts once
        error = ItemError("b", "fetch", "http_status", "image_url returned HTTP 404", http_status=404)
        assert await jobs.finish_item(job_id, "b", "failed", error)
        await jobs.finish_expansion(job_id)
        assert (await jobs.get(job_id)).status == "running"  # type: ignore[union-attr]
        await jobs.finish_item(job_id, "c", "skipped")
        status = await jobs.get(job_id)
        assert status is not None
        assert (status.status, status.done, status.skipped, status.failed, status.queued) == (
            "completed",
            1,
            1,
            1,
            0,
        )
        assert status.as_dict()["rate_per_s"] is not None
        assert await jobs.errors(job_id) == [
            {
                "product_id": "b",
                "stage": "fetch",
                "code": "http_status",
                "message": "image_url returned HTTP 404",
                "http_status": 404,
                "row": None,
                "url": None,
            }
        ]

    run(redis_url, scenario)


def test_a_job_with_no_items_completes_when_expanded(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        jobs = Jobs(client)
        job_id = await jobs.create("crawl", {})
        await jobs.start(job_id)
        await jobs.finish_expansion(job_id)
        assert (await jobs.get(job_id)).status == "completed"  # type: ignore[union-attr]
        other = await jobs.create("import", {})
        await jobs.fail(other, "the feed URL returned HTTP 500")
        failed = await jobs.get(other)
        assert failed is not None
        assert (failed.status, failed.message) == ("failed", "the feed URL returned HTTP 500")
        assert {j.job_id for j in await jobs.recent()} == {other, job_id}  # newest first

    run(redis_url, scenario)


def test_a_batch_is_settled_in_one_transaction(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        async with open_context(ScraperSettings(redis_url=redis_url), "w") as ctx:
            job_id = await ctx.jobs.create("import", {})
            await ctx.jobs.start(job_id)
            for pid in ("p1", "p2", "p3"):
                assert await ctx.jobs.emit(job_id, pid, "s", {"job_id": job_id, "product_id": pid})
            await ctx.jobs.finish_expansion(job_id)
            await ctx.streams.ensure_group("s", "g")
            await ctx.streams.add("s", {"kind": "not an item"})
            m1, m2, m3, m4 = await ctx.streams.read("s", "g", "w", count=10, block_ms=100)
            error = ItemError("p2", "g", "not_image", "not an image")
            await settle(
                ctx, "g", [(m1, Forward("next", {"product_id": "p1"})), (m2, Finish("failed", error)),
                           (m3, Finish("done")), (m4, Ack())],
            )  # fmt: skip
            assert await ctx.streams.length("s") == 0  # every message acknowledged and deleted
            assert (await client.xpending("s", "g"))["pending"] == 0
            assert await ctx.streams.length("next") == 1
            status = await ctx.jobs.get(job_id)
            assert status is not None
            # p1 moved on, p2 and p3 finished: the job waits for p1.
            assert (status.status, status.done, status.failed) == ("running", 1, 1)
            assert [e["code"] for e in await ctx.jobs.errors(job_id)] == ["not_image"]

    run(redis_url, scenario)
