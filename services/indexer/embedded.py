"""The embedded backend: the catalog in SQLite (the source of truth), the vectors in a FAISS index
kept in memory, snapshotted to the state dir and rebuilt from SQLite when the snapshot is stale.

One process owns the state dir (an exclusive lock). Writes commit to SQLite first, then update the
index; the store's lock keeps searches from seeing the two disagree.
"""

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.indexer import ann, snapshot
from services.indexer.backend import NO_VECTORS, VectorSearch
from services.indexer.catalog import Catalog
from services.indexer.ids import vector_id
from services.indexer.index import FaissIndex
from services.indexer.locking import lock_dir, unlock_dir
from services.indexer.records import Filter, ModelInfo, ProductRecord, VectorIds, Vectors

log = logging.getLogger(__name__)


class EmbeddedBackend:
    def __init__(self, state_dir: Path, policy: ann.IndexPolicy = ann.IndexPolicy()) -> None:
        self._dir = state_dir
        self._policy = policy
        self._snapshot_lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._index: FaissIndex | None = None
        self._model: ModelInfo | None = None
        self._generation = 0
        self._saved_generation = 0
        self._dir_lock: int | None = None
        self._load_path = ""

    @property
    def load_path(self) -> str:
        """empty, snapshot or rebuild (+kind when the snapshot was of another kind, e.g. snapshot+flat)."""
        return self._load_path

    @property
    def index_kind(self) -> str:
        """ "flat", "ivf-sq8" or "ivf-flat"; "" before the first vector."""
        index = self._index
        return index.kind if index is not None else ""

    def open(self) -> None:
        """Blocking: opens the catalog and loads or rebuilds the index."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = lock_dir(self._dir)
        try:
            catalog = Catalog(self._dir / "catalog.sqlite3")
            loaded, self._load_path = snapshot.load_or_rebuild(catalog, self._dir, self._policy)
            self._index = self._maintained(catalog, loaded)
            if self._index is not None and self._index is not loaded:
                self._load_path += f"+{self._index.kind}"
        except BaseException:
            unlock_dir(self._dir_lock)
            self._dir_lock = None
            raise
        self._model, self._generation = catalog.model(), catalog.generation()
        # A rebuilt (or re-kinded) index is worth saving soon: the next start can then skip the work.
        self._saved_generation = self._generation if self._load_path == "snapshot" else -1
        self._catalog = catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        unlock_dir(self._dir_lock)
        self._dir_lock = None

    def snapshot_if_dirty(self) -> bool:
        """Writes a snapshot when the index changed since the last one (searches continue meanwhile)."""
        with self._snapshot_lock:
            index, model, generation = self._index, self._model, self._generation
            if index is None or model is None or generation == self._saved_generation:
                return False
            start = time.perf_counter()
            meta = snapshot.SnapshotMeta(generation, model.model_id, model.dim, index.ntotal)
            snapshot.save(index, meta, self._dir)
            self._saved_generation = generation
        log.info(
            "snapshot of %d vectors at generation %d in %.2fs",
            meta.ntotal,
            generation,
            time.perf_counter() - start,
        )
        return True

    def model(self) -> ModelInfo | None:
        return self._model

    def replace_product(
        self, product: ProductRecord, keys: list[str], vectors: Vectors, model: ModelInfo
    ) -> None:
        catalog = self._ready()
        ids = [vector_id(product.product_id, key) for key in keys]
        old, generation = catalog.replace_product(product, ids, keys, vectors, model)
        self._model, self._generation = model, generation
        self._update_index(catalog, old, np.array(ids, dtype=np.int64), vectors)

    def delete_product(self, product_id: str) -> int | None:
        catalog = self._ready()
        removed = catalog.delete_product(product_id)
        if removed is None:
            return None
        old, self._generation = removed
        self._update_index(catalog, old, np.empty(0, dtype=np.int64), None)
        return len(old)

    def get_many(self, product_ids: Sequence[str]) -> dict[str, ProductRecord]:
        return self._ready().get_many(product_ids)

    def list_products(self, category: str, after: str, limit: int) -> list[ProductRecord]:
        return self._ready().list_products(category, after, limit)

    def product_vectors(self, product_id: str) -> Vectors:
        catalog, model = self._ready(), self._model
        if model is None:
            return np.empty((0, 0), dtype=np.float32)
        return catalog.product_vectors(product_id, model.dim)

    def counts(self) -> tuple[int, int]:
        return self._ready().counts()

    def vector_search(self, flt: Filter) -> VectorSearch:
        catalog, index = self._ready(), self._index
        if index is None:
            return NO_VECTORS
        allowed = None if flt.is_empty else catalog.allowed_vector_ids(flt)
        candidates = index.ntotal if allowed is None else len(allowed)
        return VectorSearch(lambda q, n: index.search(q, n, allowed), catalog.vector_owners, candidates)

    def _ready(self) -> Catalog:
        assert self._catalog is not None, "the store only calls an opened backend"
        return self._catalog

    def _update_index(
        self, catalog: Catalog, old: VectorIds, ids: VectorIds, vectors: Vectors | None
    ) -> None:
        """Applies a committed write to the index; on failure rebuilds it from the catalog."""
        assert self._model is not None
        try:
            if self._index is None:
                self._index = FaissIndex(self._model.dim)
            self._index.remove(old)
            if vectors is not None:
                self._index.add(ids, vectors)
            self._index = self._maintained(catalog, self._index)
        except Exception:
            log.exception("index update failed after the catalog commit; rebuilding the index")
            self._index = snapshot.rebuild(catalog, self._model.dim, self._policy)

    def _maintained(self, catalog: Catalog, index: FaissIndex | None) -> FaissIndex | None:
        """The index of the kind the policy wants for the catalog's size (flat or IVF, see ann.py)."""
        if index is None:
            return None
        dim = index.dim
        return ann.maintain(index, self._policy, lambda: catalog.iter_vectors(dim))
