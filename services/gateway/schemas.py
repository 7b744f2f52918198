"""Request and response models: one source of truth for validation and for the OpenAPI schema."""

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.catalog import (
    ProductMeta,
)
from services.common.gen.visualsearch.v1 import indexer_pb2
from services.gateway.config import MAX_IMAGES_LIMIT


class ProductJsonBody(ProductMeta):
    """PUT body as JSON: metadata plus images inline (base64) or by URL."""

    image: str | None = Field(default=None, description="one image file, base64 (a data: URL is accepted)")
    images: list[str] = Field(
        default_factory=list, max_length=MAX_IMAGES_LIMIT, description="more image files, base64"
    )


class ProductSummary(BaseModel):
    """What a search result shows of a product."""

    product_id: str
    title: str
    url: str
    image_url: str
    price: float | None
    currency: str
    category: str
    brand: str

    @staticmethod
    def fields_of(product: indexer_pb2.Product) -> dict[str, Any]:
        return {
            "product_id": product.product_id,
            "title": product.title,
            "url": product.url,
            "image_url": product.image_url,
            "price": product.price if product.HasField("price") else None,
            "currency": product.currency,
            "category": product.category,
            "brand": product.brand,
        }


class ProductOut(ProductSummary):
    attributes: dict[str, Any]
    content_hash: str
    vector_count: int
    updated_at_ms: int
    indexed_at_ms: int

    @classmethod
    def from_proto(cls, product: indexer_pb2.Product) -> "ProductOut":
        return cls(
            **cls.fields_of(product),
            attributes=_attributes(product.attributes_json),
            content_hash=product.content_hash,
            vector_count=product.vector_count,
            updated_at_ms=product.updated_at_ms,
            indexed_at_ms=product.indexed_at_ms,
        )


def _attributes(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class MatchOut(ProductSummary):
    similarity: float

    @classmethod
    def from_proto(cls, match: indexer_pb2.Match) -> "MatchOut":
        return cls(**cls.fields_of(match.product), similarity=round(float(match.similarity), 6))


class ImageSize(BaseModel):
    width: int = Field(description="original width after EXIF orientation")
    height: int = Field(description="original height after EXIF orientation")


class ObjectOut(BaseModel):
    box: list[float] = Field(
        description="x1, y1, x2, y2 in original image pixels", min_length=4, max_length=4
    )
    label: str
    confidence: float
    matches: list[MatchOut]


class Timings(BaseModel):
    decode: float
    detect: float
    embed: float
    search: float
    total: float


class SearchResponse(BaseModel):
    image: ImageSize
    objects: list[ObjectOut] = Field(description="most prominent first (confidence x share of image area)")
    timings_ms: Timings


class SimilarResponse(BaseModel):
    product_id: str
    matches: list[MatchOut]


class PutProductResponse(BaseModel):
    status: Literal["created", "updated", "unchanged"]
    product: ProductOut


class ProductList(BaseModel):
    products: list[ProductOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class StatsOut(BaseModel):
    products: int
    vectors: int
    model_id: str
    dim: int


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="precise message (a list for field errors)")
    code: str = Field(description="stable machine-readable error code")


class ReadinessOut(BaseModel):
    status: Literal["ready", "not_ready"]
    services: dict[str, str] = Field(
        description="gRPC health status of each backend (and of Redis when API keys are on)"
    )


class DeletedOut(BaseModel):
    product_id: str
    vectors_removed: int
