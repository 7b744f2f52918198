"""Products and links of one HTML page (pure).

Products come from schema.org Product JSON-LD; a page without any falls back to OpenGraph
(og:type product, or og:image with a product price). Each product becomes a :class:`Candidate`:
an id and ProductMeta fields, not yet validated (the crawl validates and records the reason).
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from services.common.catalog import MAX_ATTRIBUTE_VALUE_CHARS, MAX_IMAGES_PER_PRODUCT
from services.common.ids import PRODUCT_ID_PATTERN
from services.scraper.crawler import jsonld
from services.scraper.crawler.frontier import normalize_url
from services.scraper.crawler.page import PageParts, parse_page

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@-]+")
_PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)
_WRAPPERS = re.compile(r"^\s*(<!--|//\s*<!\[CDATA\[)|(-->|//\s*\]\]>)\s*$")
OG_PRODUCT_TYPES = frozenset({"product", "og:product", "product.item", "product.group"})


@dataclass(frozen=True)
class Candidate:
    product_id: str
    meta: dict[str, Any]  # ProductMeta fields, not validated yet
    listed: bool = False  # found in a listing (ItemList) that links to the product's own page


@dataclass(frozen=True)
class Extraction:
    links: list[str] = field(default_factory=list)  # normalised, unique, in document order
    products: list[Candidate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # JSON-LD blocks that could not be read


def extract(html: str, page_url: str, max_images: int = MAX_IMAGES_PER_PRODUCT) -> Extraction:
    parts = parse_page(html)
    base = (normalize_url(parts.base, page_url) if parts.base else None) or page_url
    canonical = (normalize_url(parts.canonical, base) if parts.canonical else None) or page_url
    links = [] if parts.nofollow else _unique(normalize_url(href, base) for href in parts.links)
    if parts.noindex:
        return Extraction(links=links)
    docs, errors = _json_ld(parts.json_ld)
    nodes = [found for doc in docs for found in jsonld.product_nodes(doc)]
    products = [
        _from_json_ld(node, listed, base, canonical, len(nodes) > 1, max_images) for node, listed in nodes
    ]
    if not products:
        products = [p for p in [_from_opengraph(parts, base, canonical, max_images)] if p is not None]
    return Extraction(links=links, products=products, errors=errors)


def sanitize_id(raw: str) -> str | None:
    """A product id from page data under the project's id rule ("SKU 12/34" -> "SKU-12-34")."""
    cleaned = _ID_UNSAFE.sub("-", raw.strip()).lstrip("._:@-")[:128]
    return cleaned if _PRODUCT_ID.fullmatch(cleaned) else None


def url_id(key: str) -> str:
    """A stable id for a product that states none: derived from its canonical URL."""
    return "url-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _unique(urls: Any) -> list[str]:
    return list(dict.fromkeys(u for u in urls if u))


def _json_ld(blocks: list[str]) -> tuple[list[Any], list[str]]:
    docs: list[Any] = []
    errors: list[str] = []
    for number, block in enumerate(blocks, 1):
        text = _WRAPPERS.sub("", block.strip())
        if not text.strip():
            continue
        try:
            # strict=False: raw newlines inside strings are common and harmless.
            docs.append(json.loads(text, strict=False))
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            errors.append(f"JSON-LD block {number} is not valid JSON: {exc}")
    return docs, errors


def _images(refs: list[str], base: str, max_images: int) -> dict[str, Any]:
    urls = _unique(normalize_url(ref, base) for ref in refs)[:max_images]
    return {"image_url": urls[0] if urls else "", "image_urls": urls[1:]}


def _description(value: str) -> dict[str, Any]:
    return {"attributes": {"description": value[:MAX_ATTRIBUTE_VALUE_CHARS]}} if value else {}


def _from_json_ld(
    node: dict[str, Any], listed: bool, base: str, canonical: str, several: bool, max_images: int
) -> Candidate:
    own_url = normalize_url(jsonld.text(node.get("url")), base) if node.get("url") else None
    url = own_url or canonical
    title = jsonld.text(node.get("name"))
    price, currency = jsonld.offer(node.get("offers"))
    meta = {
        "title": title,
        "url": url,
        **_images(jsonld.image_refs(node.get("image")), base, max_images),
        "price": jsonld.parse_price(price),
        "currency": currency,
        "brand": jsonld.text(node.get("brand")),
        "category": jsonld.category(node.get("category")),
        **_description(jsonld.text(node.get("description"))),
    }
    # Several id-less products sharing the page URL are told apart by their names.
    key = url if own_url or not several else f"{url}\n{title}"
    product_id = sanitize_id(jsonld.product_id(node)) or url_id(key)
    return Candidate(product_id, meta, listed=listed and url not in (canonical, base))


def _from_opengraph(parts: PageParts, base: str, canonical: str, max_images: int) -> Candidate | None:
    price = parts.first("product:price:amount", "og:price:amount")
    images = (
        parts.meta.get("og:image") or parts.meta.get("og:image:url") or parts.meta.get("og:image:secure_url")
    )
    if parts.first("og:type").lower() not in OG_PRODUCT_TYPES and not (images and price):
        return None
    og_url = parts.first("og:url")
    url = (normalize_url(og_url, base) if og_url else None) or canonical
    meta = {
        "title": jsonld.text(parts.first("og:title") or parts.title),
        "url": url,
        **_images(images or [], base, max_images),
        "price": jsonld.parse_price(price) if price else None,
        "currency": parts.first("product:price:currency", "og:price:currency"),
        "brand": jsonld.text(parts.first("product:brand", "og:brand")),
        "category": jsonld.text(parts.first("product:category")),
        **_description(jsonld.text(parts.first("og:description"))),
    }
    stated = parts.first("product:retailer_item_id", "product:sku")
    return Candidate(sanitize_id(stated) or url_id(url), meta)
