"""``visualsearch import`` and ``visualsearch demo-feed``: the CLI posts a feed to the real gateway
routes (TestClient), the real feed stage reads it in a background worker, and a stand-in for the
fetch/embed/index stages finishes the items; the CLI shows progress and sums up."""

import asyncio
import csv
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from fastapi.testclient import TestClient

from services.common.jobs import ItemError
from services.common.streams import FETCH
from services.scraper import cli, feed_stage
from services.scraper.config import ScraperSettings
from services.scraper.context import WorkerContext, open_context
from services.scraper.import_client import ImportOptions, run_import
from tests.service.feed_server import FeedServer, feed_server
from tests.service.gateway_fakes import fake_backends
from tests.service.test_gateway_imports import app_with_imports

GOOD = "product_id,title,image_url\n" + "".join(f"p{i},Item {i},/media/{i}.jpg\n" for i in range(12))


async def finish_items(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """The fetch/embed/index stages, played: items whose id starts with "bad" fail, others are done."""
    while not stop.is_set():
        entries: Any = await ctx.redis.xrange(FETCH, count=5)
        for entry_id, fields in entries:
            job_id, product_id = fields[b"job_id"].decode(), fields[b"product_id"].decode()
            if product_id.startswith("bad"):
                error = ItemError(product_id, "fetch", "http_status", "image 1: returned HTTP 404", 404)
                await ctx.jobs.finish_item(job_id, product_id, "failed", error)
            else:
                await ctx.jobs.finish_item(job_id, product_id, "done")
            await ctx.redis.xdel(FETCH, entry_id)
        await asyncio.sleep(0.05)  # slow enough for the progress bar to show a few states


@contextmanager
def worker(redis_url: str) -> Iterator[None]:
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()

    async def main() -> None:
        settings = ScraperSettings(redis_url=redis_url, allow_private_urls=True, block_ms=50)
        async with open_context(settings, name="cli-test") as ctx:
            await asyncio.gather(feed_stage.run(ctx, stop), finish_items(ctx, stop))

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def gateway(redis_url: str) -> Iterator[TestClient]:
    with fake_backends() as backends, TestClient(app_with_imports(backends, redis_url=redis_url)) as client:
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture
def pipeline(redis_url: str) -> Iterator[None]:
    redis.Redis.from_url(redis_url).flushdb()
    with worker(redis_url):
        yield


def test_a_clean_import_shows_progress_and_exits_0(
    gateway: TestClient,
    pipeline: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed = tmp_path / "catalog.csv"
    feed.write_text(GOOD)
    with caplog.at_level(logging.INFO, logger="visualsearch"):
        code = run_import(gateway, str(feed), ImportOptions(), poll_s=0.02)
    assert code == 0
    bar = capsys.readouterr().err
    assert "12/12" in bar
    assert "done=12" in bar
    summary = next(r.getMessage() for r in caplog.records if "completed in" in r.getMessage())
    assert "12 items (12 done, 0 skipped, 0 failed), 0 invalid rows" in summary
    assert "items/s" in summary


def test_failed_items_and_rejected_rows_exit_2_with_the_first_errors(
    gateway: TestClient, pipeline: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed = tmp_path / "catalog.jsonl"
    feed.write_text(
        '{"product_id": "ok-1", "image_url": "/media/1.jpg"}\n'
        '{"product_id": "bad-1", "image_url": "/media/404.jpg"}\n'
        '{"product_id": "ok-2"}\n'
    )
    with caplog.at_level(logging.INFO, logger="visualsearch"):
        code = run_import(gateway, str(feed), ImportOptions(), poll_s=0.02, progress=False)
    assert code == 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "2 items (1 done, 0 skipped, 1 failed), 1 invalid rows" in text
    assert "line 3 ok-2: [feed/no_image]" in text
    assert "bad-1: [fetch/http_status] image 1: returned HTTP 404" in text


def test_a_feed_that_cannot_be_read_exits_1(
    gateway: TestClient, pipeline: None, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.serve("/shop.html", b"<html><body>our shop</body></html>", "text/html")
    with caplog.at_level(logging.INFO, logger="visualsearch"):
        code = run_import(gateway, url, ImportOptions(), poll_s=0.02, progress=False)
    assert code == 1
    assert any("looks like HTML" in r.getMessage() for r in caplog.records)


def test_no_wait_and_refused_submissions(gateway: TestClient, redis_url: str, tmp_path: Path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    feed = tmp_path / "f.csv"
    feed.write_text(GOOD)
    assert run_import(gateway, str(feed), ImportOptions(), wait=False) == 0
    assert redis.Redis.from_url(redis_url).xlen("vs:ingest:feeds") == 1
    assert run_import(gateway, str(tmp_path / "missing.csv"), ImportOptions()) == 1
    assert run_import(gateway, "https://shop.example/f.csv", ImportOptions(refresh_interval_s=5)) == 1  # 422


def test_demo_feed_writes_the_demo_catalog(datasets_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "demo.csv"
    base = "http://127.0.0.1:8080/media"
    assert (
        cli.main(["demo-feed", "--datasets", str(datasets_dir), "--base-url", base, "--output", str(output)])
        == 0
    )
    with output.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 1000
    assert len({r["product_id"] for r in rows}) == len(rows)
    datasets = {r["dataset"] for r in rows}
    assert datasets == {"fashion_products", "grocery_store"}
    for row in rows[:: max(1, len(rows) // 50)]:
        assert row["image_url"].startswith(base + "/")
        assert (datasets_dir / unquote(row["image_url"][len(base) + 1 :])).is_file()
