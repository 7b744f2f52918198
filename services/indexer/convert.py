"""Wire messages <-> domain records. No rules here beyond the shape; validation.py has the rules."""

from collections.abc import Iterable

import numpy as np

from services.common.gen.visualsearch.v1 import indexer_pb2
from services.indexer.records import Filter, Match, ProductRecord, Stats, Vectors


def product_from_proto(p: indexer_pb2.Product) -> ProductRecord:
    """Server-set fields (timestamps, vector_count) are ignored."""
    return ProductRecord(
        product_id=p.product_id,
        title=p.title,
        url=p.url,
        image_url=p.image_url,
        price=p.price if p.HasField("price") else None,
        currency=p.currency,
        category=p.category,
        brand=p.brand,
        attributes_json=p.attributes_json,
        content_hash=p.content_hash,
    )


def product_to_proto(r: ProductRecord) -> indexer_pb2.Product:
    return indexer_pb2.Product(
        product_id=r.product_id,
        title=r.title,
        url=r.url,
        image_url=r.image_url,
        price=r.price,
        currency=r.currency,
        category=r.category,
        brand=r.brand,
        attributes_json=r.attributes_json,
        updated_at_ms=r.updated_at_ms,
        indexed_at_ms=r.indexed_at_ms,
        content_hash=r.content_hash,
        vector_count=r.vector_count,
    )


def vectors_from_proto(vectors: Iterable[indexer_pb2.Vector]) -> tuple[list[str], list[Vectors]]:
    """(image keys, one (dim,) float32 row per vector)."""
    keys, rows = [], []
    for v in vectors:
        keys.append(v.image_key)
        rows.append(np.asarray(v.values, dtype=np.float32))
    return keys, rows


def filter_from_proto(f: indexer_pb2.Filter) -> Filter:
    return Filter(
        categories=tuple(f.categories),
        brands=tuple(f.brands),
        min_price=f.min_price if f.HasField("min_price") else None,
        max_price=f.max_price if f.HasField("max_price") else None,
    )


def result_to_proto(matches: Iterable[Match]) -> indexer_pb2.SearchResult:
    return indexer_pb2.SearchResult(
        matches=[
            indexer_pb2.Match(
                product=product_to_proto(m.product), similarity=m.similarity, image_key=m.image_key
            )
            for m in matches
        ]
    )


def stats_to_proto(s: Stats) -> indexer_pb2.StatsResponse:
    return indexer_pb2.StatsResponse(
        products=s.products,
        vectors=s.vectors,
        model_id=s.model.model_id if s.model else "",
        dim=s.model.dim if s.model else 0,
    )
