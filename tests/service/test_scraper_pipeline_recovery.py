"""Delivery under failure: dead workers, a backend outage, and items that never succeed.

Everything is real (Redis, embedder, indexer, HTTP); a "dead worker" is a consumer that reads
messages and never acknowledges them, exactly what a kill -9 leaves behind.
"""

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from services.common.gen.visualsearch.v1 import indexer_pb2
from services.common.streams import DEAD, EMBED, FETCH, INDEX
from services.scraper.items import Item
from services.scraper.stages.payload import read_index
from tests.paths import ROOT
from tests.service.scraper_pipeline_harness import DEADLINE_S, PHOTOS, image_server, pipeline, product


def test_a_dead_workers_messages_are_reclaimed_and_indexed_exactly_once(
    redis_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            urls = [web.add_photo(photo) for photo in PHOTOS[:9]]
            items = [product(f"p{n}", urls[n : n + 2] if n < 3 else [urls[n + 3]], row=n) for n in range(6)]
            async with pipeline(redis_url, tmp_path / "index", reclaim_idle_s=0.5) as p:
                job_id = await p.emit(items)
                await p.streams.ensure_group(FETCH, "fetch")
                # A fetch worker takes two items and dies.
                taken = await p.streams.read(FETCH, "fetch", "dead-fetcher", count=2, block_ms=100)
                assert len(taken) == 2
                async with p.worker("fetch,embed"):
                    await p.wait_for_length(INDEX, len(items))
                # An index worker upserts two items and dies before acknowledging them.
                await p.streams.ensure_group(INDEX, "index")
                taken = await p.streams.read(INDEX, "index", "dead-indexer", count=2, block_ms=100)
                async with p.context("dead-indexer") as ctx:
                    for message in taken:
                        work = read_index(message)
                        vectors = [
                            indexer_pb2.Vector(values=row.tolist(), image_key=k)
                            for k, row in zip(work.keys, work.vectors, strict=True)
                        ]
                        request = indexer_pb2.UpsertRequest(vectors=vectors, model_id=work.model_id)
                        request.product.product_id = work.item.product_id
                        await ctx.indexer.Upsert(request, timeout=DEADLINE_S)
                async with p.worker("index"):
                    status = await p.wait_job(job_id)
                assert (status.status, status.done, status.failed) == ("completed", 6, 0)
                images = {item.product_id: 1 + len(item.meta["image_urls"]) for item in items}
                for pid, count in images.items():
                    stored = await p.stored(pid)
                    assert (stored.vector_count, stored.title) == (count, f"product {pid}")
                async with p.context("reader") as ctx:
                    stats = await ctx.indexer.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE_S)
                assert (stats.products, stats.vectors) == (6, sum(images.values()))
                for stream in (FETCH, INDEX, DEAD):
                    assert await p.streams.length(stream) == 0

    asyncio.run(scenario())


def test_items_wait_out_an_embedder_outage(redis_url: str, tmp_path: Path) -> None:
    """Twice the time two attempts' back-off would allow: the outage uses up no attempts."""

    async def scenario() -> None:
        with image_server(tmp_path) as web:
            items = [product(f"p{n}", [web.add_photo(PHOTOS[n])], row=n) for n in range(5)]
            async with pipeline(redis_url, tmp_path / "index", max_attempts=2) as p:
                await p.embedder.stop()
                job_id = await p.emit(items)
                async with p.worker():
                    await asyncio.sleep(1.5)
                    status = await p.jobs.get(job_id)
                    assert status is not None
                    assert (status.status, status.done, status.failed) == ("running", 0, 0)
                    assert await p.streams.length(EMBED) == 5  # pending, not lost
                    pending = await p.redis.xpending_range(EMBED, "embed", "-", "+", 10)
                    # Retried every <= 0.4 s meanwhile, charged at most the attempt in flight.
                    assert {int(entry["times_delivered"]) for entry in pending} <= {1, 2}
                    await p.embedder.start()  # same port
                    status = await p.wait_job(job_id)
                assert (status.status, status.done, status.failed) == ("completed", 5, 0)
                for item in items:
                    assert (await p.stored(item.product_id)).vector_count == 1

    asyncio.run(scenario())


