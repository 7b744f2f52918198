"""Stateless services replicate: a stack of its own with 2 detectors and 2 embedders
(``./scripts/up --detectors 2 --embedders 2``). Both replicas of each take searches, read from
each replica's own /metrics; a replica killed with kill -9 under load costs at most the calls it
had in flight, and searches and imports go on with the right products."""

import asyncio
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.devstack.launcher import Stack
from tests.e2e.catalog import Row, every_nth, unique_image_catalog_rows
from tests.e2e.conftest import RunningStack, _stack_settings, private_stack_env
from tests.e2e.ingest import shop_photo_rows, start_import, to_csv, vector_counts, wait_for, wait_until_done
from tests.paths import ROOT

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

CONCURRENCY = 4
RPC_COUNT = "vs_grpc_server_handling_seconds_count"
DETECT, EMBED = "DetectorServicer.Detect", "EmbedderServicer.Embed"


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all
    right: bool  # the searched catalog photo's product is a top match


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """Its own stack (env, ports, run dir): the shared session stack runs one of each."""
    env = private_stack_env(tmp_path_factory.mktemp("scaled"))
    up = [str(ROOT / "scripts" / "up"), "--detach", "--no-demo", "--detectors", "2", "--embedders", "2"]
    stack = Stack(_stack_settings(env))  # the replicas' ports come from the run dir
    try:  # down even when up is interrupted (a pytest timeout): it may have started some processes
        started = subprocess.run(up, env=env, timeout=900, check=False)
        assert started.returncode == 0, f"./scripts/up failed with exit code {started.returncode}"
        with httpx.Client(base_url=stack.settings.gateway_url, timeout=60) as client:
            yield RunningStack(env, stack, client)
    finally:
        pids = [p.pid for p in stack.procs.load().values()]
        subprocess.run([str(ROOT / "scripts" / "down")], env=env, timeout=120, check=True)
    assert not [pid for pid in pids if _alive(pid)], "processes left behind after ./scripts/down"


@pytest.fixture(scope="module")
def catalog(scaled: RunningStack) -> list[Row]:
    """Fashion catalog photos (distinct images), PUT through the gateway: each finds itself."""
    rows = every_nth(unique_image_catalog_rows("fashion_products"), 16)
    for row in rows:
        reply = scaled.client.put(
            f"/v1/products/{row.product_id}",
            data={"title": row.match_key, "category": row.match_key},
            files={"image": (row.path.name, row.path.read_bytes(), "image/jpeg")},
        )
        assert reply.status_code == 200, reply.text
    return rows


def rpc_count(stack: Stack, replica: str, method: str) -> float:
    """Successful calls of ``method`` a replica answered, from its own /metrics."""
    port = stack.replicas[replica].metrics_port
    text = httpx.get(f"http://{stack.settings.host}:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == RPC_COUNT and sample.labels == {"method": method, "code": "OK"}
    )


def rpc_counts(stack: Stack, service: str, method: str) -> dict[str, float]:
    return {r.name: rpc_count(stack, r.name, method) for r in stack.replicas_of(service)}


async def _search(client: httpx.AsyncClient, row: Row) -> Outcome:
    started = time.monotonic()
    try:
        reply = await client.post(
            "/v1/search", files={"image": ("q.jpg", row.path.read_bytes())}, data={"k": 3}
        )
    except httpx.HTTPError:
        return Outcome(started, time.monotonic(), 0, False)
    ended = time.monotonic()
    if reply.status_code != 200:
        return Outcome(started, ended, reply.status_code, False)
    tops = {obj["matches"][0]["product_id"] for obj in reply.json()["objects"] if obj["matches"]}
    return Outcome(started, ended, 200, row.product_id in tops)


async def _load(
    url: str, rows: list[Row], total: int, after: int, action: Callable[[], None] | None
) -> tuple[list[Outcome], float]:
    """``total`` searches, CONCURRENCY at a time, in order; ``action`` runs (in a thread, the load
    going on) once ``after`` have finished. Returns the outcomes in start order, and when
    ``action`` began."""
    outcomes: dict[int, Outcome] = {}
    pending = iter(range(total))
    acted_at = 0.0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal acted_at
        for n in pending:
            outcomes[n] = await _search(client, rows[n % len(rows)])
            if action is not None and len(outcomes) == after:
                acted_at = time.monotonic()
                await asyncio.to_thread(action)

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(CONCURRENCY)))
    return [outcomes[n] for n in range(total)], acted_at


