"""Input rules for the indexer, each failing with InvalidInput and a message naming the rule."""

import base64
import binascii
import json
import math
from dataclasses import replace

import numpy as np

from services.common.errors import InvalidInput, TooLarge
from services.common.ids import validate_product_id
from services.indexer.records import Filter, ProductRecord, SearchParams, Vectors

DEFAULT_K = 10
MAX_QUERIES = 64
MAX_OFFSET = 10_000
MAX_FILTER_VALUES = 256
MAX_IMAGE_KEY_CHARS = 1024
MAX_MODEL_ID_CHARS = 256
TEXT_LIMITS = {  # characters
    "title": 1000,
    "url": 4096,
    "image_url": 4096,
    "currency": 16,
    "category": 256,
    "brand": 256,
    "content_hash": 256,
}
MAX_ATTRIBUTES_BYTES = 64 * 1024


def check_product(product: ProductRecord) -> ProductRecord:
    """The product with attributes_json normalised ("" -> "{}"), or InvalidInput."""
    validate_product_id(product.product_id)
    for name, limit in TEXT_LIMITS.items():
        value: str = getattr(product, name)
        if len(value) > limit:
            raise InvalidInput(f"product.{name} is {len(value)} characters; the limit is {limit}")
    if product.price is not None and not (math.isfinite(product.price) and product.price >= 0):
        raise InvalidInput(f"product.price must be a finite number >= 0, got {product.price}")
    return _with_attributes(product)


def _with_attributes(product: ProductRecord) -> ProductRecord:
    raw = product.attributes_json.strip() or "{}"
    if len(raw.encode()) > MAX_ATTRIBUTES_BYTES:
        raise InvalidInput(f"product.attributes_json is larger than {MAX_ATTRIBUTES_BYTES} bytes")
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"product.attributes_json is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("product.attributes_json must be a JSON object")
    return product if raw == product.attributes_json else replace(product, attributes_json=raw)


def check_model_id(model_id: str) -> str:
    if not model_id:
        raise InvalidInput("model_id is required: it names the embedding model that produced the vectors")
    if len(model_id) > MAX_MODEL_ID_CHARS:
        raise InvalidInput(f"model_id is longer than {MAX_MODEL_ID_CHARS} characters")
    return model_id


def image_keys(keys: list[str]) -> list[str]:
    """Keys for a product's vectors: a missing key becomes "#<position>"; duplicates are rejected."""
    filled = [key or f"#{i}" for i, key in enumerate(keys)]
    for key in filled:
        if len(key) > MAX_IMAGE_KEY_CHARS:
            raise InvalidInput(f"image_key is longer than {MAX_IMAGE_KEY_CHARS} characters")
    if len(set(filled)) != len(filled):
        raise InvalidInput("the vectors of one product must have distinct image_keys")
    return filled


def normalised(rows: list[np.ndarray], dim: int | None, what: str = "vector") -> Vectors:
    """Stacks equal-length rows into (n, dim) float32 and rescales each to unit length.

    Rejects wrong lengths and rows that cannot be normalised (zero, NaN, inf): they would silently
    rank as noise. ``dim`` None (a store with no model yet) accepts any common length.
    """
    lengths = sorted({len(row) for row in rows})
    got = ", ".join(str(n) for n in lengths)
    if dim is not None and lengths != [dim]:
        raise InvalidInput(f"every {what} must have {dim} values (the index's dim), got {got}")
    if len(lengths) != 1 or lengths[0] == 0:
        raise InvalidInput(f"every {what} must have the same, non-zero number of values, got {got}")
    matrix = np.asarray(np.stack(rows), dtype=np.float32)  # (n, dim)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (n, 1)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0) | ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise InvalidInput(f"{what} {int(np.argmax(bad))} is zero or not finite; it cannot be normalised")
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def check_query_count(n: int) -> None:
    if n > MAX_QUERIES:
        raise TooLarge(f"{n} queries in one search; the limit is {MAX_QUERIES}")


def search_params(k: int, offset: int, flt: Filter, min_similarity: float, max_k: int) -> SearchParams:
    """k 0 means the default; min_similarity 0 (the proto default) means no threshold."""
    k = k or DEFAULT_K
    if not 1 <= k <= max_k:
        raise InvalidInput(f"k must be between 1 and {max_k}, got {k}")
    if offset > MAX_OFFSET:
        raise InvalidInput(f"offset must be at most {MAX_OFFSET}, got {offset}")
    if not (math.isfinite(min_similarity) and -1.0 <= min_similarity <= 1.0):
        raise InvalidInput(f"min_similarity must be in [-1, 1], got {min_similarity}")
    threshold = min_similarity if min_similarity != 0 else -1.0
    return SearchParams(k=k, offset=offset, filter=check_filter(flt), min_similarity=threshold)


def check_filter(flt: Filter) -> Filter:
    for name, values in (("categories", flt.categories), ("brands", flt.brands)):
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidInput(f"filter.{name} has {len(values)} values; the limit is {MAX_FILTER_VALUES}")
    for name, price in (("min_price", flt.min_price), ("max_price", flt.max_price)):
        if price is not None and not math.isfinite(price):
            raise InvalidInput(f"filter.{name} must be finite, got {price}")
    if flt.min_price is not None and flt.max_price is not None and flt.min_price > flt.max_price:
        raise InvalidInput(f"filter.min_price {flt.min_price} is above filter.max_price {flt.max_price}")
    return flt


def encode_cursor(product_id: str) -> str:
    return base64.urlsafe_b64encode(product_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The product id a List page ended at; InvalidInput if the cursor was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        product_id = raw.decode()
        validate_product_id(product_id)
        if encode_cursor(product_id) != cursor:  # base64 decoding skips stray characters
            raise ValueError(cursor)
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidInput):
        raise InvalidInput("malformed cursor: pass ListResponse.next_cursor back unchanged") from None
    return product_id
