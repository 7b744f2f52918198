"""The Milvus collection's layout: one row per vector, and the filter expressions over it.

Every row carries what a filtered search needs (product_id, image_key, category, brand, price); the
product's first image's row (``is_head``) also carries its metadata, so Get and List read one row
per product. The primary key is ``<product_id>!<vector id as 16 hex digits>``: '!' sorts below
every character a product id may hold, so primary-key order is product_id order, which is what
List pages by. The model id is a collection property; the dim is the vector field's.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pymilvus import CollectionSchema, DataType, MilvusClient
from pymilvus.milvus_client import IndexParams

from services.common.errors import InvalidInput
from services.indexer import validation
from services.indexer.ids import vector_id
from services.indexer.records import Filter, ProductRecord, Vectors

IndexType = Literal["FLAT", "HNSW", "AUTOINDEX"]
INDEX_BUILD: dict[str, dict[str, int]] = {
    "FLAT": {},
    "HNSW": {"M": 16, "efConstruction": 200},
    "AUTOINDEX": {},
}
SEPARATOR = "!"  # not allowed in a product id (services/common/ids.py), below all that are
MODEL_PROPERTY = "visualsearch.model_id"
MAX_VARCHAR_BYTES = 65_535  # Milvus' VARCHAR ceiling
MAX_TOPK = 16_384  # Milvus' ceiling on limit (and offset + limit) per search or query
IN_CHUNK = 500  # values per "in [...]" expression
VECTOR = "vector"
# Text fields of the product and their VARCHAR sizes in bytes (4 per character: any UTF-8 fits).
TEXT_FIELDS = {name: min(MAX_VARCHAR_BYTES, 4 * chars) for name, chars in validation.TEXT_LIMITS.items()}
TEXT_FIELDS |= {"product_id": 128, "image_key": 4 * validation.MAX_IMAGE_KEY_CHARS}
TEXT_FIELDS |= {"attributes_json": MAX_VARCHAR_BYTES}
INT_FIELDS = ("updated_at_ms", "indexed_at_ms", "vector_count")
HEAD_FIELDS = [
    "product_id", "title", "url", "image_url", "price", "has_price", "currency", "category", "brand",
    "attributes_json", "content_hash", *INT_FIELDS,
]  # fmt: skip
FILTER_FIELDS = ("product_id", "category", "brand", "price", "has_price")
HEAD = "is_head == true"


def primary_key(product_id: str, image_key: str) -> str:
    return f"{product_id}{SEPARATOR}{vector_id(product_id, image_key):016x}"


def vector_id_of(pk: str) -> int:
    return int(pk.rsplit(SEPARATOR, 1)[1], 16)


def rows(product: ProductRecord, keys: list[str], vectors: Vectors) -> list[dict[str, Any]]:
    """The product's rows: every one with the filter fields, the first also with the metadata."""
    if len(product.attributes_json.encode()) > MAX_VARCHAR_BYTES:
        raise InvalidInput(f"product.attributes_json is larger than {MAX_VARCHAR_BYTES} bytes")
    price = {
        "price": product.price if product.price is not None else 0.0,
        "has_price": product.price is not None,
    }
    full = {name: getattr(product, name) for name in HEAD_FIELDS if name not in price} | price
    light = {name: value if name in FILTER_FIELDS else type(value)() for name, value in full.items()}
    return [
        (full if i == 0 else light)
        | {"pk": primary_key(product.product_id, key), "image_key": key, "is_head": i == 0}
        | {VECTOR: np.asarray(vector, dtype=np.float32)}
        for i, (key, vector) in enumerate(zip(keys, vectors, strict=True))
    ]


def record(row: Mapping[str, Any]) -> ProductRecord:
    """A head row -> the product it describes."""
    return ProductRecord(
        product_id=row["product_id"],
        title=row["title"],
        url=row["url"],
        image_url=row["image_url"],
        price=float(row["price"]) if row["has_price"] else None,
        currency=row["currency"],
        category=row["category"],
        brand=row["brand"],
        attributes_json=row["attributes_json"],
        content_hash=row["content_hash"],
        updated_at_ms=int(row["updated_at_ms"]),
        indexed_at_ms=int(row["indexed_at_ms"]),
        vector_count=int(row["vector_count"]),
    )


def quote(text: str) -> str:
    """A string literal for a Milvus expression (its C-style escapes; other characters verbatim)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def number(value: float) -> str:
    """A finite float as a plain decimal literal (no exponent: not every expression parser takes one)."""
    if not math.isfinite(value):
        raise InvalidInput(f"price bounds must be finite, got {value}")
    return str(np.format_float_positional(value, trim="-"))


def one_of(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(quote(v) for v in values)}]"


def filter_expr(flt: Filter) -> str:
    """The Milvus twin of catalog.filter_sql: a product without a price fails any price bound."""
    clauses = []
    if flt.categories:
        clauses.append(one_of("category", flt.categories))
    if flt.brands:
        clauses.append(one_of("brand", flt.brands))
    if flt.min_price is not None or flt.max_price is not None:
        clauses.append("has_price == true")
    if flt.min_price is not None:
        clauses.append(f"price >= {number(flt.min_price)}")
    if flt.max_price is not None:
        clauses.append(f"price <= {number(flt.max_price)}")
    return " and ".join(clauses)


def product_expr(product_id: str) -> str:
    return f"product_id == {quote(product_id)}"


def list_expr(category: str, after: str) -> str:
    expr = f"{HEAD} and product_id > {quote(after)}"
    return f"{expr} and category == {quote(category)}" if category else expr


def chunks(values: Sequence[str]) -> list[list[str]]:
    return [list(values[i : i + IN_CHUNK]) for i in range(0, len(values), IN_CHUNK)]


def schema(client: MilvusClient, dim: int) -> CollectionSchema:
    out = client.create_schema(auto_id=False, enable_dynamic_field=False)
    out.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=160)
    out.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    for name, size in TEXT_FIELDS.items():
        out.add_field(name, DataType.VARCHAR, max_length=size)
    out.add_field("price", DataType.DOUBLE)
    for name in ("has_price", "is_head"):
        out.add_field(name, DataType.BOOL)
    for name in INT_FIELDS:
        out.add_field(name, DataType.INT64)
    return out


def index_params(client: MilvusClient, index_type: IndexType) -> IndexParams:
    """Inner product over unit vectors (cosine), and inverted indexes on what filters select by."""
    params = client.prepare_index_params()
    params.add_index(VECTOR, index_type=index_type, metric_type="IP", params=INDEX_BUILD[index_type])
    for name in ("product_id", "category", "brand"):
        params.add_index(name, index_type="INVERTED")
    return params
