"""What is particular to the Milvus backend: its layout, its expressions, replicas over one collection.

The engine is milvus-lite (a file per test); the rest of the store's behaviour is covered for both
backends by test_indexer_store.py.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import Conflict, InvalidInput
from services.devstack.ephemeral import free_port
from services.indexer import milvus_rows as mr
from services.indexer.backend import StorageUnavailable
from services.indexer.milvus_backend import MilvusBackend
from services.indexer.milvus_search import MilvusConfig
from services.indexer.records import Filter, ProductRecord, SearchParams, Vectors
from services.indexer.store import CatalogStore

RNG = np.random.default_rng(11)
# Product ids whose plain string order differs from any order that sorts "-" or "." before "!".
TRICKY_IDS = ["a", "a-b", "a.b", "a0", "A", "a:b", "a@x", "a_b", "b", "a-"]


def rows(n: int, dim: int = 8) -> list[Vectors]:
    return list(RNG.normal(size=(n, dim)).astype(np.float32))


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus" / "index.db")


@pytest.fixture
def store(uri: str) -> Iterator[CatalogStore]:
    s = CatalogStore(Path(), backend=MilvusBackend(MilvusConfig(uri)))
    s.open()
    yield s
    s.close()


def test_primary_key_order_is_product_id_order() -> None:
    keys = {mr.primary_key(pid, "front.jpg"): pid for pid in TRICKY_IDS}
    assert [keys[pk] for pk in sorted(keys)] == sorted(TRICKY_IDS)
    assert all(mr.vector_id_of(pk) > 0 for pk in keys)


def test_expressions_quote_and_number_safely() -> None:
    assert mr.quote('a "b"\\c\nd\te') == '"a \\"b\\"\\\\c\\nd\\te"'
    assert mr.number(1e-7) == "0.0000001"
    assert mr.number(-5.0) == "-5"
    assert mr.filter_expr(Filter()) == ""
    assert mr.filter_expr(Filter(categories=("x",), max_price=2.5)) == (
        'category in ["x"] and has_price == true and price <= 2.5'
    )


def test_list_pages_in_product_id_order(store: CatalogStore) -> None:
    for pid in reversed(TRICKY_IDS):
        store.upsert(ProductRecord(pid, category="c" if pid < "a0" else "d"), ["x", "y"], rows(2), "m")
    seen, cursor = [], ""
    while True:
        page, cursor = store.list_page("", 3, cursor)
        seen += [p.product_id for p in page]
        if not cursor:
            break
    assert seen == sorted(TRICKY_IDS)
    only_c, _ = store.list_page("c", 100, "")
    assert [p.product_id for p in only_c] == sorted(p for p in TRICKY_IDS if p < "a0")


def test_any_text_round_trips_through_filters(store: CatalogStore) -> None:
    odd = 'Shoes "quoted"\\ \n\tünïcode ✓'
    vec = rows(1)
    store.upsert(ProductRecord("p1", category=odd, brand=odd, title=odd), ["k"], vec, "m")
    store.upsert(ProductRecord("p2", category="plain"), ["k"], rows(1), "m")
    [matches] = store.search(vec, SearchParams(filter=Filter(categories=(odd,), brands=(odd,))), "m")
    assert [(m.product.product_id, m.product.title) for m in matches] == [("p1", odd)]


def test_attributes_beyond_milvus_varchar_are_refused(store: CatalogStore) -> None:
    big = '{"x": "' + "a" * (mr.MAX_VARCHAR_BYTES - 8) + '"}'  # 65536 bytes: within the store's limit
    with pytest.raises(InvalidInput, match="65535 bytes"):
        store.upsert(ProductRecord("p1", attributes_json=big), ["k"], rows(1), "m")
    assert store.stats().products == 0


def test_two_stores_on_one_collection_see_each_others_writes_and_model(uri: str) -> None:
    """Replicas keep no state of their own: what one writes, the other reads, model binding included."""
    first = CatalogStore(Path(), backend=MilvusBackend(MilvusConfig(uri)))
    second = CatalogStore(Path(), backend=MilvusBackend(MilvusConfig(uri)))
    first.open()
    second.open()  # same process, same file: one milvus-lite engine behind both clients
    try:
        assert second.stats().model is None
        vec = rows(1)
        first.upsert(ProductRecord("p1"), ["k"], vec, "model-a")
        with pytest.raises(Conflict, match="model-a"):
            second.upsert(ProductRecord("p2"), ["k"], rows(1), "model-b")
        [[match]] = second.search(vec, SearchParams(k=1), "model-a")
        assert match.product.product_id == "p1"
        assert second.delete("p1") == 1
        assert first.search(vec, SearchParams(k=1), "model-a") == [[]]
    finally:
        second.close()
        first.close()


def test_unreachable_milvus_fails_to_open_with_the_reason() -> None:
    backend = MilvusBackend(MilvusConfig(f"http://127.0.0.1:{free_port()}", timeout_s=1.0))
    with pytest.raises(StorageUnavailable, match=r"cannot open Milvus at http://127\.0\.0\.1"):
        backend.open()


def test_an_hnsw_collection_answers_and_filters(tmp_path: Path) -> None:
    store = CatalogStore(
        Path(), backend=MilvusBackend(MilvusConfig(str(tmp_path / "h.db"), index_type="HNSW"))
    )
    store.open()
    try:
        vectors = rows(40, dim=16)
        for i, vec in enumerate(vectors):
            store.upsert(ProductRecord(f"p{i:02d}", category="odd" if i % 2 else "even"), ["k"], [vec], "m")
        assert store.index_kind == "milvus:HNSW"
        for i in range(0, 40, 5):
            [[top]] = store.search([vectors[i]], SearchParams(k=1), "m")
            assert top.product.product_id == f"p{i:02d}"
        [odd] = store.search([vectors[0]], SearchParams(k=5, filter=Filter(categories=("odd",))), "m")
        assert len(odd) == 5
        assert all(m.product.category == "odd" for m in odd)
    finally:
        store.close()
