"""A fixed number of searches at a fixed concurrency, every outcome kept with its times, and an
action (kill -9 a replica) run mid-load; per-replica call counts from each replica's /metrics."""

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.perfkit import percentiles
from bench.perfkit.stackload import Query
from services.devstack.launcher import Stack

RPC_COUNT = "vs_grpc_server_handling_seconds_count"
EMBED = "EmbedderServicer.Embed"


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    ok: bool


def rpc_count(stack: Stack, replica: str, method: str = EMBED) -> float:
    """Successful calls of ``method`` that ``replica`` answered (its own /metrics)."""
    port = stack.replicas[replica].metrics_port
    text = httpx.get(f"http://{stack.settings.host}:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == RPC_COUNT and sample.labels == {"method": method, "code": "OK"}
    )


async def _search(client: httpx.AsyncClient, query: Query) -> Outcome:
    started = time.monotonic()
    try:
        reply = await client.post("/v1/search", files={"image": (query.name, query.data)}, data={"k": 10})
        ok = reply.status_code == 200
    except httpx.HTTPError:
        ok = False
    return Outcome(started, time.monotonic(), ok)


async def _run(
    url: str,
    queries: Sequence[Query],
    total: int,
    concurrency: int,
    after: int,
    action: Callable[[], None] | None,
) -> tuple[list[Outcome], float]:
    outcomes: dict[int, Outcome] = {}
    pending = iter(range(total))
    acted_at = 0.0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal acted_at
        for n in pending:
            outcomes[n] = await _search(client, queries[n % len(queries)])
            if action is not None and len(outcomes) == after:
                acted_at = time.monotonic()
                await asyncio.to_thread(action)  # the other clients keep loading meanwhile

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return [outcomes[n] for n in range(total)], acted_at


def fixed_load(
    url: str,
    queries: Sequence[Query],
    total: int,
    concurrency: int,
    after: int = 0,
    action: Callable[[], None] | None = None,
) -> tuple[list[Outcome], float]:
    """``total`` searches, ``concurrency`` at a time; ``action`` runs once ``after`` finished.
    Returns the outcomes in start order and the monotonic time ``action`` began (0: none)."""
    return asyncio.run(_run(url, queries, total, concurrency, after, action))


def kill_summary(outcomes: Sequence[Outcome], killed_at: float) -> dict[str, Any]:
    """Errors around the kill: how many, over which window, and latency before vs after it."""
    failed = [o for o in outcomes if not o.ok]
    before = [o for o in outcomes if o.ended <= killed_at and o.ok]
    after = [o for o in outcomes if o.started > killed_at and o.ok]
    span = (after[-1].ended - after[0].started) if len(after) > 1 else 0.0
    return {
        "requests": len(outcomes),
        "failed": len(failed),
        # From the kill to the end of the last failed search (0: none failed).
        "error_window_s": round(max((o.ended - killed_at for o in failed), default=0.0), 3),
        # From the kill until a search started after it had answered.
        "first_success_after_kill_s": round(after[0].ended - killed_at, 3) if after else None,
        "latency_before_ms": percentiles([(o.ended - o.started) * 1000 for o in before]),
        "latency_after_ms": percentiles([(o.ended - o.started) * 1000 for o in after]),
        "qps_after": round(len(after) / span, 2) if span else None,
    }
