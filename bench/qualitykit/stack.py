"""Runs a dataset through the real services: a throwaway stack per pipeline settings, the catalog
PUT through the gateway, every query POSTed to /v1/search, exactly as a client would.

Manifest product ids are replaced by safe ones (``p000001``…) so any manifest works, whatever its
ids look like; the ranking is mapped back to match keys for scoring.
"""

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.qualitykit.manifest import Dataset, Row
from bench.qualitykit.pipelines import Pipeline
from services.devstack.ephemeral import environment, ephemeral_stack

log = logging.getLogger(__name__)

UPLOAD_WORKERS = 4  # concurrent PUTs while indexing: keeps the embedder's micro-batches full
TIMEOUT_S = 120.0


@dataclass
class Indexed:
    """The catalog as the stack holds it: safe id -> the product's match key."""

    keys: dict[str, str]
    seconds: float
    errors: list[str] = field(default_factory=list)


@dataclass
class Ranking:
    keys: list[str]  # match keys of the returned products, best first
    ms: float
    error: str = ""


@contextmanager
def running_stack(env: dict[str, str]) -> Iterator[httpx.Client]:
    """A fresh stack whose services see ``env`` on top of this process's environment."""
    with (
        environment(env),
        ephemeral_stack(load_demo=False) as stack,
        httpx.Client(base_url=stack.settings.gateway_url, timeout=TIMEOUT_S) as client,
    ):
        yield client


def products(dataset: Dataset) -> dict[str, list[Row]]:
    """Catalog rows grouped by product id, in manifest order (a product may have several images)."""
    grouped: dict[str, list[Row]] = {}
    for row in dataset.catalog:
        grouped.setdefault(row.product_id, []).append(row)
    return grouped


def index_catalog(client: httpx.Client, dataset: Dataset) -> Indexed:
    grouped = list(products(dataset).values())
    safe_ids = [f"p{n:06d}" for n in range(1, len(grouped) + 1)]
    started = time.perf_counter()
    with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
        outcomes = list(pool.map(lambda pair: _put(client, *pair), zip(safe_ids, grouped, strict=True)))
    indexed = Indexed({}, time.perf_counter() - started)
    for safe_id, rows, error in zip(safe_ids, grouped, outcomes, strict=True):
        if error:
            indexed.errors.append(f"{rows[0].product_id}: {error}")
        else:
            indexed.keys[safe_id] = rows[0].match_key
    return indexed


def _put(client: httpx.Client, safe_id: str, rows: list[Row]) -> str:
    """PUTs one product with all its images; returns "" or the gateway's error."""
    first = rows[0]
    data = {"title": first.title or first.product_id, "category": first.category}
    files = [("image", (row.image_path.name, row.image_path.read_bytes())) for row in rows]
    response = client.put(f"/v1/products/{safe_id}", data=data, files=files)
    return "" if response.is_success else f"HTTP {response.status_code} {response.text[:200]}"


def run_queries(
    client: httpx.Client, queries: list[Row], pipeline: Pipeline, keys: dict[str, str], k: int
) -> list[Ranking]:
    return [_query(client, row.image_path, pipeline, keys, k) for row in queries]


def _query(client: httpx.Client, path: Path, pipeline: Pipeline, keys: dict[str, str], k: int) -> Ranking:
    started = time.perf_counter()
    response = client.post(
        "/v1/search", data={"k": str(k), **pipeline.search}, files={"image": (path.name, path.read_bytes())}
    )
    ms = (time.perf_counter() - started) * 1000
    if not response.is_success:
        return Ranking([], ms, f"HTTP {response.status_code} {response.text[:200]}")
    ranked = first_object(response.json()["objects"])
    return Ranking([keys[p] for p in ranked if p in keys], ms)


def first_object(objects: list[dict[str, Any]]) -> list[str]:
    """The ranking a shopper sees first: the first object's matches (the whole image by default,
    or the most prominent detection when the gateway answers with detections only)."""
    return [str(m["product_id"]) for m in objects[0]["matches"]] if objects else []
