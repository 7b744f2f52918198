"""Playwright (sync API) driving Debian's Chromium for the browser tests: no browser download, so
the tests run offline. Screenshots go to tests/e2e/artifacts/ (gitignored) for a person to look at."""

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.paths import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Fails (never skips) when Chromium is missing: ./scripts/test installs it where it may."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./scripts/test does so as root)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Exception as exc:  # Playwright raises its own Error with the browser's stderr
            pytest.fail(f"Chromium at {CHROMIUM} could not be launched: {exc}")
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# Playwright does not expose a multipart body built from Blobs, so the page's fetch is wrapped to
# keep a copy of every uploaded file (as base64) for the test to decode.
RECORD_UPLOADS = """
(() => {
  const send = window.fetch;
  window.__uploads = [];
  window.fetch = async (input, init) => {
    if (init && init.body instanceof FormData) {
      for (const [field, value] of init.body.entries()) {
        if (!(value instanceof Blob)) continue;
        const bytes = new Uint8Array(await value.arrayBuffer());
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        window.__uploads.push({ url: String(input), field, base64: btoa(binary) });
      }
    }
    return send(input, init);
  };
})();
"""


def record_uploads(page: Page) -> None:
    page.add_init_script(RECORD_UPLOADS)


def uploaded_files(page: Page, path: str, field: str) -> list[bytes]:
    """Every file the page has sent as ``field`` to an URL ending with ``path``."""
    uploads = page.evaluate("window.__uploads")
    return [base64.b64decode(u["base64"]) for u in uploads if u["url"].endswith(path) and u["field"] == field]