def load(
    running: RunningStack,
    rows: list[Row],
    total: int,
    after: int = 0,
    action: Callable[[], None] | None = None,
) -> tuple[list[Outcome], float]:
    return asyncio.run(_load(running.stack.settings.gateway_url, rows, total, after, action))


def test_both_replicas_of_each_service_take_searches(scaled: RunningStack, catalog: list[Row]) -> None:
    stack = scaled.stack
    assert set(stack.replicas) >= {"detector-1", "detector-2", "embedder-1", "embedder-2", "indexer"}
    before = {DETECT: rpc_counts(stack, "detector", DETECT), EMBED: rpc_counts(stack, "embedder", EMBED)}

    outcomes, _ = load(scaled, catalog, 60)

    assert [o for o in outcomes if not (o.status == 200 and o.right)] == []
    for service, method in (("detector", DETECT), ("embedder", EMBED)):
        after = rpc_counts(stack, service, method)
        served = {name: after[name] - before[method][name] for name in after}
        log.warning("%s calls per replica over 60 searches: %s", method, served)
        assert all(count > 0 for count in served.values()), served
        assert sum(served.values()) == 60  # one call per search, none lost or doubled


def test_kill_9_an_embedder_replica_under_load(scaled: RunningStack, catalog: list[Row]) -> None:
    """Only calls in flight on the killed replica may fail; then every search finds its product,
    and the replica takes calls again once restarted."""
    stack = scaled.stack
    before = rpc_count(stack, "embedder-1", EMBED)

    outcomes, killed_at = load(
        scaled, catalog, 80, after=20, action=lambda: stack.stop_service("embedder-2", signal.SIGKILL)
    )

    failed = [o for o in outcomes if not (o.status == 200 and o.right)]
    recovered = [o for o in outcomes if o.started > killed_at and o.status == 200]
    log.warning(
        "kill -9 embedder-2 under load (concurrency %d): %d of %d searches failed %s; last failure "
        "%.2f s after the kill, first success started after it %.2f s after",
        CONCURRENCY,
        len(failed),
        len(outcomes),
        sorted({o.status for o in failed}),
        max((o.ended - killed_at for o in failed), default=0.0),
        recovered[0].ended - killed_at if recovered else float("nan"),
    )
    assert len(failed) <= CONCURRENCY, failed  # at most the calls in flight at the kill
    assert all(o.status == 200 and o.right for o in outcomes[40:])  # started well after the kill
    served_after = rpc_count(stack, "embedder-1", EMBED) - before
    assert served_after >= len(recovered)  # the survivor took every search started after the kill

    stack.start_service("embedder-2")
    stack.wait_ready("embedder-2")
    for _ in range(50):  # the gateway reconnects on its own (backoff up to 5 s)
        load(scaled, catalog, CONCURRENCY)
        if rpc_count(stack, "embedder-2", EMBED) > 0:
            break
    assert rpc_count(stack, "embedder-2", EMBED) > 0, "the restarted replica gets no calls"


@pytest.mark.parametrize(("victim", "first_photo"), [("embedder-1", 0), ("embed-2", 100)])
def test_kill_9_an_embedder_replica_or_an_embed_worker_mid_import(
    scaled: RunningStack, victim: str, first_photo: int
) -> None:
    """The workers' embed calls spread over both replicas; one killed, the other takes them. A second
    embed worker killed, the stack's worker reclaims its items. Every item indexed exactly once."""
    stack = scaled.stack
    if victim == "embed-2":
        stack.start_worker("embed-2", ["embed"])
    rows = shop_photo_rows(scaled, f"scale-{victim}", first_photo, 100)
    job_id = start_import(scaled, to_csv(rows), f"scale-{victim}.csv")
    wait_until_done(scaled, job_id, 20)

    stack.stop_service(victim, signal.SIGKILL)
    status = wait_for(scaled, job_id)

    assert (status["status"], status["done"], status["failed"]) == ("completed", 100, 0), status
    counts = vector_counts(scaled, [r["product_id"] for r in rows])
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    if victim.startswith("embedder"):
        stack.start_service(victim)
        stack.wait_ready(victim)


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False
