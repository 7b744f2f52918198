"""The embedded backend's vector index (FAISS), behind a small protocol. Another engine replaces the
whole storage instead (backend.py: the Milvus backend keeps vectors and catalog in one collection).

Which kind of FAISS index a catalog gets (exact flat, or IVF above a size) is decided in ann.py.
"""

import math
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np
import numpy.typing as npt

from services.indexer.records import VectorIds, Vectors

Similarities = npt.NDArray[np.float32]  # (q, k)
DEFAULT_NPROBE = 64  # recall@10 ~0.95 from 100k to 1M vectors in bench/index


class VectorIndex(Protocol):
    """Exact or approximate inner-product k-NN over unit vectors, keyed by int64 ids."""

    @property
    def dim(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def add(self, ids: VectorIds, vectors: Vectors) -> None: ...

    def remove(self, ids: VectorIds) -> int: ...

    def search(
        self, queries: Vectors, k: int, allowed_ids: VectorIds | None = None
    ) -> tuple[Similarities, VectorIds]:
        """(q, dim) queries -> (q, k) similarities best-first and (q, k) ids, padded with -1.

        ``allowed_ids`` restricts the candidates (filtered search); None allows every vector.
        """
        ...


class FaissIndex:
    """Cosine k-NN over L2-normalised vectors with our ids, exact or approximate.

    Wraps either an IndexIDMap2(IndexFlatIP) ("flat": exact, the default) or an IndexIVF over
    inner products ("ivf-sq8" / "ivf-flat", built by services/indexer/ann.py for big catalogs).
    Both keep our int64 ids, remove ids and take ID selectors, so deletes and filters work the same.
    """

    def __init__(self, dim: int, index: faiss.Index | None = None, nprobe: int = DEFAULT_NPROBE) -> None:
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if self._index.d != dim:
            raise ValueError(f"index has dim {self._index.d}, expected {dim}")
        self.nprobe = nprobe  # IVF lists scanned per query; ignored by a flat index

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """ "flat", "ivf-sq8" or "ivf-flat" (what the snapshot holds; see ann.IndexType)."""
        return index_kind(self._index)

    @property
    def nlist(self) -> int:
        """IVF lists (0 for a flat index): the catalog size the IVF was trained for is ~(nlist/4)^2."""
        return int(self._index.nlist) if isinstance(self._index, faiss.IndexIVF) else 0

    def add(self, ids: VectorIds, vectors: Vectors) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), _int64(ids))

    def remove(self, ids: VectorIds) -> int:
        return int(self._index.remove_ids(faiss.IDSelectorBatch(_int64(ids)))) if len(ids) else 0

    def search(
        self, queries: Vectors, k: int, allowed_ids: VectorIds | None = None
    ) -> tuple[Similarities, VectorIds]:
        # `selector` stays referenced here: params only holds a raw pointer to it.
        selector = faiss.IDSelectorBatch(_int64(allowed_ids)) if allowed_ids is not None else None
        params = self._params(selector, None if allowed_ids is None else len(allowed_ids))
        sims, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return sims, ids

    def _params(
        self, selector: faiss.IDSelector | None, allowed: int | None
    ) -> faiss.SearchParameters | None:
        """Flat: the selector makes FAISS skip every other id while scanning (exact filtered search).

        IVF: a filter that keeps a fraction f of the vectors would leave ~f of each probed list, so
        nprobe grows by 1/f to scan about as many allowed vectors as an unfiltered query; small
        allowed sets thus reach nprobe = nlist, an exhaustive scan of just the allowed ids.
        """
        if not isinstance(self._index, faiss.IndexIVF):
            if selector is None:
                return None
            params = faiss.SearchParameters()
            params.sel = selector
            return params
        ivf = faiss.SearchParametersIVF()
        ivf.nprobe = self.nprobe
        if selector is not None and allowed is not None:
            ivf.sel = selector
            ivf.nprobe = min(self.nlist, math.ceil(self.nprobe * self.ntotal / max(1, allowed)))
        ivf.nprobe = max(1, min(ivf.nprobe, self.nlist))
        return ivf

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int, nprobe: int = DEFAULT_NPROBE) -> "FaissIndex":
        """Reads a saved index; ValueError if it is not one of ours or has another dim."""
        index = faiss.read_index(str(path))
        index_kind(index)  # raises for any other index type
        return cls(dim, index, nprobe)


def index_kind(index: faiss.Index) -> str:
    """The kind of a FAISS index we use; ValueError for any other, e.g. a foreign file."""
    if isinstance(index, faiss.IndexIDMap2):
        return "flat"
    if isinstance(index, faiss.IndexIVFScalarQuantizer) and index.sq.qtype == faiss.ScalarQuantizer.QT_8bit:
        return "ivf-sq8"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf-flat"
    raise ValueError(f"a {type(index).__name__} is not an index of ours (IndexIDMap2 or IVF-SQ8/IVF-Flat)")


def _int64(ids: VectorIds) -> VectorIds:
    return np.ascontiguousarray(ids, dtype=np.int64)
