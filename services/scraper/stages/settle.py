"""Settling a batch: the Forward, Finish and Ack actions of many messages in one Redis transaction.

Applied one by one, each action is a round trip or two (a MULTI for the hand-over, a script for
the outcome, another MULTI for the acknowledgement): per item, the Redis client cost more CPU in
the worker than the stage's own work. One transaction per batch keeps each item's guarantees
(the hand-over or outcome and the acknowledgement happen together or not at all) and costs one
round trip for the batch. Retry and Leave need per-message bookkeeping and stay with the runner.
"""

import logging

from redis.exceptions import RedisError

from services.common.streams import Message, queue_ack, queue_forward
from services.scraper.context import WorkerContext
from services.scraper.stages.actions import Ack, Finish, Forward

log = logging.getLogger(__name__)

Settleable = Forward | Finish | Ack


def outcome_of(action: Settleable) -> str:
    """The metrics outcome of an applied action, as the runner names it."""
    match action:
        case Forward():
            return "forwarded"
        case Finish(result, _):
            return result
        case _:
            return "acked"


async def settle(ctx: WorkerContext, group: str, batch: list[tuple[Message, Settleable]]) -> None:
    """Applies every action of ``batch`` atomically; raises RedisError and applies none."""
    async with ctx.redis.pipeline(transaction=True) as pipe:
        for message, action in batch:
            match action:
                case Forward(stream, fields):
                    queue_forward(pipe, message, group, stream, fields)
                    continue
                case Finish(result, error):
                    job_id, product_id = message.text("job_id"), message.text("product_id")
                    await ctx.jobs.finish_item(job_id, product_id, result, error, pipe=pipe)
            queue_ack(pipe, message, group)
        await pipe.execute()


async def settle_all(
    ctx: WorkerContext, group: str, batch: list[tuple[Message, Settleable]]
) -> dict[str, str]:
    """:func:`settle`, then the outcome per message id: the action's, or "left" for all when
    Redis failed (they stay pending, for a retry or a reclaim)."""
    try:
        await settle(ctx, group, batch)
    except RedisError as exc:
        log.warning("%s: Redis error settling %d messages (%s); left pending", group, len(batch), exc)
        return {message.id: "left" for message, _ in batch}
    for _, action in batch:
        if isinstance(action, Finish) and action.error is not None:
            error = action.error
            log.info("%s: %s failed: %s: %s", group, error.product_id, error.code, error.message)
    return {message.id: outcome_of(action) for message, action in batch}
