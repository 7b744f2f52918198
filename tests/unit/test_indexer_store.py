"""The store over each backend: the same tests, the same answers, for faiss and milvus (milvus-lite)."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from services.indexer.ann import IndexPolicy
from services.indexer.config import IndexerSettings
from services.indexer.locking import StateDirLocked
from services.indexer.records import Filter, ProductRecord, SearchParams, Vectors
from services.indexer.server import make_backend
from services.indexer.store import CatalogStore, StoreLimits

RNG = np.random.default_rng(3)
MakeStore = Callable[..., CatalogStore]


def rows(n: int, dim: int = 16) -> list[Vectors]:
    return list(RNG.normal(size=(n, dim)).astype(np.float32))


def at_angle(query: Vectors, angle: float) -> Vectors:
    """A unit vector exactly ``angle`` radians from ``query``."""
    unit = query / np.linalg.norm(query)
    other = rows(1, dim=len(query))[0]
    other -= (other @ unit) * unit
    return np.asarray(np.cos(angle) * unit + np.sin(angle) * other / np.linalg.norm(other), dtype=np.float32)


@pytest.fixture(params=["faiss", "milvus"])
def make_store(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """Opens stores of the backend under test in a state dir (milvus: <state dir>/milvus.db, milvus-lite
    as a file); closes what is still open at the end."""
    opened: list[CatalogStore] = []

    def make(state_dir: Path, limits: StoreLimits = StoreLimits()) -> CatalogStore:
        settings = IndexerSettings(backend=request.param, state_dir=state_dir)
        store = CatalogStore(state_dir, limits, backend=make_backend(settings, IndexPolicy()))
        store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: MakeStore, tmp_path: Path) -> CatalogStore:
    return make_store(tmp_path / "state", StoreLimits(max_vectors_per_product=4))


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


def test_a_state_dir_serves_one_store_at_a_time(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "state")  # the faiss backend's lock; milvus-lite's is per process
    store.open()
    try:
        with pytest.raises(StateDirLocked):
            CatalogStore(tmp_path / "state").open()
    finally:
        store.close()


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


def test_search_oversamples_past_a_product_that_owns_the_nearest_vectors(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "big", StoreLimits(max_vectors_per_product=32))
    query = rows(1)[0]
    near = [query + 0.05 * noise for noise in rows(32)]  # 32 > the first fetch (4 * 3 + 16) for k=3
    store.upsert(ProductRecord("big", category="a"), [f"k{i}" for i in range(32)], near, "m")
    others = {f"o{i}": at_angle(query, angle) for i, angle in enumerate([0.5, 0.7, 0.9, 1.1])}  # o0 nearest
    for pid, vec in others.items():
        store.upsert(ProductRecord(pid, category="a" if pid != "o0" else "b"), ["x"], [vec], "m")
    [matches] = store.search([query], SearchParams(k=3), "m")
    assert [m.product.product_id for m in matches] == ["big", "o0", "o1"]
    only_a = SearchParams(k=3, filter=Filter(categories=("a",)))
    [matches] = store.search([query], only_a, "m")
    assert [m.product.product_id for m in matches] == ["big", "o1", "o2"]


FILTER_PRODUCTS = [
    ProductRecord("bag-1", category="bags", brand="acme", price=120.0),
    ProductRecord("bag-2", category="bags", brand='zen "ith"\\', price=None),
    ProductRecord("hat-1", category="hats", brand="acme", price=20.0),
    ProductRecord("shoe-1", category="shoes", brand="acme", price=50.0),
    ProductRecord("shoe-2", category="shoes", brand='zen "ith"\\', price=80.0),
]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(), {"bag-1", "bag-2", "hat-1", "shoe-1", "shoe-2"}),
        (Filter(categories=("shoes",)), {"shoe-1", "shoe-2"}),
        (Filter(categories=("shoes", "hats")), {"shoe-1", "shoe-2", "hat-1"}),
        (Filter(brands=('zen "ith"\\',)), {"bag-2", "shoe-2"}),  # quotes and backslashes reach the engine
        (Filter(categories=("bags",), brands=("acme",)), {"bag-1"}),
        (Filter(min_price=50.0), {"bag-1", "shoe-1", "shoe-2"}),  # inclusive; no price never matches
        (Filter(max_price=50.0), {"hat-1", "shoe-1"}),
        (Filter(min_price=30.0, max_price=100.0), {"shoe-1", "shoe-2"}),
        (Filter(min_price=0.000001, max_price=1e9), {"bag-1", "hat-1", "shoe-1", "shoe-2"}),
        (Filter(categories=("nothing",)), set()),
    ],
)
def test_filters_select_whole_products_alike_on_every_backend(
    store: CatalogStore, flt: Filter, expected: set[str]
) -> None:
    for product in FILTER_PRODUCTS:
        store.upsert(product, ["front", "back"], rows(2), "m")
    [matches] = store.search(rows(1), SearchParams(k=10, filter=flt), "m")
    assert {m.product.product_id for m in matches} == expected
    assert len(matches) == len(expected)


def test_upsert_replaces_vectors_and_metadata_and_delete_counts(store: CatalogStore) -> None:
    old, new = rows(3), rows(2)
    store.upsert(ProductRecord("p1", title="v1", price=5.0), ["a", "b", "c"], old, "m")
    store.upsert(ProductRecord("p2"), ["a"], rows(1), "m")
    stored = store.upsert(
        ProductRecord("p1", title="v2", attributes_json=' {"k": "é"} '), ["a", "z"], new, "m"
    )
    got = store.get("p1")
    assert got == stored
    assert (got.title, got.price, got.attributes_json, got.vector_count) == ("v2", None, '{"k": "é"}', 2)
    assert (store.stats().products, store.stats().vectors) == (2, 3)
    [matches] = store.search([old[1]], SearchParams(k=2), "m")  # "b" is gone; "a" was replaced
    assert all(m.image_key != "b" for m in matches)
    [matches] = store.search([new[0]], SearchParams(k=1), "m")
    assert (matches[0].product.product_id, matches[0].image_key) == ("p1", "a")
    assert store.delete("p1") == 2
    assert (store.stats().products, store.stats().vectors) == (1, 1)
    with pytest.raises(NotFound):
        store.get("p1")


def test_similar_excludes_the_product_itself(store: CatalogStore) -> None:
    base = rows(1)[0]
    store.upsert(ProductRecord("p1"), ["a"], [base], "m")
    store.upsert(ProductRecord("twin"), ["a"], [at_angle(base, 0.1)], "m")
    store.upsert(ProductRecord("far"), ["a"], [at_angle(base, 1.0)], "m")
    matches = store.similar("p1", SearchParams(k=5))
    assert [m.product.product_id for m in matches] == ["twin", "far"]
    assert matches[0].similarity == pytest.approx(np.cos(0.1), abs=1e-5)


def test_everything_survives_a_restart(make_store: MakeStore, tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = make_store(state)
    probes = {f"p{i}": rows(2) for i in range(6)}
    for i, (pid, vecs) in enumerate(probes.items()):
        store.upsert(
            ProductRecord(pid, title=pid.upper(), category="even" if i % 2 == 0 else "odd"),
            ["a", "b"],
            vecs,
            "m",
        )
    store.delete("p3")
    query = [probes["p4"][1]]
    before = (store.search(query, SearchParams(k=4), "m"), store.list_page("", 10, ""), store.stats())
    store.close()
    reopened = make_store(state)
    assert reopened.load_path in ("snapshot", "milvus")
    assert (
        reopened.search(query, SearchParams(k=4), "m"),
        reopened.list_page("", 10, ""),
        reopened.stats(),
    ) == before
    [[top]] = reopened.search(query, SearchParams(k=1, filter=Filter(categories=("even",))), "m")
    assert (top.product.product_id, top.image_key) == ("p4", "b")
