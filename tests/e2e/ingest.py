"""Helpers for the ingest end-to-end tests: feeds built from real dataset images, job polling."""

import csv
import io
import time
from typing import Any

from tests.e2e.catalog import Row, rows
from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS

FIELDS = ["product_id", "title", "image_url", "price", "currency", "category"]


def media_url(running: RunningStack, row: Row) -> str:
    relative = row.path.relative_to(DATASETS).as_posix()
    return f"{running.stack.settings.gateway_url}/media/{relative}"


def shop_photo_rows(running: RunningStack, prefix: str, start: int, count: int) -> list[dict[str, Any]]:
    """Feed rows over real grocery shop photos (train split) served by the gateway's /media/.

    These photos are in no catalog and each test takes its own slice, so the products a test
    imports never tie with the demo catalog or with another test's products in a search.
    """
    photos = [r for r in rows("grocery_store") if r.role == "query" and r.split == "train"]
    chosen = photos[start : start + count]
    assert len(chosen) == count, f"only {len(photos)} train photos"
    return [
        {
            "product_id": f"{prefix}-{n}",
            "title": f"{prefix} {r.match_key}",
            "image_url": media_url(running, r),
            "price": "10.00",
            "currency": "EUR",
            "category": r.match_key,
        }
        for n, r in enumerate(chosen)
    ]


def to_csv(feed_rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(feed_rows)
    return out.getvalue().encode()


def start_import(running: RunningStack, feed: bytes, name: str) -> str:
    response = running.client.post("/v1/imports", files={"feed": (name, feed, "text/csv")})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def job(running: RunningStack, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = running.client.get(f"/v1/imports/{job_id}").json()
    return body


def wait_for(running: RunningStack, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = job(running, job_id)
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(0.25)
    raise AssertionError(f"import {job_id} did not finish in {timeout_s}s: {job(running, job_id)}")


def wait_until_done(running: RunningStack, job_id: str, count: int) -> None:
    """Waits until ``count`` items of the job are finished (to interrupt it mid-way)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = job(running, job_id)
        if status["done"] + status["skipped"] + status["failed"] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"import {job_id} stalled: {job(running, job_id)}")


def errors(running: RunningStack, job_id: str) -> list[dict[str, Any]]:
    body = running.client.get(f"/v1/imports/{job_id}/errors", params={"limit": 1000}).json()
    return list(body["errors"])


def vector_counts(running: RunningStack, product_ids: list[str]) -> dict[str, int]:
    counts = {}
    for product_id in product_ids:
        response = running.client.get(f"/v1/products/{product_id}")
        counts[product_id] = response.json()["vector_count"] if response.status_code == 200 else 0
    return counts


def delete_products(running: RunningStack, product_ids: list[str]) -> None:
    """Leaves the catalog as the test found it, so later tests search the demo catalog only."""
    for product_id in product_ids:
        assert running.client.delete(f"/v1/products/{product_id}").status_code in (200, 404)
