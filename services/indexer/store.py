"""CatalogStore: the catalog (SQLite), the vector index and the model guard behind one API.

Writes take the write lock, commit to SQLite first, then update the index; reads take the read
lock, so a search never sees the index and the catalog disagree.
"""

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from services.common.errors import Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from services.common.ids import validate_product_id
from services.indexer import ann, snapshot, validation
from services.indexer.catalog import Catalog
from services.indexer.ids import vector_id
from services.indexer.index import FaissIndex
from services.indexer.locking import RWLock, lock_dir, unlock_dir
from services.indexer.records import Match, ModelInfo, ProductRecord, SearchParams, Stats, VectorIds, Vectors
from services.indexer.rerank import CategoryRerank, rerank_by_category
from services.indexer.search import Hit, merge_best, nearest_products, select_page

DEFAULT_LIST_LIMIT = 50

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreLimits:
    max_vectors_per_product: int = 32
    max_list_limit: int = 1000


class CatalogStore:
    def __init__(
        self,
        state_dir: Path,
        limits: StoreLimits = StoreLimits(),
        rerank: CategoryRerank = CategoryRerank(),
        policy: ann.IndexPolicy = ann.IndexPolicy(),
    ) -> None:
        self._dir = state_dir
        self._limits = limits
        self._rerank = rerank
        self._policy = policy
        self._lock = RWLock()
        self._snapshot_lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._index: FaissIndex | None = None
        self._model: ModelInfo | None = None
        self._generation = 0
        self._saved_generation = 0
        self._dir_lock: int | None = None
        self.load_path = ""  # how open() got the index: empty, snapshot or rebuild (+kind if switched)

    def open(self) -> None:
        """Blocking: opens the catalog and loads or rebuilds the index. Call off the event loop."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = lock_dir(self._dir)
        try:
            catalog = Catalog(self._dir / "catalog.sqlite3")
            loaded, self.load_path = snapshot.load_or_rebuild(catalog, self._dir, self._policy)
            self._index = self._maintained(catalog, loaded)
            if self._index is not None and self._index is not loaded:
                self.load_path += f"+{self._index.kind}"  # a snapshot of another kind, e.g. "snapshot+flat"
        except BaseException:
            unlock_dir(self._dir_lock)
            self._dir_lock = None
            raise
        self._model, self._generation = catalog.model(), catalog.generation()
        # A rebuilt (or re-kinded) index is worth saving soon: the next start can then skip the work.
        self._saved_generation = self._generation if self.load_path == "snapshot" else -1
        self._catalog = catalog  # last: marks the store ready

    def close(self) -> None:
        """Snapshots the index if it changed, then releases the catalog and the state dir."""
        if self._catalog is None:
            return
        try:
            self.snapshot_if_dirty()
        finally:
            with self._lock.write():
                self._catalog.close()
                self._catalog = None
            unlock_dir(self._dir_lock)
            self._dir_lock = None

    def snapshot_if_dirty(self) -> bool:
        """Writes a snapshot when the index changed since the last one; searches continue meanwhile."""
        with self._snapshot_lock, self._lock.read():
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

    def upsert(
        self, product: ProductRecord, keys: list[str], rows: list[Vectors], model_id: str
    ) -> ProductRecord:
        """Replaces a product's metadata and all of its vectors (rows: one (dim,) array each)."""
        catalog = self._ready()
        product = validation.check_product(product)
        validation.check_model_id(model_id)
        if not rows:
            raise InvalidInput("an upsert needs at least one vector")
        if len(rows) > self._limits.max_vectors_per_product:
            raise TooLarge(
                f"{len(rows)} vectors; the limit is {self._limits.max_vectors_per_product} per product"
            )
        keys = validation.image_keys(keys)
        vectors = validation.normalised(rows, None)  # (n, dim); dim is checked against the model below
        ids = [vector_id(product.product_id, key) for key in keys]
        now = int(time.time() * 1000)
        record = replace(product, updated_at_ms=now, indexed_at_ms=now, vector_count=len(ids))
        with self._lock.write():
            model = self._bind_model(model_id, vectors.shape[1])
            old, generation = catalog.replace_product(record, ids, keys, vectors, model)
            self._model, self._generation = model, generation
            self._update_index(catalog, old, np.array(ids, dtype=np.int64), vectors)
        return record

    def delete(self, product_id: str) -> int:
        """Removes a product and its vectors; returns how many vectors went."""
        catalog = self._ready()
        validate_product_id(product_id)
        with self._lock.write():
            removed = catalog.delete_product(product_id)
            if removed is None:
                raise NotFound(f"product {product_id!r} not found")
            old, self._generation = removed
            self._update_index(catalog, old, np.empty(0, dtype=np.int64), None)
        return len(old)

    def get(self, product_id: str) -> ProductRecord:
        catalog = self._ready()
        record = catalog.get(validate_product_id(product_id))
        if record is None:
            raise NotFound(f"product {product_id!r} not found")
        return record

    def list_page(self, category: str, limit: int, cursor: str) -> tuple[list[ProductRecord], str]:
        """One page in product_id order and the cursor of the next ("" when this is the last)."""
        catalog = self._ready()
        limit = min(limit or DEFAULT_LIST_LIMIT, self._limits.max_list_limit)
        after = validation.decode_cursor(cursor) if cursor else ""
        rows = catalog.list_products(category, after, limit + 1)
        page = rows[:limit]
        return page, validation.encode_cursor(page[-1].product_id) if len(rows) > limit else ""

    def search(self, rows: list[Vectors], params: SearchParams, model_id: str) -> list[list[Match]]:
        """One best-first product list per query (rows: one (dim,) array each); "" skips the model check."""
        catalog = self._ready()
        validation.check_query_count(len(rows))
        if not rows:
            return []
        queries = validation.normalised(rows, None, "query")  # (q, dim)
        with self._lock.read():
            model = self._model
            if model is not None:
                if model_id and model_id != model.model_id:
                    raise Conflict(_model_conflict(model, model_id))
                if queries.shape[1] != model.dim:
                    raise InvalidInput(
                        f"queries have {queries.shape[1]} values; the index's dim is {model.dim}"
                    )
            per_query = [self._reranked(catalog, h) for h in self._nearest(catalog, queries, params, None)]
            pages = [select_page(h, params.offset, params.k, params.min_similarity) for h in per_query]
            return [self._matches(catalog, page) for page in pages]

    def similar(self, product_id: str, params: SearchParams) -> list[Match]:
        """Products nearest to any stored vector of ``product_id``, excluding that product."""
        catalog = self._ready()
        validate_product_id(product_id)
        with self._lock.read():
            queries = catalog.product_vectors(product_id, self._model.dim) if self._model else None
            if queries is None or len(queries) == 0:
                raise NotFound(f"product {product_id!r} not found")
            hits = self._reranked(catalog, merge_best(self._nearest(catalog, queries, params, product_id)))
            return self._matches(catalog, select_page(hits, params.offset, params.k, params.min_similarity))

    def stats(self) -> Stats:
        catalog = self._ready()
        with self._lock.read():
            products, vectors = catalog.counts()
            return Stats(products, vectors, self._model)

    @property
    def index_kind(self) -> str:
        """ "flat", "ivf-sq8" or "ivf-flat"; "" before the first vector."""
        index = self._index
        return index.kind if index is not None else ""

    def _ready(self) -> Catalog:
        if self._catalog is None:
            raise Unavailable("the index is still loading")
        return self._catalog

    def _bind_model(self, model_id: str, dim: int) -> ModelInfo:
        """The store's model; the first upsert fixes it. Call under the write lock."""
        if self._model is None:
            return ModelInfo(model_id, dim)
        if model_id != self._model.model_id:
            raise Conflict(_model_conflict(self._model, model_id))
        if dim != self._model.dim:
            raise InvalidInput(f"vectors have {dim} values; the index's dim is {self._model.dim}")
        return self._model

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

    def _nearest(
        self, catalog: Catalog, queries: Vectors, params: SearchParams, exclude: str | None
    ) -> list[list[Hit]]:
        index = self._index
        if index is None:
            return [[] for _ in range(len(queries))]
        allowed = None if params.filter.is_empty else catalog.allowed_vector_ids(params.filter)
        candidates = index.ntotal if allowed is None else len(allowed)
        return nearest_products(
            lambda q, n: index.search(q, n, allowed),
            catalog.vector_owners,
            queries,
            need=self._rerank.pool(params.offset + params.k),
            candidates=candidates,
            min_similarity=params.min_similarity,
            exclude=exclude,
        )

    def _reranked(self, catalog: Catalog, hits: list[Hit]) -> list[Hit]:
        if not self._rerank.enabled:
            return hits
        records = catalog.get_many([h.product_id for h in hits])
        return rerank_by_category(
            hits, lambda pid: records[pid].category if pid in records else "", self._rerank
        )

    @staticmethod
    def _matches(catalog: Catalog, hits: list[Hit]) -> list[Match]:
        records = catalog.get_many([h.product_id for h in hits])
        # Float rounding can push a unit-vector dot product a hair past 1.
        return [
            Match(records[h.product_id], min(1.0, max(-1.0, h.similarity)), h.image_key)
            for h in hits
            if h.product_id in records
        ]


def _model_conflict(model: ModelInfo, model_id: str) -> str:
    return (
        f"the index holds vectors of model {model.model_id!r}, not {model_id!r}: "
        "embed with the index's model, or start a new index (another state dir)"
    )
