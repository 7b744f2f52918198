"""Shared pieces of the performance benches (bench/latency, bench/throughput, bench/index, ...).

Every bench prints a table and writes JSON under bench/results/; numbers worth comparing are
measured side by side in one run, because these 2-core machines are noisy. Full runs take
``bench_lock()`` so two benches never measure at the same time.
"""

import fcntl
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
LOCK = Path(os.environ.get("VS_BENCH_LOCK", "/tmp/vs-bench.lock"))


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """Latency samples in ms -> p50/p95/p99/mean/n (rounded to 0.01 ms)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    stats = {"p50": p50, "p95": p95, "p99": p99, "mean": values.mean()}
    return {"n": int(values.size), **{k: round(float(v), 2) for k, v in stats.items()}}


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """Aligned plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(([title] if title else []) + [line.rstrip() for line in lines])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    """What the numbers were measured on, stored with them."""
    try:
        # "-dirty": measured on uncommitted changes to tracked files, so HEAD alone is not the code.
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7", "--exclude=*"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` plus the machine facts, atomically; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    tmp.replace(path)
    return path


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_logging() -> None:
    """Progress to stderr with timestamps; per-request client logs would drown it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextmanager
def bench_lock() -> Iterator[None]:
    """Holds an exclusive machine-wide lock so full benchmark runs never overlap."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measured(
    bench: str, quick: bool, path: Path, run: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], Path]:
    """Runs ``run`` under the bench lock, then writes its payload tagged with the bench and mode."""
    with bench_lock():
        payload = run()
    return payload, write_json(path, {"bench": bench, "quick": quick, **payload})
