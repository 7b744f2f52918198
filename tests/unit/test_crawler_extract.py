"""Product and link extraction from real-looking shop pages (JSON-LD, OpenGraph)."""

import hashlib
import json
from typing import Any

import pytest

from services.common.catalog import ProductMeta
from services.scraper.crawler.extract import extract, sanitize_id, url_id
from services.scraper.crawler.jsonld import parse_price

PAGE = "https://shop.example/products/alpro-soy?variant=1#reviews"


def page(head: str = "", body: str = "") -> str:
    return f"<!doctype html><html><head><title>Shop</title>{head}</head><body>{body}</body></html>"


def ld(doc: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(doc)}</script>'


SHOPIFY_PRODUCT = {
    "@context": "https://schema.org/",
    "@type": "Product",
    "name": "Alpro Fresh Soy Milk 1 L",
    "url": "https://shop.example/products/alpro-soy",
    "sku": "ALPRO 001/1L",
    "gtin13": "5411188112709",
    "brand": {"@type": "Brand", "name": "Alpro"},
    "category": ["Dairy alternatives", "Soy"],
    "description": "Plant-based &amp; naturally lactose free. " + "x" * 2000,
    "image": ["/cdn/alpro-front.jpg", "https://cdn.shop.example/alpro-back.jpg", "/cdn/alpro-front.jpg"],
    "offers": {
        "@type": "Offer",
        "price": "2.49",
        "priceCurrency": "eur",
        "availability": "https://schema.org/InStock",
    },
}


def test_json_ld_product_with_offer() -> None:
    html = page(ld(SHOPIFY_PRODUCT), '<a href="/collections/dairy">Dairy</a>')
    result = extract(html, PAGE)
    (product,) = result.products
    assert product.product_id == "ALPRO-001-1L"  # the sku, sanitised to the id rule
    meta = ProductMeta.model_validate(product.meta)
    assert meta.title == "Alpro Fresh Soy Milk 1 L"
    assert meta.url == "https://shop.example/products/alpro-soy"
    assert meta.image_url == "https://shop.example/cdn/alpro-front.jpg"  # resolved, deduplicated
    assert meta.image_urls == ["https://cdn.shop.example/alpro-back.jpg"]
    assert (meta.price, meta.currency) == (2.49, "EUR")
    assert (meta.brand, meta.category) == ("Alpro", "Dairy alternatives > Soy")
    description = meta.attributes["description"]
    assert isinstance(description, str)
    assert description.startswith("Plant-based & naturally")
    assert len(description) == 1000
    assert not product.listed
    assert result.links == ["https://shop.example/collections/dairy"]
    assert result.errors == []


def test_graph_with_image_object_and_aggregate_offer() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "Organization", "@id": "https://shop.example/#org", "name": "Shop"},
            {"@type": "WebPage", "@id": PAGE, "name": "Pineapple"},
            {
                "@type": ["Product", "Thing"],
                "name": "Pineapple",
                "productID": "isbn:ananas-7",
                "image": {"@type": "ImageObject", "contentUrl": "../img/pineapple.jpg", "width": 512},
                "offers": {
                    "@type": "AggregateOffer",
                    "lowPrice": 1.99,
                    "highPrice": 3.49,
                    "priceCurrency": "SEK",
                    "offerCount": 3,
                },
                "brand": "Del Monte",
            },
        ],
    }
    (product,) = extract(page(ld(graph)), "https://shop.example/fruit/pineapple.html").products
    assert product.product_id == "isbn:ananas-7"
    meta = ProductMeta.model_validate(product.meta)
    assert meta.image_url == "https://shop.example/img/pineapple.jpg"
    assert (meta.price, meta.currency, meta.brand) == (1.99, "SEK", "Del Monte")
    assert meta.url == "https://shop.example/fruit/pineapple.html"  # no url: the page's


def test_canonical_link_names_the_product_and_its_fallback_id() -> None:
    product = {"@type": "https://schema.org/Product", "name": "Red Beet", "image": "beet.jpg"}
    head = '<link rel="canonical" href="/veg/red-beet">' + ld(product)
    (found,) = extract(page(head), "https://shop.example/veg/red-beet?utm_source=x").products
    assert found.meta["url"] == "https://shop.example/veg/red-beet"
    expected = "url-" + hashlib.sha256(b"https://shop.example/veg/red-beet").hexdigest()[:16]
    assert found.product_id == expected == url_id("https://shop.example/veg/red-beet")
    assert found.meta["image_url"] == "https://shop.example/veg/beet.jpg"


def test_offers_list_and_price_specification() -> None:
    product = {
        "@type": "Product",
        "sku": 123,
        "name": "Bag",
        "image": {"url": "https://cdn.example/bag.jpg"},
        "offers": [
            {"@type": "Offer", "availability": "OutOfStock"},
            {"@type": "Offer", "priceSpecification": {"price": "1.299,00", "priceCurrency": "EUR"}},
        ],
    }
    (found,) = extract(page(ld(product)), PAGE).products
    assert (found.product_id, found.meta["price"], found.meta["currency"]) == ("123", 1299.0, "EUR")


def test_item_list_products_are_marked_as_listed() -> None:
    listing = {
        "@type": "ItemList",
        "itemListElement": [
            {
                "@type": "ListItem",
                "position": 1,
                "item": {"@type": "Product", "sku": "A1", "name": "A", "url": "/p/a", "image": "/a.jpg"},
            },
            {
                "@type": "ListItem",
                "position": 2,
                "item": {"@type": "Product", "sku": "B2", "name": "B", "image": "/b.jpg"},
            },
        ],
    }
    found = extract(page(ld(listing)), "https://shop.example/c/bags").products
    assert [(p.product_id, p.listed) for p in found] == [("A1", True), ("B2", False)]
    assert found[0].meta["url"] == "https://shop.example/p/a"


