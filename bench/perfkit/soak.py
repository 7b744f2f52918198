"""Soak: a long closed-loop load on a throwaway stack with the demo catalog, to find leaks and
rare failures rather than speed.

    bench/soak [--quick] [--duration S] [--concurrency N] [--json PATH]

``concurrency`` clients send a mix of calls as fast as they are answered: photo searches (most),
product reads, product lists, "more like this", and product PUTs (a bounded set of ids, so the
catalog does not grow without end). Every non-2xx answer and every transport error is an error.
The resident memory of each stack process is sampled every few seconds; growth is measured from
the first sample after the warm-up to the last one. Targets (issue 8): 0 errors, RSS growth of
each service < 10 %.
"""

import argparse
import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.perfkit import RESULTS, bench_logging, measured, percentiles, render_table, rss_mib
from bench.perfkit.stackload import Query, query_photos
from services.devstack.ephemeral import ephemeral_stack
from services.devstack.launcher import Stack

log = logging.getLogger("bench.soak")

TARGET_RSS_GROWTH = 0.10
SAMPLE_S = 5.0
PUT_IDS = 50  # PUTs cycle over this many ids: the catalog stays the demo's size plus these
KINDS = ("search", "get", "list", "similar", "put")
WEIGHTS = (16, 1, 1, 1, 1)  # of KINDS: mostly photo searches, as a shop's traffic


@dataclass(frozen=True)
class Plan:
    duration_s: float
    warmup_s: float
    concurrency: int
    queries: dict[str, int]


FULL = Plan(600.0, 30.0, 16, {"scenes": 12, "grocery_store": 6, "fashion_products": 6})
QUICK = Plan(40.0, 10.0, 8, {"scenes": 3, "grocery_store": 2, "fashion_products": 2})


@dataclass
class Record:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # first message of each error kind

    def ok(self, kind: str, ms: float) -> None:
        self.latencies_ms.setdefault(kind, []).append(ms)

    def error(self, kind: str, message: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, message[:300])


async def _call(
    client: httpx.AsyncClient, kind: str, n: int, queries: Sequence[Query], ids: Sequence[str]
) -> httpx.Response:
    query = queries[n % len(queries)]
    if kind == "search":
        return await client.post("/v1/search", files={"image": (query.name, query.data)}, data={"k": "10"})
    if kind == "get":
        return await client.get(f"/v1/products/{ids[n % len(ids)]}")
    if kind == "list":
        return await client.get("/v1/products", params={"limit": 50})
    if kind == "similar":
        return await client.get(f"/v1/products/{ids[n % len(ids)]}/similar", params={"k": 10})
    product_id = f"soak-{n % PUT_IDS}"
    form = {"title": f"soak product {n % PUT_IDS}", "category": "soak"}
    return await client.put(
        f"/v1/products/{product_id}", data=form, files={"image": (query.name, query.data)}
    )


async def _client(
    client: httpx.AsyncClient,
    queries: Sequence[Query],
    ids: Sequence[str],
    seed: int,
    end: float,
    record: Record,
) -> None:
    rng = random.Random(seed)
    n = seed * 7919
    while time.monotonic() < end:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        n += 1
        sent = time.perf_counter()
        try:
            reply = await _call(client, kind, n, queries, ids)
        except httpx.HTTPError as exc:
            record.error(f"{kind} {type(exc).__name__}", repr(exc))
            continue
        if reply.is_success:
            record.ok(kind, (time.perf_counter() - sent) * 1000)
        else:
            record.error(f"{kind} {reply.status_code}", reply.text)


async def _sample_rss(stack: Stack, end: float, samples: dict[str, list[tuple[float, float]]]) -> None:
    start = time.monotonic()
    while time.monotonic() < end:
        for name, proc in stack.running().items():
            samples.setdefault(name, []).append((round(time.monotonic() - start, 1), rss_mib(proc.pid)))
        await asyncio.sleep(SAMPLE_S)


