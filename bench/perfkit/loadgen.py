"""Closed-loop HTTP load on loopback: ``concurrency`` clients, each sending its next search as soon
as the previous one answered, with CPU seconds of every stack process read around the window."""

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.perfkit import cpu_seconds, percentiles
from bench.perfkit.stackload import Query, service_pids
from services.devstack.launcher import Stack


@dataclass
class Window:
    """What happened between t0 and t1 (the measured window, after the warm-up)."""

    t0: float = 0.0
    t1: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each process, and of the whole machine under the name "machine"."""
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()}, "machine": machine_busy_seconds()}


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of all cores since boot (/proc/stat): what else ran during a window
    (the cores are shared with whatever else runs on this machine)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _client_loop(
    client: httpx.AsyncClient, queries: Sequence[Query], start: int, window: Window, end: float
) -> None:
    n = start
    while time.perf_counter() < end:
        query = queries[n % len(queries)]
        n += 1
        sent = time.perf_counter()
        reply = await client.post(
            "/v1/search", files={"image": (query.name, query.data, "image/jpeg")}, data={"k": "10"}
        )
        done = time.perf_counter()
        # A call counts where it completes: throughput is completions per second of the window,
        # and the CPU read around the window pays for exactly the work in it. Counting only calls
        # sent and answered inside the window would drop the one call per client that straddles its
        # start (9 % of the calls at concurrency 8, 19 % at 16) while their CPU was still counted.
        if window.t0 <= done <= window.t1:
            window.latencies_ms.append((done - sent) * 1000)
            window.errors += reply.status_code != 200


async def closed_loop(
    url: str,
    queries: Sequence[Query],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    pids: Mapping[str, int],
) -> dict[str, Any]:
    """QPS, latency and CPU utilisation (per process and in all) at one concurrency."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    window = Window()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        window.t0, window.t1 = start + warmup_s, start + warmup_s + duration_s
        stride = max(1, len(queries) // concurrency)  # clients start on different photos
        tasks = [
            asyncio.create_task(_client_loop(client, queries, i * stride, window, window.t1))
            for i in range(concurrency)
        ]
        await asyncio.sleep(max(0.0, window.t0 - time.perf_counter()))
        before = _cpu(pids)
        await asyncio.sleep(max(0.0, window.t1 - time.perf_counter()))
        after = _cpu(pids)
        await asyncio.gather(*tasks)
    return _summary(window, before, after, concurrency)


def _summary(
    window: Window, before: Mapping[str, float], after: Mapping[str, float], concurrency: int
) -> dict[str, Any]:
    wall = window.t1 - window.t0
    cores = os.cpu_count() or 1
    per_process = {name: round((after[name] - before[name]) / wall, 3) for name in before}
    machine = per_process.pop("machine")
    stack_cores = sum(per_process.values()) - per_process.get("client", 0.0)
    per_process["other"] = round(max(0.0, machine - sum(per_process.values())), 3)  # not ours
    completed = len(window.latencies_ms)
    return {
        "concurrency": concurrency,
        "qps": round(completed / wall, 3),
        "latency_ms": percentiles(window.latencies_ms),
        "errors": window.errors,
        "cores_busy": per_process,  # CPU-seconds per wall second, by process
        "stack_cpu_utilisation": round(stack_cores / cores, 3),
        "machine_cpu_utilisation": round(machine / cores, 3),
        "stack_cpu_ms_per_query": round(stack_cores * wall * 1000 / max(1, completed), 1),
    }


def stack_load(
    stack: Stack, queries: Sequence[Query], concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """:func:`closed_loop` against ``stack``'s gateway, with the CPU of every service and of this
    client process read around the window."""
    pids = {**service_pids(stack), "client": os.getpid()}
    url = stack.settings.gateway_url
    return asyncio.run(closed_loop(url, queries, concurrency, warmup_s, duration_s, pids))
