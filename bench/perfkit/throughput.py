"""Search throughput of a throwaway stack at concurrency 1..16, with and without the embedder's
micro-batching, against the compute-bound limit of this machine.

    bench/throughput [--quick] [--duration S] [--json PATH]

The limit: the detector and embedder model runs of one search, timed single-threaded in this
process (CPU seconds of the calling thread), cost ``cores_busy_per_query``; no stack can answer
more than ``cores / cores_busy_per_query`` searches a second. Target: QPS at concurrency 8 >=
0.8 x that limit. ``views=whole`` (one backbone run per object) is measured as a reference.
"""

import argparse
import logging
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.perfkit import RESULTS, bench_logging, measured, render_table
from bench.perfkit.inprocess import Models, bare_runs, prepare, temp_store
from bench.perfkit.loadgen import stack_load
from bench.perfkit.stackload import (
    Query,
    catalog_rows,
    catalog_stack,
    load_catalog,
    query_photos,
    restart,
)
from services.devstack.launcher import Stack

log = logging.getLogger("bench.throughput")

# None = unset: the service's own default (services/embedder/config.py).
BATCHING: dict[str, dict[str, str | None]] = {
    "on": {"VS_EMBEDDER_MAX_BATCH": None, "VS_EMBEDDER_MAX_WAIT_MS": None},
    "off": {"VS_EMBEDDER_MAX_BATCH": "1", "VS_EMBEDDER_MAX_WAIT_MS": "0"},
}


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    whole_concurrency: tuple[int, ...]
    warmup_s: float
    duration_s: float
    queries: dict[str, int]
    catalog: tuple[int, int]


QUICK = Plan((1, 4), (4,), 2.0, 5.0, {"scenes": 3, "grocery_store": 2, "fashion_products": 2}, (40, 10))
FULL = Plan(
    (1, 2, 4, 8, 16), (1, 8), 4.0, 15.0, {"scenes": 12, "grocery_store": 6, "fashion_products": 6}, (300, 65)
)


def compute_limit(models: Models, queries: Sequence[Query]) -> dict[str, Any]:
    """CPU ms of the model runs per search, single-threaded, averaged over the query mix (x3)."""
    prepared = [prepare(models, q.data) for q in queries]
    bare_runs(models, prepared[0])  # first-run allocations
    cpu_ms = [statistics.median(bare_runs(models, p)["cpu"] for _ in range(3)) for p in prepared]
    per_query_s = statistics.fmean(cpu_ms) / 1000
    cores = os.cpu_count() or 1
    return {
        "cores": cores,
        "cores_busy_per_query_s": round(per_query_s, 4),
        "limit_qps": round(cores / per_query_s, 3),
    }


def sweep(stack: Stack, queries: Sequence[Query], levels: Sequence[int], plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for concurrency in levels:
        row = stack_load(stack, queries, concurrency, plan.warmup_s, plan.duration_s)
        log.info("concurrency %d: %.2f qps", concurrency, row["qps"])
        rows.append(row)
    return rows


def run(plan: Plan) -> dict[str, Any]:
    queries = query_photos(plan.queries)
    runs: dict[str, list[dict[str, Any]]] = {}
    with catalog_stack(plan.catalog) as (stack, models, _):
        limit = compute_limit(models, queries)
        log.info("compute-bound limit: %s", limit)
        for name, env in BATCHING.items():
            restart(stack, "embedder", env)
            runs[f"multi-crop, batching {name}"] = sweep(stack, queries, plan.concurrency, plan)
        restart(stack, "embedder", {**BATCHING["on"], "VS_EMBEDDER_VIEWS": "whole"})
        restart(stack, "embedder", {"VS_EMBEDDER_VIEWS": "whole"})
        restart(stack, "indexer", {}, wipe_state=True)
        models.embedder_settings = models.embedder_settings.model_copy(update={"views": "whole"})
        with temp_store() as whole_store:
            load_catalog(stack, models, whole_store, catalog_rows(*plan.catalog))
        whole_limit = compute_limit(models, queries)
        runs["whole, batching on"] = sweep(stack, queries, plan.whole_concurrency, plan)
    return {"plan": plan.__dict__, "limit": limit, "whole_limit": whole_limit, "runs": runs}


def tables(payload: dict[str, Any]) -> str:
    rows = []
    for name, sweep_rows in payload["runs"].items():
        limit = payload["whole_limit" if name.startswith("whole") else "limit"]["limit_qps"]
        for r in sweep_rows:
            busy = r["cores_busy"]
            rows.append(
                [
                    name,
                    r["concurrency"],
                    r["qps"],
                    round(r["qps"] / limit, 2),
                    r["latency_ms"].get("p50", ""),
                    r["latency_ms"].get("p95", ""),
                    r["stack_cpu_utilisation"],
                    busy.get("detector", 0.0),
                    busy.get("embedder", 0.0),
                    busy.get("gateway", 0.0),
                    busy.get("client", 0.0),
                    busy.get("other", 0.0),
                    r["errors"],
                ]
            )
    headers = [
        "run",
        "conc",
        "QPS",
        "QPS/limit",
        "p50 ms",
        "p95 ms",
        "stack CPU",
        "det",
        "emb",
        "gw",
        "client",
        "other",
        "err",
    ]
    main_table = render_table(headers, rows, "POST /v1/search throughput (cores busy per process)")
    limits = render_table(
        ["views", "model CPU s/query (1 thread)", "cores", "limit QPS", "target at conc 8"],
        [
            [v, p["cores_busy_per_query_s"], p["cores"], p["limit_qps"], round(0.8 * p["limit_qps"], 2)]
            for v, p in (("multi-crop", payload["limit"]), ("whole", payload["whole_limit"]))
        ],
        "compute-bound limit",
    )
    return f"{limits}\n\n{main_table}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="two concurrency levels, short windows")
    parser.add_argument("--duration", type=float, default=0.0, help="measured seconds per level")
    parser.add_argument("--json", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args(argv)
    bench_logging()
    plan = QUICK if args.quick else FULL
    if args.duration:
        plan = Plan(
            plan.concurrency, plan.whole_concurrency, plan.warmup_s, args.duration, plan.queries, plan.catalog
        )
    payload, path = measured("throughput", args.quick, args.json, lambda: run(plan))
    print(tables(payload))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