def test_a_lone_item_waits_out_a_long_outage_without_being_charged(redis_url: str, tmp_path: Path) -> None:
    """One item, so every retry of it is the stage's only probe: it is charged once, not per retry."""

    async def scenario() -> None:
        with image_server(tmp_path) as web:
            item = product("p0", [web.add_photo(PHOTOS[0])], row=0)
            async with pipeline(redis_url, tmp_path / "index", max_attempts=2) as p:
                await p.embedder.stop()
                job_id = await p.emit([item])
                async with p.worker():
                    await asyncio.sleep(3.0)  # about 10 retries at the 0.4 s cap
                    (entry,) = await p.redis.xpending_range(EMBED, "embed", "-", "+", 10)
                    assert int(entry["times_delivered"]) <= 2
                    await p.embedder.start()
                    status = await p.wait_job(job_id)
                assert (status.status, status.done, status.failed) == ("completed", 1, 0)

    asyncio.run(scenario())


def test_items_wait_out_an_indexer_restart(redis_url: str, tmp_path: Path) -> None:
    """An indexer down far longer than every attempt's back-off together (0.75 s): nothing fails."""

    async def scenario() -> None:
        with image_server(tmp_path) as web:
            items = [product(f"p{n}", [web.add_photo(PHOTOS[n])], row=n) for n in range(6)]
            async with pipeline(redis_url, tmp_path / "index", max_attempts=3) as p:
                first = await p.emit(items[:3])
                async with p.worker():
                    assert (await p.wait_job(first)).done == 3
                    await p.stop_indexer()
                    second = await p.emit(items[3:])
                    await asyncio.sleep(2.5)
                    status = await p.jobs.get(second)
                    assert status is not None
                    assert (status.status, status.done, status.failed) == ("running", 0, 0)
                    await p.start_indexer()  # loads what it had: the first job's products
                    status = await p.wait_job(second)
                assert (status.status, status.done, status.failed) == ("completed", 3, 0)
                for item in items:
                    assert (await p.stored(item.product_id)).vector_count == 1
                assert await p.streams.length(DEAD) == 0

    asyncio.run(scenario())


