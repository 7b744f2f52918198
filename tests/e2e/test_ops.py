"""Operational endpoints of the real stack: health, readiness, metrics, OpenAPI."""

from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS


def test_health_readiness_metrics_and_docs(running: RunningStack) -> None:
    assert running.client.get("/healthz").json() == {"status": "ok"}
    ready = running.client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.json()["services"].values()) == {"SERVING"}

    image = (DATASETS / "scenes/extra/bus.jpg").read_bytes()
    assert running.client.post("/v1/search", files={"image": ("b.jpg", image)}).status_code == 200
    metrics = running.client.get("/metrics").text
    for stage in ("decode", "detect", "embed", "search"):
        assert f'vs_gateway_stage_seconds_count{{stage="{stage}"}}' in metrics

    schema = running.client.get("/openapi.json").json()
    assert {"/v1/search", "/v1/products/{product_id}", "/v1/stats"} <= set(schema["paths"])
    assert running.client.get("/docs").status_code == 200
