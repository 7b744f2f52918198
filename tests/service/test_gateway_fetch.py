"""image_url fetching for search and PUT, against a local HTTP server on 127.0.0.1."""

import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.http_server import serving
from tests.service.gateway_fakes import FakeBackends, encode, fake_backends, gateway

RED_JPEG = encode(Image.new("RGB", (80, 60), (220, 20, 20)))
MAX_UPLOAD = 200_000


ROUTES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/red.jpg": (200, {"Content-Type": "image/jpeg"}, RED_JPEG),
    "/page.html": (200, {"Content-Type": "text/html"}, b"<html>not an image</html>"),
    "/huge.jpg": (200, {"Content-Type": "image/jpeg"}, b"\xff" * (MAX_UPLOAD + 1)),
    "/moved": (302, {"Location": "/red.jpg"}, b""),
    "/loop": (302, {"Location": "/loop"}, b""),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, headers, body = ROUTES.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        fakes.indexer.add("red-bag", (1, 0, 0), title="Red bag")
        fakes.indexer.add("blue-bag", (0, 0, 1), title="Blue bag")
        yield fakes


@pytest.fixture(scope="module")
def client(backends: FakeBackends) -> Iterator[TestClient]:
    with gateway(backends, allow_private_urls=True, max_upload_bytes=MAX_UPLOAD) as test_client:
        yield test_client


def test_search_by_image_url(client: TestClient, site: str) -> None:
    response = client.post("/v1/search", data={"image_url": f"{site}/red.jpg", "detect": "false"})
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 80, "height": 60}
    assert response.json()["objects"][0]["matches"][0]["product_id"] == "red-bag"


def test_redirects_are_followed_a_few_times(client: TestClient, site: str) -> None:
    moved = client.post("/v1/search", data={"image_url": f"{site}/moved", "detect": "false"})
    assert moved.status_code == 200, moved.text
    loop = client.post("/v1/search", data={"image_url": f"{site}/loop"})
    assert (loop.status_code, loop.json()["detail"]) == (
        422,
        "image_url could not be fetched: more than 3 redirects",
    )


@pytest.mark.parametrize(
    ("path", "status", "code", "detail"),
    [
        ("/missing.jpg", 422, "image_url_status", "image_url returned HTTP 404"),
        ("/page.html", 422, "image_not_image", "not a recognised image"),
        ("/huge.jpg", 413, "too_large", "the image at image_url is"),
    ],
)
def test_unusable_image_urls(
    client: TestClient, site: str, path: str, status: int, code: str, detail: str
) -> None:
    response = client.post("/v1/search", data={"image_url": f"{site}{path}"})
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert detail in response.json()["detail"]


def test_unreachable_host_is_422(client: TestClient) -> None:
    response = client.post("/v1/search", data={"image_url": f"http://127.0.0.1:{closed_port()}/a.jpg"})
    assert (response.status_code, response.json()["code"]) == (422, "image_url_unfetchable")
    assert response.json()["detail"].startswith("image_url could not be fetched: ")


def test_put_fetches_image_urls_when_nothing_is_uploaded(
    client: TestClient, backends: FakeBackends, site: str
) -> None:
    body = {"title": "Fetched", "image_url": f"{site}/red.jpg", "image_urls": [f"{site}/moved"]}
    response = client.put("/v1/products/fetched-1", json=body)
    assert response.status_code == 200, response.text
    # Both URLs serve the same bytes: one vector; the display image is image_url.
    assert response.json()["product"]["vector_count"] == 1
    assert response.json()["product"]["image_url"] == f"{site}/red.jpg"
    assert client.put("/v1/products/fetched-1", json=body).json()["status"] == "unchanged"
    assert backends.embedder.calls[-1] == [(80, 60)]


def test_put_with_a_broken_image_url_is_422(client: TestClient, site: str) -> None:
    response = client.put("/v1/products/fetched-2", json={"image_url": f"{site}/missing.jpg"})
    assert (response.status_code, response.json()["detail"]) == (422, "image_url returned HTTP 404")


def test_private_destinations_are_refused_by_default(backends: FakeBackends, site: str) -> None:
    with gateway(backends, allow_private_urls=False) as strict:
        direct = strict.post("/v1/search", data={"image_url": f"{site}/red.jpg"})
        by_name = strict.post("/v1/search", data={"image_url": site.replace("127.0.0.1", "localhost") + "/a"})
    for response in (direct, by_name):
        assert (response.status_code, response.json()["code"]) == (422, "image_url_blocked"), response.text
        assert "loopback" in response.json()["detail"]


def test_media_dir_is_served_and_fetchable(backends: FakeBackends, tmp_path: Path) -> None:
    (tmp_path / "bags").mkdir()
    (tmp_path / "bags" / "red.jpg").write_bytes(RED_JPEG)
    (tmp_path.parent / "secret.jpg").write_bytes(RED_JPEG)
    with gateway(backends, media_dir=tmp_path, allow_private_urls=False) as media:
        served = media.get("/media/bags/red.jpg")
        assert (served.status_code, served.content) == (200, RED_JPEG)
        put = media.put("/v1/products/media-1", json={"image_url": "/media/bags/red.jpg"})
        assert put.status_code == 200, put.text
        escape = media.put("/v1/products/media-2", json={"image_url": "/media/../secret.jpg"})
        assert (escape.status_code, escape.json()["code"]) == (422, "image_url_not_found")
        assert media.put("/v1/products/media-3", json={"image_url": "/other/x.jpg"}).status_code == 422


def closed_port() -> int:
    """A local port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
