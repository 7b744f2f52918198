"""End-to-end search latency: the gateway of a real stack vs the same pipeline in-process vs the
bare model runs, on the same photos, interleaved in one run.

    bench/latency [--quick] [--rounds N] [--json PATH]

Microservice overhead = gateway p50 / in-process p50 (target <= 1.25). The default embedder views
(multi-crop, 6 backbone runs per object) are measured first; ``views=whole`` follows as a
reference row (one backbone run per object), on a re-indexed catalog.
"""

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.perfkit import RESULTS, bench_logging, cpu_seconds, measured, percentiles, render_table
from bench.perfkit.inprocess import Models, Prepared, bare_runs, load_models, prepare, search, temp_store
from bench.perfkit.loadgen import machine_busy_seconds
from bench.perfkit.stackload import (
    Query,
    bench_stack,
    catalog_rows,
    load_catalog,
    query_photos,
    restart,
    service_pids,
)
from services.devstack.config import StackSettings
from services.devstack.launcher import Stack
from services.indexer.store import CatalogStore

log = logging.getLogger("bench.latency")
STAGES = ("decode", "detect", "embed", "search", "total")


@dataclass(frozen=True)
class Plan:
    rounds: int
    whole_rounds: int
    queries: dict[str, int]
    catalog: tuple[int, int]  # fashion, grocery products


QUICK = Plan(2, 1, {"scenes": 3, "grocery_store": 2, "fashion_products": 2}, (40, 10))
FULL = Plan(8, 4, {"scenes": 12, "grocery_store": 6, "fashion_products": 6}, (300, 65))


@dataclass
class Samples:
    gateway_ms: list[float] = field(default_factory=list)  # client-side wall time of POST /v1/search
    gateway_stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    inproc_ms: list[float] = field(default_factory=list)
    inproc_stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    bare_ms: list[float] = field(default_factory=list)
    bare_stages: dict[str, list[float]] = field(default_factory=lambda: {"detect": [], "embed": []})
    object_mismatches: list[str] = field(default_factory=list)
    views_per_query: list[int] = field(default_factory=list)
    other_cores: float = 0.0  # CPU used by processes outside this bench while it measured


def gateway_search(client: httpx.Client, query: Query) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    reply = client.post(
        "/v1/search", files={"image": (query.name, query.data, "image/jpeg")}, data={"k": "10"}
    )
    elapsed = (time.perf_counter() - start) * 1000
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return elapsed, body


def measure_once(
    client: httpx.Client,
    models: Models,
    store: CatalogStore,
    query: Query,
    prepared: Prepared,
    flip: bool,
    out: Samples,
) -> None:
    """One gateway search, one in-process search and one bare run of the same photo; the order of
    the first two flips every round so neither always runs on a warmer cache."""

    def via_gateway() -> int:
        elapsed, body = gateway_search(client, query)
        out.gateway_ms.append(elapsed)
        for stage in STAGES:
            out.gateway_stages[stage].append(float(body["timings_ms"][stage]))
        return len(body["objects"])

    def in_process() -> int:
        traced = search(models, store, query.data)
        out.inproc_ms.append(traced.ms["total"])
        for stage in STAGES:
            out.inproc_stages[stage].append(traced.ms[stage])
        out.views_per_query.append(traced.views)
        return traced.objects

    first, second = (in_process, via_gateway) if flip else (via_gateway, in_process)
    counts = (first(), second())
    if counts[0] != counts[1]:
        out.object_mismatches.append(f"{query.name}: {counts}")
    bare = bare_runs(models, prepared)
    out.bare_ms.append(bare["total"])
    out.bare_stages["detect"].append(bare["detect"])
    out.bare_stages["embed"].append(bare["embed"])


def measure(stack: Stack, models: Models, queries: Sequence[Query], rounds: int, plan: Plan) -> Samples:
    with temp_store() as store, httpx.Client(base_url=stack.settings.gateway_url, timeout=120) as client:
        load_catalog(stack, models, store, catalog_rows(*plan.catalog))
        prepared = [prepare(models, q.data) for q in queries]
        warm = Samples()
        for query, ready in zip(queries[:3], prepared[:3], strict=True):  # first calls of each path
            measure_once(client, models, store, query, ready, False, warm)
        samples = Samples()
        pids = [os.getpid(), *service_pids(stack).values()]
        own, machine, wall = _busy(pids), machine_busy_seconds(), time.perf_counter()
        for round_no in range(rounds):
            for index, (query, ready) in enumerate(zip(queries, prepared, strict=True)):
                measure_once(client, models, store, query, ready, (round_no + index) % 2 == 1, samples)
            log.info("round %d/%d done", round_no + 1, rounds)
        others = (machine_busy_seconds() - machine) - (_busy(pids) - own)
        samples.other_cores = round(max(0.0, others) / (time.perf_counter() - wall), 3)
        return samples


