"""Hostile requests of every kind against the real stack: each gets its precise 4xx with a
message and a stable code, never a 5xx, and the stack stays ready.

The table complements test_bad_input.py (odd image files): form fields, query parameters, JSON
bodies, path parameters, URLs (SSRF), feeds, crawls, broken or inflated files of every accepted
image format, and videos. Every file is made here. Formats that are supported get their 200 in
``test_every_supported_format_is_searched`` below.
"""

import io
import struct
import zlib
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services.common.images import heif_supported
from tests.e2e.conftest import RunningStack
from tests.paths import ARTIFACTS, DATASETS
from tests.unit.test_common_images_formats import png_16bit, png_chunk
from tests.unit.test_video_container import audio_only, avi_claiming, clip, overlong_clip, zero_frame_video

PHOTO = (DATASETS / "scenes/extra/bus.jpg").read_bytes()
PRIVATE_FEED = {"feed_url": "http://10.0.0.1/feed.csv"}


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height pixels (a decompression-bomb header)."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def _encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    heif_supported()  # registers the HEIF writer too
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _small(mode: str = "RGB") -> Image.Image:
    return Image.open(io.BytesIO(PHOTO)).convert(mode).resize((96, 128))


def _gif_claiming_65535_squared() -> bytes:
    data = bytearray(_encode(_small("P"), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen size
    return bytes(data)


def _png_text_bomb() -> bytes:
    png = _encode(_small(), "PNG")
    return png[:33] + png_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"\0" * 64 * 1024 * 1024)) + png[33:]


def _search(name: str, data: bytes) -> dict[str, Any]:
    """An upload whose name and media type say JPEG, whatever it is: only the bytes count."""
    return {"files": {"image": (name, data, "image/jpeg")}}


def _video(data: bytes, **fields: str) -> dict[str, Any]:
    return {"files": {"video": ("v.mp4", data, "video/mp4")}, "data": fields}


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
    "search: truncated HEIC": ("POST", "/v1/search", _search("a.heic", _cut(_encode(_small(), "HEIF"))), 422),
    "search: truncated AVIF": ("POST", "/v1/search", _search("a.avif", _cut(_encode(_small(), "AVIF"))), 422),
    "search: truncated 16-bit TIFF": (
        "POST",
        "/v1/search",
        _search("a.tif", _cut(_encode(_small("L").convert("I;16"), "TIFF"))),
        422,
    ),
    "search: truncated CMYK JPEG": (
        "POST",
        "/v1/search",
        _search("a.jpg", _cut(_encode(_small("CMYK"), "JPEG"))),
        422,
    ),
    "search: GIF claiming 65535x65535": (
        "POST",
        "/v1/search",
        _search("a.gif", _gif_claiming_65535_squared()),
        413,
    ),
    "search: PNG text chunk inflating to 64 MB": (
        "POST",
        "/v1/search",
        _search("a.png", _png_text_bomb()),
        413,
    ),
    "frame: a 2-hour video": ("POST", "/v1/shop/frame", _video(overlong_clip(), t="1"), 413),
    "videos: a 2-hour video": ("POST", "/v1/videos", _video(overlong_clip()), 413),
    "frame: an audio-only file": ("POST", "/v1/shop/frame", _video(audio_only(), t="0"), 415),
    "videos: an audio-only file": ("POST", "/v1/videos", _video(audio_only("mp3", "libmp3lame")), 415),
    "videos: a video track without frames": ("POST", "/v1/videos", _video(zero_frame_video()), 422),
    "frame: headers claiming 10000x10000 frames": (
        "POST",
        "/v1/shop/frame",
        _video(avi_claiming(10_000, 10_000), t="0"),
        413,
    ),
    "frame: a HEIC photo sent as video": (
        "POST",
        "/v1/shop/frame",
        _video(_encode(_small(), "HEIF"), t="0"),
        415,
    ),
    "method: PATCH a product": ("PATCH", "/v1/products/p1", {}, 405),
    "path: ../ out of /media/": ("GET", "/media/..%2f..%2fetc/passwd", {}, 404),
    "path: ../ out of /static/": ("GET", "/static/..%2f..%2fapp.py", {}, 404),
}


# The stable code the input-safety cases must answer with (docs/inputs.md). A cut HEIC/AVIF is
# "truncated" when its header survives (the decoder runs out of data), else "corrupt".
CUT = ("image_truncated", "image_corrupt")
CODES: dict[str, str | tuple[str, ...]] = {
    "search: truncated HEIC": CUT,
    "search: truncated AVIF": CUT,
    "search: GIF claiming 65535x65535": "too_large",
    "search: PNG text chunk inflating to 64 MB": "too_large",
    "frame: a 2-hour video": "video_too_long",
    "videos: a 2-hour video": "video_too_long",
    "frame: an audio-only file": "video_no_video_stream",
    "videos: an audio-only file": "video_no_video_stream",
    "videos: a video track without frames": "video_no_frames",
    "frame: headers claiming 10000x10000 frames": "video_too_many_pixels",
    "frame: a HEIC photo sent as video": "video_not_video",
}


