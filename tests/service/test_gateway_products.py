"""Catalog routes (PUT JSON/multipart, GET, list, DELETE, similar, stats) against fake backends."""

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.gateway_fakes import FakeBackends, encode, fake_backends, gateway

RED = encode(Image.new("RGB", (64, 64), (230, 10, 10)))
BLUE = encode(Image.new("RGB", (64, 48), (10, 10, 230)), "PNG")
META: dict[str, Any] = {
    "title": "Red bag",
    "url": "https://shop.example/p/red-bag",
    "image_url": "/media/bags/red.jpg",
    "price": 49.9,
    "currency": "eur",
    "category": "bags",
    "brand": "Acme",
    "attributes": {"color": "red", "leather": True},
}


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        yield fakes


@pytest.fixture(scope="module")
def client(backends: FakeBackends) -> Iterator[TestClient]:
    with gateway(backends, max_images_per_product=3) as test_client:
        yield test_client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_put_json_creates_then_unchanged_then_updated(client: TestClient, backends: FakeBackends) -> None:
    body = {**META, "image": b64(RED)}
    created = client.put("/v1/products/bag-1", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "created"
    product = created.json()["product"]
    assert (product["title"], product["currency"], product["vector_count"]) == ("Red bag", "EUR", 1)
    assert product["attributes"] == {"color": "red", "leather": True}
    assert product["image_url"] == "/media/bags/red.jpg"
    stored = backends.indexer.vectors["bag-1"]
    assert [v.image_key for v in stored] == [hashlib.sha256(RED).hexdigest()[:16]]
    assert stored[0].values[0] > 0.9  # the red image's vector, embedded from the whole image

    calls = len(backends.embedder.calls)
    again = client.put("/v1/products/bag-1", json=body)
    assert again.json()["status"] == "unchanged"
    assert again.json()["product"]["content_hash"] == product["content_hash"]
    assert len(backends.embedder.calls) == calls  # no re-embedding

    updated = client.put("/v1/products/bag-1", json={**body, "price": 39.9})
    assert (updated.json()["status"], updated.json()["product"]["price"]) == ("updated", 39.9)
    assert updated.json()["product"]["content_hash"] != product["content_hash"]


def test_put_multipart_with_several_images(client: TestClient, backends: FakeBackends) -> None:
    form = {**META, "title": "Two-tone bag", "attributes": json.dumps(META["attributes"])}
    files = [("image", ("red.jpg", RED, "image/jpeg")), ("image", ("blue.png", BLUE, "image/png"))]
    response = client.put("/v1/products/bag-2", data=form, files=files)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "created"
    assert response.json()["product"]["vector_count"] == 2
    assert backends.embedder.calls[-1] == [(64, 64), (64, 48)]  # one batch, whole images
    again = client.put("/v1/products/bag-2", data=form, files=files)
    assert again.json()["status"] == "unchanged"


def test_json_and_multipart_give_the_same_content_hash(client: TestClient) -> None:
    as_json = client.put("/v1/products/same-1", json={**META, "images": [b64(RED)]}).json()
    form = {**META, "attributes": json.dumps(META["attributes"])}
    as_form = client.put(
        "/v1/products/same-1", data=form, files={"image": ("r.jpg", RED, "image/jpeg")}
    ).json()
    assert (as_json["status"], as_form["status"]) == ("created", "unchanged")


def test_get_list_similar_stats_delete(client: TestClient) -> None:
    client.put("/v1/products/hat-1", json={"title": "Red hat", "category": "hats", "image": b64(RED)})
    client.put("/v1/products/hat-2", json={"title": "Blue hat", "category": "hats", "image": b64(BLUE)})
    client.put("/v1/products/hat-3", json={"title": "Red cap", "category": "hats", "image": b64(RED + b"x")})

    assert client.get("/v1/products/hat-2").json()["title"] == "Blue hat"
    page = client.get("/v1/products", params={"category": "hats", "limit": 2}).json()
    assert [p["product_id"] for p in page["products"]] == ["hat-1", "hat-2"]
    rest = client.get("/v1/products", params={"category": "hats", "limit": 2, "cursor": page["next_cursor"]})
    assert ([p["product_id"] for p in rest.json()["products"]], rest.json()["next_cursor"]) == (
        ["hat-3"],
        None,
    )

    similar = client.get("/v1/products/hat-1/similar", params={"k": 100}).json()
    scores = {m["product_id"]: m["similarity"] for m in similar["matches"]}
    assert scores["hat-3"] > 0.99 > 0.5 > scores["hat-2"]  # the red cap looks alike, the blue hat not
    assert similar["matches"][0]["similarity"] > 0.99

    stats = client.get("/v1/stats").json()
    assert (stats["model_id"], stats["dim"]) == ("fake-mean-rgb", 3)
    assert stats["products"] >= 3

    deleted = client.delete("/v1/products/hat-2")
    assert deleted.json() == {"product_id": "hat-2", "vectors_removed": 1}
    assert client.get("/v1/products/hat-2").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/products/nope"), ("DELETE", "/v1/products/nope"), ("GET", "/v1/products/nope/similar")],
)
def test_unknown_product_is_404(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": "No image"}, "at least one image is required"),
        ({"image": "not base64!"}, "image 1 is not valid base64"),
        ({"images": [b64(RED)] * 4}, "at most 3 images per product"),
        ({"image": b64(b"plain text, not an image")}, "not a recognised image"),
    ],
)
def test_bad_images_are_422(client: TestClient, body: dict[str, Any], message: str) -> None:
    response = client.put("/v1/products/bad-1", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("price", -1), ("currency", "EURO"), ("url", "ftp://x.example/"), ("attributes", {"a": {"b": 1}})],
)
def test_bad_metadata_is_422_with_its_location(client: TestClient, field: str, value: Any) -> None:
    response = client.put("/v1/products/bad-2", json={"image": b64(RED), field: value})
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]