def test_opengraph_fallback() -> None:
    head = """
    <meta property="og:type" content="product">
    <meta property="og:title" content="Oatly Oatghurt">
    <meta property="og:url" content="https://shop.example/p/oatly">
    <meta property="og:image" content="/img/oatly.jpg">
    <meta property="og:image" content="/img/oatly-side.jpg">
    <meta property="og:description" content="Natural oat yoghurt">
    <meta property="product:price:amount" content="3.10">
    <meta property="product:price:currency" content="SEK">
    <meta property="product:brand" content="Oatly">
    <meta property="product:retailer_item_id" content="OAT-42">
    """
    (found,) = extract(page(head), "https://shop.example/p/oatly?ref=home").products
    meta = ProductMeta.model_validate(found.meta)
    assert found.product_id == "OAT-42"
    assert (meta.title, meta.url, meta.price, meta.currency, meta.brand) == (
        "Oatly Oatghurt",
        "https://shop.example/p/oatly",
        3.1,
        "SEK",
        "Oatly",
    )
    assert meta.image_url == "https://shop.example/img/oatly.jpg"
    assert meta.image_urls == ["https://shop.example/img/oatly-side.jpg"]
    assert meta.attributes == {"description": "Natural oat yoghurt"}


def test_og_image_without_product_signals_is_not_a_product() -> None:
    head = '<meta property="og:type" content="article"><meta property="og:image" content="/blog.jpg">'
    assert extract(page(head), PAGE).products == []


def test_json_ld_wins_over_opengraph() -> None:
    head = '<meta property="og:type" content="product"><meta property="og:title" content="OG">'
    product = {"@type": "Product", "name": "LD", "image": "/x.jpg"}
    (found,) = extract(page(head + ld(product)), PAGE).products
    assert found.meta["title"] == "LD"


def test_malformed_json_ld_is_reported_and_the_rest_still_read() -> None:
    broken = '<script type="application/ld+json">{"@type": "Product", "name": "Broken",}</script>'
    product = {"@type": "Product", "name": "Good", "sku": "G1", "image": "/g.jpg"}
    result = extract(page(broken + ld(product)), PAGE)
    assert [p.product_id for p in result.products] == ["G1"]
    (error,) = result.errors
    assert error.startswith("JSON-LD block 1 is not valid JSON: ")


def test_a_page_without_products_yields_only_its_links() -> None:
    body = """
      <a href="/c/bags#top">Bags</a> <a href="/c/bags">Bags again</a>
      <a href="mailto:shop@example.com">Mail</a> <a href="javascript:void(0)">JS</a>
      <a href="#reviews">Reviews</a> <a href="https://other.example/x">Partner</a>
      <a href="../about us.html">About</a>
    """
    organization = {"@context": "https://schema.org", "@type": "Organization", "name": "Shop"}
    result = extract(page(ld(organization), body), "https://shop.example/c/index.html")
    assert result.products == []
    assert result.links == [
        "https://shop.example/c/bags",
        "https://other.example/x",  # the frontier decides which domains are crawled
        "https://shop.example/about%20us.html",
    ]


def test_robots_meta_noindex_and_nofollow() -> None:
    product = {"@type": "Product", "name": "Hidden", "image": "/h.jpg"}
    noindex = extract(
        page('<meta name="robots" content="noindex">' + ld(product), '<a href="/a">a</a>'), PAGE
    )
    assert (noindex.products, noindex.links) == ([], ["https://shop.example/a"])
    nofollow = extract(
        page('<meta name="robots" content="NOFOLLOW">' + ld(product), '<a href="/a">a</a>'), PAGE
    )
    assert (len(nofollow.products), nofollow.links) == (1, [])


def test_base_href_resolves_relative_links_and_images() -> None:
    product = {"@type": "Product", "name": "P", "image": "img/p.jpg"}
    result = extract(page('<base href="https://cdn.shop.example/v2/">' + ld(product), '<a href="p/2">'), PAGE)
    assert result.links == ["https://cdn.shop.example/v2/p/2"]
    assert result.products[0].meta["image_url"] == "https://cdn.shop.example/v2/img/p.jpg"


def test_id_less_products_sharing_a_page_get_distinct_stable_ids() -> None:
    products = [{"@type": "Product", "name": n, "image": f"/{n}.jpg"} for n in ("Red", "Blue")]
    first = extract(page(ld(products)), PAGE).products
    again = extract(page(ld(products)), PAGE).products
    assert len({p.product_id for p in first}) == 2
    assert [p.product_id for p in first] == [p.product_id for p in again]


def test_image_count_is_capped() -> None:
    product = {"@type": "Product", "name": "P", "image": [f"/{i}.jpg" for i in range(40)]}
    (found,) = extract(page(ld(product)), PAGE, max_images=8).products
    assert found.meta["image_url"] == "https://shop.example/0.jpg"
    assert len(found.meta["image_urls"]) == 7


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ALPRO-1", "ALPRO-1"),
        ("SKU 12/34", "SKU-12-34"),
        ("--x", "x"),
        ("ünïcode", "n-code"),
        ("///", None),
        ("a" * 200, "a" * 128),
    ],
)
def test_sanitize_id(raw: str, expected: str | None) -> None:
    assert sanitize_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (19.99, 19.99),
        (5, 5.0),
        ("19.99", 19.99),
        ("1,299.00", 1299.0),
        ("1.299,00", 1299.0),
        ("19,99", 19.99),
        ("1,299", 1299.0),
        ("$ 4.50", 4.5),
        ("free", None),
        ("", None),
        (True, None),
        (None, None),
    ],
)
def test_parse_price(raw: Any, expected: float | None) -> None:
    assert parse_price(raw) == expected
