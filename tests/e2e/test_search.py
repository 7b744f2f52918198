"""Search through the real stack: catalog images find themselves, shop photos find their product."""

import logging
from typing import Any

import pytest

from tests.e2e.catalog import every_nth, rows, unique_image_catalog_rows
from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS

log = logging.getLogger(__name__)


def search(running: RunningStack, image: bytes, **params: Any) -> dict[str, Any]:
    response = running.client.post("/v1/search", files={"image": ("q.jpg", image)}, data=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_demo_catalog_is_loaded(running: RunningStack) -> None:
    stats = running.client.get("/v1/stats").json()
    assert stats["products"] >= 2337  # 2,272 fashion + 65 grocery catalog rows
    assert stats["vectors"] >= 1000
    assert stats["dim"] == 1280  # read from the MobileNetV2 model, not assumed
    ready = running.client.get("/readyz")
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("dataset", ["fashion_products", "grocery_store"])
def test_catalog_image_returns_itself_first(running: RunningStack, dataset: str) -> None:
    for row in every_nth(unique_image_catalog_rows(dataset), 12):
        body = search(running, row.path.read_bytes(), detect="false", k=5)
        top = body["objects"][0]["matches"][0]
        assert top["product_id"] == row.product_id, (row, top)
        assert top["similarity"] >= 0.99


def test_shop_photos_find_their_product(running: RunningStack) -> None:
    """Real in-store photos (grocery val split) against the whole demo catalog, top 10."""
    queries = every_nth([r for r in rows("grocery_store") if r.role == "query" and r.split == "val"], 120)
    hits_first_object = hits_any_object = 0
    for row in queries:
        body = search(running, row.path.read_bytes(), k=10)
        found = [{m["product_id"] for m in obj["matches"]} for obj in body["objects"]]
        hits_first_object += row.match_key in found[0]
        hits_any_object += any(row.match_key in ids for ids in found)
    rate_first = hits_first_object / len(queries)
    rate_any = hits_any_object / len(queries)
    log.warning(
        "grocery val top-10 hit rate over %d photos: first object %.3f, any object %.3f",
        len(queries),
        rate_first,
        rate_any,
    )
    assert rate_any > 0.5, f"top-10 hit rate {rate_any:.3f} is not a clear majority"


def test_scene_with_several_objects(running: RunningStack) -> None:
    body = search(running, (DATASETS / "scenes/extra/zidane.jpg").read_bytes(), k=5)
    labels = [obj["label"] for obj in body["objects"]]
    assert labels.count("person") >= 2, labels
    assert "tie" in labels, labels
    boxes = {tuple(obj["box"]) for obj in body["objects"]}
    assert len(boxes) == len(body["objects"])  # one object per detection
    for obj in body["objects"]:
        assert obj["matches"], obj
        x1, y1, x2, y2 = obj["box"]
        assert 0 <= x1 < x2 <= body["image"]["width"]
        assert 0 <= y1 < y2 <= body["image"]["height"]
    assert set(body["timings_ms"]) >= {"decode", "detect", "embed", "search", "total"}


def test_similar_products(running: RunningStack) -> None:
    row = unique_image_catalog_rows("fashion_products")[0]
    response = running.client.get(f"/v1/products/{row.product_id}/similar", params={"k": 5})
    assert response.status_code == 200, response.text
    matches = response.json()["matches"]
    assert len(matches) == 5
    assert row.product_id not in {m["product_id"] for m in matches}
