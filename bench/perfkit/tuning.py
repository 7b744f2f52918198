"""Service settings side by side: search QPS and CPU per query of each variant at one concurrency.

    bench/tuning [--quick] [--rounds N] [--duration S] [--concurrency C] [--json PATH]

One throwaway stack; every round restarts the detector and the embedder with each variant's
settings in turn and measures it closed-loop, so the variants interleave and share the machine's
drift. Read the per-variant means against each other, not against other runs. The variants are
the settings docs/performance.md discusses: the detector's narrow session under load
(``VS_DETECTOR_CONCURRENT_THREADS``), its parallel runs, and the embedder's run chunk.
"""

import argparse
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.perfkit import RESULTS, bench_logging, measured, render_table
from bench.perfkit.loadgen import stack_load
from bench.perfkit.stackload import (
    catalog_stack,
    query_photos,
    restart,
)
from services.devstack.launcher import Stack

log = logging.getLogger("bench.tuning")

Env = dict[str, str | None]  # None = unset: the service's own default
_DEFAULTS: dict[str, Env] = {
    "detector": {
        "VS_DETECTOR_THREADS": None,
        "VS_DETECTOR_CONCURRENT_THREADS": None,
        "VS_DETECTOR_PARALLEL_RUNS": None,
    },
    "embedder": {"VS_EMBEDDER_RUN_CHUNK": None},
}
VARIANTS: dict[str, dict[str, Env]] = {
    "defaults": {},
    "detector: wide runs only": {"detector": {"VS_DETECTOR_CONCURRENT_THREADS": "2"}},
    "detector: 1 run at a time, 2 threads": {"detector": {"VS_DETECTOR_PARALLEL_RUNS": "1"}},
    "detector: 1 run at a time, 1 thread": {
        "detector": {"VS_DETECTOR_PARALLEL_RUNS": "1", "VS_DETECTOR_THREADS": "1"}
    },
    "embedder: run chunk 8": {"embedder": {"VS_EMBEDDER_RUN_CHUNK": "8"}},
    "embedder: run chunk 2": {"embedder": {"VS_EMBEDDER_RUN_CHUNK": "2"}},
    "before (wide runs only, chunk 8)": {
        "detector": {"VS_DETECTOR_CONCURRENT_THREADS": "2"},
        "embedder": {"VS_EMBEDDER_RUN_CHUNK": "8"},
    },
}


@dataclass(frozen=True)
class Plan:
    rounds: int
    concurrency: int
    warmup_s: float
    duration_s: float
    queries: dict[str, int]
    catalog: tuple[int, int]


QUICK = Plan(1, 4, 2.0, 5.0, {"scenes": 3, "grocery_store": 2, "fashion_products": 2}, (40, 10))
FULL = Plan(3, 8, 4.0, 20.0, {"scenes": 12, "grocery_store": 6, "fashion_products": 6}, (300, 65))


def apply(stack: Stack, variant: Mapping[str, Env]) -> None:
    """Restarts the detector and the embedder with the defaults overlaid by ``variant``."""
    for service, defaults in _DEFAULTS.items():
        restart(stack, service, {**defaults, **variant.get(service, {})})


def run(plan: Plan) -> dict[str, Any]:
    queries = query_photos(plan.queries)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    with catalog_stack(plan.catalog) as (stack, _, _):
        for number in range(plan.rounds):
            for name, variant in VARIANTS.items():
                apply(stack, variant)
                row = stack_load(stack, queries, plan.concurrency, plan.warmup_s, plan.duration_s)
                log.info("round %d, %s: %.2f qps", number + 1, name, row["qps"])
                rounds[name].append(row)
    return {"plan": plan.__dict__, "variants": VARIANTS, "rounds": rounds}


def summary(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Means over the rounds; a service's CPU ms per query = its cores busy / QPS."""
    qps = [r["qps"] for r in rows]

    def cpu_ms(service: str) -> int:
        return round(statistics.fmean(1000 * r["cores_busy"][service] / max(r["qps"], 1e-9) for r in rows))

    return [
        round(statistics.fmean(qps), 2),
        " / ".join(f"{v:.2f}" for v in qps),
        round(statistics.fmean(r["stack_cpu_ms_per_query"] for r in rows)),
        cpu_ms("detector"),
        cpu_ms("embedder"),
        round(statistics.fmean(r["stack_cpu_utilisation"] for r in rows), 2),
        round(statistics.fmean(r["latency_ms"]["p50"] for r in rows)),
    ]


def tables(payload: dict[str, Any]) -> str:
    headers = [
        "variant",
        "QPS mean",
        "QPS per round",
        "CPU ms/query",
        "det ms",
        "emb ms",
        "CPU busy",
        "p50 ms",
    ]
    rows = [[name, *summary(rounds)] for name, rounds in payload["rounds"].items()]
    conc = payload["plan"]["concurrency"]
    return render_table(headers, rows, f"POST /v1/search at concurrency {conc}, variants interleaved")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round at concurrency 4")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--duration", type=float, default=0.0, help="measured seconds per variant and round")
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS / "tuning.json")
    args = parser.parse_args(argv)
    bench_logging()
    base = QUICK if args.quick else FULL
    plan = Plan(
        args.rounds or base.rounds,
        args.concurrency or base.concurrency,
        base.warmup_s,
        args.duration or base.duration_s,
        base.queries,
        base.catalog,
    )
    payload, path = measured("tuning", args.quick, args.json, lambda: run(plan))
    print(tables(payload))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
