"""Import throughput with 1 embed worker vs 2, measured in one run on one stack.

Starts the dev stack on free loopback ports with an empty catalog, splits the demo feed into two
halves of similar products, imports the first half with the stack's single worker, starts a
second worker running only the embed stage, and imports the second half. Prints a table, writes
JSON (bench/results/ingest_workers.json), and the CPU seconds each process spent per import, so
the bottleneck is visible.

    .venv/bin/python bench/ingest_workers.py [--items 1000]
"""

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perfkit import cpu_seconds  # noqa: E402
from services.devstack.ephemeral import ephemeral_stack  # noqa: E402
from services.scraper.cli import DEMO_MANIFESTS  # noqa: E402
from services.scraper.demo_feed import demo_rows, write_feed  # noqa: E402


def import_feed(client: httpx.Client, feed: str, name: str) -> dict[str, Any]:
    response = client.post("/v1/imports", files={"feed": (name, feed.encode(), "text/csv")})
    response.raise_for_status()
    job_id = response.json()["job_id"]
    started = time.perf_counter()
    while True:
        status = client.get(f"/v1/imports/{job_id}").json()
        if status["status"] in ("completed", "failed"):
            break
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    finished = status["done"] + status["skipped"] + status["failed"]
    return {
        "items": finished,
        "done": status["done"],
        "failed": status["failed"],
        "seconds": round(seconds, 2),
        "items_per_s": round(finished / seconds, 1),
    }


def halves(feed: str, items: int) -> tuple[str, str]:
    rows = list(csv.DictReader(io.StringIO(feed)))
    fashion = [r for r in rows if "/fashion_products/" in r["image_url"]][: 2 * items]
    out = []
    for part in (fashion[0::2], fashion[1::2]):  # interleaved: both halves see every category
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(part)
        out.append(buffer.getvalue())
    return out[0], out[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000, help="items per import")
    args = parser.parse_args()
    with ephemeral_stack() as stack:
        settings = stack.settings
        buffer = io.StringIO()
        write_feed(demo_rows(settings.datasets_dir, DEMO_MANIFESTS, f"{settings.gateway_url}/media"), buffer)
        first, second = halves(buffer.getvalue(), args.items)
        results = {}
        with httpx.Client(base_url=settings.gateway_url, timeout=30) as client:
            for label, feed, extra in (
                ("1 embed worker", first, False),
                ("2 embed workers", second, True),
            ):
                if extra:
                    stack.start_worker("embed-2", ["embed"])
                    time.sleep(2)
                procs = stack.running()
                before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
                result = import_feed(client, feed, f"{label}.csv")
                result["cpu_s"] = {n: round(cpu_seconds(p.pid) - before[n], 1) for n, p in procs.items()}
                # Share of all cores the stack kept busy: near 1.0, more workers cannot help.
                cores = os.cpu_count() or 1
                result["cpu_busy"] = round(sum(result["cpu_s"].values()) / result["seconds"] / cores, 2)
                results[label] = result
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
