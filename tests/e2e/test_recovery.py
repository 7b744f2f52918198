"""A backend stopped and started again: the gateway answers 503 naming it meanwhile, and searches
work again once it is back, without restarting the gateway."""

import logging
import time

import httpx
import pytest

from tests.e2e.catalog import unique_image_catalog_rows
from tests.e2e.conftest import RunningStack

log = logging.getLogger(__name__)

RECONNECT_WAIT_S = 30.0  # the gateway's channels retry a lost backend at least every 5 s


@pytest.mark.timeout(900)  # the first e2e test of a session also waits for ./scripts/up
def test_search_503_naming_the_embedder_while_it_is_down_then_200_again(running: RunningStack) -> None:
    stack = running.stack
    row = unique_image_catalog_rows("fashion_products")[1]
    image = row.path.read_bytes()
    gateway_pid = stack.procs.load()["gateway"].pid
    assert _search(running, image).status_code == 200

    stack.stop_service("embedder")
    try:
        down = _search(running, image)
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "unavailable"
        assert "embedder" in down.json()["detail"].lower(), down.text
        assert running.client.get("/readyz").status_code == 503
    finally:
        stack.start_service("embedder")
        stack.wait_ready("embedder")
    ready = time.monotonic()

    attempts, response = 1, _search(running, image)
    while response.status_code == 503 and time.monotonic() - ready < RECONNECT_WAIT_S:
        time.sleep(0.2)
        attempts, response = attempts + 1, _search(running, image)
    log.warning(
        "embedder back: first search answered %d after %.1f s (%d attempts)",
        *(response.status_code, time.monotonic() - ready, attempts),
    )
    assert response.status_code == 200, response.text
    assert response.json()["objects"][0]["matches"][0]["product_id"] == row.product_id
    assert stack.procs.load()["gateway"].pid == gateway_pid  # the same gateway process throughout
    assert running.client.get("/readyz").status_code == 200


def _search(running: RunningStack, image: bytes) -> httpx.Response:
    return running.client.post(
        "/v1/search", files={"image": ("q.jpg", image)}, data={"detect": "false", "k": 1}
    )
