"""Import throughput with 1 embed worker vs 2, measured in one run on one stack.

Starts the dev stack on free loopback ports with an empty catalog, splits the demo feed's fashion
rows into two interleaved halves (both see every category), imports the first half with the
stack's single worker, starts a second worker running only the embed stage, and imports the
second half. Prints a table, writes JSON (bench/results/ingest_workers.json), and the CPU seconds
each process spent per import, so the bottleneck is visible. The import timing and CPU accounting
are shared with bench/ingest (bench/perfkit/ingest_stack.py).

    .venv/bin/python bench/ingest_workers.py [--items 1000]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perfkit.ingest_stack import fashion_rows, measured_import, to_csv  # noqa: E402
from services.devstack.ephemeral import ephemeral_stack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000, help="items per import")
    args = parser.parse_args()
    with ephemeral_stack() as stack:
        settings = stack.settings
        rows = fashion_rows(settings.datasets_dir, settings.gateway_url, 2 * args.items)
        first, second = to_csv(rows[0::2]), to_csv(rows[1::2])
        results = {}
        with httpx.Client(base_url=settings.gateway_url, timeout=30) as client:
            for label, feed, extra in (
                ("1 embed worker", first, False),
                ("2 embed workers", second, True),
            ):
                if extra:
                    stack.start_worker("embed-2", ["embed"])
                    time.sleep(2)
                results[label] = measured_import(stack, client, feed, f"{label}.csv")
    print(f"{'workers':<18}{'items':>7}{'seconds':>9}{'items/s':>9}{'cpu busy':>10}   cpu seconds by process")
    for label, r in results.items():
        row = f"{label:<18}{r['items']:>7}{r['seconds']:>9}{r['items_per_s']:>9}{r['cpu_busy']:>10}"
        print(f"{row}   {r['cpu_s']}")
    ratio = results["2 embed workers"]["items_per_s"] / results["1 embed worker"]["items_per_s"]
    print(f"throughput ratio 2 vs 1 embed workers: {ratio:.2f}x")
    out = ROOT / "bench" / "results" / "ingest_workers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "ratio": round(ratio, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
