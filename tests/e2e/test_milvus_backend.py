"""The demo stack on the Milvus backend (milvus-lite file) answers like the default FAISS stack.

A second stack is started with ./scripts/up beside the session's (fixture ``running``), with
VS_INDEXER_BACKEND=milvus, its own ports, run and data dirs and Redis; both get the same photos and
their top-10 matches per detected object are compared.
"""

import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.devstack.ephemeral import free_port
from tests.e2e.catalog import every_nth, rows
from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS, ROOT

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

TOP = 10
Answers = list[tuple[str, list[str]]]  # per object: (label, product ids best-first)


def photos() -> list[Path]:
    """10 real shop photos (grocery val queries) and 2 scenes with several objects."""
    shop = every_nth([r for r in rows("grocery_store") if r.role == "query" and r.split == "val"], 10)
    return [r.path for r in shop] + [DATASETS / "scenes/extra/zidane.jpg", DATASETS / "scenes/extra/bus.jpg"]


def milvus_env(base: Path, env: dict[str, str]) -> dict[str, str]:
    """The faiss stack's settings with fresh ports, dirs and Redis, and the Milvus backend."""
    out = {key: str(free_port()) if key.endswith("_PORT") else value for key, value in env.items()}
    out.update(
        VS_STACK_RUN_DIR=str(base / "run"),
        VS_DATA_DIR=str(base / "data"),
        VS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        VS_INDEXER_BACKEND="milvus",
        VS_MILVUS_URI=str(base / "milvus" / "index.db"),
    )
    return out


@pytest.fixture(scope="module")
def milvus_stack(tmp_path_factory: pytest.TempPathFactory, running: RunningStack) -> Iterator[httpx.Client]:
    env = milvus_env(tmp_path_factory.mktemp("milvus-stack"), running.env)
    start = time.monotonic()
    up = subprocess.run([str(ROOT / "scripts" / "up"), "--detach"], env=env, timeout=1500, check=False)
    try:
        assert up.returncode == 0, f"./scripts/up --detach (milvus) failed with exit code {up.returncode}"
        log.warning("milvus stack up with the demo catalog in %.0f s", time.monotonic() - start)
        with httpx.Client(base_url=f"http://127.0.0.1:{env['VS_GATEWAY_PORT']}", timeout=120) as client:
            yield client
    finally:
        subprocess.run([str(ROOT / "scripts" / "down")], env=env, timeout=120, check=True)


def answers(client: httpx.Client, photo: Path) -> Answers:
    response = client.post(
        "/v1/search", files={"image": (photo.name, photo.read_bytes())}, data={"k": 2 * TOP}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return [(obj["label"], [m["product_id"] for m in obj["matches"]]) for obj in body["objects"]]


def holds(client: httpx.Client) -> Callable[[str], bool]:
    @cache
    def has(product_id: str) -> bool:
        return client.get(f"/v1/products/{product_id}").status_code == 200

    return has


def comparable(
    a: list[str], b: list[str], in_a: Callable[[str], bool], in_b: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """Each list without the products the other stack does not hold (other end-to-end tests add
    and delete products on the session's faiss stack), cut to the top 10."""
    return [p for p in a if p in b or in_b(p)][:TOP], [p for p in b if p in a or in_a(p)][:TOP]


# Set-up starts two stacks (the session's, if not yet up, and the milvus one), each importing the demo catalog.
@pytest.mark.timeout(1800)
def test_milvus_stack_answers_like_the_faiss_stack(running: RunningStack, milvus_stack: httpx.Client) -> None:
    faiss_stats = running.client.get("/v1/stats").json()
    milvus_stats = milvus_stack.get("/v1/stats").json()
    assert milvus_stats["products"] >= 2337  # the demo catalog
    assert milvus_stats["dim"] == faiss_stats["dim"]  # read from the embedder's model by both
    in_faiss, in_milvus = holds(running.client), holds(milvus_stack)
    overlaps, top1 = [], []
    for photo in photos():
        ours, theirs = answers(running.client, photo), answers(milvus_stack, photo)
        assert [label for label, _ in ours] == [label for label, _ in theirs], photo  # same detector
        for (_, a), (_, b) in zip(ours, theirs, strict=True):
            a, b = comparable(a, b, in_faiss, in_milvus)
            if a and b:
                overlaps.append(len(set(a) & set(b)) / max(len(a), len(b)))
                top1.append(a[0] == b[0])
    mean_overlap, agreement = sum(overlaps) / len(overlaps), sum(top1) / len(top1)
    log.warning(
        "faiss vs milvus over %d photos, %d objects: overlap@10 mean %.3f (min %.2f), top-1 agreement %.3f",
        len(photos()),
        len(overlaps),
        mean_overlap,
        min(overlaps),
        agreement,
    )
    assert len(overlaps) >= 12
    assert mean_overlap >= 0.9
    assert agreement >= 0.9


@pytest.mark.timeout(1800)
def test_milvus_stack_serves_products_and_similar(milvus_stack: httpx.Client) -> None:
    page = milvus_stack.get("/v1/products", params={"limit": 5}).json()
    ids = [p["product_id"] for p in page["products"]]
    assert ids == sorted(ids)
    assert len(ids) == 5
    similar = milvus_stack.get(f"/v1/products/{ids[0]}/similar", params={"k": 5})
    assert similar.status_code == 200, similar.text
    assert ids[0] not in {m["product_id"] for m in similar.json()["matches"]}
