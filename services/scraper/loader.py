"""Loads catalog items into the stack through the gateway's PUT /v1/products/{id}.

One bad item never aborts the load: it is reported with its reason and the rest go on.
Transient failures (503, connection errors, timeouts) are retried with back-off.
"""

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from tqdm import tqdm

from services.scraper.config import ScraperSettings
from services.scraper.manifest import CatalogItem

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 502, 503, 504})


@dataclass
class LoadReport:
    counts: Counter[str] = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.errors)


async def load_items(
    items: Iterable[CatalogItem], settings: ScraperSettings, progress: bool = True
) -> LoadReport:
    """PUTs every item with bounded concurrency; returns counts by status and per-item errors."""
    todo = list(items)
    report = LoadReport()
    limits = httpx.Limits(max_connections=settings.concurrency)
    queue: asyncio.Queue[CatalogItem] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    with tqdm(total=len(todo), unit="img", desc="loading catalog", disable=not progress) as bar:
        async with httpx.AsyncClient(
            base_url=settings.gateway_url,
            timeout=settings.request_timeout_s,
            limits=limits,
            headers=settings.gateway_headers,
        ) as client:
            workers = [_worker(client, queue, settings, report, bar) for _ in range(settings.concurrency)]
            await asyncio.gather(*workers)
    return report


async def _worker(
    client: httpx.AsyncClient,
    queue: asyncio.Queue[CatalogItem],
    settings: ScraperSettings,
    report: LoadReport,
    bar: tqdm,  # type: ignore[type-arg]
) -> None:
    while not queue.empty():
        item = queue.get_nowait()
        try:
            status = await _put(client, item, settings.retries)
            report.counts[status] += 1
        except LoadError as exc:
            report.counts["failed"] += 1
            report.errors[item.product_id] = str(exc)
            log.warning("%s: %s", item.product_id, exc)
        bar.update(1)
        bar.set_postfix(report.counts, refresh=False)


class LoadError(Exception):
    pass


async def _put(client: httpx.AsyncClient, item: CatalogItem, retries: int) -> str:
    try:
        image = item.image_file.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read {item.image_file}: {exc.strerror}") from exc
    form = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in item.metadata.items()}
    files = {"image": (item.image_file.name, image, "application/octet-stream")}
    for attempt in range(retries + 1):
        try:
            response = await client.put(f"/v1/products/{item.product_id}", data=form, files=files)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                return str(response.json().get("status", "loaded"))
            reason = f"HTTP {response.status_code}: {_detail(response)}"
            if response.status_code not in _RETRY_STATUS:
                raise LoadError(reason)
        if attempt < retries:
            await asyncio.sleep(0.5 * 2**attempt)
    raise LoadError(f"gave up after {retries + 1} attempts: {reason}")


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]
