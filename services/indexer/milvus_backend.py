"""The Milvus backend: the catalog and its vectors in one Milvus collection (layout: milvus_rows.py).

``uri`` is a cluster (``http://milvus:19530``) or a local milvus-lite file (``/data/index.db``). The
collection holds all state, so indexer replicas over one cluster answer alike and keep nothing of
their own but the bound model (immutable once set). A milvus-lite file is opened by one process at a
time (its LOCK file); replicas need a server (Milvus standalone or cluster, or ``milvus-lite server``).

A product's write is an upsert of its new rows, then a delete of its rows that are no longer
there: a search meanwhile may see both image sets of the product, never none.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient, MilvusException

from services.common.errors import Conflict
from services.indexer import milvus_rows as mr
from services.indexer.backend import NO_VECTORS, StorageUnavailable, VectorSearch
from services.indexer.milvus_search import MilvusConfig, MilvusSearch, errors
from services.indexer.records import Filter, ModelInfo, ProductRecord, Vectors

log = logging.getLogger(__name__)


class MilvusBackend:
    def __init__(self, config: MilvusConfig) -> None:
        self._config = config
        self._name = config.collection
        self._t = config.timeout_s  # every call's bound, pymilvus' retries included
        self._client: MilvusClient | None = None
        self._exists = False  # a cache: a collection, once there, stays
        self._bound: ModelInfo | None = None
        self._load_path = ""

    @property
    def load_path(self) -> str:
        return self._load_path

    @property
    def index_kind(self) -> str:
        return f"milvus:{self._config.index_type}" if self._exists else ""

    def open(self) -> None:
        if self._config.local:
            Path(self._config.uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(
                uri=self._config.uri, token=self._config.token, db_name=self._config.db_name, timeout=self._t
            )
            self._load_path = "milvus" if self._collection_exists() else "empty"
        except MilvusException as exc:
            self.close()
            raise StorageUnavailable(f"cannot open Milvus at {self._config.uri}: {exc.message}") from None
        log.info("Milvus collection %r at %s: %s", self._name, self._config.uri, self._load_path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._config.local:
            _release_lite_server(self._config.uri)

    def snapshot_if_dirty(self) -> bool:
        return False  # Milvus persists every write itself

    def model(self) -> ModelInfo | None:
        with errors():
            return self._stored_model() if self._collection_exists() else None

    def replace_product(
        self, product: ProductRecord, keys: list[str], vectors: Vectors, model: ModelInfo
    ) -> None:
        rows = mr.rows(product, keys, vectors)
        with errors():
            self._bind(model)
            old = self._pks(product.product_id)
            self._ready().upsert(self._name, rows, timeout=self._t)
            stale = old - {row["pk"] for row in rows}
            if stale:
                self._ready().delete(self._name, ids=sorted(stale), timeout=self._t)
            self._written()

    def delete_product(self, product_id: str) -> int | None:
        with errors():
            pks = self._pks(product_id) if self._collection_exists() else set()
            if not pks:
                return None
            self._ready().delete(self._name, ids=sorted(pks), timeout=self._t)
            self._written()
            return len(pks)

    def get_many(self, product_ids: Sequence[str]) -> dict[str, ProductRecord]:
        found: dict[str, ProductRecord] = {}
        with errors():
            if not self._collection_exists():
                return found
            for chunk in mr.chunks(product_ids):
                rows = self._query(f"{mr.HEAD} and {mr.one_of('product_id', chunk)}", mr.HEAD_FIELDS)
                found.update((row["product_id"], mr.record(row)) for row in rows)
        return found

    def list_products(self, category: str, after: str, limit: int) -> list[ProductRecord]:
        page: list[ProductRecord] = []
        with errors():
            while self._collection_exists() and len(page) < limit:
                wanted = min(limit - len(page), mr.MAX_TOPK)
                # iterator=True asks for primary-key order, the order pymilvus' query iterator pages by.
                expr = mr.list_expr(category, after)
                batch = self._query(expr, mr.HEAD_FIELDS, limit=wanted, iterator="True")
                page += sorted((mr.record(row) for row in batch), key=lambda r: r.product_id)
                if len(batch) < wanted:
                    break
                after = page[-1].product_id
        return page

    def product_vectors(self, product_id: str) -> Vectors:
        with errors():
            rows = self._query(mr.product_expr(product_id), [mr.VECTOR]) if self._collection_exists() else []
        return np.array([row[mr.VECTOR] for row in rows], dtype=np.float32).reshape(
            len(rows), -1 if rows else 0
        )

    def counts(self) -> tuple[int, int]:
        with errors():
            if not self._collection_exists():
                return 0, 0
            return self._count(mr.HEAD), self._count("")

    def vector_search(self, flt: Filter) -> VectorSearch:
        with errors():
            if not self._collection_exists():
                return NO_VECTORS
        search = MilvusSearch(self._ready(), self._config, mr.filter_expr(flt))
        return VectorSearch(search.search, search.owners, mr.MAX_TOPK)

    def _ready(self) -> MilvusClient:
        assert self._client is not None, "the store only calls an opened backend"
        return self._client

    def _collection_exists(self) -> bool:
        if not self._exists and self._ready().has_collection(self._name, timeout=self._t):
            self._ready().load_collection(self._name, timeout=self._t)  # searches need it; idempotent
            self._exists = True
        return self._exists

    def _stored_model(self) -> ModelInfo | None:
        model_id, dim = self._stored()
        return ModelInfo(model_id, dim) if model_id else None

    def _stored(self) -> tuple[str, int]:
        """(model id, "" if unnamed; dim) of the collection."""
        desc = self._ready().describe_collection(self._name, timeout=self._t)
        model_id = desc.get("properties", {}).get(mr.MODEL_PROPERTY) or ""
        return str(model_id), int(next(f["params"]["dim"] for f in desc["fields"] if f["name"] == mr.VECTOR))

    def _bind(self, model: ModelInfo) -> None:
        """Creates the collection for the model on first use; Conflict if it holds another one's."""
        if self._bound == model:
            return
        if not self._collection_exists():
            self._create(model)
        model_id, dim = self._stored()
        if not model_id:  # created by a process that stopped before naming its model
            self._ready().alter_collection_properties(
                self._name, {mr.MODEL_PROPERTY: model.model_id}, timeout=self._t
            )
            model_id = model.model_id
        if ModelInfo(model_id, dim) != model:
            raise Conflict(
                f"the Milvus collection {self._name!r} holds vectors of {model_id!r} ({dim} values), "
                f"not of {model.model_id!r} ({model.dim} values): use another collection"
            )
        self._bound = model

    def _create(self, model: ModelInfo) -> None:
        client = self._ready()
        try:
            client.create_collection(
                self._name,
                schema=mr.schema(client, model.dim),
                consistency_level=self._config.consistency,
                properties={mr.MODEL_PROPERTY: model.model_id},
                timeout=self._t,
            )
        except MilvusException:
            if client.has_collection(self._name, timeout=self._t):  # another replica was first
                return
            raise
        # sync=False: pymilvus would poll each index of the empty collection every 0.5 s.
        params = mr.index_params(client, self._config.index_type)
        client.create_index(self._name, params, sync=False, timeout=self._t)
        log.info("created the Milvus collection %r for %s (%d values)", self._name, model.model_id, model.dim)
        self._collection_exists()

    def _pks(self, product_id: str) -> set[str]:
        return {row["pk"] for row in self._query(mr.product_expr(product_id), ["pk"])}

    def _count(self, expr: str) -> int:
        return int(self._query(expr, ["count(*)"])[0]["count(*)"])

    def _query(self, expr: str, fields: list[str], **options: Any) -> list[dict[str, Any]]:
        rows = self._ready().query(
            self._name,
            filter=expr,
            output_fields=fields,
            consistency_level=self._config.consistency,
            timeout=self._t,
            **options,
        )
        return list(rows)

    def _written(self) -> None:
        """milvus-lite scans unflushed rows in Python, slower with each write: flush them into an
        indexed segment. A server seals segments itself, and a flush per write would only hurt it."""
        if self._config.local:
            self._ready().flush(self._name, timeout=self._t)


def _release_lite_server(uri: str) -> None:
    """Stops this process' milvus-lite server for the file, which flushes it and frees its LOCK."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(uri)
