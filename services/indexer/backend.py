"""Where the catalog and its vectors live, behind one small protocol.

Two implementations: ``embedded`` (FAISS + SQLite in the state dir, the default) and ``milvus``
(a Milvus collection: a cluster URI, or a milvus-lite file). Everything above the storage (input
rules, the model guard, grouping vectors into products, category re-ranking, paging) is in
store.py and shared by both, so both answer the same question the same way.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.indexer.index import Similarities
from services.indexer.records import Filter, ModelInfo, ProductRecord, VectorIds, Vectors
from services.indexer.search import Owners, Searcher


class StorageUnavailable(RuntimeError):
    """The storage cannot be opened (e.g. a milvus-lite file held by another process)."""


@dataclass(frozen=True)
class VectorSearch:
    """One filtered k-NN over the stored vectors, for search.nearest_products."""

    search: Searcher
    owners: Owners
    candidates: int  # how many vectors may match at all (or the engine's cap): fetching it is exhaustive


def _never(queries: Vectors, n: int) -> tuple[Similarities, VectorIds]:
    """Never called: with no candidates nearest_products asks for nothing."""
    return np.empty((len(queries), 0), dtype=np.float32), np.empty((len(queries), 0), dtype=np.int64)


NO_VECTORS = VectorSearch(_never, lambda ids: {}, 0)  # before the first vector is stored


class Backend(Protocol):
    """The store calls these under its readers-writer lock: writes alone, reads in parallel.

    Vectors arrive L2-normalised, ``(n, dim)`` float32; similarities are inner products (cosine).
    """

    @property
    def load_path(self) -> str:
        """How open() found the data: "empty", or e.g. "snapshot", "rebuild", "milvus"."""
        ...

    @property
    def index_kind(self) -> str:
        """The vector index in use ("flat", "ivf-sq8", "milvus:FLAT", ...); "" before any vector."""
        ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def snapshot_if_dirty(self) -> bool:
        """Saves what a restart would otherwise rebuild; False when nothing needed saving."""
        ...

    def model(self) -> ModelInfo | None:
        """The model the stored vectors come from; None while nothing was ever stored."""
        ...

    def replace_product(
        self, product: ProductRecord, keys: list[str], vectors: Vectors, model: ModelInfo
    ) -> None:
        """Stores the product and exactly these vectors (one per image key), binding ``model``."""
        ...

    def delete_product(self, product_id: str) -> int | None:
        """Removes the product; how many vectors went, or None when it was unknown."""
        ...

    def get_many(self, product_ids: Sequence[str]) -> dict[str, ProductRecord]: ...

    def list_products(self, category: str, after: str, limit: int) -> list[ProductRecord]:
        """Products in product_id order after ``after`` (exclusive), optionally of one category."""
        ...

    def product_vectors(self, product_id: str) -> Vectors:
        """The product's stored vectors, (n, dim); (0, dim) or empty when it is unknown."""
        ...

    def counts(self) -> tuple[int, int]:
        """(products, vectors)."""
        ...

    def vector_search(self, flt: Filter) -> VectorSearch:
        """A search over the vectors of the products that pass ``flt``."""
        ...
