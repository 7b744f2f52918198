import math

import numpy as np
import pytest

from services.common.errors import InvalidInput, TooLarge
from services.indexer.records import Filter, ProductRecord
from services.indexer.validation import (
    DEFAULT_K,
    check_product,
    check_query_count,
    decode_cursor,
    encode_cursor,
    image_keys,
    normalised,
    search_params,
)


@pytest.mark.parametrize("product_id", ["p1", "SKU:123@shop", "a" * 128, "x.y_z-1"])
def test_cursor_round_trips(product_id: str) -> None:
    cursor = encode_cursor(product_id)
    assert "=" not in cursor
    assert decode_cursor(cursor) == product_id


@pytest.mark.parametrize("cursor", ["!!!", "====", "cDI!", "_w", encode_cursor("p1") + "!", "bad cursor"])
def test_malformed_cursor_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="malformed cursor"):
        decode_cursor(cursor)


def test_search_params_defaults_and_threshold() -> None:
    params = search_params(0, 0, Filter(), 0.0, max_k=100)
    assert (params.k, params.offset, params.min_similarity) == (DEFAULT_K, 0, -1.0)
    assert search_params(5, 20, Filter(), 0.5, max_k=100).min_similarity == 0.5


@pytest.mark.parametrize(
    ("k", "offset", "flt", "min_sim", "message"),
    [
        (101, 0, Filter(), 0.0, "k must be between 1 and 100"),
        (10, 10_001, Filter(), 0.0, "offset must be at most"),
        (10, 0, Filter(), math.nan, "min_similarity"),
        (10, 0, Filter(), 1.5, "min_similarity"),
        (10, 0, Filter(min_price=10, max_price=5), 0.0, "above filter.max_price"),
        (10, 0, Filter(min_price=math.inf), 0.0, "min_price must be finite"),
        (10, 0, Filter(max_price=math.nan), 0.0, "max_price must be finite"),
        (10, 0, Filter(categories=("c",) * 300), 0.0, "filter.categories"),
    ],
)
def test_bad_search_params_are_invalid_input(
    k: int, offset: int, flt: Filter, min_sim: float, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        search_params(k, offset, flt, min_sim, max_k=100)


def test_too_many_queries_is_too_large() -> None:
    check_query_count(64)
    with pytest.raises(TooLarge):
        check_query_count(65)


def test_check_product_normalises_attributes() -> None:
    assert check_product(ProductRecord("p1")).attributes_json == "{}"
    assert check_product(ProductRecord("p1", attributes_json="")).attributes_json == "{}"
    assert check_product(ProductRecord("p1", attributes_json='{"a": 1}')).attributes_json == '{"a": 1}'


@pytest.mark.parametrize(
    ("product", "message"),
    [
        (ProductRecord("bad id"), "invalid product_id"),
        (ProductRecord("p1", title="t" * 1001), "title"),
        (ProductRecord("p1", category="c" * 257), "category"),
        (ProductRecord("p1", price=-1.0), "price"),
        (ProductRecord("p1", price=math.nan), "price"),
        (ProductRecord("p1", attributes_json="[1, 2]"), "JSON object"),
        (ProductRecord("p1", attributes_json="{oops"), "not valid JSON"),
    ],
)
def test_bad_product_is_invalid_input(product: ProductRecord, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_product(product)


def test_image_keys_fill_blanks_and_reject_duplicates() -> None:
    assert image_keys(["front", "", "back"]) == ["front", "#1", "back"]
    with pytest.raises(InvalidInput, match="distinct"):
        image_keys(["a", "a"])


def test_normalised_rescales_rows_to_unit_length() -> None:
    rows = [np.array([3.0, 4.0], dtype=np.float32), np.array([0.0, -2.0], dtype=np.float32)]
    out = normalised(rows, 2)
    assert out.dtype == np.float32
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, -1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("rows", "dim", "message"),
    [
        ([[0.0, 0.0]], 2, "zero or not finite"),
        ([[1.0, math.nan]], 2, "zero or not finite"),
        ([[1.0, math.inf]], 2, "zero or not finite"),
        ([[3e38, 3e38]], 2, "zero or not finite"),  # the norm overflows float32
        ([[1.0, 0.0, 0.0]], 2, "must have 2 values"),
        ([[1.0, 0.0], [1.0]], None, "same, non-zero"),
        ([[]], None, "same, non-zero"),
    ],
)
def test_unnormalisable_vectors_are_invalid_input(
    rows: list[list[float]], dim: int | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        normalised([np.array(r, dtype=np.float32) for r in rows], dim)
