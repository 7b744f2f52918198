"""The web UI with API keys on: headless Chromium opens the catalog page of a real gateway (uvicorn,
fake gRPC backends, real Redis), is asked for a key once, and keeps using it; with keys off
nothing changes for the pages."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import Dialog, Page, expect

from services.devstack.ephemeral import free_port
from services.gateway.app import create_app
from tests.e2e.browser import chromium, screenshot
from tests.service.gateway_fakes import FakeBackends, encode, fake_backends
from tests.service.test_gateway_auth import create_key


@pytest.fixture(scope="module")
def servers(redis_url: str) -> Iterator[dict[bool, str]]:
    """Base URLs of two gateways on the same backends and Redis: {auth on: url, auth off: url}."""
    with fake_backends() as backends:
        backends.indexer.add("red-bag", (1, 0, 0), title="Red bag", category="bags")
        with serve(backends, redis_url, True) as keyed, serve(backends, redis_url, False) as open_url:
            yield {True: keyed, False: open_url}


@contextmanager
def serve(backends: FakeBackends, redis_url: str, auth_enabled: bool) -> Iterator[str]:
    port = free_port()
    app = create_app(backends.settings(redis_url=redis_url, auth_enabled=auth_enabled))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the gateway stopped while starting"
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context()
        yield context.new_page()
        context.close()


def test_the_page_asks_for_a_key_once_and_keeps_it(
    page: Page, servers: dict[bool, str], redis_url: str
) -> None:
    _, secret = create_key(redis_url, "browser", "--scopes", "search,catalog")
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept(secret)

    page.on("dialog", answer)
    page.goto(f"{servers[True]}/catalog")
    expect(page.locator("#products .card")).to_have_count(1)
    expect(page.locator("#products")).to_contain_text("Red bag")
    expect(page.locator("#imports")).to_contain_text("No imports yet.")
    assert len(asked) == 1  # two calls refused, one question
    assert "X-API-Key" in asked[0]
    assert page.evaluate("localStorage.getItem('visualsearch.apiKey')") == secret
    screenshot(page, "auth-catalog-with-key")

    page.reload()
    expect(page.locator("#products")).to_contain_text("Red bag")
    assert len(asked) == 1  # the stored key is sent: no second question


def test_a_refused_prompt_shows_the_error(page: Page, servers: dict[bool, str]) -> None:
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(f"{servers[True]}/catalog")
    expect(page.locator("#status")).to_contain_text("HTTP 401")


@pytest.mark.parametrize("auth_enabled", [True, False])
def test_photo_search_works_with_auth_on_and_off(
    page: Page, servers: dict[bool, str], redis_url: str, tmp_path: Path, auth_enabled: bool
) -> None:
    _, secret = create_key(redis_url, "photo page", "--scopes", "search")
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept(secret)

    page.on("dialog", answer)
    photo = tmp_path / "red.jpg"
    photo.write_bytes(encode(Image.new("RGB", (320, 240), (230, 10, 10))))
    page.goto(servers[auth_enabled])
    page.set_input_files("#file", str(photo))
    expect(page.locator("#matches .card").first).to_have_attribute("data-product-id", "red-bag")
    assert len(asked) == (1 if auth_enabled else 0)  # with auth off nothing is asked nor stored
    stored = page.evaluate("localStorage.getItem('visualsearch.apiKey')")
    assert stored == (secret if auth_enabled else None)
