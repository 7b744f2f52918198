"""The web UI in a real headless Chromium against the real stack: photo search with boxes and
matches, client-side downsizing of a 12-megapixel photo, and Shop now on a paused demo video."""

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import chromium, record_uploads, screenshot, uploaded_files
from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS

SCENE = DATASETS / "scenes/extra/zidane.jpg"
TIE_ID = "e2e-browser-tie"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, running: RunningStack) -> Iterator[Page]:
    context = browser.new_context(
        base_url=str(running.client.base_url), viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    record_uploads(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def tie_product(running: RunningStack) -> Iterator[str]:
    """A catalog product with a link and a price: the tie cut out of the scene itself, so it
    must be the tie's best match. Its link is a real page of the stack, to open it offline."""
    found = running.client.post("/v1/search", files={"image": ("s.jpg", SCENE.read_bytes())}, data={"k": 1})
    tie = next(o for o in found.json()["objects"] if o["label"] == "tie")
    crop = io.BytesIO()
    Image.open(SCENE).convert("RGB").crop(tuple(round(v) for v in tie["box"])).save(crop, "JPEG")
    fields = {"title": "E2E silk tie", "price": "19.90", "currency": "EUR", "category": "Ties"}
    fields["url"] = f"{running.client.base_url}/catalog"
    put = running.client.put(
        f"/v1/products/{TIE_ID}", data=fields, files={"image": ("t.jpg", crop.getvalue())}
    )
    assert put.status_code == 200, put.text
    yield TIE_ID
    running.client.delete(f"/v1/products/{TIE_ID}")


def test_photo_search_boxes_and_matches(page: Page, tie_product: str) -> None:
    page.goto("/")
    page.set_input_files("#file", str(SCENE))
    boxes = page.locator("#overlay .box")
    expect(boxes.first).to_be_visible(timeout=WAIT_MS)
    detected = boxes.count()
    assert detected >= 3  # two people and a tie
    expect(page.locator("#status")).to_contain_text("objects found")
    screenshot(page, "1-photo-boxes")

    page.get_by_role("button", name=re.compile(r"^Show matches for tie")).click()
    expect(page.locator("#results-heading")).to_contain_text("Matches for tie")
    first = page.locator("#matches .card").first
    expect(first).to_have_attribute("data-product-id", tie_product)
    expect(first.locator(".title")).to_have_text("E2E silk tie")
    expect(first.locator(".price")).to_have_text(re.compile(r"19\.90"))
    expect(first.locator(".similarity")).to_contain_text("% similar")
    catalog_image = page.locator("#matches .card img").first  # demo products have /media/ images
    expect(catalog_image).to_have_attribute("alt", re.compile(r"\w"))
    catalog_image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=catalog_image.element_handle())
    screenshot(page, "2-photo-tie-matches")

    with page.context.expect_page() as opened:
        first.get_by_role("link", name="View product").click()
    product_page = opened.value
    product_page.wait_for_load_state()
    assert product_page.url.endswith("/catalog")
    product_page.close()

    first.get_by_role("button", name="More like this").click()
    expect(page.locator("#results-heading")).to_contain_text('More like "E2E silk tie"', timeout=WAIT_MS)
    expect(page.locator("#matches .card").first).to_be_visible()
    screenshot(page, "3-photo-more-like-this")

    # Draw a box of one's own on the background (top-left, outside every detected box).
    area = page.locator("#overlay").bounding_box()
    assert area is not None
    page.mouse.move(area["x"] + 0.02 * area["width"], area["y"] + 0.05 * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + 0.09 * area["width"], area["y"] + 0.4 * area["height"], steps=5)
    page.mouse.up()
    mine = page.get_by_role("button", name=re.compile(r"^Show matches for your box"))
    expect(mine).to_have_attribute("aria-pressed", "true", timeout=WAIT_MS)
    expect(page.locator("#results-heading")).to_contain_text("Matches for your box")
    expect(page.locator("#matches .card")).not_to_have_count(0)
    assert boxes.count() == detected + 1
    screenshot(page, "3b-photo-own-box")


def test_big_photo_is_downsized_before_upload(page: Page, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # 12 MP: a smooth gradient with coarse blotches and fine grain, roughly like a photo's entropy.
    ys, xs = np.mgrid[0:3000, 0:4000]
    base = np.stack([xs * 255 // 4000, ys * 255 // 3000, (xs + ys) * 255 // 7000], axis=-1)
    blotches = np.kron(rng.integers(0, 60, (300, 400, 3)), np.ones((10, 10, 1), dtype=np.int64))
    pixels = np.clip(base + blotches + rng.integers(0, 25, (3000, 4000, 3)), 0, 255).astype(np.uint8)
    photo = tmp_path / "phone-photo.jpg"
    Image.fromarray(pixels).save(photo, "JPEG", quality=95)
    original = photo.stat().st_size

    page.goto("/")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/search")) as sent:
        page.set_input_files("#file", str(photo))
    sent.value.response()  # the body size on the wire is known once the request is done
    assert sent.value.sizes()["requestBodySize"] < original / 3, (sent.value.sizes(), original)
    [uploaded] = uploaded_files(page, "/v1/search", "image")
    with Image.open(io.BytesIO(uploaded)) as image:
        assert image.format == "JPEG"
        assert image.size == (1600, 1200)  # longest side 1600, aspect kept
    assert len(uploaded) < original / 3, (len(uploaded), original)
    expect(page.locator("#status")).not_to_have_attribute("data-kind", "busy", timeout=WAIT_MS)
    expect(page.locator("#status")).not_to_have_attribute("data-kind", "error")
    upload = page.evaluate("window.visualsearch.lastUpload")
    assert upload == {"originalBytes": original, "bytes": len(uploaded), "width": 1600, "height": 1200}
    screenshot(page, "4-photo-12mp-downsized")


def test_shop_now_on_paused_demo_video(page: Page) -> None:
    page.goto("/video")
    page.select_option("#clip", "one-by-one-person-detection")
    video = page.locator("#video")
    # Muted playback needs no user gesture; play a moment, then pause at 10 s (a woman in a cardigan) like a viewer would.
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("document.getElementById('video').currentTime > 0.3", timeout=WAIT_MS)
    video.evaluate(
        "v => new Promise(done => { v.pause(); v.addEventListener('seeked', done, {once: true}); v.currentTime = 10; })"
    )
    assert video.evaluate("v => v.paused && Math.abs(v.currentTime - 10) < 0.2")
    screenshot(page, "5-video-paused")

    page.get_by_role("button", name="Shop now").click()
    boxes = page.locator("#overlay .box")
    expect(boxes.first).to_be_visible(timeout=WAIT_MS)
    [frame] = uploaded_files(page, "/v1/search", "image")
    with Image.open(io.BytesIO(frame)) as image:
        assert image.size == (768, 432)  # the clip's own resolution (videos/manifest.csv)
    expect(page.locator("#status")).to_contain_text("At 10.0 s")
    person = page.get_by_role("button", name=re.compile(r"^Show matches for person"))
    expect(person.first).to_be_visible()
    expect(page.locator("#matches .card").first.locator(".title")).not_to_be_empty()
    person.first.click()
    expect(person.first).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#results-heading")).to_contain_text("Matches for person")
    expect(page.locator("#matches .card").first.locator("img")).to_be_visible()
    assert video.evaluate("v => v.paused")
    screenshot(page, "6-video-shop-now")


def test_catalog_page_on_a_phone(browser: Browser, running: RunningStack) -> None:
    context = browser.new_context(
        base_url=str(running.client.base_url), viewport={"width": 390, "height": 844}
    )
    page = context.new_page()
    page.goto("/catalog")
    expect(page.locator("#stats")).to_contain_text("Products")
    expect(page.locator("#imports tbody")).to_contain_text("completed", timeout=WAIT_MS)  # the demo import
    cards = page.locator("#products .card")
    expect(cards).to_have_count(24, timeout=WAIT_MS)
    page.get_by_role("button", name="Load more").click()
    expect(cards).to_have_count(48, timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "7-catalog-phone", full_page=False)
    context.close()


def test_pages_do_not_shadow_the_api(running: RunningStack) -> None:
    for path in ("/", "/video", "/catalog"):
        page = running.client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html"), path
    script = running.client.get("/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for path in ("/static/nope.js", "/static/..%2Fapp.py", "/v1/nope"):
        missing = running.client.get(path)
        assert missing.status_code == 404, path
        assert set(missing.json()) == {"detail", "code"}, path
