"""Helpers for the ingest end-to-end tests: feeds built from real dataset images, job polling."""

import csv
import io
import time
from typing import Any

from tests.e2e.catalog import Row, rows
from tests.e2e.conftest import RunningStack

FIELDS = ["product_id", "title", "image_url", "price", "currency", "category"]


def media_url(running: RunningStack, row: Row) -> str:
    relative = row.path.relative_to(row.path.parents[2]).as_posix()  # <dataset>/<folder>/<file>
    return f"{running.stack.settings.gateway_url}/media/{relative}"


def fashion_rows(
    running: RunningStack, prefix: str, count: int, role: str = "catalog"
) -> list[dict[str, Any]]:
    """Feed rows with new product ids over real fashion photos served by the gateway's /media/."""
    chosen = [r for r in rows("fashion_products") if r.role == role][:count]
    assert len(chosen) == count
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
