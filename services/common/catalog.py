"""Catalog product metadata: one validation model and one content hash for every way a product
comes in (PUT at the gateway, feeds, crawled pages), so the same product always hashes the same."""

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.gen.visualsearch.v1 import indexer_pb2

MAX_IMAGES_PER_PRODUCT = 32
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


def check_absolute_url(value: str) -> str:
    """An absolute http(s) URL with a host (a feed or a page to crawl), or ValueError saying why."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- parsing the port validates it
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
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
        max_length=MAX_IMAGES_PER_PRODUCT,
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


_HASH_VERSION = b"visualsearch.product.v1\n"


def canonical_json(meta: ProductMeta) -> str:
    return json.dumps(meta.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(meta: ProductMeta, images: Sequence[bytes]) -> str:
    """sha256 over the canonical metadata and every image's bytes, in order."""
    return content_hash_from_digests(meta, [hashlib.sha256(data).digest() for data in images])


def content_hash_from_digests(meta: ProductMeta, image_digests: Sequence[bytes]) -> str:
    """:func:`content_hash` from the images' sha256 digests, for a writer that kept only those
    (an ingest worker whose conditional GET answered 304 Not Modified)."""
    digest = hashlib.sha256(_HASH_VERSION)
    digest.update(canonical_json(meta).encode())
    for image_digest in image_digests:
        # Length-free framing: each image contributes its own fixed-size digest.
        digest.update(b"\n" + image_digest)
    return digest.hexdigest()


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def image_urls(meta: ProductMeta) -> list[str]:
    return list(dict.fromkeys(u for u in [meta.image_url, *meta.image_urls] if u))


def product_message(product_id: str, meta: ProductMeta, digest: str) -> indexer_pb2.Product:
    return indexer_pb2.Product(
        product_id=product_id,
        title=meta.title,
        url=meta.url,
        image_url=meta.display_image_url(),
        price=meta.price,
        currency=meta.currency,
        category=meta.category,
        brand=meta.brand,
        attributes_json=json.dumps(meta.attributes, sort_keys=True, ensure_ascii=False),
        content_hash=digest,
    )
