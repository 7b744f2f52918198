"""The read / reclaim / retry / acknowledge loop that every ingest stage runs.

A stage is one consumer group on one stream. Its handler gets a batch of messages and returns
one action per message (see :mod:`.actions`); the runner applies it (hand the item to the next
stream, record its outcome in the job, retry it later), so no stage deals with delivery itself::

    async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:  # a stage module's entry point
        await run_stage(ctx, Stage("fetch", FETCH, per_message(handle, "fetch"), in_flight=8), stop)

Delivery rules:

- A message is acknowledged only once its action is applied. A worker that dies leaves its
  messages pending; another worker takes them over (XAUTOCLAIM) once idle for ``reclaim_idle_s``.
- While a worker holds a message (handling it, or waiting to retry it) it refreshes the message's
  idle time every ``reclaim_idle_s / 3`` (XCLAIM JUSTID, which is not a delivery), so a slow but
  live worker is never robbed of its work.
- A transient failure (:class:`Retry`) is retried by the same worker after an exponential back-off;
  each retry is one more delivery. After ``max_attempts`` deliveries the stage's ``on_dead`` runs
  (default: a DEAD stream entry and the item failed with ``retries_exhausted``).
- A backend that is unreachable (the embedder or indexer down, restarting, loading) uses up none
  of the attempts of the items waiting for it, and pauses the stage's reads until it answers
  again (:mod:`.backend_outage`).
- On ``stop`` the runner reads nothing more, finishes the batches in flight and returns; messages
  waiting for a retry stay pending for another worker.
- While Redis is down the runner retries once a second (:mod:`services.scraper.outage`) and goes
  on where it was once Redis is back. A message it could not settle stays pending (never lost) and
  held: the same worker tries it again as soon as Redis answers, not ``reclaim_idle_s`` later.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Histogram
from redis.exceptions import RedisError

from services.common.jobs import ItemError
from services.common.streams import Message
from services.scraper.context import WorkerContext
from services.scraper.outage import RETRY_S, Outage, sleep_unless, until_redis_answers
from services.scraper.stages.actions import Action, BatchHandler, Retry, exception_action
from services.scraper.stages.apply import Applier, DeadHandler
from services.scraper.stages.backend_outage import BackendOutage
from services.scraper.stages.redelivery import Redelivery, dead_letter_item

log = logging.getLogger(__name__)

STAGE_SECONDS = Histogram(
    "vs_scraper_stage_seconds",
    "Time a stage's handler spends on one batch of messages.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


@dataclass(frozen=True)
class Stage:
    name: str  # consumer group, metrics label and ItemError.stage
    stream: str  # the stream it consumes
    handle: BatchHandler  # one action per message, in order
    batch: int = 1  # messages per handler call
    in_flight: int = 1  # handler calls running at once
    downstream: str | None = None  # back-pressure: no new reads while it holds high_water items
    high_water: int = 0
    on_dead: DeadHandler = field(default=dead_letter_item)


async def run_stage(ctx: WorkerContext, stage: Stage, stop: asyncio.Event) -> None:
    """Consumes ``stage.stream`` until ``stop`` is set (see the module docstring)."""
    await _Runner(ctx, stage).run(stop)


class _Runner:
    def __init__(self, ctx: WorkerContext, stage: Stage) -> None:
        self.ctx = ctx
        self.stage = stage
        self.settings = ctx.settings
        self.redelivery = Redelivery(ctx, stage.stream, stage.name, stage.batch)
        self.outage = Outage(f"{stage.name} stage")  # of Redis
        self.backend = BackendOutage(stage.name, ctx.settings)  # of the embedder or indexer
        self.applier = Applier(ctx, stage.name, self.redelivery, self.backend, stage.on_dead)

    async def run(self, stop: asyncio.Event) -> None:
        await self._ensure_group(stop)
        log.info("%s stage consuming %s as %s", self.stage.name, self.stage.stream, self.ctx.consumer)
        heartbeat = asyncio.create_task(self.redelivery.heartbeat())
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if len(tasks) >= self.stage.in_flight or (tasks and self._probing()):
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch = await self._next_batch(stop)
                if batch:
                    task = asyncio.create_task(self._process(batch))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.wait(tasks)  # graceful: what was read is finished, not abandoned
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            log.info("%s stage stopped", self.stage.name)

    async def _ensure_group(self, stop: asyncio.Event) -> None:
        stage = self.stage
        await until_redis_answers(
            f"{stage.name} stage", lambda: self.ctx.streams.ensure_group(stage.stream, stage.name), stop
        )

    async def _next_batch(self, stop: asyncio.Event) -> list[Message]:
        """Due retries first, then work of dead workers, then new messages."""
        redelivery = self.redelivery
        if self._probing():  # nothing in flight either: no item is left to find out with
            self.backend.answered()
        try:
            batch = await redelivery.claim_due(self.stage.batch)
            if self.backend.active:  # new work would only fail the same way
                if not batch:
                    await sleep_unless(stop, redelivery.wait_s(self.settings.block_ms / 1000))
                return batch
            batch = batch or await redelivery.reclaim() or await self._read(stop)
        except RedisError as exc:
            self.outage.failed(exc)
            if "NOGROUP" in str(exc):  # the stream was deleted (a Redis restarted without data)
                await self._ensure_group(stop)
            await sleep_unless(stop, RETRY_S)
            return []
        self.outage.recovered()
        return batch

    def _probing(self) -> bool:
        """The backend is out and every item waiting for it is in flight: their answers decide
        whether the stage takes new messages again."""
        return self.backend.active and not self.redelivery.retries_waiting

    async def _read(self, stop: asyncio.Event) -> list[Message]:
        stage = self.stage
        if stage.downstream and await self.ctx.streams.length(stage.downstream) >= stage.high_water:
            await sleep_unless(stop, 0.05)
            return []
        wait_s = self.redelivery.wait_s(self.settings.block_ms / 1000)  # up in time for a retry
        block_ms = max(1, int(wait_s * 1000))  # BLOCK 0 would wait forever
        return await self.ctx.streams.read(stage.stream, stage.name, self.ctx.consumer, stage.batch, block_ms)

    async def _process(self, batch: list[Message]) -> None:
        self.redelivery.hold(m.id for m in batch)
        max_attempts = self.settings.max_attempts
        live = [m for m in batch if m.deliveries <= max_attempts]
        actions: dict[str, Action] = {
            m.id: Retry(self._crashed_error(m)) for m in batch if m.deliveries > max_attempts
        }
        started = time.monotonic()
        if live:
            try:
                results = await self.stage.handle(live)
                actions.update(zip([m.id for m in live], results, strict=True))
            except Exception as exc:
                actions.update((m.id, exception_action(self.stage.name, m, exc)) for m in live)
            STAGE_SECONDS.labels(self.stage.name).observe(time.monotonic() - started)
            if any(not isinstance(a := actions[m.id], Retry) or not a.outage for m in live):
                self.backend.answered(started)
        outcomes = await self.applier.apply_batch(batch, actions, started)
        retried = [
            action.error
            for m, outcome in zip(batch, outcomes, strict=True)
            if outcome == "retried" and isinstance(action := actions[m.id], Retry)
        ]
        if retried:  # one line per batch: an outage would otherwise log every item every round
            first = retried[0]
            log.warning(
                "%s: %d of %d messages failed transiently (e.g. %s: %s: %s); retrying with back-off",
                *(self.stage.name, len(retried), len(batch), first.product_id, first.code, first.message),
            )

    def _crashed_error(self, message: Message) -> ItemError:
        return ItemError(
            message.text("product_id"),
            self.stage.name,
            "redelivered",
            f"delivered {message.deliveries} times without finishing (a worker crashed on it?)",
        )
