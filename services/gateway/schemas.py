"""Request and response models: one source of truth for validation and for the OpenAPI schema."""

import json
import math
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.gen.visualsearch.v1 import indexer_pb2
from services.gateway.config import MAX_IMAGES_LIMIT

MAX_URL_CHARS = 2048
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY_CHARS = 100
MAX_ATTRIBUTE_VALUE_CHARS = 1000
MAX_ATTRIBUTES_BYTES = 64 * 1024  # what the indexer stores

Scalar = str | int | float | bool | None


def check_url(value: str) -> str:
    """An absolute http(s) URL or a site-relative path ("/media/..."); empty means none."""
    if not value:
        return value
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"must be at most {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain spaces or control characters")
    if value.startswith("/"):
        if value.startswith("//"):
            raise ValueError("a site-relative path must start with a single '/'")
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an absolute http(s) URL or a site-relative path starting with '/'")
    return value


class ProductMeta(BaseModel):
    """Catalog metadata of a product; validates both the JSON and the multipart PUT body."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(default="", max_length=500)
    url: str = Field(
        default="", max_length=MAX_URL_CHARS, description="product page: absolute http(s) URL or site path"
    )
    image_url: str = Field(
        default="", max_length=MAX_URL_CHARS, description="display image; fetched when none is uploaded"
    )
    image_urls: list[Annotated[str, Field(max_length=MAX_URL_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_IMAGES_LIMIT,
        description="more images to fetch and embed when none is uploaded",
    )
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: str = Field(default="", pattern=r"^([A-Za-z]{3})?$", description="ISO 4217 code")
    category: str = Field(default="", max_length=200)
    brand: str = Field(default="", max_length=200)
    attributes: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description=f"flat object of at most {MAX_ATTRIBUTES} scalar values",
    )

    @field_validator("url", "image_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("image_urls")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        return [check_url(v.strip()) for v in values if v.strip()]

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("price", mode="before")
    @classmethod
    def _blank_price(cls, value: Any) -> Any:
        # An empty form field means "no price", not "price is not a number".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_json(cls, value: Any) -> Any:
        # Multipart sends the object as a JSON string; JSON bodies send the object itself.
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object") from None
        return value

    @field_validator("attributes")
    @classmethod
    def _flat_attributes(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} keys are allowed, got {len(value)}")
        for key, item in value.items():
            if not 1 <= len(key) <= MAX_ATTRIBUTE_KEY_CHARS:
                raise ValueError(f"keys must be 1-{MAX_ATTRIBUTE_KEY_CHARS} characters")
            if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_VALUE_CHARS:
                raise ValueError(f"{key!r}: string values must be at most {MAX_ATTRIBUTE_VALUE_CHARS} chars")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{key!r}: numbers must be finite")
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"must be at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
        return value

    def display_image_url(self) -> str:
        return self.image_url or (self.image_urls[0] if self.image_urls else "")


class ProductJsonBody(ProductMeta):
    """PUT body as JSON: metadata plus images inline (base64) or by URL."""

    image: str | None = Field(default=None, description="one image file, base64 (a data: URL is accepted)")
    images: list[str] = Field(
        default_factory=list, max_length=MAX_IMAGES_LIMIT, description="more image files, base64"
    )


class ProductOut(BaseModel):
    product_id: str
    title: str
    url: str
    image_url: str
    price: float | None
    currency: str
    category: str
    brand: str
    attributes: dict[str, Any]
    content_hash: str
    vector_count: int
    updated_at_ms: int
    indexed_at_ms: int

    @classmethod
    def from_proto(cls, product: indexer_pb2.Product) -> "ProductOut":
        return cls(
            product_id=product.product_id,
            title=product.title,
            url=product.url,
            image_url=product.image_url,
            price=product.price if product.HasField("price") else None,
            currency=product.currency,
            category=product.category,
            brand=product.brand,
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


class MatchOut(BaseModel):
    product_id: str
    title: str
    url: str
    image_url: str
    price: float | None
    currency: str
    category: str
    brand: str
    similarity: float

    @classmethod
    def from_proto(cls, match: indexer_pb2.Match) -> "MatchOut":
        p = match.product
        return cls(
            product_id=p.product_id,
            title=p.title,
            url=p.url,
            image_url=p.image_url,
            price=p.price if p.HasField("price") else None,
            currency=p.currency,
            category=p.category,
            brand=p.brand,
            similarity=round(float(match.similarity), 6),
        )


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
    services: dict[str, str] = Field(description="gRPC health status of each backend")


class DeletedOut(BaseModel):
    product_id: str
    vectors_removed: int
