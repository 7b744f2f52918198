"""CatalogStore: the indexer's one API over a storage backend (backend.py).

Here live the rules both backends share: input checks, the model guard, one product per result at
its best-matching image, category re-ranking and paging. Writes take the write lock and reads the
read lock, so a search never sees a half-applied write of this process.
"""

import time
from dataclasses import dataclass, replace
from pathlib import Path

from services.common.errors import Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from services.common.ids import validate_product_id
from services.indexer import ann, validation
from services.indexer.backend import Backend
from services.indexer.embedded import EmbeddedBackend
from services.indexer.locking import RWLock
from services.indexer.records import Match, ModelInfo, ProductRecord, SearchParams, Stats, Vectors
from services.indexer.rerank import CategoryRerank, rerank_by_category
from services.indexer.search import Hit, merge_best, nearest_products, select_page

DEFAULT_LIST_LIMIT = 50


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
        backend: Backend | None = None,
    ) -> None:
        """``backend`` None: the embedded FAISS + SQLite backend in ``state_dir``."""
        self._backend = backend if backend is not None else EmbeddedBackend(state_dir, policy)
        self._limits = limits
        self._rerank = rerank
        self._lock = RWLock()
        # A cache: the backend holds the truth, and once bound the model never changes.
        self._model: ModelInfo | None = None
        self._open = False

    def open(self) -> None:
        """Blocking: opens the backend (loads or rebuilds an embedded index). Call off the event loop."""
        self._backend.open()
        self._open = True  # last: marks the store ready

    def close(self) -> None:
        """Saves what the backend would otherwise rebuild, then releases it."""
        if not self._open:
            return
        try:
            self.snapshot_if_dirty()
        finally:
            with self._lock.write():
                self._open = False
                self._backend.close()

    def snapshot_if_dirty(self) -> bool:
        with self._lock.read():
            return self._backend.snapshot_if_dirty()

    @property
    def load_path(self) -> str:
        """How open() found the data: empty, snapshot, rebuild (+kind if switched), or milvus."""
        return self._backend.load_path

    @property
    def index_kind(self) -> str:
        return self._backend.index_kind

    def upsert(
        self, product: ProductRecord, keys: list[str], rows: list[Vectors], model_id: str
    ) -> ProductRecord:
        """Replaces a product's metadata and all of its vectors (rows: one (dim,) array each)."""
        self._ready()
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
        now = int(time.time() * 1000)
        record = replace(product, updated_at_ms=now, indexed_at_ms=now, vector_count=len(keys))
        with self._lock.write():
            model = self._bind_model(model_id, vectors.shape[1])
            self._backend.replace_product(record, keys, vectors, model)
            self._model = model
        return record

    def delete(self, product_id: str) -> int:
        """Removes a product and its vectors; returns how many vectors went."""
        self._ready()
        validate_product_id(product_id)
        with self._lock.write():
            removed = self._backend.delete_product(product_id)
        if removed is None:
            raise NotFound(f"product {product_id!r} not found")
        return removed

    def get(self, product_id: str) -> ProductRecord:
        self._ready()
        record = self._backend.get_many([validate_product_id(product_id)]).get(product_id)
        if record is None:
            raise NotFound(f"product {product_id!r} not found")
        return record

    def list_page(self, category: str, limit: int, cursor: str) -> tuple[list[ProductRecord], str]:
        """One page in product_id order and the cursor of the next ("" when this is the last)."""
        self._ready()
        limit = min(limit or DEFAULT_LIST_LIMIT, self._limits.max_list_limit)
        after = validation.decode_cursor(cursor) if cursor else ""
        rows = self._backend.list_products(category, after, limit + 1)
        page = rows[:limit]
        return page, validation.encode_cursor(page[-1].product_id) if len(rows) > limit else ""

    def search(self, rows: list[Vectors], params: SearchParams, model_id: str) -> list[list[Match]]:
        """One best-first product list per query (rows: one (dim,) array each); "" skips the model check."""
        self._ready()
        validation.check_query_count(len(rows))
        if not rows:
            return []
        queries = validation.normalised(rows, None, "query")  # (q, dim)
        with self._lock.read():
            model = self._current_model()
            if model is None:
                return [[] for _ in rows]
            if model_id and model_id != model.model_id:
                raise Conflict(_model_conflict(model, model_id))
            if queries.shape[1] != model.dim:
                raise InvalidInput(f"queries have {queries.shape[1]} values; the index's dim is {model.dim}")
            return self._pages(self._nearest(queries, params, None), params)

    def similar(self, product_id: str, params: SearchParams) -> list[Match]:
        """Products nearest to any stored vector of ``product_id``, excluding that product."""
        self._ready()
        validate_product_id(product_id)
        with self._lock.read():
            queries = self._backend.product_vectors(product_id)
            if len(queries) == 0:
                raise NotFound(f"product {product_id!r} not found")
            [page] = self._pages([merge_best(self._nearest(queries, params, product_id))], params)
            return page

    def stats(self) -> Stats:
        self._ready()
        with self._lock.read():
            products, vectors = self._backend.counts()
            return Stats(products, vectors, self._current_model())

    def _ready(self) -> None:
        if not self._open:
            raise Unavailable("the index is still loading")

    def _current_model(self) -> ModelInfo | None:
        """The cached model, else the backend's (another replica may have bound it meanwhile)."""
        if self._model is None:
            self._model = self._backend.model()
        return self._model

    def _bind_model(self, model_id: str, dim: int) -> ModelInfo:
        """The store's model; the first upsert fixes it. Call under the write lock."""
        model = self._current_model()
        if model is None:
            return ModelInfo(model_id, dim)
        if model_id != model.model_id:
            raise Conflict(_model_conflict(model, model_id))
        if dim != model.dim:
            raise InvalidInput(f"vectors have {dim} values; the index's dim is {model.dim}")
        return model

    def _nearest(self, queries: Vectors, params: SearchParams, exclude: str | None) -> list[list[Hit]]:
        found = self._backend.vector_search(params.filter)
        return nearest_products(
            found.search,
            found.owners,
            queries,
            need=self._rerank.pool(params.offset + params.k),
            candidates=found.candidates,
            min_similarity=params.min_similarity,
            exclude=exclude,
        )

    def _pages(self, per_query: list[list[Hit]], params: SearchParams) -> list[list[Match]]:
        """Best-first hits per query (pools deeper than the page when re-ranking) -> each page's
        matches; the products' records come in one backend call for all queries."""
        records: dict[str, ProductRecord] = {}
        if self._rerank.enabled:
            records = self._backend.get_many(_product_ids(per_query))

            def category_of(pid: str) -> str:
                return records[pid].category if pid in records else ""

            per_query = [rerank_by_category(hits, category_of, self._rerank) for hits in per_query]
        pages = [select_page(hits, params.offset, params.k, params.min_similarity) for hits in per_query]
        if not self._rerank.enabled:
            records = self._backend.get_many(_product_ids(pages))
        # Float rounding can push a unit-vector dot product a hair past 1.
        return [
            [
                Match(records[h.product_id], min(1.0, max(-1.0, h.similarity)), h.image_key)
                for h in page
                if h.product_id in records
            ]
            for page in pages
        ]


def _product_ids(lists: list[list[Hit]]) -> list[str]:
    return list(dict.fromkeys(h.product_id for hits in lists for h in hits))


def _model_conflict(model: ModelInfo, model_id: str) -> str:
    return (
        f"the index holds vectors of model {model.model_id!r}, not {model_id!r}: "
        "embed with the index's model, or start a new index (another state dir or collection)"
    )
