"""The product catalog in SQLite: the source of truth the vector index is rebuilt from.

One connection guarded by a lock: SQLite serialises writers anyway, every call is short, and a
single connection keeps transactions and the ``generation`` counter simple to reason about.
"""

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import Conflict
from services.indexer.records import Filter, ModelInfo, ProductRecord, VectorIds, Vectors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY, title TEXT NOT NULL, url TEXT NOT NULL, image_url TEXT NOT NULL,
    price REAL, currency TEXT NOT NULL, category TEXT NOT NULL, brand TEXT NOT NULL,
    attributes_json TEXT NOT NULL, content_hash TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL, indexed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS products_category ON products(category);
CREATE INDEX IF NOT EXISTS products_brand ON products(brand);
CREATE INDEX IF NOT EXISTS products_price ON products(price);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY, product_id TEXT NOT NULL, image_key TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_product ON vectors(product_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0');
"""
_COLUMNS = (
    "p.product_id, p.title, p.url, p.image_url, p.price, p.currency, p.category, p.brand, "
    "p.attributes_json, p.content_hash, p.updated_at_ms, p.indexed_at_ms, "
    "(SELECT COUNT(*) FROM vectors v WHERE v.product_id = p.product_id)"
)
_BUMP = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
_CHUNK = 500  # ids per IN (...) query, well under SQLite's bound-variable limit
_FLOAT32 = np.dtype("<f4")  # vectors are stored little-endian whatever the host


class Catalog:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so each write is exactly one.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a killed process without losing commits; only a power cut can
        # roll back the last few, and writers re-upsert idempotently.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def generation(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def model(self) -> ModelInfo | None:
        meta = dict(self._query("SELECT key, value FROM meta WHERE key IN ('model_id', 'dim')"))
        return ModelInfo(meta["model_id"], int(meta["dim"])) if len(meta) == 2 else None

    def replace_product(
        self, product: ProductRecord, ids: list[int], keys: list[str], vectors: Vectors, model: ModelInfo
    ) -> tuple[VectorIds, int]:
        """Atomically replaces a product and all its vectors; returns (old vector ids, new generation)."""
        rows = [
            (i, product.product_id, key, v.astype(_FLOAT32).tobytes())
            for i, key, v in zip(ids, keys, vectors, strict=True)
        ]
        with self._transaction() as cur:
            old = _ids(cur.execute("SELECT id FROM vectors WHERE product_id = ?", (product.product_id,)))
            cur.execute("DELETE FROM vectors WHERE product_id = ?", (product.product_id,))
            cur.execute("INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _row(product))
            try:
                cur.executemany("INSERT INTO vectors VALUES (?,?,?,?)", rows)
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"a vector id of {product.product_id!r} collides with another product's"
                ) from None
            cur.executemany(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                [("model_id", model.model_id), ("dim", str(model.dim))],
            )
            return old, _bump(cur)

    def delete_product(self, product_id: str) -> tuple[VectorIds, int] | None:
        """Removes a product; returns (its vector ids, new generation), or None if it was unknown."""
        with self._transaction() as cur:
            if cur.execute("DELETE FROM products WHERE product_id = ?", (product_id,)).rowcount == 0:
                return None
            old = _ids(cur.execute("SELECT id FROM vectors WHERE product_id = ?", (product_id,)))
            cur.execute("DELETE FROM vectors WHERE product_id = ?", (product_id,))
            return old, _bump(cur)

    def get(self, product_id: str) -> ProductRecord | None:
        return self.get_many([product_id]).get(product_id)

    def get_many(self, product_ids: Sequence[str]) -> dict[str, ProductRecord]:
        found: dict[str, ProductRecord] = {}
        for chunk in _chunks(product_ids):
            sql = f"SELECT {_COLUMNS} FROM products p WHERE p.product_id IN ({_marks(chunk)})"
            found.update((row[0], ProductRecord(*row)) for row in self._query(sql, chunk))
        return found

    def list_products(self, category: str, after: str, limit: int) -> list[ProductRecord]:
        """Products in product_id order, after the given id (exclusive), optionally of one category."""
        where, params = "p.product_id > ?", [after]
        if category:
            where, params = where + " AND p.category = ?", [*params, category]
        sql = f"SELECT {_COLUMNS} FROM products p WHERE {where} ORDER BY p.product_id LIMIT ?"
        return [ProductRecord(*row) for row in self._query(sql, [*params, limit])]

    def allowed_vector_ids(self, flt: Filter) -> VectorIds:
        where, params = filter_sql(flt)
        sql = f"SELECT v.id FROM vectors v JOIN products p ON p.product_id = v.product_id WHERE {where}"
        return np.array([row[0] for row in self._query(sql, params)], dtype=np.int64)

    def vector_owners(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """vector id -> (product_id, image_key) for the ids that exist."""
        owners: dict[int, tuple[str, str]] = {}
        for chunk in _chunks([int(i) for i in ids]):
            sql = f"SELECT id, product_id, image_key FROM vectors WHERE id IN ({_marks(chunk)})"
            owners.update((row[0], (row[1], row[2])) for row in self._query(sql, chunk))
        return owners

    def product_vectors(self, product_id: str, dim: int) -> Vectors:
        rows = self._query("SELECT vector FROM vectors WHERE product_id = ? ORDER BY id", (product_id,))
        return _matrix([row[0] for row in rows], dim)

    def iter_vectors(self, dim: int, batch: int = 8192) -> Iterator[tuple[VectorIds, Vectors]]:
        """Every stored vector in id order, a batch at a time (keyset paging: no lock held between)."""
        after = -1
        while rows := self._query(
            "SELECT id, vector FROM vectors WHERE id > ? ORDER BY id LIMIT ?", (after, batch)
        ):
            after = rows[-1][0]
            yield np.array([r[0] for r in rows], dtype=np.int64), _matrix([r[1] for r in rows], dim)

    def counts(self) -> tuple[int, int]:
        """(products, vectors)."""
        row = self._query("SELECT (SELECT COUNT(*) FROM products), (SELECT COUNT(*) FROM vectors)")[0]
        return int(row[0]), int(row[1])


def filter_sql(flt: Filter) -> tuple[str, list[Any]]:
    """A WHERE clause over products ``p``; a product without a price fails any price bound."""
    clauses, params = ["1"], list[Any]()
    if flt.categories:
        clauses.append(f"p.category IN ({_marks(flt.categories)})")
        params += flt.categories
    if flt.brands:
        clauses.append(f"p.brand IN ({_marks(flt.brands)})")
        params += flt.brands
    if flt.min_price is not None:
        clauses.append("p.price >= ?")
        params.append(flt.min_price)
    if flt.max_price is not None:
        clauses.append("p.price <= ?")
        params.append(flt.max_price)
    return " AND ".join(clauses), params


def _row(p: ProductRecord) -> tuple[Any, ...]:
    """The products-table columns in schema order (vector_count is derived, not stored)."""
    return (
        p.product_id, p.title, p.url, p.image_url, p.price, p.currency, p.category, p.brand,
        p.attributes_json, p.content_hash, p.updated_at_ms, p.indexed_at_ms,
    )  # fmt: skip


def _bump(cur: sqlite3.Cursor) -> int:
    cur.execute(_BUMP)
    return int(cur.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


def _ids(cur: sqlite3.Cursor) -> VectorIds:
    return np.array([row[0] for row in cur.fetchall()], dtype=np.int64)


def _matrix(blobs: list[bytes], dim: int) -> Vectors:
    joined = np.frombuffer(b"".join(blobs), dtype=_FLOAT32)
    return joined.astype(np.float32).reshape(len(blobs), dim)  # (n, dim)


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])