def test_bad_multipart_fields_are_422(client: TestClient) -> None:
    files = {"image": ("r.jpg", RED, "image/jpeg")}
    bad_json = client.put("/v1/products/bad-3", data={"attributes": "{oops"}, files=files)
    assert bad_json.status_code == 422
    assert bad_json.json()["detail"][0]["loc"] == ["body", "attributes"]
    text_image = client.put("/v1/products/bad-3", data={"image": "not a file"})
    assert text_image.status_code == 422


@pytest.mark.parametrize("product_id", ["-starts-with-dash", "has space", "x" * 129])
def test_bad_product_id_is_422(client: TestClient, product_id: str) -> None:
    response = client.put(f"/v1/products/{product_id}", json={"image": b64(RED)})
    assert response.status_code == 422


def test_malformed_bodies(client: TestClient) -> None:
    not_json = client.put("/v1/products/x", content=b"{", headers={"content-type": "application/json"})
    assert (not_json.status_code, not_json.json()["code"]) == (422, "validation_error")
    not_object = client.put("/v1/products/x", json=[1, 2])
    assert not_object.status_code == 422
    text = client.put("/v1/products/x", content=b"hello", headers={"content-type": "text/plain"})
    assert (text.status_code, text.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"title": "x", "price": 1e400}',  # inf after parsing
        b'{"title": "x", "attributes": {"a": NaN}}',  # Python's json accepts NaN
        b'{"title": "\\ud800"}',  # a lone surrogate cannot be encoded back to UTF-8
    ],
)
def test_input_json_cannot_carry_is_still_a_clean_422(client: TestClient, raw: bytes) -> None:
    response = client.put("/v1/products/odd", content=raw, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


def test_put_json_over_the_body_limit_is_413(backends: FakeBackends) -> None:
    with gateway(backends, max_product_body_bytes=10_000) as small:
        response = small.put("/v1/products/big", json={"image": "A" * 20_000})
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
