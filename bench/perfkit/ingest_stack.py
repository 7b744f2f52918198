"""Imports through a running stack, timed: the feed, the POST /v1/imports, CPU seconds per process.

Shared by bench/perfkit/ingest.py (stack vs naive loop), bench/perfkit/freshness.py and
bench/ingest_workers.py (1 vs 2 embed workers).
"""

import csv
import io
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from bench.perfkit import cpu_seconds
from services.devstack.launcher import Stack
from services.scraper.cli import DEMO_MANIFESTS
from services.scraper.demo_feed import demo_rows

POLL_S = 0.05  # job status polls; short, so the measured time is the import's, not the poll's

Row = dict[str, Any]


def fashion_rows(datasets: Path, gateway_url: str, count: int) -> list[Row]:
    """``count`` demo feed rows of the fashion catalog, images served by the gateway's /media/
    (the local dataset files, as ./scripts/up imports the demo catalog)."""
    rows = [
        r
        for r in demo_rows(datasets, DEMO_MANIFESTS, f"{gateway_url}/media")
        if "/fashion_products/" in r["image_url"]
    ]
    if len(rows) < count:
        raise ValueError(f"only {len(rows)} fashion rows; asked for {count}")
    return rows[:count]


def local_path(row: Row, datasets: Path) -> Path:
    """The dataset file behind a row's /media/ image URL."""
    return datasets / unquote(row["image_url"].split("/media/", 1)[1])


def to_csv(rows: list[Row]) -> str:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def post_import(client: httpx.Client, feed: str, name: str) -> str:
    response = client.post("/v1/imports", files={"feed": (name, feed.encode(), "text/csv")})
    response.raise_for_status()
    return str(response.json()["job_id"])


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get(f"/v1/imports/{job_id}").json()
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(POLL_S)
    raise TimeoutError(f"import {job_id} not finished after {timeout_s:.0f}s")


def import_feed(client: httpx.Client, feed: str, name: str) -> dict[str, Any]:
    """POSTs ``feed`` and waits for the job; items/s from the POST to the last item finished."""
    started = time.perf_counter()
    status = wait_job(client, post_import(client, feed, name))
    seconds = time.perf_counter() - started
    finished = status["done"] + status["skipped"] + status["failed"]
    return {
        "items": finished,
        "done": status["done"],
        "failed": status["failed"],
        "seconds": round(seconds, 2),
        "items_per_s": round(finished / seconds, 1),
    }


def measured_import(stack: Stack, client: httpx.Client, feed: str, name: str) -> dict[str, Any]:
    """:func:`import_feed` plus the CPU seconds each stack process spent on it and the share of
    all cores they kept busy (near 1.0: the machine is the limit, not the pipeline's waits)."""
    procs = stack.running()
    before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    result = import_feed(client, feed, name)
    cpu = {n: round(cpu_seconds(p.pid) - before[n], 2) for n, p in procs.items() if n != "detector"}
    result["cpu_s"] = cpu
    result["cpu_s_per_item_ms"] = {n: round(1000 * s / max(1, result["items"]), 2) for n, s in cpu.items()}
    result["cpu_busy"] = round(sum(cpu.values()) / result["seconds"] / (os.cpu_count() or 1), 2)
    return result
