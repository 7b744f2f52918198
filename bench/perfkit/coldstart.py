"""Cold start: from starting the stack to ready (/readyz 200), and the demo catalog import.

    bench/coldstart [--quick] [--reps N] [--no-demo]

Each repetition brings a throwaway stack up with the launcher ./scripts/up runs
(services.devstack: Redis, detector, embedder, indexer, gateway, ingest worker), without the demo
catalog, in a fresh temp folder on free ports: the same work as a first ``./scripts/up`` except
installing the venv. ``up`` returns once the gateway's /readyz answers 200 and the worker runs;
the launcher records when each service was first seen ready. Then the demo catalog is imported
as ``./scripts/up`` does it (the CSV feed through POST /v1/imports), timed separately.
Medians over the repetitions; writes bench/results/coldstart.json.
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any

from bench.perfkit import RESULTS, bench_lock, render_table, write_json
from services.devstack.ephemeral import ephemeral_stack

STEPS = ("redis", "detector", "embedder", "indexer", "gateway", "worker")


def one_start(demo: bool) -> dict[str, Any]:
    started = time.perf_counter()
    with ephemeral_stack(load_demo=False) as stack:
        result: dict[str, Any] = {"ready_s": round(time.perf_counter() - started, 2)}
        result["services_s"] = {name: round(s, 2) for name, s in stack.ready_s.items()}
        if demo:
            began = time.perf_counter()
            stack.load_demo()
            result["demo_import_s"] = round(time.perf_counter() - began, 2)
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    out: dict[str, Any] = {"ready_s": median([r["ready_s"] for r in runs])}
    out["services_s"] = {n: median([r["services_s"][n] for r in runs if n in r["services_s"]]) for n in STEPS}
    if all("demo_import_s" in r for r in runs):
        out["demo_import_s"] = median([r["demo_import_s"] for r in runs])
    return out


def table(runs: list[dict[str, Any]], median: dict[str, Any]) -> str:
    labels = [f"run {n}" for n in range(1, len(runs) + 1)] + ["median"]
    rows = []
    for label, r in zip(labels, [*runs, median], strict=True):
        steps = [r["services_s"].get(n, "") for n in STEPS]
        rows.append([label, *steps, r["ready_s"], r.get("demo_import_s", "-")])
    headers = ["cold start (s)", *STEPS, "ready", "demo import"]
    return render_table(headers, rows, title="seconds from launch until each part is ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 start, no demo import, no lock, no JSON")
    parser.add_argument("--reps", type=int, default=0, help="repetitions (default 3, quick 1)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo catalog import")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    demo = not (args.quick or args.no_demo)
    with nullcontext() if args.quick else bench_lock():
        runs = [one_start(demo) for _ in range(reps)]
    median = summary(runs)
    print(table(runs, median))
    if not args.quick:
        out = write_json(RESULTS / "coldstart.json", {"reps": reps, "median": median, "runs": runs})
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
