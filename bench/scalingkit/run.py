"""Replicas of the stateless services on this machine, and what they mean for a cloud deployment.

    bench/scaling [--quick] [--json PATH] [--replica-cores N] [--utilisation U]

One throwaway stack with 2 embedder replicas (services.devstack, ``--embedders 2``), a small
catalog PUT through the gateway, real query photos (bench/perfkit/stackload.py):

1. search throughput with 1 embedder replica of 2 threads vs 2 replicas of 1 thread each (the same
   total threads, VS_EMBEDDER_THREADS), closed loop (bench/perfkit/loadgen.py), CPU per process;
2. kill -9 one of the 2 embedder replicas mid-load: failed searches, error window, latency before
   and after; then its restart: seconds to SERVING, and until the gateway sends it calls again;
3. ingest images/s with 1 vs 2 embed workers (the stack's worker, plus one running the embed stage);
4. a paper model: CPU seconds per search of each service (from 1) -> cores and replicas
   (``--replica-cores`` each, kept at ``--utilisation``) per 100 searches a second.

Prints the tables; writes bench/results/scaling.json.
"""

import argparse
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.perfkit import RESULTS, bench_logging, measured
from bench.perfkit.ingest_stack import fashion_rows, measured_import, to_csv
from bench.perfkit.loadgen import stack_load
from bench.perfkit.stackload import Query, catalog_rows, query_photos, restart
from bench.scalingkit.load import fixed_load, kill_summary, rpc_count
from bench.scalingkit.report import paper_model, tables
from services.devstack.ephemeral import ephemeral_stack
from services.devstack.launcher import WORKER, Stack

log = logging.getLogger("bench.scaling")

ONE, TWO = "1 embedder x 2 threads", "2 embedders x 1 thread"


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    rounds: int  # ONE, TWO, ONE, TWO...: the machine's drift hits both alike
    warmup_s: float
    duration_s: float
    queries: dict[str, int]
    catalog: tuple[int, int]
    kill_total: int  # searches in the kill run
    kill_after: int  # ... of which this many finish before the kill
    ingest_items: int


QUICK = Plan(
    (4,), 1, 2.0, 6.0, {"scenes": 3, "grocery_store": 2, "fashion_products": 2}, (40, 10), 60, 15, 100
)
FULL = Plan(
    (4, 8), 2, 4.0, 15.0, {"scenes": 12, "grocery_store": 6, "fashion_products": 6}, (300, 65), 200, 50, 500
)
KILL_CONCURRENCY = 4
WARMUP_ITEMS = 32


def load_catalog(stack: Stack, fashion: int, grocery: int) -> None:
    """Products PUT through the gateway (embedded by the replicas themselves)."""
    with httpx.Client(base_url=stack.settings.gateway_url, timeout=60) as client:
        for record, path in catalog_rows(fashion, grocery):
            reply = client.put(
                f"/v1/products/{record.product_id}",
                data={"title": record.title or record.product_id, "category": record.category},
                files={"image": (path.name, path.read_bytes(), "image/jpeg")},
            )
            reply.raise_for_status()
    log.info("catalog loaded: %d products", fashion + grocery)


def use(stack: Stack, config: str, queries: Sequence[Query]) -> None:
    if config == ONE:
        stack.stop_service("embedder-2")  # the gateway's round-robin skips it while it is down
        restart(stack, "embedder-1", {"VS_EMBEDDER_THREADS": "2"})
        first_calls(stack, ["embedder-1"], queries)
    else:
        restart(stack, "embedder", {"VS_EMBEDDER_THREADS": "1"})
        first_calls(stack, ["embedder-1", "embedder-2"], queries)


