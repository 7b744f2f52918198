"""bench/index: exact vs approximate vector search at catalog scale, at the embedder's real dim.

    bench/index [--sizes 100000,1000000] [--dim D] [--quick] [--json OUT]

For each size, in one run and one process: exact IndexFlatIP (ground truth), the seed's sklearn
brute force, IVF-Flat / IVF-SQ8 / IVF-PQ (nprobe tuned to recall@10 >= 0.95) and HNSW (efSearch
tuned likewise); build time, serialised size, RSS delta, batch-1 latency, recall@10 and speed-up
vs sklearn; then 1% of the ids are removed from each IVF index and must never come back.
"""

import argparse
import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.perfkit import RESULTS, bench_lock, render_table, write_json
from bench.perfkit import index_ivf as ivf
from bench.perfkit import index_methods as methods
from bench.perfkit.index_data import MODELS, ClusteredVectors, model_dim
from bench.perfkit.index_measure import TARGET_RECALL, Row

log = logging.getLogger("bench.index")

HEADERS = (
    "method",
    "params",
    "build s",
    "index MiB",
    "RSS +MiB",
    "p50 ms",
    "mean ms",
    "recall@10",
    "x sklearn",
)


def sklearn_queries(n: int) -> int:
    """sklearn costs ~n*dim per query and copies the base each call: a handful at 1M is enough."""
    return max(3, min(50, 5_000_000 // n))


def run_size(n: int, dim: int, args: argparse.Namespace) -> dict[str, Any]:
    gen = ClusteredVectors(dim, clusters=min(2000, max(10, n // 50)), seed=args.seed)
    started = time.perf_counter()
    base = gen.sample(n, stream=0)  # (n, dim)
    held_out = gen.sample(args.queries, stream=1)  # (q, dim): never in the base
    log.info("n=%d: %d x %d vectors generated in %.1f s", n, n, dim, time.perf_counter() - started)
    timing = held_out[: args.timed]
    flat, truth = methods.flat(base, held_out, timing, args.time_budget)
    rows = [flat, methods.sklearn_brute(base, held_out, truth, sklearn_queries(n))]
    log.info("n=%d: flat and sklearn done", n)
    ivf_rows, deletes = ivf.run_all(base, (held_out, truth, timing), args.time_budget, args.seed)
    rows += ivf_rows
    log.info("n=%d: IVF done", n)
    rows.append(methods.hnsw(base, held_out, truth, timing, args.time_budget, args.hnsw_budget * 60))
    _speedups(rows)
    del base
    gc.collect()
    return {
        "n": n,
        "clusters": min(2000, max(10, n // 50)),
        "rows": [r.as_dict() for r in rows],
        "deletes": deletes,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _speedups(rows: list[Row]) -> None:
    ref = next((r for r in rows if r.method.startswith("sklearn")), None)
    ref_ms = ref.latency_ms.get("mean") if ref else None
    for row in rows:
        mean = row.latency_ms.get("mean")
        if ref_ms and mean:
            row.speedup_vs_sklearn = round(ref_ms / mean, 1)


def table(result: dict[str, Any]) -> str:
    def num(value: float | None) -> Any:
        return "-" if value is None else float(value)

    cells = [
        [
            r["method"],
            r["params"],
            num(r["build_s"]),
            num(r["index_mib"]),
            num(r["rss_delta_mib"]),
            num(r["latency_ms"].get("p50")),
            num(r["latency_ms"].get("mean")),
            "-" if r["recall_at_10"] is None else f"{r['recall_at_10']:.3f}",
            "-" if r["speedup_vs_sklearn"] is None else f"{r['speedup_vs_sklearn']:,.0f}x",
        ]
        for r in result["rows"]
    ]
    out = render_table(
        HEADERS, cells, title=f"n = {result['n']:,} vectors (batch-1 latency, recall@10 vs exact)"
    )
    notes = [f"  {r['method']}: {r['note']}" for r in result["rows"] if r["note"]]
    dels = [
        f"  deletes on {name}: removed {d['removed']:,} of {d['ntotal_before']:,} in {d['remove_s']} s; "
        f"{d['removed_ids_returned']} removed ids returned in {d['searches']} searches -> {'OK' if d['ok'] else 'FAIL'}"
        for name, d in result["deletes"].items()
    ]
    return "\n".join([out, *notes, *dels])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    dim = args.dim or model_dim(args.models)
    sizes = [2000, 20000] if args.quick else [int(s) for s in args.sizes.split(",")]
    log.info(
        "dim %d (%s), sizes %s, faiss %s, %d threads",
        dim,
        "--dim" if args.dim else "from the model",
        sizes,
        faiss.__version__,
        faiss.omp_get_max_threads(),
    )
    results = []
    with bench_lock():
        for n in sizes:
            results.append(run_size(n, dim, args))
            print(table(results[-1]) + "\n", flush=True)
    path = write_json(args.json, _payload(dim, args, results))
    print(f"wrote {path}")
    return 0


def _payload(dim: int, args: argparse.Namespace, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "bench": "index",
        "command": "bench/index " + " ".join(sys.argv[1:]),
        "dim": dim,
        "dim_source": "--dim" if args.dim else f"model mobilenetv2-features in {args.models}",
        "k": 10,
        "target_recall": TARGET_RECALL,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "data": "ClusteredVectors (bench/perfkit/index_data.py): Zipf-sized anisotropic Gaussian clusters, unit norm",
        "queries": {"recall": args.queries, "batch1_timed": args.timed},
        "sizes": results,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/index", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts")
    parser.add_argument("--dim", type=int, default=0, help="override the dim read from the model")
    parser.add_argument("--models", type=Path, default=MODELS, help="folder of the ONNX models")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (2k, 20k) for development")
    parser.add_argument("--queries", type=int, default=500, help="held-out queries for recall")
    parser.add_argument("--timed", type=int, default=300, help="queries timed one by one (at most)")
    parser.add_argument(
        "--time-budget", type=float, default=20.0, help="seconds of batch-1 timing per method"
    )
    parser.add_argument("--hnsw-budget", type=float, default=15.0, help="minutes the HNSW build may take")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS / "index.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