def test_an_outage_longer_than_the_patience_dead_letters_the_waiting_items(
    redis_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            items = [product(f"p{n}", [web.add_photo(PHOTOS[n])], row=n) for n in range(2)]
            async with pipeline(redis_url, tmp_path / "index", outage_patience_s=1.0) as p:
                await p.embedder.stop()
                job_id = await p.emit(items)
                async with p.worker():
                    status = await p.wait_job(job_id)
                    await p.embedder.start()
                assert (status.status, status.done, status.failed) == ("completed", 0, 2)
                for error in (await p.errors(job_id)).values():
                    assert (error["code"], error["stage"]) == ("retries_exhausted", "embed")
                    # After 1 s of waiting, or a little more on a busy machine.
                    assert re.search(
                        r"last error \(embedder_unavailable\): unreachable for \d+ s", error["message"]
                    )
                assert await p.streams.length(DEAD) == 2
                assert await p.streams.length(EMBED) == 0

    asyncio.run(scenario())


def test_an_item_failing_every_attempt_is_dead_lettered(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            good = product("good", [web.add_photo(PHOTOS[0])], row=1)
            flaky = product("flaky", [f"{web.url}/status/503"], row=2)
            async with pipeline(redis_url, tmp_path / "index", max_attempts=3) as p:
                job_id = await p.emit([good, flaky])
                async with p.worker():
                    status = await p.wait_job(job_id)
                assert (status.status, status.done, status.failed) == ("completed", 1, 1)
                assert [path for path, _ in web.requests].count("/status/503") == 3
                error = (await p.errors(job_id))["flaky"]
                assert (error["code"], error["stage"], error["http_status"], error["row"]) == (
                    "retries_exhausted",
                    "fetch",
                    503,
                    2,
                )
                assert error["message"].startswith("gave up after 3 attempts; last error (http_status)")
                await p.streams.ensure_group(DEAD, "inspector")
                (dead,) = await p.streams.read(DEAD, "inspector", "me", count=10, block_ms=10)
                fields = {
                    name: dead.text(name) for name in ("job_id", "product_id", "stage", "code", "attempts")
                }
                assert fields == {
                    "job_id": job_id,
                    "product_id": "flaky",
                    "stage": "fetch",
                    "code": "http_status",
                    "attempts": "3",
                }
                assert Item.from_json(dead.fields["item"]) == flaky
                assert await p.streams.length(FETCH) == 0

    asyncio.run(scenario())


def test_the_worker_process_indexes_a_job_and_stops_cleanly_on_sigterm(
    redis_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            items = [product(f"p{n}", [web.add_photo(PHOTOS[n])], row=n) for n in range(3)]
            async with pipeline(redis_url, tmp_path / "index") as p:
                env = {
                    **os.environ,
                    "VS_REDIS_URL": redis_url,
                    "VS_SCRAPER_EMBEDDER_ADDR": p.settings.embedder_addr,
                    "VS_SCRAPER_INDEXER_ADDR": p.settings.indexer_addr,
                    "VS_SCRAPER_ALLOW_PRIVATE_URLS": "true",
                    "VS_SCRAPER_BLOCK_MS": "100",
                }
                command = [
                    "-m",
                    "services.scraper",
                    "worker",
                    "--stages",
                    "fetch,embed,index",
                    "--name",
                    "w-proc",
                ]
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, *command, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE
                )
                try:
                    status = await p.wait_job(await p.emit(items), timeout_s=30)
                    proc.send_signal(signal.SIGTERM)
                    _, log = await asyncio.wait_for(proc.communicate(), 15)
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                assert (status.status, status.done) == ("completed", 3)
                assert proc.returncode == 0, log.decode()
                assert b"worker w-proc stopped" in log

    asyncio.run(scenario())


def test_a_stale_redelivery_does_not_resurrect_a_deleted_product(redis_url: str, tmp_path: Path) -> None:
    """The worker died after upserting and recording the outcome, before the ack; the product is
    deleted once the job completed; the reclaimed message must not upsert it again."""

    async def scenario() -> None:
        with image_server(tmp_path) as web:
            items = [product("stale", [web.add_photo(PHOTOS[0])], row=1)]
            async with pipeline(redis_url, tmp_path / "index", reclaim_idle_s=0.5) as p:
                job_id = await p.emit(items)
                async with p.worker("fetch,embed"):
                    await p.wait_for_length(INDEX, 1)
                await p.streams.ensure_group(INDEX, "index")
                (message,) = await p.streams.read(INDEX, "index", "dead-indexer", count=1, block_ms=100)
                work = read_index(message)
                async with p.context("dead-indexer") as ctx:
                    request = indexer_pb2.UpsertRequest(
                        vectors=[indexer_pb2.Vector(values=work.vectors[0].tolist(), image_key=work.keys[0])],
                        model_id=work.model_id,
                    )
                    request.product.product_id = "stale"
                    await ctx.indexer.Upsert(request, timeout=DEADLINE_S)
                    assert await ctx.jobs.finish_item(job_id, "stale", "done")
                    assert (await p.wait_job(job_id)).status == "completed"
                    await ctx.indexer.Delete(
                        indexer_pb2.DeleteRequest(product_id="stale"), timeout=DEADLINE_S
                    )
                async with p.worker("index"):
                    for _ in range(200):  # until the reclaimed message is handled and acked
                        if await p.streams.length(INDEX) == 0:
                            break
                        await asyncio.sleep(0.05)
                    assert await p.streams.length(INDEX) == 0
                async with p.context("reader") as ctx:
                    stats = await ctx.indexer.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE_S)
                assert stats.products == 0, stats

    asyncio.run(scenario())
