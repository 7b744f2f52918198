"""Measuring one index of bench/index: size, build cost, batch-1 latency, recall against exact search."""

import ctypes
import ctypes.util
import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from bench.perfkit import percentiles, rss_mib
from bench.perfkit.index_data import Matrix

Ids = npt.NDArray[np.int64]  # (q, k)
K = 10
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
TARGET_RECALL = 0.95


@dataclass
class Row:
    """One line of the table and of bench/results/index.json."""

    size: int
    method: str
    params: str = ""
    build_s: float | None = None
    index_mib: float | None = None
    rss_delta_mib: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # batch 1: p50, p95, p99, mean, n
    recall_at_10: float | None = None
    speedup_vs_sklearn: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss() -> float:
    """This process' RSS after returning freed heap to the OS: without the trim, an index built
    where the previous one was freed reuses that memory and shows an RSS delta of ~0."""
    gc.collect()
    _LIBC.malloc_trim(0)
    return rss_mib(os.getpid())


def serialised_mib(index: faiss.Index) -> float:
    """Bytes faiss.serialize_index would produce, counted through the same writer without holding
    them: at 1M x 1280 a flat index serialises to 5 GB, and a copy of it would distort the RSS."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))  # type: ignore[attr-defined]
    return total / 2**20


def recall(found: Ids, truth: Ids) -> float:
    """Mean fraction of the exact top-k ids present in the found top-k, over queries."""
    hits = [len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / int(truth.shape[1])


def batch1_ms(search: Callable[[Matrix], object], queries: Matrix, most: int, budget_s: float) -> list[float]:
    """Per-query latency at batch 1 (one request = one query, as the indexer serves them).

    Stops after ``most`` queries or ``budget_s`` seconds (at least 3), so slow exact methods at 1M
    still finish; a warm-up query first, because the first call pays page faults and thread start.
    """
    search(queries[:1])
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(min(most, len(queries))):
        start = time.perf_counter()
        search(queries[i : i + 1])
        samples.append((time.perf_counter() - start) * 1000)
        if i >= 2 and time.perf_counter() > deadline:
            break
    return samples


def tune(
    search: Callable[[Matrix], Ids],
    set_param: Callable[[int], None],
    values: Sequence[int],
    queries: Matrix,
    truth: Ids,
) -> tuple[int, float, dict[int, float]]:
    """Smallest parameter value whose recall@k reaches TARGET_RECALL (else the best one tried).

    Returns (value, its recall, the whole sweep) so the JSON shows the recall curve.
    """
    sweep: dict[int, float] = {}
    for value in values:
        set_param(value)
        sweep[value] = recall(search(queries), truth)
        if sweep[value] >= TARGET_RECALL:
            return value, sweep[value], sweep
    # Target missed (e.g. PQ, whose codes cap recall): the cheapest value on the recall plateau.
    best = min(v for v in sweep if sweep[v] >= max(sweep.values()) - 0.005)
    set_param(best)
    return best, sweep[best], sweep


def latency_row(
    row: Row, search: Callable[[Matrix], object], queries: Matrix, most: int, budget_s: float
) -> Row:
    row.latency_ms = percentiles(batch1_ms(search, queries, most, budget_s))
    return row


def faiss_search(index: faiss.Index, k: int = K) -> Callable[[Matrix], Ids]:
    def run(queries: Matrix) -> Ids:
        return np.asarray(index.search(queries, k)[1])

    return run


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
