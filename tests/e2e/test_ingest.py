"""Catalog ingest through the real pipeline: feeds, bad rows, re-imports, crashes mid-import."""

import http.server
import logging
import random
import signal
import time
from collections.abc import Iterator
from functools import partial

import pytest

from tests.e2e.conftest import RunningStack
from tests.e2e.ingest import (
    delete_products,
    errors,
    shop_photo_rows,
    start_import,
    to_csv,
    vector_counts,
    wait_for,
    wait_until_done,
)
from tests.http_server import serving
from tests.paths import DATASETS

log = logging.getLogger(__name__)


@pytest.fixture
def imported(running: RunningStack) -> Iterator[list[str]]:
    """Product ids a test imports; deleted afterwards."""
    product_ids: list[str] = []
    yield product_ids
    delete_products(running, product_ids)


@pytest.fixture(scope="module")
def truncated_jpeg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local web server whose only image is a JPEG cut off halfway."""
    folder = tmp_path_factory.mktemp("broken-shop")
    photo = (DATASETS / "scenes/extra/bus.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(photo[: len(photo) // 2])
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield f"{url}/cut.jpg"


def test_demo_feed_was_imported_through_the_pipeline(running: RunningStack) -> None:
    """./scripts/up imports the demo feed with `visualsearch import` (POST /v1/imports)."""
    jobs = running.client.get("/v1/imports").json()["imports"]
    demo = next(j for j in jobs if j["source"] == "demo")
    assert demo["status"] == "completed"
    assert demo["done"] + demo["skipped"] == demo["total"] == 2337
    assert demo["failed"] == 0
    log.warning("demo import: %d items at %s items/s", demo["total"], demo["rate_per_s"])


def test_bad_rows_are_reported_and_good_rows_searchable(
    running: RunningStack, truncated_jpeg_url: str, imported: list[str]
) -> None:
    gateway = running.stack.settings.gateway_url
    good = shop_photo_rows(running, "feed-good", 0, 100)
    imported += [r["product_id"] for r in good]
    bad = [
        {**good[0], "product_id": "bad-unreachable", "image_url": "http://127.0.0.1:9/nothing.jpg"},
        {
            **good[0],
            "product_id": "bad-404",
            "image_url": f"{gateway}/media/fashion_products/images/nope.jpg",
        },
        {**good[0], "product_id": "bad-html", "image_url": f"{gateway}/docs"},
        {**good[0], "product_id": "bad-truncated", "image_url": truncated_jpeg_url},
        {**good[1], "product_id": ""},  # missing product_id
        {**good[2], "title": "a second row with the same id"},  # duplicate product_id
    ]
    job_id = start_import(running, to_csv(good + bad), "five-percent-bad.csv")
    status = wait_for(running, job_id)

    assert status["status"] == "completed"
    assert (status["done"], status["failed"], status["invalid_rows"]) == (100, 4, 2)
    reasons = {(e["product_id"], e["code"]) for e in errors(running, job_id)}
    assert {
        ("bad-unreachable", "unreachable"),
        ("bad-404", "http_status"),
        ("bad-html", "not_image"),
        ("bad-truncated", "truncated"),
    } <= reasons
    codes = {e["code"] for e in errors(running, job_id) if e["row"] is not None and e["stage"] == "feed"}
    assert {"missing_product_id", "duplicate_product_id"} <= codes, codes
    counts = vector_counts(running, [r["product_id"] for r in good])
    assert set(counts.values()) == {1}

    # Re-importing the same feed skips every unchanged item; a changed price is re-indexed.
    good[7]["price"] = "99.90"
    again = wait_for(running, start_import(running, to_csv(good), "five-percent-bad.csv"))
    assert (again["skipped"], again["done"], again["failed"]) == (99, 1, 0)
    assert running.client.get("/v1/products/feed-good-7").json()["price"] == 99.9


@pytest.mark.parametrize(("victim", "first_photo"), [("embedder", 100), ("scraper", 500)])
def test_kill_9_mid_import_indexes_every_item_exactly_once(
    running: RunningStack, victim: str, first_photo: int, imported: list[str]
) -> None:
    """kill -9 the embedder service, or the ingest worker (it runs the index stage), mid-import."""
    rows = shop_photo_rows(running, f"crash-{victim}", first_photo, 400)
    imported += [r["product_id"] for r in rows]
    before = running.client.get("/v1/stats").json()["vectors"]
    job_id = start_import(running, to_csv(rows), f"crash-{victim}.csv")
    wait_until_done(running, job_id, 100)

    if victim == "embedder":
        running.stack.stop_service("embedder", signal.SIGKILL)
        running.stack.start_service("embedder")
        running.stack.wait_ready("embedder")
    else:
        running.stack.stop_service("scraper", signal.SIGKILL)
        running.stack.start_worker("scraper")
    status = wait_for(running, job_id)

    assert (status["status"], status["done"], status["failed"]) == ("completed", 400, 0), status
    counts = vector_counts(running, [r["product_id"] for r in rows])
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    assert running.client.get("/v1/stats").json()["vectors"] == before + 400
    assert running.client.get("/readyz").status_code == 200


def test_kill_9_the_indexer_ten_times_during_a_1000_item_import(
    running: RunningStack, imported: list[str]
) -> None:
    """Every acknowledged item survives any kill of the indexer, and the index loads every time.

    One restart waits 10 s: longer than every attempt's back-off together (0.5 + 1 + 2 + 4 s
    here), as a slow disk or a big index would make it. Waiting for a backend costs no attempts."""
    rows = [
        {**row, "product_id": f"{prefix}-{row['product_id']}"}
        for prefix in ("a", "b")
        for row in shop_photo_rows(running, "crash-indexer", 0, 500)
    ]
    imported += [r["product_id"] for r in rows]
    before = running.client.get("/v1/stats").json()["vectors"]
    job_id = start_import(running, to_csv(rows), "crash-indexer.csv")
    rng = random.Random(7)
    for kill, finished in enumerate(sorted(rng.sample(range(20, 980), 10))):
        wait_until_done(running, job_id, finished)
        time.sleep(rng.uniform(0, 0.5))  # a random moment, not only right after an item settles
        running.stack.stop_service("indexer", signal.SIGKILL)
        if kill == 4:
            time.sleep(10)
        running.stack.start_service("indexer")
        running.stack.wait_ready("indexer")  # the index loaded (snapshot plus catalog replay)
    status = wait_for(running, job_id)

    assert (status["status"], status["done"], status["failed"]) == ("completed", 1000, 0), status
    counts = vector_counts(running, [r["product_id"] for r in rows])
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    assert running.client.get("/v1/stats").json()["vectors"] == before + 1000
