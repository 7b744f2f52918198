"""The catalog loader against a real local HTTP server: retries, per-item failures, progress counts."""

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.scraper.config import ScraperSettings
from services.scraper.loader import load_items
from services.scraper.manifest import CatalogItem
from tests.http_server import serving


class FakeGateway(BaseHTTPRequestHandler):
    seen: dict[str, int] = {}  # noqa: RUF012  (class-level on purpose: shared by handler instances)

    def do_PUT(self) -> None:
        product_id = self.path.rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        attempt = self.seen[product_id] = self.seen.get(product_id, 0) + 1
        if product_id == "flaky" and attempt == 1:
            self._reply(503, {"detail": "embedder unavailable"})
        elif product_id == "bad":
            self._reply(422, {"detail": "the file is not a recognised image"})
        elif b'name="image"' not in body or b'name="title"' not in body:
            self._reply(400, {"detail": "the loader must send the image and the metadata"})
        else:
            self._reply(200, {"status": "created", "product": {"product_id": product_id}})

    def _reply(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gateway_url() -> Iterator[str]:
    FakeGateway.seen = {}
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)) as url:
        yield url


def test_one_bad_item_never_aborts_the_load(tmp_path: Path, gateway_url: str) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8fake")
    items = [CatalogItem(pid, image, {"title": pid}) for pid in ("ok-1", "flaky", "bad", "ok-2")]
    items.append(CatalogItem("missing-file", tmp_path / "nope.jpg", {"title": "x"}))
    settings = ScraperSettings(gateway_url=gateway_url, concurrency=2, retries=2)

    report = asyncio.run(load_items(items, settings, progress=False))

    assert report.counts["created"] == 3  # ok-1, ok-2 and flaky after one retry
    assert FakeGateway.seen["flaky"] == 2
    assert set(report.errors) == {"bad", "missing-file"}
    assert "HTTP 422" in report.errors["bad"]
    assert "cannot read" in report.errors["missing-file"]
    assert FakeGateway.seen["bad"] == 1  # 4xx is not retried
