"""Micro-batching: images from concurrent requests share one model run.

A CNN embeds a batch of 16 in far less time than 16 batches of 1, so under load the batcher
waits up to ``max_wait_ms`` after the first queued image for others to arrive (or until
``max_batch`` are queued), runs the model once off the event loop, and hands each caller its rows.
Runs go through a single-worker executor: they never overlap, so one run gets every core.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter, Histogram

from services.common.errors import Unavailable

log = logging.getLogger(__name__)

Item = npt.NDArray[Any]  # one preprocessed image, e.g. (3, crop, crop)
Rows = npt.NDArray[np.float32]  # (n, dim): one row per item, in item order
RunFn = Callable[[list[Item]], Rows]

RUNS = Counter("vs_embedder_model_runs", "Model runs (each embeds one micro-batch).")
BATCH_SIZE = Histogram(
    "vs_embedder_batch_size", "Images per model run.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
RUN_SECONDS = Histogram(
    "vs_embedder_model_run_seconds",
    "Time of one model run, pre-processing excluded.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@dataclass(frozen=True)
class _Pending:
    item: Item
    future: asyncio.Future[Rows]
    enqueued: float  # loop.time() when queued


class MicroBatcher:
    """``await embed(items)`` -> (len(items), dim) rows; see the module docstring.

    ``runs`` counts model runs (also exported as a Prometheus counter) so tests can check batching.
    """

    def __init__(self, run: RunFn, max_batch: int, max_wait_ms: float) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self._run = run
        self.max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder-model")
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.runs = 0

    async def embed(self, items: Sequence[Item]) -> Rows:
        """Rows for ``items`` in order. Raises what the run raised, or Unavailable once closed."""
        if self._closed:
            raise Unavailable("the embedder is shutting down")
        if not items:
            raise ValueError("embed() needs at least one item")
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="embedder-batcher")
        now = loop.time()
        futures: list[asyncio.Future[Rows]] = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait(_Pending(item, future, now))
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError:
            for future in futures:  # the worker skips cancelled items instead of running them
                future.cancel()
            raise
        errors = [future.exception() for future in futures]  # retrieves them all: no "never retrieved"
        first_error = next((error for error in errors if error is not None), None)
        if first_error is not None:
            raise first_error
        return np.stack([future.result() for future in futures])

    async def close(self) -> None:
        """Stops taking work, fails whatever is still queued, and waits for a run in progress."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._queue.empty():
            _fail([self._queue.get_nowait()], Unavailable("the embedder is shutting down"))
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            if batch:
                await self._run_batch(batch)

    async def _collect(self) -> list[_Pending]:
        """Waits for one item, then gathers more until max_batch or its max_wait is over."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = batch[0].enqueued + self._max_wait
        while len(batch) < self.max_batch:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(self._queue.get_nowait())
        return [pending for pending in batch if not pending.future.done()]

    async def _run_batch(self, batch: list[_Pending]) -> None:
        self.runs += 1
        RUNS.inc()
        BATCH_SIZE.observe(len(batch))
        items = [pending.item for pending in batch]
        try:
            with RUN_SECONDS.time():
                rows = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, items)
            if rows.shape[0] != len(items):
                raise RuntimeError(f"model run returned {rows.shape[0]} rows for {len(items)} items")
            for pending, row in zip(batch, rows, strict=True):
                if not pending.future.done():
                    pending.future.set_result(row)
        except Exception as exc:  # fails this run's callers only; the next run starts clean
            log.warning("model run of %d items failed: %r", len(items), exc)
            _fail(batch, exc)
        finally:  # cancelled by close() mid-run: nobody may wait forever
            _fail(batch, Unavailable("the embedder is shutting down"))


def _fail(batch: Sequence[_Pending], error: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