def first_calls(stack: Stack, replicas: Sequence[str], queries: Sequence[Query]) -> float | None:
    """Searches until each (just started) replica has answered a call: the gateway reconnects on
    its own, with a back-off of at most 5 s. Seconds it took; None if it never happened."""
    started = time.monotonic()
    for _ in range(60):
        if all(rpc_count(stack, name) > 0 for name in replicas):
            return round(time.monotonic() - started, 2)
        fixed_load(stack.settings.gateway_url, queries, 2 * KILL_CONCURRENCY, KILL_CONCURRENCY)
    return None


def throughput(stack: Stack, queries: Sequence[Query], plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for round_ in range(1, plan.rounds + 1):
        for config in (ONE, TWO):  # ends with TWO running, for the kill run
            use(stack, config, queries)
            for concurrency in plan.concurrency:
                row = stack_load(stack, queries, concurrency, plan.warmup_s, plan.duration_s)
                result = {"config": config, "round": round_, **row}
                log.info("%s, concurrency %d: %.2f qps", config, concurrency, result["qps"])
                rows.append(result)
    return rows


def kill_replica(stack: Stack, queries: Sequence[Query], plan: Plan) -> dict[str, Any]:
    """kill -9 embedder-2 after ``kill_after`` searches; then restart it and time its return."""
    url = stack.settings.gateway_url
    outcomes, killed_at = fixed_load(
        url,
        queries,
        plan.kill_total,
        KILL_CONCURRENCY,
        plan.kill_after,
        lambda: stack.stop_service("embedder-2", signal.SIGKILL),
    )
    result = {"concurrency": KILL_CONCURRENCY, **kill_summary(outcomes, killed_at)}
    started = time.monotonic()
    stack.start_service("embedder-2")
    stack.wait_ready("embedder-2")
    result["restart_to_serving_s"] = round(time.monotonic() - started, 2)
    result["serving_to_first_call_s"] = first_calls(stack, ["embedder-2"], queries)
    log.info("kill -9 of a replica: %s", result)
    return result


def ingest_workers(stack: Stack, items: int) -> dict[str, Any]:
    """images/s of one import with the stack's worker, then of another with a second embed worker."""
    settings = stack.settings
    rows = fashion_rows(settings.datasets_dir, settings.gateway_url, 2 * items + WARMUP_ITEMS)
    stack.start_worker(WORKER)
    results = {}
    with httpx.Client(base_url=settings.gateway_url, timeout=30) as client:
        measured_import(stack, client, to_csv(rows[2 * items :]), "warmup.csv")
        results["1 embed worker"] = measured_import(stack, client, to_csv(rows[0 : 2 * items : 2]), "one.csv")
        stack.start_worker("embed-2", ["embed"])
        time.sleep(2)  # joined its consumer group
        results["2 embed workers"] = measured_import(
            stack, client, to_csv(rows[1 : 2 * items : 2]), "two.csv"
        )
    return results


def run(plan: Plan, replica_cores: float, utilisation: float) -> dict[str, Any]:
    queries = query_photos(plan.queries)
    with ephemeral_stack(load_demo=False, replicas={"embedder": 2}) as stack:
        stack.procs.stop(WORKER)  # an idle worker polls Redis: CPU the search runs should have
        load_catalog(stack, *plan.catalog)
        rows = throughput(stack, queries, plan)
        kill = kill_replica(stack, queries, plan)
        ingest = ingest_workers(stack, plan.ingest_items)
    return {
        "plan": asdict(plan),
        "throughput": rows,
        "kill": kill,
        "ingest": ingest,
        "model": paper_model(rows, replica_cores, utilisation),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round at concurrency 4, short windows")
    parser.add_argument("--json", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--replica-cores", type=float, default=2.0, help="cores of one cloud replica")
    parser.add_argument("--utilisation", type=float, default=0.6, help="CPU share a replica is kept at")
    args = parser.parse_args(argv)
    bench_logging()
    plan = QUICK if args.quick else FULL
    payload, path = measured(
        "scaling", args.quick, args.json, lambda: run(plan, args.replica_cores, args.utilisation)
    )
    print(tables(payload))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
