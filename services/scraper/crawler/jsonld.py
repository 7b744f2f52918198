"""schema.org Product in JSON-LD: finding Product nodes and reading their fields (pure).

JSON-LD in the wild is loose: ``@type`` may be a list or a full IRI, values may be strings,
lists or nested objects, products hide in ``@graph`` or in ItemList/ListItem listings. Readers
here accept all of those and return plain values; validation is the caller's job.
"""

import html
import re
from collections.abc import Iterator
from typing import Any

PRODUCT_TYPES = frozenset({"product", "individualproduct", "productmodel", "productgroup", "someproducts"})
ID_FIELDS = ("sku", "productID", "gtin13", "gtin14", "gtin12", "gtin8", "gtin", "mpn")
_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+")
MAX_NESTING = 32  # deeper documents are not real pages; stop rather than recurse without end


def types_of(node: dict[str, Any]) -> set[str]:
    """``@type`` as lower-case local names: "Product", ["Product", "Thing"], "https://schema.org/Product"."""
    raw = node.get("@type", [])
    names = raw if isinstance(raw, list) else [raw]
    return {str(n).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower() for n in names}


def product_nodes(doc: Any, listed: bool = False, depth: int = 0) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every Product node in a JSON-LD document, with whether it sits in an ItemList.

    A Product's own properties are not searched (its isRelatedTo/isSimilarTo products are not
    products of this page); anything else (@graph, WebPage.mainEntity, ItemList) is."""
    if depth > MAX_NESTING:
        return
    if isinstance(doc, list):
        for item in doc:
            yield from product_nodes(item, listed, depth + 1)
        return
    if not isinstance(doc, dict):
        return
    kinds = types_of(doc)
    if kinds & PRODUCT_TYPES:
        yield doc, listed
        return
    in_list = listed or "itemlist" in kinds
    for key, value in doc.items():
        if key != "@context" and isinstance(value, dict | list):
            yield from product_nodes(value, in_list, depth + 1)


def text(value: Any) -> str:
    """A plain string from a JSON-LD value: first of a list, ``name``/``@value`` of an object;
    HTML entities some shops leave in ("Tom &amp; Co") are decoded."""
    if isinstance(value, list):
        return next((t for t in (text(v) for v in value) if t), "")
    if isinstance(value, dict):
        return text(value.get("name") or value.get("@value") or "")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return " ".join(html.unescape(str(value)).split())
    return ""


def image_refs(value: Any) -> list[str]:
    """Image URLs from a string, an ImageObject (url/contentUrl), or a list of either."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [url for item in value for url in image_refs(item)]
    if isinstance(value, dict):
        return image_refs(value.get("url") or value.get("contentUrl") or value.get("@id") or "")
    return []


def product_id(node: dict[str, Any]) -> str:
    """The first identifier the product states (sku, productID, gtin*, mpn), or ""."""
    for name in ID_FIELDS:
        value = text(node.get(name))
        if value:
            return value
    return ""


def category(value: Any) -> str:
    """A category string; a list is a path ("Food > Fruit")."""
    if isinstance(value, list):
        return " > ".join(t for t in (text(v) for v in value) if t)
    return text(value)


def offer(value: Any) -> tuple[Any, str]:
    """(price, currency) of the first priced Offer/AggregateOffer: price, lowPrice, or a
    priceSpecification's price. The price is returned raw (number or text) for parse_price."""
    offers = value if isinstance(value, list) else [value]
    for item in offers:
        if not isinstance(item, dict):
            continue
        spec = item.get("priceSpecification")
        spec = spec[0] if isinstance(spec, list) and spec else spec
        spec = spec if isinstance(spec, dict) else {}
        for source in (item, spec):
            for key in ("price", "lowPrice"):
                price = source.get(key)
                if price not in (None, ""):
                    currency = text(source.get("priceCurrency") or item.get("priceCurrency"))
                    return price, currency
    return None, ""


def parse_price(value: Any) -> float | None:
    """A price from a JSON-LD/OG value: 19.99, "19.99", "1,299.00", "19,99", "$ 19.99"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value if ch.isdigit() or ch in ",.-")
    if "," in cleaned and "." in cleaned:
        # The separator that comes last is the decimal one: "1,299.00" or "1.299,00".
        thousands = "," if cleaned.rfind(",") < cleaned.rfind(".") else "."
        cleaned = cleaned.replace(thousands, "").replace(",", ".")
    elif "," in cleaned:
        # "1,299" groups thousands; "19,99" has a decimal comma.
        grouped = _THOUSANDS.fullmatch(cleaned) is not None
        cleaned = cleaned.replace(",", "" if grouped else ".")
    try:
        return float(cleaned)
    except ValueError:
        return None
