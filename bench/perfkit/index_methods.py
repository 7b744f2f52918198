"""The non-IVF contenders of bench/index: exact flat (the ground truth), the seed's sklearn brute force,
and HNSW (built only when the extrapolated build time fits the budget)."""

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from bench.perfkit.index_data import Matrix
from bench.perfkit.index_measure import (
    Ids,
    K,
    Row,
    faiss_search,
    latency_row,
    recall,
    rss,
    serialised_mib,
    timed,
    tune,
)

log = logging.getLogger(__name__)

EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)
HNSW_M = 32
HNSW_PROBE = 20_000  # vectors built first to measure the HNSW build rate


def flat(base: Matrix, queries: Matrix, timing: Matrix, budget_s: float) -> tuple[Row, Ids]:
    """Exact IndexFlatIP (the indexer's index today): its batched top-k is every method's ground truth."""
    before = rss()
    index = faiss.IndexFlatIP(base.shape[1])
    build = timed(lambda: index.add(base))
    row = Row(
        len(base),
        "flat (exact)",
        build_s=build,
        index_mib=serialised_mib(index),
        rss_delta_mib=rss() - before,
    )
    truth = faiss_search(index)(queries)  # (q, K)
    row.recall_at_10 = 1.0
    latency_row(row, faiss_search(index), timing, 300, budget_s)
    return row, truth  # the index is freed on return: only one big index lives at a time


def sklearn_brute(base: Matrix, queries: Matrix, truth: Ids, count: int) -> Row:
    """The seed's search: NearestNeighbors(metric="cosine", algorithm="brute"), at batch 1.

    It is only timed on ``count`` queries: at 1M each call normalises a copy of the whole 5 GB
    matrix, so it needs that much free RAM on top of the data, and seconds per query.
    """
    from sklearn.neighbors import NearestNeighbors  # type: ignore[import-untyped]  # slow import

    row = Row(len(base), "sklearn brute (seed)", params=f"cosine, {count} queries")
    need_mib = 1.2 * base.nbytes / 2**20  # the normalised copy plus distance chunks
    if _available_mib() < need_mib:
        row.note = f"skipped: {need_mib:,.0f} MiB needed, {_available_mib():,.0f} MiB available"
        return row
    before = rss()
    model = NearestNeighbors(n_neighbors=K, metric="cosine", algorithm="brute")
    row.build_s = timed(lambda: model.fit(base))
    row.rss_delta_mib = rss() - before

    def search(batch: Matrix) -> Ids:
        return np.asarray(model.kneighbors(batch, return_distance=False))

    latency_row(row, search, queries[:count], count, budget_s=1e9)
    row.recall_at_10 = recall(search(queries[:count]), truth[:count])
    return row


def hnsw(
    base: Matrix, queries: Matrix, truth: Ids, timing: Matrix, budget_s: float, build_budget_s: float
) -> Row:
    """HNSW (M=32), efSearch tuned to the recall target. HNSW cannot remove ids (tombstones + rebuild
    would be needed), so it is measured for speed only. Skipped when the build would exceed the budget."""
    n, dim = base.shape
    row = Row(n, "hnsw flat", params=f"M={HNSW_M}")
    probe = min(n, HNSW_PROBE)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    before = rss()
    probe_s = timed(lambda: index.add(base[:probe]))
    # Insertion cost grows ~log(n) with the graph's depth; extrapolate with that factor.
    estimate = probe_s * (n / probe) * math.log(n) / math.log(probe)
    if n > probe and estimate > build_budget_s:
        row.note = f"skipped: build extrapolated to {estimate / 60:.1f} min (rate {probe / probe_s:,.0f}/s at {probe})"
        return row
    log.info("HNSW build of %d vectors, estimated %.0f s", n, estimate)
    row.build_s = probe_s + timed(lambda: index.add(base[probe:]))
    row.rss_delta_mib = rss() - before
    row.index_mib = serialised_mib(index)

    def set_ef(value: int) -> None:
        index.hnsw.efSearch = value

    ef, row.recall_at_10, sweep = tune(faiss_search(index), set_ef, EF_SEARCH, queries, truth)
    row.params += f", efSearch={ef}"
    row.note = "sweep " + ", ".join(f"{v}:{r:.3f}" for v, r in sweep.items())
    latency_row(row, faiss_search(index), timing, 300, budget_s)
    return row


def _available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0
