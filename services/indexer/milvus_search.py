"""Talking to Milvus: the connection settings, its failures as UNAVAILABLE, and one request's k-NN."""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pymilvus import MilvusClient, MilvusException

from services.common.errors import Unavailable
from services.indexer import milvus_rows as mr
from services.indexer.index import Similarities
from services.indexer.records import VectorIds, Vectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MilvusConfig:
    uri: str
    token: str = ""
    db_name: str = ""
    collection: str = "visualsearch"
    index_type: mr.IndexType = "FLAT"  # applies when the collection is created
    consistency: str = "Strong"  # every replica reads every committed write
    timeout_s: float = 10.0  # per call, retries included

    @property
    def local(self) -> bool:
        """A milvus-lite file (pymilvus' own rule for a local URI)."""
        return self.uri.endswith(".db")


class MilvusSearch:
    """One request's searches; records each hit's owner for search.nearest_products."""

    def __init__(self, client: MilvusClient, config: MilvusConfig, expr: str) -> None:
        self._client, self._config, self._expr = client, config, expr
        self._owners: dict[int, tuple[str, str]] = {}

    def search(self, queries: Vectors, n: int) -> tuple[Similarities, VectorIds]:
        """(q, dim) -> (q, n) similarities best-first and (q, n) ids, padded with -inf / -1."""
        with errors():
            results = self._client.search(
                self._config.collection,
                data=list(queries),
                limit=n,
                filter=self._expr,
                output_fields=["product_id", "image_key"],
                search_params={"metric_type": "IP", "params": _search_params(self._config.index_type, n)},
                consistency_level=self._config.consistency,
                timeout=self._config.timeout_s,
            )
        sims = np.full((len(queries), n), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), n), -1, dtype=np.int64)
        for row, hits in enumerate(results):
            for col, hit in enumerate(hits):
                vid = mr.vector_id_of(hit["pk"])
                sims[row, col], ids[row, col] = hit["distance"], vid
                self._owners[vid] = (hit["entity"]["product_id"], hit["entity"]["image_key"])
        return sims, ids

    def owners(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        return {i: self._owners[i] for i in ids if i in self._owners}


def _search_params(index_type: str, n: int) -> dict[str, int]:
    return {"ef": max(n, 64)} if index_type == "HNSW" else {}  # HNSW needs ef >= the limit


@contextmanager
def errors() -> Iterator[None]:
    """Milvus failures (down, timing out, refusing) become UNAVAILABLE with the reason, never INTERNAL."""
    try:
        yield
    except MilvusException as exc:
        log.warning("Milvus call failed: %s", exc)
        raise Unavailable(f"the vector store failed: {exc.message}") from None
