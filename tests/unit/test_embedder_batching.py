import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.errors import Unavailable
from services.embedder.batching import Item, MicroBatcher, Rows

T = TypeVar("T")


class FakeModel:
    """Embeds item [v] as the row [v, 2v]; fails a run holding a negative item; records every run."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[list[float]] = []
        self.threads: set[str] = set()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, items: list[Item]) -> Rows:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.threads.add(threading.current_thread().name)
            values = [float(item[0]) for item in items]
            self.batches.append(values)
            time.sleep(self.delay_s)
            if min(values) < 0:
                raise ValueError("negative item")
            column = np.array(values, dtype=np.float32)[:, np.newaxis]  # (n, 1)
            return np.hstack([column, 2 * column])  # (n, 2)
        finally:
            with self._lock:
                self.active -= 1


def items(*values: float) -> list[Item]:
    return [np.array([value], dtype=np.float32) for value in values]


def expected(*values: float) -> Rows:
    return np.array([[value, 2 * value] for value in values], dtype=np.float32)


def run_with(
    model: FakeModel, max_batch: int, max_wait_ms: float, body: Callable[[MicroBatcher], Awaitable[T]]
) -> T:
    async def main() -> T:
        batcher = MicroBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms)
        try:
            return await body(batcher)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_concurrent_callers_share_runs_and_get_their_own_rows() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher) -> list[Rows]:
        return await asyncio.gather(*(batcher.embed(items(float(i))) for i in range(10)))

    results = run_with(model, max_batch=32, max_wait_ms=50, body=body)
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(rows, expected(float(i)))
    assert len(model.batches) < 10
    assert sorted(v for batch in model.batches for v in batch) == [float(i) for i in range(10)]


def test_runs_attribute_and_metric_count_model_runs() -> None:
    model = FakeModel()
    before = REGISTRY.get_sample_value("vs_embedder_model_runs_total") or 0.0

    async def body(batcher: MicroBatcher) -> int:
        await asyncio.gather(batcher.embed(items(1, 2)), batcher.embed(items(3)))
        await batcher.embed(items(4))
        return batcher.runs

    runs = run_with(model, max_batch=8, max_wait_ms=20, body=body)
    assert runs == len(model.batches) == 2
    assert REGISTRY.get_sample_value("vs_embedder_model_runs_total") == before + 2


def test_a_request_bigger_than_max_batch_is_split_in_order() -> None:
    model = FakeModel()
    values = [float(v) for v in range(10)]
    rows = run_with(model, 4, 1, lambda batcher: batcher.embed(items(*values)))
    np.testing.assert_array_equal(rows, expected(*values))
    assert model.batches == [values[:4], values[4:8], values[8:]]


def test_a_full_batch_does_not_wait_for_max_wait() -> None:
    model = FakeModel()
    start = time.perf_counter()
    run_with(model, 2, 10_000, lambda batcher: batcher.embed(items(1, 2)))
    assert time.perf_counter() - start < 2.0
    assert model.batches == [[1.0, 2.0]]


def test_a_lone_item_waits_at_most_about_max_wait() -> None:
    model = FakeModel()
    start = time.perf_counter()
    rows = run_with(model, 8, 30, lambda batcher: batcher.embed(items(5)))
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(rows, expected(5))
    assert 0.025 < elapsed < 2.0


def test_a_failed_run_fails_only_its_callers_and_the_batcher_keeps_working() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher) -> tuple[BaseException | Rows, ...]:
        # max_batch 2: [-1, 1] is one run (fails), [2, 3] the next (succeeds).
        outcomes = await asyncio.gather(
            batcher.embed(items(-1, 1)), batcher.embed(items(2, 3)), return_exceptions=True
        )
        return (*outcomes, await batcher.embed(items(4)))

    failed, ok, after = run_with(model, 2, 20, body)
    assert isinstance(failed, ValueError)
    assert str(failed) == "negative item"
    np.testing.assert_array_equal(ok, expected(2, 3))
    np.testing.assert_array_equal(after, expected(4))
    assert model.batches == [[-1.0, 1.0], [2.0, 3.0], [4.0]]


def test_runs_are_off_the_loop_on_one_thread_and_never_overlap() -> None:
    model = FakeModel(delay_s=0.01)

    async def body(batcher: MicroBatcher) -> list[Rows]:
        return await asyncio.gather(*(batcher.embed(items(float(i))) for i in range(6)))

    results = run_with(model, 1, 0, body)
    assert [float(rows[0, 0]) for rows in results] == [float(i) for i in range(6)]
    assert len(model.batches) == 6
    assert model.max_active == 1
    assert len(model.threads) == 1
    assert threading.current_thread().name not in model.threads


def test_a_cancelled_caller_is_skipped_and_others_are_served() -> None:
    model = FakeModel(delay_s=0.1)

    async def body(batcher: MicroBatcher) -> Rows:
        busy = asyncio.create_task(batcher.embed(items(1)))
        await asyncio.sleep(0.02)  # run [1] is in progress; [2] queues behind it
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.embed(items(2)), timeout=0.01)
        await busy
        return await batcher.embed(items(3))

    rows = run_with(model, 8, 0, body)
    np.testing.assert_array_equal(rows, expected(3))
    assert model.batches == [[1.0], [3.0]]


def test_close_fails_waiting_callers_and_refuses_new_work() -> None:
    model = FakeModel(delay_s=0.1)

    async def body(batcher: MicroBatcher) -> tuple[BaseException | Rows, ...]:
        running = asyncio.create_task(batcher.embed(items(1)))
        await asyncio.sleep(0.02)
        queued = asyncio.create_task(batcher.embed(items(2)))
        await asyncio.sleep(0.01)
        await batcher.close()
        outcomes = await asyncio.gather(running, queued, return_exceptions=True)
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.embed(items(3))
        return outcomes

    outcomes = run_with(model, 8, 0, body)
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes)
    assert model.batches == [[1.0]]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(FakeModel(), max_batch=0, max_wait_ms=1)
    with pytest.raises(ValueError, match="at least one item"):
        run_with(FakeModel(), 4, 1, lambda batcher: batcher.embed([]))
