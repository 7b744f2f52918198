"""Catalog writes through the real stack: PUT is searchable at once, DELETE removes, restarts keep state."""

import signal
from typing import Any

import httpx

from tests.e2e.catalog import rows
from tests.e2e.conftest import RunningStack


def _new_product_image() -> bytes:
    # A fashion query photo: a real product that is not in the catalog.
    row = next(r for r in rows("fashion_products") if r.role == "query")
    return row.path.read_bytes()


def _top(running: RunningStack, image: bytes) -> dict[str, Any]:
    response = running.client.post("/v1/search", files={"image": ("q.jpg", image)}, data={"detect": "false"})
    assert response.status_code == 200, response.text
    top: dict[str, Any] = response.json()["objects"][0]["matches"][0]
    return top


def test_put_search_delete(running: RunningStack) -> None:
    image = _new_product_image()
    jacket = {
        "title": "E2E jacket",
        "category": "Jackets",
        "brand": "Acme",
        "price": "49.5",
        "currency": "EUR",
    }

    def put_jacket() -> httpx.Response:
        files = {"image": ("new.jpg", image, "image/jpeg")}
        return running.client.put("/v1/products/e2e-new-1", data=jacket, files=files)

    put = put_jacket()
    assert put.status_code == 200, put.text
    top = _top(running, image)  # at once, no polling: searchable when the PUT returns
    assert top["product_id"] == "e2e-new-1"
    assert top["similarity"] >= 0.99
    assert top["price"] == 49.5
    assert top["brand"] == "Acme"

    again = put_jacket()
    assert again.json()["status"] == "unchanged"

    assert running.client.delete("/v1/products/e2e-new-1").status_code in (200, 204)
    assert running.client.get("/v1/products/e2e-new-1").status_code == 404
    assert _top(running, image)["product_id"] != "e2e-new-1"
    assert running.client.delete("/v1/products/e2e-new-1").status_code == 404


def test_indexer_survives_kill_9(running: RunningStack) -> None:
    image = _new_product_image()
    put = running.client.put(
        "/v1/products/e2e-durable", data={"title": "Durable"}, files={"image": ("d.jpg", image)}
    )
    assert put.status_code == 200, put.text
    before = running.client.get("/v1/stats").json()

    running.stack.stop_service("indexer", signal.SIGKILL)
    assert running.client.get("/readyz").status_code == 503
    running.stack.start_service("indexer")
    running.stack.wait_ready("indexer")
    running.stack.wait_ready("gateway")

    after = running.client.get("/v1/stats").json()
    assert after["products"] == before["products"]
    assert after["vectors"] == before["vectors"]
    assert _top(running, image)["product_id"] == "e2e-durable"
    assert running.client.get("/v1/products/e2e-durable").json()["title"] == "Durable"
