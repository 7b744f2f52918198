"""Which vector index a catalog gets, by size: exact flat while small, IVF once big.

A flat index answers in O(n * dim) per query: ~10 ms at 100k x 1280 but ~0.3 s at 1M, and it holds
5 GB of float32 per million vectors. IVF-SQ8 scans only ``nprobe`` of its ~4*sqrt(n) lists and stores
one byte per dimension (1.2 GB per million), at recall@10 ~0.95 (bench/index). IVF rather than HNSW
because IVF removes ids and honours ID selectors, so deletes and filtered search stay as they are.

The IVF is trained on the vectors at hand (from the catalog, the source of truth, not the lossy
codes) and retrained when the catalog has grown ``retrain_growth`` times, since the right number of
lists grows with the catalog. The switch runs in the write that crosses the threshold (or at start).
"""

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

from services.indexer.index import DEFAULT_NPROBE, FaissIndex
from services.indexer.records import VectorIds, Vectors

IndexType = Literal["auto", "flat", "ivf-sq8", "ivf-flat"]
# (ids (n,), vectors (n, dim)) batches of every vector of the catalog; called once per pass.
VectorSource = Callable[[], Iterable[tuple[VectorIds, Vectors]]]

MIN_IVF_VECTORS = 1024  # below this an IVF cannot be trained sensibly (>= 8 vectors per list)
TRAIN_PER_LIST = 32  # k-means sample per list; faiss' default of 256 costs 8x for no recall gain
KMEANS_ITER = 10
FACTORY = {"ivf-sq8": "SQ8", "ivf-flat": "Flat"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexPolicy:
    """``index_type``: "auto" = flat below ``ann_threshold`` vectors, IVF-SQ8 from it (back to flat
    below half of it, so a catalog hovering at the threshold does not flip at every write);
    "flat" = always exact; "ivf-sq8" / "ivf-flat" = that IVF whenever it can be trained."""

    index_type: IndexType = "auto"
    ann_threshold: int = 100_000
    nprobe: int = DEFAULT_NPROBE
    retrain_growth: float = 4.0
    seed: int = 0

    def kind_for(self, ntotal: int, current: str) -> str:
        """The index kind a catalog of ``ntotal`` vectors should have, given the ``current`` kind."""
        if self.index_type == "flat" or ntotal < MIN_IVF_VECTORS:
            return "flat"
        if self.index_type != "auto":
            return self.index_type
        if ntotal >= self.ann_threshold or (current != "flat" and ntotal >= self.ann_threshold // 2):
            return "ivf-sq8"
        return "flat"

    def outgrown(self, index: FaissIndex) -> bool:
        """True when an IVF was trained for a catalog ``retrain_growth`` times smaller (or larger)."""
        if not index.nlist:
            return False
        ratio = nlist_for(index.ntotal) / index.nlist
        # nlist ~ 4*sqrt(n): a growth g of n moves the right nlist by sqrt(g).
        return max(ratio, 1 / ratio) >= math.sqrt(self.retrain_growth)


def nlist_for(n: int) -> int:
    """~4*sqrt(n) lists (faiss' guideline), keeping >= 8 vectors per list for training."""
    return max(1, min(int(4 * math.sqrt(n)), n // 8))


def maintain(index: FaissIndex | None, policy: IndexPolicy, source: VectorSource) -> FaissIndex | None:
    """``index`` if it suits its size, else a new one of the right kind and size built from ``source``
    (the catalog, which holds exactly the index's vectors when this is called)."""
    if index is None:
        return None
    index.nprobe = policy.nprobe
    ntotal = index.ntotal
    kind = policy.kind_for(ntotal, index.kind)
    if kind == index.kind and not policy.outgrown(index):
        return index
    start = time.perf_counter()
    built = build(kind, index.dim, ntotal, source, policy)
    log.info(
        "switched the index from %s (%d lists) to %s (%d lists) for %d vectors in %.1fs",
        index.kind,
        index.nlist,
        built.kind,
        built.nlist,
        built.ntotal,
        time.perf_counter() - start,
    )
    return built


def build(kind: str, dim: int, ntotal: int, source: VectorSource, policy: IndexPolicy) -> FaissIndex:
    """A ``kind`` index of every vector in ``source``: IVF kinds train on a random sample first."""
    if kind == "flat":
        index = FaissIndex(dim, nprobe=policy.nprobe)
    else:
        nlist = nlist_for(ntotal)
        raw = faiss.index_factory(dim, f"IVF{nlist},{FACTORY[kind]}", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(raw)
        ivf.cp.niter = KMEANS_ITER
        ivf.cp.spherical = True  # unit centroids: lists are cones around directions, as cosine wants
        raw.train(_sample(source, ntotal, nlist * TRAIN_PER_LIST, policy.seed))  # (s, dim)
        index = FaissIndex(dim, raw, policy.nprobe)
    for ids, vectors in source():
        index.add(ids, vectors)
    return index


def _sample(source: VectorSource, ntotal: int, size: int, seed: int) -> Vectors:
    """About ``size`` uniformly chosen vectors in one streaming pass (the catalog is ordered by id,
    i.e. by product hash, but a prefix could still over-represent one import)."""
    rng = np.random.default_rng(seed)
    keep = min(1.0, size / max(1, ntotal))
    parts = list(_bernoulli(source(), keep, rng))
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _bernoulli(
    batches: Iterable[tuple[VectorIds, Vectors]], keep: float, rng: np.random.Generator
) -> Iterator[Vectors]:
    for _, vectors in batches:
        yield vectors[rng.random(len(vectors)) < keep] if keep < 1.0 else vectors