def _busy(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def summarise(views: str, s: Samples) -> dict[str, Any]:
    gateway, inproc, bare = percentiles(s.gateway_ms), percentiles(s.inproc_ms), percentiles(s.bare_ms)
    return {
        "views": views,
        "gateway": gateway,
        "in_process": inproc,
        "bare_models": bare,
        "overhead_ratio_p50": round(gateway["p50"] / inproc["p50"], 3),
        "gateway_stages_p50": {k: percentiles(v)["p50"] for k, v in s.gateway_stages.items()},
        "in_process_stages_p50": {k: percentiles(v)["p50"] for k, v in s.inproc_stages.items()},
        "bare_stages_p50": {k: percentiles(v)["p50"] for k, v in s.bare_stages.items()},
        "http_and_client_p50": round(
            percentiles([a - b for a, b in zip(s.gateway_ms, s.gateway_stages["total"], strict=True)])["p50"],
            2,
        ),
        "backbone_runs_per_query_mean": round(sum(s.views_per_query) / max(1, len(s.views_per_query)), 1),
        "object_count_mismatches": s.object_mismatches[:10],
        "other_processes_cores_busy": s.other_cores,
    }


def tables(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for name, key in (
            ("gateway", "gateway"),
            ("in-process", "in_process"),
            ("bare models", "bare_models"),
        ):
            p = r[key]
            rows.append([f"{r['views']}: {name}", p["n"], p["p50"], p["p95"], p["p99"], p["mean"]])
    latency = render_table(
        ["path", "n", "p50 ms", "p95 ms", "p99 ms", "mean ms"], rows, "POST /v1/search latency"
    )
    ratio = render_table(
        [
            "views",
            "overhead (gw/in-proc p50)",
            "target",
            "backbone runs/query",
            "HTTP+client p50 ms",
            "other procs cores",
        ],
        [
            [
                r["views"],
                r["overhead_ratio_p50"],
                "<= 1.25",
                r["backbone_runs_per_query_mean"],
                r["http_and_client_p50"],
                r["other_processes_cores_busy"],
            ]
            for r in results
        ],
        "microservice overhead",
    )
    stage_rows = []
    for r in results:
        for name, key in (("gateway", "gateway_stages_p50"), ("in-process", "in_process_stages_p50")):
            stage_rows.append([f"{r['views']}: {name}", *(r[key][s] for s in STAGES)])
        bare = r["bare_stages_p50"]
        stage_rows.append([f"{r['views']}: bare models", "", bare["detect"], bare["embed"], "", ""])
    stages = render_table(
        ["path", *(f"{s} p50" for s in STAGES)], stage_rows, "per-stage p50 (ms; gateway = timings_ms)"
    )
    return "\n\n".join([latency, ratio, stages])


def run(plan: Plan) -> dict[str, Any]:
    os.environ.setdefault("VS_MODELS_DIR", str(StackSettings().models_dir))
    os.environ["VS_EMBEDDER_VIEWS"] = "multi-crop"
    queries = query_photos(plan.queries)
    results = []
    with bench_stack() as stack:
        models = load_models()
        results.append(summarise("multi-crop", measure(stack, models, queries, plan.rounds, plan)))
        # Reference: one backbone run per object. Other vectors -> a fresh index on both sides.
        restart(stack, "embedder", {"VS_EMBEDDER_VIEWS": "whole"})
        restart(stack, "indexer", {}, wipe_state=True)
        models.embedder_settings = models.embedder_settings.model_copy(update={"views": "whole"})
        results.append(summarise("whole", measure(stack, models, queries, plan.whole_rounds, plan)))
    return {"plan": plan.__dict__, "queries": [q.name for q in queries], "results": results}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few photos, small catalog (development)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds over the photos (default by mode)")
    parser.add_argument("--json", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args(argv)
    bench_logging()
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(args.rounds, max(1, args.rounds // 2), plan.queries, plan.catalog)
    payload, path = measured("latency", args.quick, args.json, lambda: run(plan))
    print(tables(payload["results"]))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
