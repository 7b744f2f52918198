"""What a stage's handler decides for each message; :mod:`.runner` carries it out."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from services.common.jobs import ItemError, Outcome
from services.common.streams import Message
from services.scraper.stages.failures import StageFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forward:
    """Hands the item to the next stage, atomically with the acknowledgement."""

    stream: str
    fields: dict[str, str | bytes]


@dataclass(frozen=True)
class Finish:
    """The item's final outcome in its job (from the message's job_id and product_id fields)."""

    outcome: Outcome
    error: ItemError | None = None


@dataclass(frozen=True)
class Ack:
    """Done with a message that is not a job item (e.g. a feed or crawl job message)."""


@dataclass(frozen=True)
class Retry:
    """A transient failure: retried after a back-off, given up after ``max_attempts`` deliveries.

    An ``outage`` (the backend was unreachable) does not count as an attempt: the item waits
    for the backend, for up to ``outage_patience_s`` (see :mod:`.backend_outage`)."""

    error: ItemError
    outage: bool = False


@dataclass(frozen=True)
class Leave:
    """Redis failed while handling: the message stays pending, and this worker takes it again as
    soon as Redis answers (one more delivery, no back-off: it was not the item's fault)."""


Action = Forward | Finish | Ack | Retry | Leave
BatchHandler = Callable[[list[Message]], Awaitable[list[Action]]]
MessageHandler = Callable[[Message], Awaitable[Action]]


def failure_action(failure: StageFailure, product_id: str, stage: str, row: int | None = None) -> Action:
    """Permanent failure -> the item fails now; transient -> retried."""
    error = failure.item_error(product_id, stage, row)
    return Retry(error, failure.outage) if failure.transient else Finish("failed", error)


def exception_action(stage: str, message: Message, exc: BaseException) -> Action:
    """A handler crashed: Redis trouble leaves the message for a moment, anything else is retried."""
    if isinstance(exc, RedisError):
        log.warning("%s: Redis error on %s, leaving it pending: %s", stage, message.id, exc)
        return Leave()
    log.error("%s: unexpected error on %s", stage, message.id, exc_info=exc)
    product_id = message.text("product_id")
    return Retry(ItemError(product_id, stage, "internal", f"{type(exc).__name__}: {exc}"))


def per_message(handle: MessageHandler, stage: str) -> BatchHandler:
    """A batch handler running ``handle`` on each message concurrently."""

    async def handle_batch(messages: list[Message]) -> list[Action]:
        results = await asyncio.gather(*(handle(m) for m in messages), return_exceptions=True)
        return [
            exception_action(stage, m, r) if isinstance(r, BaseException) else r
            for m, r in zip(messages, results, strict=True)
        ]

    return handle_batch
