import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from services.indexer.locking import StateDirLocked
from services.indexer.records import Filter, ProductRecord, SearchParams, Vectors
from services.indexer.store import CatalogStore, StoreLimits

RNG = np.random.default_rng(3)


def rows(n: int, dim: int = 16) -> list[Vectors]:
    return list(RNG.normal(size=(n, dim)).astype(np.float32))


def at_angle(query: Vectors, angle: float) -> Vectors:
    """A unit vector exactly ``angle`` radians from ``query``."""
    unit = query / np.linalg.norm(query)
    other = rows(1, dim=len(query))[0]
    other -= (other @ unit) * unit
    return np.asarray(np.cos(angle) * unit + np.sin(angle) * other / np.linalg.norm(other), dtype=np.float32)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    s = CatalogStore(tmp_path / "state", StoreLimits(max_vectors_per_product=4))
    s.open()
    yield s
    s.close()


def test_calls_before_open_are_not_ready(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        CatalogStore(tmp_path).stats()


def test_empty_store_searches_to_empty_results(store: CatalogStore) -> None:
    assert store.search(rows(2), SearchParams(), "any-model") == [[], []]
    assert store.stats().model is None


def test_first_upsert_fixes_the_model_and_dim(store: CatalogStore) -> None:
    store.upsert(ProductRecord("p1"), ["a"], rows(1), "model-a")
    stats = store.stats()
    assert stats.model is not None
    assert (stats.model.model_id, stats.model.dim) == ("model-a", 16)
    with pytest.raises(Conflict, match=r"'model-a'.*'model-b'"):
        store.upsert(ProductRecord("p2"), ["a"], rows(1), "model-b")
    with pytest.raises(InvalidInput, match="dim is 16"):
        store.upsert(ProductRecord("p2"), ["a"], rows(1, dim=8), "model-a")


def test_search_checks_the_model_unless_empty(store: CatalogStore) -> None:
    vecs = rows(1)
    store.upsert(ProductRecord("p1"), ["a"], vecs, "model-a")
    with pytest.raises(Conflict, match=r"'model-a'.*'model-b'"):
        store.search(vecs, SearchParams(), "model-b")
    with pytest.raises(InvalidInput, match="dim is 16"):
        store.search(rows(1, dim=8), SearchParams(), "")
    [matches] = store.search(vecs, SearchParams(), "")
    assert matches[0].product.product_id == "p1"


def test_vectors_and_queries_are_renormalised(store: CatalogStore) -> None:
    vec = rows(1)[0]
    store.upsert(ProductRecord("p1"), ["a"], [vec * 7.5], "m")
    store.upsert(ProductRecord("p2"), ["a"], rows(1), "m")
    [matches] = store.search([vec * 0.01], SearchParams(k=1), "m")
    assert matches[0].product.product_id == "p1"
    assert matches[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_bad_upserts_are_rejected(store: CatalogStore) -> None:
    with pytest.raises(InvalidInput, match="at least one vector"):
        store.upsert(ProductRecord("p1"), [], [], "m")
    with pytest.raises(TooLarge, match="limit is 4"):
        store.upsert(ProductRecord("p1"), [f"k{i}" for i in range(5)], rows(5), "m")
    with pytest.raises(InvalidInput, match="model_id is required"):
        store.upsert(ProductRecord("p1"), ["a"], rows(1), "")
    with pytest.raises(InvalidInput, match="zero or not finite"):
        store.upsert(ProductRecord("p1"), ["a"], [np.zeros(16, dtype=np.float32)], "m")
    assert store.stats().products == 0


def test_unknown_products_are_not_found(store: CatalogStore) -> None:
    for call in (store.delete, store.get, lambda pid: store.similar(pid, SearchParams())):
        with pytest.raises(NotFound):
            call("nope")
    with pytest.raises(InvalidInput):
        store.get("not a valid id")


def test_filter_with_no_match_returns_empty(store: CatalogStore) -> None:
    vecs = rows(1)
    store.upsert(ProductRecord("p1", category="shoes"), ["a"], vecs, "m")
    assert store.search(vecs, SearchParams(filter=Filter(categories=("hats",))), "m") == [[]]


def test_list_page_cursor_walks_everything(store: CatalogStore) -> None:
    for i in range(7):
        store.upsert(ProductRecord(f"p{i}"), ["a"], rows(1), "m")
    seen, cursor = [], ""
    while True:
        page, cursor = store.list_page("", 3, cursor)
        seen += [p.product_id for p in page]
        if not cursor:
            break
    assert seen == [f"p{i}" for i in range(7)]


def test_a_state_dir_serves_one_store_at_a_time(store: CatalogStore, tmp_path: Path) -> None:
    with pytest.raises(StateDirLocked):
        CatalogStore(tmp_path / "state").open()


def test_concurrent_writes_and_searches_stay_consistent(store: CatalogStore) -> None:
    probes = {f"p{i}": rows(2) for i in range(40)}
    errors: list[BaseException] = []

    def write(ids: list[str]) -> None:
        for pid in ids:
            store.upsert(ProductRecord(pid), ["a", "b"], probes[pid], "m")

    def read() -> None:
        for _ in range(50):
            for matches in store.search(rows(2), SearchParams(k=5), ""):
                assert len({m.product.product_id for m in matches}) == len(matches)

    def guarded(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    ids = sorted(probes)
    threads = [threading.Thread(target=guarded, args=(write, ids[i::4])) for i in range(4)]
    threads += [threading.Thread(target=guarded, args=(read,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert (store.stats().products, store.stats().vectors) == (40, 80)
    for pid, vecs in probes.items():
        [matches] = store.search([vecs[1]], SearchParams(k=1), "m")
        assert matches[0].product.product_id == pid
        assert matches[0].image_key == "b"


def test_search_oversamples_past_a_product_that_owns_the_nearest_vectors(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "big", StoreLimits(max_vectors_per_product=32))
    store.open()
    query = rows(1)[0]
    near = [query + 0.05 * noise for noise in rows(32)]  # 32 > the first fetch (4 * 3 + 16) for k=3
    store.upsert(ProductRecord("big", category="a"), [f"k{i}" for i in range(32)], near, "m")
    others = {f"o{i}": at_angle(query, angle) for i, angle in enumerate([0.5, 0.7, 0.9, 1.1])}  # o0 nearest
    for pid, vec in others.items():
        store.upsert(ProductRecord(pid, category="a" if pid != "o0" else "b"), ["x"], [vec], "m")
    try:
        [matches] = store.search([query], SearchParams(k=3), "m")
        assert [m.product.product_id for m in matches] == ["big", "o0", "o1"]
        only_a = SearchParams(k=3, filter=Filter(categories=("a",)))
        [matches] = store.search([query], only_a, "m")
        assert [m.product.product_id for m in matches] == ["big", "o1", "o2"]
    finally:
        store.close()
