"""Redis stopped mid-import and started again on its own data dir and port: the import completes
with every item indexed once, and no process of the stack is restarted. While Redis is down the
ingest API answers 503, searches keep working (they do not need Redis) and the worker idles."""

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from services.devstack.launcher import WORKER
from tests.e2e.catalog import unique_image_catalog_rows
from tests.e2e.conftest import RunningStack
from tests.e2e.ingest import (
    delete_products,
    job,
    shop_photo_rows,
    start_import,
    to_csv,
    vector_counts,
    wait_for,
    wait_until_done,
)

log = logging.getLogger(__name__)

DOWN_S = 8.0  # long enough for every stage to hit the outage, several of its retries included
TICKS = os.sysconf("SC_CLK_TCK")


# The first e2e test of a session also waits for ./scripts/up (minutes on a busy machine).
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("sig", "first_photo", "items"), [(signal.SIGTERM, 0, 300), (signal.SIGKILL, 300, 600)]
)
def test_redis_restarted_mid_import(
    running: RunningStack, sig: signal.Signals, first_photo: int, items: int
) -> None:
    """SIGTERM: a clean restart (an upgrade); SIGKILL: a crash. Either way Redis reloads its AOF.
    600 items are more than the fetch queue's high-water mark: the feed is still being read."""
    stack = running.stack
    rows = shop_photo_rows(running, f"redis-{sig.name.lower()}", first_photo, items)
    product_ids = [r["product_id"] for r in rows]
    try:
        before = running.client.get("/v1/stats").json()["vectors"]
        pids = _pids(running)
        worker = stack.procs.load()[WORKER]
        log_start = Path(worker.log_file).stat().st_size
        job_id = start_import(running, to_csv(rows), f"redis-{sig.name}.csv")
        wait_until_done(running, job_id, 50)

        at_stop = job(running, job_id)
        stack.stop_service("redis", sig)
        stopped = time.monotonic()
        cpu_before = _cpu_s(worker.pid)
        try:
            _check_while_down(running, job_id, rows)
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped)))
            idle_cpu_s = _cpu_s(worker.pid) - cpu_before
        finally:
            stack.ensure_redis()  # the same port and --dir: the AOF written before the stop is reloaded
        restarted = time.monotonic()
        log_restart = Path(worker.log_file).stat().st_size
        down_s = restarted - stopped

        # The gateway reconnects by itself: the first calls after the restart already work.
        assert running.client.get(f"/v1/imports/{job_id}").status_code == 200
        status = wait_for(running, job_id)
        finish_s = time.monotonic() - restarted
        counts = vector_counts(running, product_ids)
        log.warning(
            "Redis %s mid-import of %d items (%d done at %s items/s, feed read: %s): down %.1f s "
            "(worker CPU meanwhile %.2f s); the rest finished %.1f s after Redis came back: "
            "done %d, failed %d; %d products with one vector",
            *(sig.name, items, at_stop["done"], at_stop["rate_per_s"], at_stop["expanded"], down_s),
            *(idle_cpu_s, finish_s, status["done"], status["failed"]),
            sum(1 for c in counts.values() if c == 1),
        )

        assert (status["status"], status["done"], status["failed"]) == ("completed", items, 0), status
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
        assert running.client.get("/v1/stats").json()["vectors"] == before + items
        assert _pids(running) == pids, "a process of the stack died or was restarted"
        assert idle_cpu_s < 0.5 * down_s, f"the worker spun while Redis was down: {idle_cpu_s:.1f} s CPU"
        worker_log = Path(worker.log_file).read_bytes()
        outage_log = worker_log[log_start:log_restart].decode(errors="replace")
        warnings = [line for line in outage_log.splitlines() if " WARNING scraper " in line]
        assert any("Redis is unavailable" in line for line in warnings), outage_log[-2000:]
        # No connection of the worker's pool was used stale once Redis was back.
        after = worker_log[log_restart:].decode(errors="replace")
        assert "closed by server" not in after, after[-2000:]
    finally:
        delete_products(running, product_ids)


def _check_while_down(running: RunningStack, job_id: str, rows: list[dict[str, Any]]) -> None:
    """The ingest API says the job store is down; the query path does not notice."""
    status = running.client.get(f"/v1/imports/{job_id}")
    assert status.status_code == 503, status.text
    assert status.json()["code"] == "queue_unavailable"
    assert "Redis" in status.json()["detail"]
    posted = running.client.post("/v1/imports", files={"feed": ("late.csv", to_csv(rows[:1]), "text/csv")})
    assert posted.status_code == 503, posted.text
    assert "Redis" in posted.json()["detail"]

    row = unique_image_catalog_rows("fashion_products")[0]
    search = running.client.post(
        "/v1/search", files={"image": ("q.jpg", row.path.read_bytes())}, data={"detect": "false", "k": 1}
    )
    assert search.status_code == 200, search.text
    assert search.json()["objects"][0]["matches"][0]["product_id"] == row.product_id
    assert running.client.get(f"/v1/products/{row.product_id}").status_code == 200


def _pids(running: RunningStack) -> dict[str, int]:
    """Every process of the stack but Redis, by name."""
    return {name: proc.pid for name, proc in running.stack.running().items() if name != "redis"}


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds the process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS
