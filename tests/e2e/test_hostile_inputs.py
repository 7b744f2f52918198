"""Hostile requests of every kind against the real stack: each gets its precise 4xx with a
message and a stable code, never a 5xx, and the stack stays ready.

The table complements test_bad_input.py (odd image files): form fields, query parameters, JSON
bodies, path parameters, URLs (SSRF), feeds, crawls and videos.
"""

import io
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS

PHOTO = (DATASETS / "scenes/extra/bus.jpg").read_bytes()
PRIVATE_FEED = {"feed_url": "http://10.0.0.1/feed.csv"}


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height pixels (a decompression-bomb header)."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def _photo(**data: Any) -> dict[str, Any]:
    return {"files": {"image": ("q.jpg", PHOTO, "image/jpeg")}, "data": data}


def _put(**data: Any) -> dict[str, Any]:
    return {"files": {"image": ("p.jpg", PHOTO, "image/jpeg")}, "data": {"title": "x", **data}}


def _json(raw: bytes) -> dict[str, Any]:
    return {"content": raw, "headers": {"content-type": "application/json"}}


# name -> (method, path, request keyword arguments, expected status)
CASES: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "search: neither image nor image_url": ("POST", "/v1/search", {"data": {"k": "3"}}, 422),
    "search: both image and image_url": (
        "POST",
        "/v1/search",
        _photo(image_url="http://a.example/a.jpg"),
        422,
    ),
    "search: text sent as image/jpeg": (
        "POST",
        "/v1/search",
        {"files": {"image": ("a.jpg", b"hi" * 99)}},
        422,
    ),
    "search: SVG": ("POST", "/v1/search", {"files": {"image": ("a.svg", b"<svg xmlns='x'/>")}}, 422),
    "search: PNG header claiming 60000x60000": (
        "POST",
        "/v1/search",
        {"files": {"image": ("a.png", _png_claiming(60000, 60000))}},
        422,
    ),
    "search: k=0": ("POST", "/v1/search", _photo(k="0"), 422),
    "search: k not a number": ("POST", "/v1/search", _photo(k="abc"), 422),
    "search: k=10^30": ("POST", "/v1/search", _photo(k="1" + "0" * 30), 422),
    "search: box outside the image": ("POST", "/v1/search", _photo(box="5000,5000,6000,6000"), 422),
    "search: box with 3 numbers": ("POST", "/v1/search", _photo(box="1,2,3"), 422),
    "search: box with NaN": ("POST", "/v1/search", _photo(box="nan,0,10,10"), 422),
    "search: min_price > max_price": ("POST", "/v1/search", _photo(min_price="10", max_price="1"), 422),
    "search: min_price=inf": ("POST", "/v1/search", _photo(min_price="inf"), 422),
    "search: min_similarity=2": ("POST", "/v1/search", _photo(min_similarity="2"), 422),
    "search: 2000 category fields": ("POST", "/v1/search", _photo(category=["x"] * 2000), 400),
    "search: image_url ftp://": ("POST", "/v1/search", {"data": {"image_url": "ftp://a.example/a.jpg"}}, 422),
    "search: image_url cloud metadata": (
        "POST",
        "/v1/search",
        {"data": {"image_url": "http://169.254.169.254/latest/meta-data/"}},
        422,
    ),
    "search: image_url private network": (
        "POST",
        "/v1/search",
        {"data": {"image_url": "http://10.0.0.1/a.jpg"}},
        422,
    ),
    "search: image_url with a NUL": ("POST", "/v1/search", {"data": {"image_url": "http://a\x00b/"}}, 422),
    "search: image_url of 100k chars": (
        "POST",
        "/v1/search",
        {"data": {"image_url": "http://a.example/" + "a" * 100_000}},
        422,
    ),
    "search: JSON body instead of a form": (
        "POST",
        "/v1/search",
        {"json": {"image_url": "http://a.example/a"}},
        422,
    ),
    "put: product id of 300 chars": ("PUT", "/v1/products/" + "a" * 300, _put(), 422),
    "put: product id with a NUL": ("PUT", "/v1/products/a%00b", _put(), 422),
    "put: no image": ("PUT", "/v1/products/p1", {"data": {"title": "x"}}, 422),
    "put: negative price": ("PUT", "/v1/products/p1", _put(price="-5"), 422),
    "put: price NaN": ("PUT", "/v1/products/p1", _put(price="nan"), 422),
    "put: title of 1 MB": ("PUT", "/v1/products/p1", _put(title="x" * 1_000_000), 422),
    "put: 9 images": (
        "PUT",
        "/v1/products/p1",
        {"files": [("image", ("a.jpg", PHOTO))] * 9, "data": {"title": "x"}},
        422,
    ),
    "put: JSON with wrong types": ("PUT", "/v1/products/p1", {"json": {"title": 5, "image_urls": "x"}}, 422),
    "put: JSON array body": ("PUT", "/v1/products/p1", _json(b"[1,2,3]"), 422),
    "put: malformed JSON": ("PUT", "/v1/products/p1", _json(b"{"), 422),
    "get: unknown product": ("GET", "/v1/products/no-such-product", {}, 404),
    "list: limit=-1": ("GET", "/v1/products?limit=-1", {}, 422),
    "list: forged cursor": ("GET", "/v1/products?cursor=%25%25%25", {}, 422),
    "similar: k=1000000": ("GET", "/v1/products/x/similar?k=1000000", {}, 422),
    "import: neither form nor JSON": ("POST", "/v1/imports", {"data": {}}, 415),
    "import: empty feed file": ("POST", "/v1/imports", {"files": {"feed": ("f.csv", b"")}}, 422),
    "import: feed_url on a private address": ("POST", "/v1/imports", {"json": PRIVATE_FEED}, 422),
    "import: unknown mode": (
        "POST",
        "/v1/imports",
        {"files": {"feed": ("f.csv", b"product_id\na\n")}, "data": {"mode": "x"}},
        422,
    ),
    "import: malformed job id": ("GET", "/v1/imports/not-a-job", {}, 422),
    "crawl: no start_urls": ("POST", "/v1/crawls", {"json": {}}, 422),
    "crawl: file:// start URL": ("POST", "/v1/crawls", {"json": {"start_urls": ["file:///etc/passwd"]}}, 422),
    "crawl: cloud metadata start URL": (
        "POST",
        "/v1/crawls",
        {"json": {"start_urls": ["http://169.254.169.254/latest/"]}},
        422,
    ),
    "crawl: max_pages=10^12": (
        "POST",
        "/v1/crawls",
        {"json": {"start_urls": ["http://a.example/"], "max_pages": 10**12}},
        422,
    ),
    "frame: negative t": (
        "POST",
        "/v1/shop/frame",
        {"files": {"video": ("v.mp4", b"xx")}, "data": {"t": "-1"}},
        422,
    ),
    "frame: an image sent as video": (
        "POST",
        "/v1/shop/frame",
        {"files": {"video": ("v.mp4", PHOTO)}, "data": {"t": "1"}},
        415,
    ),
    "videos: malformed video id": ("GET", "/v1/videos/nope", {}, 422),
    "method: PATCH a product": ("PATCH", "/v1/products/p1", {}, 405),
    "path: ../ out of /media/": ("GET", "/media/..%2f..%2fetc/passwd", {}, 404),
    "path: ../ out of /static/": ("GET", "/static/..%2f..%2fapp.py", {}, 404),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_its_4xx(running: RunningStack, name: str) -> None:
    method, path, kwargs, status = CASES[name]
    response = running.client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"], body
    assert body["code"], body


def test_the_stack_is_still_ready_and_unchanged(running: RunningStack) -> None:
    for method, path, kwargs, _ in CASES.values():
        running.client.request(method, path, **kwargs)
    assert running.client.get("/readyz").status_code == 200
    assert running.client.get("/v1/products/p1").status_code == 404  # no rejected PUT left a product
