"""The paper model of a cloud deployment, and the tables bench/scaling prints."""

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.perfkit import render_table
from services.devstack.replicas import service_of

SERVICES = ("detector", "embedder", "indexer", "gateway")


def busy_by_service(cores_busy: Mapping[str, float]) -> dict[str, float]:
    """Cores busy per service, its replicas added up (``embedder-1`` + ``embedder-2``)."""
    busy = dict.fromkeys(SERVICES, 0.0)
    for name, cores in cores_busy.items():
        if service_of(name) in busy:
            busy[service_of(name)] += cores
    return busy


def paper_model(
    rows: Sequence[Mapping[str, Any]], replica_cores: float, utilisation: float
) -> dict[str, Any]:
    """CPU seconds per search of each service (median over the throughput runs) -> the cores and
    the replicas of ``replica_cores`` cores, kept at ``utilisation``, that 100 searches/s need.

    A model, not a measurement: it assumes CPU cost per search stays what it is here (loopback, 2
    shared cores, the same photo mix) and ignores network hops and memory limits.
    """
    per_search = {
        service: statistics.median(
            busy_by_service(r["cores_busy"])[service] / r["qps"] for r in rows if r["qps"]
        )
        for service in SERVICES
    }
    usable = replica_cores * utilisation
    services = {}
    for service, cpu_s in per_search.items():
        cores = 100 * cpu_s
        services[service] = {
            "cpu_ms_per_search": round(1000 * cpu_s, 1),
            "cores_per_100_qps": round(cores, 2),
            "replicas_per_100_qps": math.ceil(cores / usable) if cores else 0,
            "qps_per_replica": round(usable / cpu_s, 1) if cpu_s else None,
        }
    return {
        "replica_cores": replica_cores,
        "utilisation": utilisation,
        "services": services,
        "cores_per_100_qps": round(sum(s["cores_per_100_qps"] for s in services.values()), 2),
    }


def tables(payload: Mapping[str, Any]) -> str:
    return "\n\n".join(
        (
            _throughput(payload["throughput"]),
            _kill(payload["kill"]),
            _ingest(payload["ingest"]),
            _model(payload["model"]),
        )
    )


def _throughput(rows: Sequence[Mapping[str, Any]]) -> str:
    body = []
    for r in rows:
        busy = busy_by_service(r["cores_busy"])
        latency = r["latency_ms"]
        body.append(
            [
                r["config"],
                r["round"],
                r["concurrency"],
                r["qps"],
                latency.get("p50", ""),
                latency.get("p95", ""),
                r["errors"],
                *(busy[s] for s in SERVICES),
                r["cores_busy"].get("other", 0.0),
                r["stack_cpu_utilisation"],
            ]
        )
    headers = ["embedders", "round", "conc", "QPS", "p50 ms", "p95 ms", "err", "det", "emb", "idx", "gw"]
    title = "POST /v1/search, 1 vs 2 embedder replicas at the same total threads (cores busy per service)"
    return render_table([*headers, "other", "stack CPU"], body, title)


def _kill(k: Mapping[str, Any]) -> str:
    headers = ["searches", "failed", "error window s", "first ok after kill s", "p50 before ms"]
    headers += ["p50 after ms", "QPS after", "restart to SERVING s", "SERVING to first call s"]
    row = [
        k["requests"],
        k["failed"],
        k["error_window_s"],
        k["first_success_after_kill_s"],
        k["latency_before_ms"].get("p50", ""),
        k["latency_after_ms"].get("p50", ""),
        k["qps_after"],
        k["restart_to_serving_s"],
        k["serving_to_first_call_s"],
    ]
    title = f"kill -9 of 1 of 2 embedder replicas mid-load (concurrency {k['concurrency']})"
    return render_table(headers, [row], title)


def _ingest(results: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        [
            label,
            r["items"],
            r["failed"],
            r["seconds"],
            r["items_per_s"],
            r["cpu_busy"],
            ", ".join(f"{name} {ms}" for name, ms in r["cpu_s_per_item_ms"].items()),
        ]
        for label, r in results.items()
    ]
    headers = ["ingest (2 embedder replicas)", "images", "failed", "seconds", "images/s", "cpu busy"]
    return render_table([*headers, "cpu ms/image"], rows, "catalog import, 1 vs 2 embed workers")


def _model(model: Mapping[str, Any]) -> str:
    rows = [
        [
            service,
            m["cpu_ms_per_search"],
            m["cores_per_100_qps"],
            m["replicas_per_100_qps"],
            m["qps_per_replica"],
        ]
        for service, m in model["services"].items()
    ]
    cores, share = model["replica_cores"], round(100 * model["utilisation"])
    headers = ["service", "CPU ms/search", "cores per 100 QPS", "replicas per 100 QPS", "QPS per replica"]
    title = (
        f"paper model: replicas of {cores:g} cores kept at {share}% CPU; "
        f"{model['cores_per_100_qps']} cores per 100 QPS in all (the indexer runs once: its row is its limit)"
    )
    return render_table(headers, rows, title)
