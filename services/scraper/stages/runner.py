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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from services.common.jobs import ItemError
from services.common.streams import Message
from services.scraper.context import WorkerContext
from services.scraper.outage import RETRY_S, Outage, sleep_unless, until_redis_answers
from services.scraper.stages.actions import (
    Ack,
    Action,
    BatchHandler,
    Finish,
    Forward,
    Leave,
    Retry,
    exception_action,
)
from services.scraper.stages.failures import backoff_s
from services.scraper.stages.redelivery import Redelivery, dead_letter_item
from services.scraper.stages.settle import Settleable, settle_all

log = logging.getLogger(__name__)

ITEMS = Counter(
    "vs_scraper_items_total",
    "Messages handled by each ingest stage, by outcome "
    "(forwarded, done, skipped, failed, retried, dead, acked, left).",
    ["stage", "outcome"],
)
STAGE_SECONDS = Histogram(
    "vs_scraper_stage_seconds",
    "Time a stage's handler spends on one batch of messages.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


# Runs after the last attempt failed (message, last error, deliveries); the runner then acks.
DeadHandler = Callable[[WorkerContext, Message, ItemError, int], Awaitable[None]]


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
        self.outage = Outage(f"{stage.name} stage")

    async def run(self, stop: asyncio.Event) -> None:
        await self._ensure_group(stop)
        log.info("%s stage consuming %s as %s", self.stage.name, self.stage.stream, self.ctx.consumer)
        heartbeat = asyncio.create_task(self.redelivery.heartbeat())
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if len(tasks) >= self.stage.in_flight:
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
        try:
            batch = await redelivery.claim_due(self.stage.batch) or await redelivery.reclaim()
            batch = batch or await self._read(stop)
        except RedisError as exc:
            self.outage.failed(exc)
            if "NOGROUP" in str(exc):  # the stream was deleted (a Redis restarted without data)
                await self._ensure_group(stop)
            await sleep_unless(stop, RETRY_S)
            return []
        self.outage.recovered()
        return batch

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
        if live:
            started = time.perf_counter()
            try:
                results = await self.stage.handle(live)
                actions.update(zip([m.id for m in live], results, strict=True))
            except Exception as exc:
                actions.update((m.id, exception_action(self.stage.name, m, exc)) for m in live)
            STAGE_SECONDS.labels(self.stage.name).observe(time.perf_counter() - started)
        outcomes = await self._apply_batch(batch, actions)
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

    async def _apply_batch(self, batch: list[Message], actions: dict[str, Action]) -> list[str]:
        """Outcomes in batch order: Forward/Finish/Ack of several messages settled in one Redis
        transaction (see :mod:`.settle`), the rest one by one."""
        bulk: list[tuple[Message, Settleable]] = [
            (m, a) for m in batch if isinstance(a := actions[m.id], Forward | Finish | Ack)
        ]
        outcomes: dict[str, str] = {}
        if len(bulk) > 1:
            outcomes = await self._settle(bulk)
        rest = [m for m in batch if m.id not in outcomes]
        results = await asyncio.gather(*(self._apply(m, actions[m.id]) for m in rest))
        outcomes.update(zip([m.id for m in rest], results, strict=True))
        return [outcomes[m.id] for m in batch]

    async def _settle(self, bulk: list[tuple[Message, Settleable]]) -> dict[str, str]:
        outcomes = await settle_all(self.ctx, self.stage.name, bulk)
        for message, _ in bulk:
            if outcomes[message.id] == "left":  # Redis failed: none of the batch was settled
                self._again_soon(message.id)
            else:
                self.redelivery.release(message.id)
            ITEMS.labels(self.stage.name, outcomes[message.id]).inc()
        return outcomes

    async def _apply(self, message: Message, action: Action) -> str:
        """Carries out ``action``; returns the outcome. Whatever goes wrong, the message ends up
        finished, queued for a retry here, or released (pending, for a reclaim): never held forever."""
        streams, group = self.ctx.streams, self.stage.name
        held = False
        try:
            match action:
                case Forward(stream, fields):
                    await streams.forward(message, group, stream, fields)
                    outcome = "forwarded"
                case Finish(result, error):
                    job_id, product_id = message.text("job_id"), message.text("product_id")
                    await self.ctx.jobs.finish_item(job_id, product_id, result, error)
                    await streams.ack(message, group)
                    outcome = result
                    if error is not None:
                        log.info("%s: %s failed: %s: %s", group, product_id, error.code, error.message)
                case Ack():
                    await streams.ack(message, group)
                    outcome = "acked"
                case Retry(error):
                    outcome = await self._retry(message, error)
                    held = outcome == "retried"
                case Leave():
                    outcome, held = self._again_soon(message.id), True
        except RedisError as exc:
            log.warning(
                "%s: Redis error on %s (%s); trying it again once Redis answers", group, message.id, exc
            )
            outcome, held = self._again_soon(message.id), True
        except Exception:
            log.exception(
                "%s: could not apply %s to %s; left pending", group, type(action).__name__, message.id
            )
            outcome = "left"
        if not held:
            self.redelivery.release(message.id)
        ITEMS.labels(group, outcome).inc()
        return outcome

    def _again_soon(self, message_id: str) -> str:
        """Redis failed on the message: it stays held, and is claimed again (one more delivery)
        once Redis answers; a reclaim would first wait ``reclaim_idle_s``."""
        self.redelivery.later(message_id, RETRY_S)
        return "left"

    async def _retry(self, message: Message, error: ItemError) -> str:
        attempts, limit = message.deliveries, self.settings.max_attempts
        if attempts >= limit:
            log.warning("%s: %s dead after %d attempts: %s", self.stage.name, message.id, attempts, error)
            await self.stage.on_dead(self.ctx, message, error, attempts)
            await self.ctx.streams.ack(message, self.stage.name)
            return "dead"
        delay = backoff_s(attempts, self.settings.retry_base_s, self.settings.retry_max_s)
        log.debug(
            "%s: %s attempt %d/%d failed (%s: %s); retrying in %.1fs",
            *(self.stage.name, error.product_id or message.id, attempts, limit),
            *(error.code, error.message, delay),
        )
        self.redelivery.later(message.id, delay)
        return "retried"
