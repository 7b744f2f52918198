"""The vector index behind a small protocol, so another engine (e.g. Milvus) can replace FAISS."""

from pathlib import Path
from typing import Protocol

import faiss
import numpy as np
import numpy.typing as npt

from services.indexer.records import VectorIds, Vectors

Similarities = npt.NDArray[np.float32]  # (q, k)


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
    """Exact cosine search: a flat inner-product index over L2-normalised vectors, with our ids."""

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if self._index.d != dim:
            raise ValueError(f"index has dim {self._index.d}, expected {dim}")

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: VectorIds, vectors: Vectors) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), _int64(ids))

    def remove(self, ids: VectorIds) -> int:
        return int(self._index.remove_ids(faiss.IDSelectorBatch(_int64(ids)))) if len(ids) else 0

    def search(
        self, queries: Vectors, k: int, allowed_ids: VectorIds | None = None
    ) -> tuple[Similarities, VectorIds]:
        params, selector = None, None
        if allowed_ids is not None:
            # Exact filtered search: FAISS skips every id outside the batch while scanning.
            # `selector` stays referenced here: params only holds a raw pointer to it.
            selector = faiss.IDSelectorBatch(_int64(allowed_ids))
            params = faiss.SearchParameters()
            params.sel = selector
        sims, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return sims, ids

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int) -> "FaissIndex":
        """Reads a saved index; ValueError if it is not one of ours or has another dim."""
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path} holds a {type(index).__name__}, not an IndexIDMap2")
        return cls(dim, index)


def _int64(ids: VectorIds) -> VectorIds:
    return np.ascontiguousarray(ids, dtype=np.int64)
