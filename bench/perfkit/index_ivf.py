"""The IVF contenders of bench/index (Flat, SQ8, PQ codes) and the delete check.

All three share one coarse quantizer (k-means on a sample) and one assignment of the base vectors
to lists: at 1M x 1280 with 4,000 lists each costs minutes on 2 cores, and it is the same work for
every variant. Each row's build time includes the shared part, as if the index were built alone.
"""

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from bench.perfkit.index_data import Matrix
from bench.perfkit.index_measure import (
    Ids,
    Row,
    faiss_search,
    latency_row,
    rss,
    serialised_mib,
    timed,
    tune,
)

TRAIN_PER_LIST = 32  # k-means sample per list: faiss warns under 39, quality barely moves above ~30
ENCODER_SAMPLE = 65_536  # vectors the SQ/PQ encoders train on
KMEANS_ITER = 10
DELETE_FRACTION = 0.01


@dataclass
class Coarse:
    quantizer: faiss.IndexFlatIP
    assign: np.ndarray  # (n,) int64 list of every base vector
    seconds: float  # k-means + assignment, charged to every variant

    @property
    def nlist(self) -> int:
        return int(self.quantizer.ntotal)


def nlist_for(n: int) -> int:
    return max(1, int(4 * math.sqrt(n)))


def coarse(base: Matrix, seed: int) -> Coarse:
    n, dim = base.shape
    nlist = nlist_for(n)
    sample = base[np.random.default_rng(seed).choice(n, size=min(n, nlist * TRAIN_PER_LIST), replace=False)]
    kmeans = faiss.Kmeans(dim, nlist, niter=KMEANS_ITER, spherical=True, seed=seed)
    quantizer = faiss.IndexFlatIP(dim)
    seconds = timed(lambda: kmeans.train(sample)) + timed(lambda: quantizer.add(kmeans.centroids))
    assign = np.empty(n, dtype=np.int64)

    def assign_all() -> None:
        for start in range(0, n, 65_536):
            assign[start : start + 65_536] = quantizer.search(base[start : start + 65_536], 1)[1][:, 0]

    return Coarse(quantizer, assign, seconds + timed(assign_all))


def variants(dim: int) -> dict[str, Callable[[faiss.Index, int], faiss.IndexIVF]]:
    """name -> factory(quantizer, nlist); PQ uses 8-dim sub-vectors (160 bytes a vector at 1280)."""
    m = max(d for d in range(1, dim // 8 + 1) if dim % d == 0)
    ip = faiss.METRIC_INNER_PRODUCT
    return {
        "ivf flat": lambda q, nl: faiss.IndexIVFFlat(q, dim, nl, ip),
        "ivf sq8": lambda q, nl: faiss.IndexIVFScalarQuantizer(q, dim, nl, faiss.ScalarQuantizer.QT_8bit, ip),
        f"ivf pq{m}": lambda q, nl: faiss.IndexIVFPQ(q, dim, nl, m, 8, ip),
    }


def build(
    make: Callable[[faiss.Index, int], faiss.IndexIVF], base: Matrix, shared: Coarse, seed: int
) -> tuple[faiss.IndexIVF, float]:
    """Trains the encoder (the quantizer is already trained) and adds with the precomputed lists."""
    index = make(shared.quantizer, shared.nlist)
    if isinstance(index, faiss.IndexIVFPQ):
        # 160 sub-quantizers x 25 k-means iterations took ~100 s at 1M; 10 give the same recall.
        index.pq.cp.niter = KMEANS_ITER
    rng = np.random.default_rng(seed)
    sample = base[np.sort(rng.choice(len(base), size=min(len(base), ENCODER_SAMPLE), replace=False))]
    seconds = timed(lambda: index.train(sample))
    ids = np.arange(len(base), dtype=np.int64)

    def add() -> None:
        for start in range(0, len(base), 65_536):
            chunk = np.ascontiguousarray(base[start : start + 65_536])
            index.add_core(
                len(chunk),
                faiss.swig_ptr(chunk),
                faiss.swig_ptr(ids[start : start + len(chunk)]),
                faiss.swig_ptr(np.ascontiguousarray(shared.assign[start : start + len(chunk)])),
            )

    return index, seconds + timed(add) + shared.seconds


def measure(
    name: str,
    index: faiss.IndexIVF,
    build_s: float,
    rss_before: float,
    data: tuple[Matrix, Ids, Matrix],
    budget_s: float,
) -> Row:
    queries, truth, timing = data
    nlist = int(index.nlist)
    row = Row(
        int(index.ntotal),
        name,
        build_s=build_s,
        index_mib=serialised_mib(index),
        rss_delta_mib=rss() - rss_before,
    )
    probes = [p for p in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if p <= nlist]

    def set_nprobe(value: int) -> None:
        index.nprobe = value

    nprobe, row.recall_at_10, sweep = tune(faiss_search(index), set_nprobe, probes, queries, truth)
    row.params = f"nlist={nlist}, nprobe={nprobe}"
    row.note = "sweep " + ", ".join(f"{v}:{r:.3f}" for v, r in sweep.items())
    return latency_row(row, faiss_search(index), timing, 300, budget_s)


def delete_check(index: faiss.IndexIVF, base: Matrix, queries: Matrix, seed: int) -> dict[str, Any]:
    """Removes 1% of the ids, then searches with those very vectors (each is its own nearest
    neighbour, the hardest case for a stale entry) and the normal queries: no removed id may return."""
    rng = np.random.default_rng(seed)
    gone = np.sort(rng.choice(len(base), size=max(1, int(len(base) * DELETE_FRACTION)), replace=False))
    before = int(index.ntotal)
    removed = 0

    def remove() -> None:
        nonlocal removed
        removed = int(index.remove_ids(faiss.IDSelectorBatch(gone)))

    seconds = timed(remove)
    probes = np.ascontiguousarray(base[gone[:500]])
    found = np.concatenate([faiss_search(index)(probes).ravel(), faiss_search(index)(queries).ravel()])
    returned = int(np.isin(found, gone).sum())
    return {
        "index": type(index).__name__,
        "nprobe": int(index.nprobe),
        "removed": removed,
        "requested": len(gone),
        "ntotal_before": before,
        "ntotal_after": int(index.ntotal),
        "remove_s": round(seconds, 3),
        "searches": len(probes) + len(queries),
        "removed_ids_returned": returned,
        "ok": returned == 0 and removed == len(gone) and int(index.ntotal) == before - len(gone),
    }


def run_all(
    base: Matrix, data: tuple[Matrix, Ids, Matrix], budget_s: float, seed: int
) -> tuple[list[Row], dict[str, Any]]:
    """Every IVF variant, measured one at a time (memory), then checked for deletes; IVF-SQ8 is the
    indexer's ANN index, the others show that every IVF variant keeps remove_ids."""
    shared = coarse(base, seed)
    rows: list[Row] = []
    deletes: dict[str, Any] = {}
    for name, make in variants(base.shape[1]).items():
        before = rss()
        index, seconds = build(make, base, shared, seed)
        rows.append(measure(name, index, seconds, before, data, budget_s))
        deletes[name] = delete_check(index, base, data[0], seed)
        del index
        gc.collect()
    return rows, deletes