async def _load(stack: Stack, plan: Plan, queries: Sequence[Query], ids: Sequence[str]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    record = Record()
    samples: dict[str, list[tuple[float, float]]] = {}
    end = time.monotonic() + plan.warmup_s + plan.duration_s
    async with httpx.AsyncClient(base_url=stack.settings.gateway_url, timeout=120, limits=limits) as client:
        sampler = asyncio.create_task(_sample_rss(stack, end, samples))
        started = time.monotonic()
        await asyncio.gather(
            *(_client(client, queries, ids, i, end, record) for i in range(plan.concurrency))
        )
        wall = time.monotonic() - started
        await sampler
    return _summary(plan, record, samples, wall)


def _summary(
    plan: Plan, record: Record, samples: dict[str, list[tuple[float, float]]], wall: float
) -> dict[str, Any]:
    rss = {}
    for name, points in samples.items():
        after_warmup = [mib for t, mib in points if t >= plan.warmup_s] or [points[-1][1]]
        first, last = after_warmup[0], after_warmup[-1]
        rss[name] = {
            "start_mib": round(first, 1),
            "end_mib": round(last, 1),
            "max_mib": round(max(after_warmup), 1),
            "growth": round((last - first) / first, 4) if first else 0.0,
        }
    every = [ms for values in record.latencies_ms.values() for ms in values]
    return {
        "plan": plan.__dict__,
        "wall_s": round(wall, 1),
        "requests": len(every) + sum(record.errors.values()),
        "errors": sum(record.errors.values()),
        "error_kinds": dict(record.errors),
        "error_examples": record.examples,
        "latency_ms": {
            "all": percentiles(every),
            **{k: percentiles(v) for k, v in record.latencies_ms.items()},
        },
        "rss": rss,
        "rss_samples": samples,
        "targets_met": {
            "zero_errors": not record.errors,
            "rss_growth_below_10pct": all(r["growth"] < TARGET_RSS_GROWTH for r in rss.values()),
        },
    }


def _catalog_ids(stack: Stack) -> list[str]:
    reply = httpx.get(f"{stack.settings.gateway_url}/v1/products", params={"limit": 500}, timeout=30)
    reply.raise_for_status()
    ids = [p["product_id"] for p in reply.json()["products"]]
    if not ids:
        raise RuntimeError("the demo catalog is empty: the soak needs products to read")
    return ids


def run(plan: Plan) -> dict[str, Any]:
    queries = query_photos(plan.queries)
    with ephemeral_stack(load_demo=True) as stack:
        ids = _catalog_ids(stack)
        log.info(
            "soak: %d clients for %.0f s (+%.0f s warm-up)", plan.concurrency, plan.duration_s, plan.warmup_s
        )
        return asyncio.run(_load(stack, plan, queries, ids))


def tables(payload: dict[str, Any]) -> str:
    latency = render_table(
        ["calls", "n", "p50 ms", "p95 ms", "p99 ms"],
        [
            [k, v.get("n", 0), v.get("p50", ""), v.get("p95", ""), v.get("p99", "")]
            for k, v in payload["latency_ms"].items()
        ],
        f"soak: {payload['plan']['concurrency']} clients, {payload['wall_s']:.0f} s, "
        f"{payload['requests']} requests, {payload['errors']} errors",
    )
    memory = render_table(
        ["process", "RSS start MiB", "RSS end MiB", "max MiB", "growth %"],
        [
            [n, r["start_mib"], r["end_mib"], r["max_mib"], round(100 * r["growth"], 2)]
            for n, r in payload["rss"].items()
        ],
        "resident memory after the warm-up",
    )
    errors = "\n".join(
        f"  {k}: {n}  e.g. {payload['error_examples'][k]}" for k, n in payload["error_kinds"].items()
    )
    return (
        f"{latency}\n\n{memory}\n\nerrors: {payload['errors']}\n{errors}\ntargets: {payload['targets_met']}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="40 s at concurrency 8")
    parser.add_argument("--duration", type=float, default=0.0, help="measured seconds (after the warm-up)")
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    bench_logging()
    plan = QUICK if args.quick else FULL
    plan = Plan(
        args.duration or plan.duration_s, plan.warmup_s, args.concurrency or plan.concurrency, plan.queries
    )
    payload, path = measured("soak", args.quick, args.json, lambda: run(plan))
    print(tables(payload))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
