"""One feed row (a CSV record or a JSONL object) to a validated Item, or the precise reason why not.

A row is a list of (column, value) pairs rather than a dict, so repeated ``image_url`` columns
(or keys) all count. CSV values are strings; JSONL values are whatever the JSON holds.
"""

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from pydantic import ValidationError

from services.common.catalog import (
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    ProductMeta,
)
from services.common.errors import InvalidInput
from services.common.ids import validate_product_id
from services.scraper.items import Item

Pairs = list[tuple[str, Any]]

_META_FIELDS = frozenset({"title", "url", "price", "currency", "category", "brand"})
_EXTRA_IMAGE = re.compile(r"image_url_(\d+)")
_URL_SEPARATORS = re.compile(r"[|\s]+")
# "12.99 EUR", as Google Merchant feeds write prices.
_PRICE_WITH_CURRENCY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s+([A-Za-z]{3})\s*$")


@dataclass(frozen=True)
class RowError:
    """A feed row that did not become an item. ``code`` is stable (see ``to_item``)."""

    row: int  # feed line number (CSV: the line the record starts on; the header is line 1)
    product_id: str  # "" when the row has none (or none readable)
    code: str
    message: str


@dataclass(frozen=True)
class RowRules:
    source: str  # the feed the items come from (sync mode deletes per source)
    base_url: str | None = None  # the feed's URL: relative URLs in it resolve against this
    max_images: int = 8


class _Reject(Exception):
    def __init__(self, code: str, message: str, product_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.product_id = product_id  # what the row holds, when it is not a valid id


def to_item(pairs: Pairs, row: int, rules: RowRules) -> Item | RowError:
    """Codes: missing_product_id, invalid_product_id, invalid_field, invalid_type, no_image,
    too_many_images."""
    product_id = ""
    try:
        product_id = _product_id(pairs)
        meta = _meta(pairs, rules)
    except _Reject as exc:
        return RowError(row, product_id or exc.product_id, exc.code, exc.message)
    return Item(product_id, meta.model_dump(mode="json", exclude_defaults=True), rules.source, row)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _product_id(pairs: Pairs) -> str:
    values = [v for k, v in pairs if k.strip().lower() == "product_id" and _present(v)]
    if not values:
        raise _Reject("missing_product_id", "the row has no product_id")
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Reject("invalid_type", f"product_id must be a string, got {_json_type(value)}")
    try:
        return validate_product_id(str(value).strip())
    except InvalidInput as exc:
        raise _Reject("invalid_product_id", exc.message, str(value).strip()[:128]) from None


def _meta(pairs: Pairs, rules: RowRules) -> ProductMeta:
    fields: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    images: list[tuple[int, str]] = []  # (order, url): image_url first, then image_url_N, then the list
    for key, value in pairs:
        name = key.strip()
        lower = name.lower()
        if not name or lower == "product_id" or not _present(value):
            continue
        if lower == "image_url" or _EXTRA_IMAGE.fullmatch(lower):
            number = int(lower.rpartition("_")[2]) if lower != "image_url" else 1
            images += [(number, url) for url in _urls(value, lower, split=isinstance(value, list))]
        elif lower == "image_urls":
            images += [(1_000_000, url) for url in _urls(value, lower, split=True)]
        elif lower in _META_FIELDS:
            fields[lower] = value
        elif lower == "attributes":
            attributes = {**_attributes_object(value), **attributes}
        else:
            attributes.setdefault(name[:MAX_ATTRIBUTE_KEY_CHARS], _attribute(name, value))
    _split_price(fields)
    urls = list(dict.fromkeys(_resolve(url, "image_url", rules.base_url) for _, url in _stable(images)))
    if not urls:
        raise _Reject("no_image", "the row has no image URL (image_url, image_url_2... or image_urls)")
    if len(urls) > rules.max_images:
        raise _Reject("too_many_images", f"the row has {len(urls)} images; at most {rules.max_images}")
    if isinstance(fields.get("url"), str):
        fields["url"] = _resolve(fields["url"], "url", rules.base_url)
    capped = dict(list(attributes.items())[:MAX_ATTRIBUTES])
    raw = {**fields, "image_url": urls[0], "image_urls": urls[1:], "attributes": capped}
    try:
        return ProductMeta.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation(exc) from None


def _stable(images: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return sorted(images, key=lambda pair: pair[0])  # sorted() is stable: same-number URLs keep order


def _urls(value: Any, name: str, split: bool) -> list[str]:
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise _Reject("invalid_type", f"{name} must be a list of URL strings")
        return [v.strip() for v in value if v.strip()]
    if not isinstance(value, str):
        raise _Reject("invalid_type", f"{name} must be a URL string, got {_json_type(value)}")
    text = value.strip()
    if split and text.startswith("["):
        try:
            return _urls(json.loads(text), name, split=True)
        except ValueError:
            raise _Reject("invalid_field", f"{name} starts with '[' but is not a JSON list") from None
    return [u for u in _URL_SEPARATORS.split(text) if u] if split else [text]


def _resolve(url: str, name: str, base_url: str | None) -> str:
    if urlsplit(url).scheme:
        return url
    if base_url:
        return urljoin(base_url, url)  # "/img/a.jpg", "img/a.jpg", "//cdn.example/a.jpg"
    if url.startswith("/") and not url.startswith("//"):
        return url  # site-relative, e.g. /media/... served by the gateway
    raise _Reject(
        "invalid_field", f"{name}: {url[:200]!r} is a relative URL; it needs a feed_url to resolve against"
    )


def _split_price(fields: dict[str, Any]) -> None:
    price = fields.get("price")
    if isinstance(price, str) and (match := _PRICE_WITH_CURRENCY.match(price)):
        fields["price"] = match.group(1)
        fields.setdefault("currency", match.group(2))


def _attribute(name: str, value: Any) -> Any:
    if isinstance(value, list | dict):
        raise _Reject("invalid_type", f"{name}: attribute values must be scalars, got {_json_type(value)}")
    return value[:MAX_ATTRIBUTE_VALUE_CHARS] if isinstance(value, str) else value


def _attributes_object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _Reject("invalid_field", "attributes must be a JSON object") from None
    if not isinstance(value, dict):
        raise _Reject("invalid_type", f"attributes must be an object, got {_json_type(value)}")
    return {str(k)[:MAX_ATTRIBUTE_KEY_CHARS]: _attribute(str(k), v) for k, v in value.items()}


def _from_validation(exc: ValidationError) -> _Reject:
    error = exc.errors(include_url=False)[0]
    field = str(error["loc"][0]) if error["loc"] else "row"
    if field == "image_urls":
        field = "image_url"
    code = "invalid_type" if error["type"].endswith("_type") else "invalid_field"
    return _Reject(code, f"{field}: {error['msg']}")


def _json_type(value: Any) -> str:
    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "a boolean"),  # before int: a bool is an int
        ((int, float), "a number"),
        (list, "a list"),
        (dict, "an object"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)
