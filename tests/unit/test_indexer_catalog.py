from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import Conflict
from services.indexer.catalog import Catalog
from services.indexer.ids import vector_id
from services.indexer.records import Filter, ModelInfo, ProductRecord

MODEL = ModelInfo("m1", 4)
PRODUCTS = [
    ProductRecord("bag-1", category="bags", brand="acme", price=120.0),
    ProductRecord("bag-2", category="bags", brand="zenith", price=None),
    ProductRecord("hat-1", category="hats", brand="acme", price=20.0),
    ProductRecord("shoe-1", category="shoes", brand="acme", price=50.0),
    ProductRecord("shoe-2", category="shoes", brand="zenith", price=80.0),
]


def put(catalog: Catalog, product: ProductRecord, keys: list[str]) -> tuple[np.ndarray, int]:
    vectors = np.eye(4, dtype=np.float32)[: len(keys)]
    ids = [vector_id(product.product_id, k) for k in keys]
    return catalog.replace_product(product, ids, keys, vectors, MODEL)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path / "catalog.sqlite3")
    for product in PRODUCTS:
        put(cat, product, ["front", "back"])
    yield cat
    cat.close()


def owners_of(catalog: Catalog, flt: Filter) -> set[str]:
    ids = catalog.allowed_vector_ids(flt)
    return {owner for owner, _ in catalog.vector_owners(ids.tolist()).values()}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(), {"bag-1", "bag-2", "hat-1", "shoe-1", "shoe-2"}),
        (Filter(categories=("shoes",)), {"shoe-1", "shoe-2"}),
        (Filter(categories=("shoes", "hats")), {"shoe-1", "shoe-2", "hat-1"}),
        (Filter(brands=("zenith",)), {"bag-2", "shoe-2"}),
        (Filter(categories=("bags",), brands=("acme",)), {"bag-1"}),
        (
            Filter(min_price=50.0),
            {"bag-1", "shoe-1", "shoe-2"},
        ),  # bounds are inclusive; no price never matches
        (Filter(max_price=50.0), {"hat-1", "shoe-1"}),
        (Filter(min_price=30.0, max_price=100.0), {"shoe-1", "shoe-2"}),
        (Filter(categories=("nothing",)), set()),
    ],
)
def test_filters_select_vectors_of_matching_products(
    catalog: Catalog, flt: Filter, expected: set[str]
) -> None:
    assert owners_of(catalog, flt) == expected


def test_filter_returns_every_vector_of_a_matching_product(catalog: Catalog) -> None:
    ids = catalog.allowed_vector_ids(Filter(categories=("hats",)))
    assert sorted(ids.tolist()) == sorted(vector_id("hat-1", k) for k in ["front", "back"])


def test_replace_swaps_all_vectors_and_bumps_generation(catalog: Catalog) -> None:
    before = catalog.generation()
    old, generation = put(catalog, PRODUCTS[0], ["side"])
    assert generation == before + 1 == catalog.generation()
    assert sorted(old.tolist()) == sorted(vector_id("bag-1", k) for k in ["front", "back"])
    record = catalog.get("bag-1")
    assert record is not None
    assert record.vector_count == 1
    assert catalog.product_vectors("bag-1", 4).shape == (1, 4)
    assert catalog.counts() == (5, 9)


def test_failed_write_rolls_back_everything(catalog: Catalog) -> None:
    before = (catalog.generation(), catalog.counts(), catalog.get("bag-1"))
    ids = [vector_id("bag-1", "a"), vector_id("bag-1", "a")]  # duplicate primary key
    with pytest.raises(Conflict, match="collides"):
        catalog.replace_product(PRODUCTS[0], ids, ["a", "a"], np.eye(4, dtype=np.float32)[:2], MODEL)
    assert (catalog.generation(), catalog.counts(), catalog.get("bag-1")) == before


def test_delete_returns_removed_ids_or_none(catalog: Catalog) -> None:
    removed = catalog.delete_product("shoe-1")
    assert removed is not None
    assert len(removed[0]) == 2
    assert catalog.get("shoe-1") is None
    assert catalog.delete_product("shoe-1") is None
    assert catalog.counts() == (4, 8)


def test_model_is_fixed_by_the_first_write(catalog: Catalog) -> None:
    assert catalog.model() == MODEL


def test_list_pages_in_id_order_with_category(catalog: Catalog) -> None:
    assert [p.product_id for p in catalog.list_products("", "", 2)] == ["bag-1", "bag-2"]
    assert [p.product_id for p in catalog.list_products("", "bag-2", 10)] == ["hat-1", "shoe-1", "shoe-2"]
    assert [p.product_id for p in catalog.list_products("shoes", "", 10)] == ["shoe-1", "shoe-2"]


def test_vectors_round_trip_through_blobs(catalog: Catalog) -> None:
    batches = list(catalog.iter_vectors(4, batch=3))
    assert sum(len(ids) for ids, _ in batches) == 10
    ids = np.concatenate([ids for ids, _ in batches])
    assert (np.diff(ids) > 0).all()
    # put() stored front = e0 and back = e1; product_vectors returns them in id order.
    stored = {"front": [1, 0, 0, 0], "back": [0, 1, 0, 0]}
    in_id_order = sorted(stored, key=lambda key: vector_id("hat-1", key))
    np.testing.assert_array_equal(catalog.product_vectors("hat-1", 4), [stored[k] for k in in_id_order])
