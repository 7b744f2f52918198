"""Carrying out the actions a stage's handler returned: hand-overs, outcomes, acknowledgements,
retries (see :mod:`.runner` for the delivery rules)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from prometheus_client import Counter
from redis.exceptions import RedisError

from services.common.jobs import ItemError
from services.common.streams import Message
from services.scraper.context import WorkerContext
from services.scraper.outage import RETRY_S
from services.scraper.stages.actions import Ack, Action, Finish, Forward, Leave, Retry
from services.scraper.stages.backend_outage import BackendOutage
from services.scraper.stages.failures import backoff_s
from services.scraper.stages.redelivery import Redelivery
from services.scraper.stages.settle import Settleable, settle_all

log = logging.getLogger(__name__)

ITEMS = Counter(
    "vs_scraper_items_total",
    "Messages handled by each ingest stage, by outcome "
    "(forwarded, done, skipped, failed, retried, waiting, dead, acked, left).",
    ["stage", "outcome"],
)
# Outcomes after which this worker still holds the message, to try it again.
HELD = frozenset({"retried", "waiting", "left"})

# Runs after the last attempt failed (message, last error, deliveries); the runner then acks.
DeadHandler = Callable[[WorkerContext, Message, ItemError, int], Awaitable[None]]


class Applier:
    """Applies one stage's actions. Whatever goes wrong, each message ends up finished, queued
    for a retry here, or released (pending, for a reclaim): never held forever."""

    def __init__(
        self,
        ctx: WorkerContext,
        group: str,
        redelivery: Redelivery,
        backend: BackendOutage,
        on_dead: DeadHandler,
    ) -> None:
        self.ctx = ctx
        self.group = group
        self.redelivery = redelivery
        self.backend = backend
        self.on_dead = on_dead

    async def apply_batch(
        self, batch: list[Message], actions: dict[str, Action], started: float
    ) -> list[str]:
        """Outcomes in batch order: Forward/Finish/Ack of several messages settled in one Redis
        transaction (see :mod:`.settle`), the rest one by one. ``started``: time.monotonic()
        when the handler's calls began."""
        bulk: list[tuple[Message, Settleable]] = [
            (m, a) for m in batch if isinstance(a := actions[m.id], Forward | Finish | Ack)
        ]
        outcomes: dict[str, str] = {}
        if len(bulk) > 1:
            outcomes = await self._settle(bulk)
        rest = [m for m in batch if m.id not in outcomes]
        results = await asyncio.gather(*(self._apply(m, actions[m.id], started) for m in rest))
        outcomes.update(zip([m.id for m in rest], results, strict=True))
        return [outcomes[m.id] for m in batch]

    def release(self, message_id: str) -> None:
        self.redelivery.release(message_id)
        self.backend.forget(message_id)

    async def _settle(self, bulk: list[tuple[Message, Settleable]]) -> dict[str, str]:
        outcomes = await settle_all(self.ctx, self.group, bulk)
        for message, _ in bulk:
            if outcomes[message.id] == "left":  # Redis failed: none of the batch was settled
                self._again_soon(message.id)
            else:
                self.release(message.id)
            ITEMS.labels(self.group, outcomes[message.id]).inc()
        return outcomes

    async def _apply(self, message: Message, action: Action, started: float) -> str:
        streams, group = self.ctx.streams, self.group
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
                case Retry(error, outage):
                    outcome = await self._retry(message, error, started if outage else None)
                case Leave():
                    outcome = self._again_soon(message.id)
        except RedisError as exc:
            log.warning(
                "%s: Redis error on %s (%s); trying it again once Redis answers", group, message.id, exc
            )
            outcome = self._again_soon(message.id)
        except Exception:
            log.exception(
                "%s: could not apply %s to %s; left pending", group, type(action).__name__, message.id
            )
            outcome = "released"
        if outcome not in HELD:
            self.release(message.id)
        ITEMS.labels(group, "left" if outcome == "released" else outcome).inc()
        return outcome

    def _again_soon(self, message_id: str) -> str:
        """Redis failed on the message: it stays held, and is claimed again (one more delivery)
        once Redis answers; a reclaim would first wait ``reclaim_idle_s``."""
        self.redelivery.later(message_id, RETRY_S)
        return "left"

    async def _retry(self, message: Message, error: ItemError, outage_started: float | None) -> str:
        """Another try later, or the stage's ``on_dead`` once the item's attempts (or its patience
        with an unreachable backend, see :mod:`.backend_outage`) are used up."""
        settings = self.ctx.settings
        attempts, limit = message.deliveries, settings.max_attempts
        delay = backoff_s(attempts, settings.retry_base_s, settings.retry_max_s)
        if outage_started is not None:
            wait = self.backend.failed(message.id, outage_started, f"{error.code}: {error.message}")
            if wait is None:
                waited = self.backend.waited_s(message.id)
                error = replace(error, message=f"unreachable for {waited:.0f} s: {error.message}")
                return await self._dead(message, error, attempts)
            if not wait.charged:
                self.redelivery.later(message.id, wait.delay_s, keep_count=attempts)
                return "waiting"
            delay = wait.delay_s
        if attempts >= limit:
            return await self._dead(message, error, attempts)
        log.debug(
            "%s: %s attempt %d/%d failed (%s: %s); retrying in %.1fs",
            *(self.group, error.product_id or message.id, attempts, limit),
            *(error.code, error.message, delay),
        )
        self.redelivery.later(message.id, delay)
        return "retried"

    async def _dead(self, message: Message, error: ItemError, attempts: int) -> str:
        log.warning("%s: %s dead after %d attempts: %s", self.group, message.id, attempts, error)
        await self.on_dead(self.ctx, message, error, attempts)
        await self.ctx.streams.ack(message, self.group)
        return "dead"