TABLE = ARTIFACTS / "hostile_inputs.md"  # what each case got, for a person (and the closing notes)


@pytest.fixture(scope="module")
def table() -> Iterator[list[str]]:
    rows = ["| case | method and path | status | code | detail |", "|---|---|---:|---|---|"]
    yield rows
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_its_4xx(running: RunningStack, table: list[str], name: str) -> None:
    method, path, kwargs, status = CASES[name]
    response = running.client.request(method, path, **kwargs)
    answer = response.json() if response.headers.get("content-type") == "application/json" else {}
    detail = str(answer.get("detail", response.text[:120])).replace("|", "/").replace("\n", " ")[:160]
    table.append(
        f"| {name} | {method} {path} | {response.status_code} | {answer.get('code', '')} | {detail} |"
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"], body
    assert body["code"], body
    if name in CODES:
        expected = CODES[name]
        assert body["code"] in (expected if isinstance(expected, tuple) else (expected,)), body


@cache
def _photo_rgb() -> Image.Image:
    return Image.open(io.BytesIO(PHOTO)).convert("RGB")


def _animated(fmt: str, **kwargs: Any) -> bytes:
    photo = _photo_rgb()
    later = [photo.rotate(180), Image.new("RGB", photo.size, "white")]
    return _encode(photo, fmt, save_all=True, append_images=later, duration=100, **kwargs)


# name -> (the upload, the lossless 8-bit file whose pixels it must decode to, or None when lossy)
SUPPORTED: dict[str, tuple[Any, Any]] = {
    "HEIC": (lambda: _encode(_photo_rgb(), "HEIF", quality=90), None),
    "AVIF": (lambda: _encode(_photo_rgb(), "AVIF", quality=90), None),
    "WebP": (lambda: _encode(_photo_rgb(), "WEBP", quality=90), None),
    "BMP": (lambda: _encode(_photo_rgb(), "BMP"), lambda: _encode(_photo_rgb(), "PNG")),
    "TIFF": (
        lambda: _encode(_photo_rgb(), "TIFF", compression="tiff_lzw"),
        lambda: _encode(_photo_rgb(), "PNG"),
    ),
    "16-bit RGB PNG": (
        lambda: png_16bit(np.asarray(_photo_rgb()).astype(np.uint16) * 257, 2),
        lambda: _encode(_photo_rgb(), "PNG"),
    ),
    "16-bit grey TIFF": (
        lambda: _encode(
            Image.fromarray(np.asarray(_photo_rgb().convert("L")).astype(np.uint16) * 257), "TIFF"
        ),
        lambda: _encode(_photo_rgb().convert("L"), "PNG"),
    ),
    "CMYK TIFF": (
        lambda: _encode(_photo_rgb().convert("CMYK"), "TIFF"),
        lambda: _encode(_photo_rgb(), "PNG"),
    ),
    "CMYK JPEG": (lambda: _encode(_photo_rgb().convert("CMYK"), "JPEG", quality=90), None),
    "LA PNG": (
        lambda: _encode(_photo_rgb().convert("LA"), "PNG"),
        lambda: _encode(_photo_rgb().convert("L"), "PNG"),
    ),
    "animated GIF (first frame)": (lambda: _animated("GIF"), lambda: _encode(_photo_rgb().quantize(), "GIF")),
    "animated WebP (first frame)": (
        lambda: _animated("WEBP", lossless=True),
        lambda: _encode(_photo_rgb(), "PNG"),
    ),
}


def _results(body: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(o["label"], [m["product_id"] for m in o["matches"]]) for o in body["objects"]]


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_every_supported_format_is_searched(running: RunningStack, name: str) -> None:
    make, reference = SUPPORTED[name]
    response = running.client.post("/v1/search", **_search("upload.jpg", make()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": 384, "height": 512}
    assert body["objects"][0]["matches"], body
    if reference is not None:  # lossless: the very pixels of the 8-bit file, so the very answer
        expected = running.client.post("/v1/search", **_search("ref.png", reference()))
        assert _results(body) == _results(expected.json())


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_generated_videos_are_searched(running: RunningStack, fmt: str) -> None:
    video = clip((0.0, 0.5, 1.0, 1.5), fmt=fmt, size=(160, 120))
    response = running.client.post("/v1/shop/frame", **_video(video, t="0.7"))
    assert response.status_code == 200, response.text
    assert response.json()["frame_time_s"] == pytest.approx(0.5)
    assert response.json()["image"] == {"width": 160, "height": 120}


def test_the_stack_is_still_ready_and_unchanged(running: RunningStack) -> None:
    for method, path, kwargs, _ in CASES.values():
        running.client.request(method, path, **kwargs)
    assert running.client.get("/readyz").status_code == 200
    assert running.client.get("/v1/products/p1").status_code == 404  # no rejected PUT left a product
