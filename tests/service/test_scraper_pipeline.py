"""The fetch -> embed -> index stages end to end: real Redis, embedder (MobileNetV2), indexer and
HTTP image server; items emitted into a job exactly as the feed and crawl producers do."""

import asyncio
import io
import logging
import time
from pathlib import Path

import numpy as np
from PIL import Image

from services.common.streams import DEAD, EMBED, FETCH, INDEX, as_text
from services.scraper.stages.index import source_key
from tests.service.scraper_pipeline_harness import (
    PHOTOS,
    SOURCE,
    closed_port,
    image_server,
    pipeline,
    product,
)

log = logging.getLogger(__name__)


def test_items_are_fetched_embedded_and_indexed(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            urls = [web.add_photo(photo) for photo in PHOTOS[:24]]
            # Every 5th product has two photos; the rest one: 20 products, 24 images.
            items, photos, used = [], [], 0
            for n in range(20):
                count = 2 if n % 5 == 0 else 1
                items.append(product(f"p{n}", urls[used : used + count], row=n + 2))
                photos.append(PHOTOS[used])
                used += count
            async with pipeline(redis_url, tmp_path / "index") as p:
                job_id = await p.emit(items)
                started = time.perf_counter()
                async with p.worker():
                    status = await p.wait_job(job_id)
                seconds = time.perf_counter() - started
                log.info("happy path: %d items in %.2fs = %.1f items/s", len(items), seconds, 20 / seconds)
                assert (status.status, status.done, status.failed, status.skipped) == ("completed", 20, 0, 0)
                for item in items:
                    stored = await p.stored(item.product_id)
                    assert stored.vector_count == 1 + len(item.meta["image_urls"])
                    assert stored.title == item.meta["title"]
                    assert stored.price == item.meta["price"]
                    assert stored.content_hash
                    assert stored.indexed_at_ms > 0
                for item, photo in zip(items, photos, strict=True):  # its own photo finds it first
                    assert await p.top_match(photo.read_bytes()) == item.product_id
                members = await p.redis.smembers(source_key(SOURCE))
                assert {as_text(m) for m in members} == {item.product_id for item in items}
                for stream in (FETCH, EMBED, INDEX, DEAD):  # acknowledged work is deleted
                    assert await p.streams.length(stream) == 0

    asyncio.run(scenario())


def test_each_bad_item_fails_with_its_reason_and_the_rest_are_indexed(redis_url: str, tmp_path: Path) -> None:
    jpeg = PHOTOS[0].read_bytes()
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    big = io.BytesIO()
    noise.save(big, "PNG")

    async def scenario() -> None:
        with image_server(tmp_path) as web:
            good = [product(f"good{n}", [web.add_photo(PHOTOS[n])], row=n) for n in range(3)]
            bad = [
                product("missing", [f"{web.url}/nope.jpg"], row=10),
                product(
                    "html", [web.add("page.jpg", b"<!doctype html><html><body>hi</body></html>")], row=11
                ),
                product("truncated", [web.add("cut.jpg", jpeg[: len(jpeg) // 2])], row=12),
                product("unreachable", [f"http://127.0.0.1:{closed_port()}/a.jpg"], row=13),
                product("huge", [web.add("big.png", big.getvalue())], row=14),
                product("badmeta", [web.add_photo(PHOTOS[5])], row=15, currency="EURO"),
                product("second-bad", [web.add_photo(PHOTOS[6]), f"{web.url}/status/410"], row=16),
            ]
            async with pipeline(redis_url, tmp_path / "index", fetch_max_bytes=256 * 1024) as p:
                job_id = await p.emit(good + bad)
                async with p.worker():
                    status = await p.wait_job(job_id)
                assert (status.status, status.done, status.failed) == ("completed", 3, 7)
                errors = await p.errors(job_id)
                codes = {pid: (e["stage"], e["code"], e["http_status"]) for pid, e in errors.items()}
                assert codes == {
                    "missing": ("fetch", "http_status", 404),
                    "html": ("decode", "not_image", None),
                    "truncated": ("decode", "truncated", None),
                    "unreachable": ("fetch", "unreachable", None),
                    "huge": ("fetch", "too_large", None),
                    "badmeta": ("fetch", "invalid_metadata", None),
                    "second-bad": ("fetch", "http_status", 410),
                }
                assert errors["missing"]["row"] == 10
                assert errors["missing"]["url"] == f"{web.url}/nope.jpg"
                assert "currency" in errors["badmeta"]["message"]
                assert "image 2" in errors["second-bad"]["message"]
                for item in good:
                    assert (await p.stored(item.product_id)).vector_count == 1

    asyncio.run(scenario())


def test_unchanged_items_are_skipped_without_download_and_a_changed_one_is_updated(
    redis_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            items = [product(f"p{n}", [web.add_photo(PHOTOS[n])], row=n) for n in range(6)]
            async with pipeline(redis_url, tmp_path / "index") as p, p.worker():
                first = await p.wait_job(await p.emit(items))
                assert (first.done, first.skipped) == (6, 0)
                web.requests.clear()

                again = await p.wait_job(await p.emit(items))
                assert (again.status, again.done, again.skipped, again.failed) == ("completed", 0, 6, 0)
                # Refresh by conditional request: each image answered 304, none was downloaded.
                assert sorted(status for _, status in web.requests) == [304] * 6
                web.requests.clear()

                changed = [
                    *items[:2],
                    product("p2", [items[2].meta["image_url"]], row=2, price=99.5),
                    *items[3:],
                ]
                third = await p.wait_job(await p.emit(changed))
                assert (third.done, third.skipped) == (1, 5)
                stored = await p.stored("p2")
                assert (stored.price, stored.vector_count) == (99.5, 1)
                assert sorted(status for _, status in web.requests) == [200] + [304] * 6

    asyncio.run(scenario())


def test_images_under_a_local_media_mount_are_read_from_disk(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        with image_server(tmp_path) as web:
            urls = [web.add_photo(photo) for photo in PHOTOS[:6]]
            items = [product(f"local{n}", [url], row=n + 2) for n, url in enumerate(urls)]
            items.append(product("missing", [f"{web.url}/nope.jpg"], row=9))  # no file: downloaded
            mounts = {f"{web.url}/": str(tmp_path)}
            async with pipeline(redis_url, tmp_path / "index", local_media=mounts) as p:
                job_id = await p.emit(items)
                async with p.worker():
                    status = await p.wait_job(job_id)
                assert (status.status, status.done, status.failed) == ("completed", 6, 1)
                assert (await p.errors(job_id))["missing"]["http_status"] == 404  # the server's answer
                assert web.requests == [("/nope.jpg", 404)]  # the six photos never went over HTTP
                for item, photo in zip(items[:6], PHOTOS[:6], strict=True):
                    assert await p.top_match(photo.read_bytes()) == item.product_id

    asyncio.run(scenario())
