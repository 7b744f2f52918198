"""Redis Streams with consumer groups: the queues between ingest stages.

Each stage reads its stream as one consumer group, so running more workers of a stage scales it.
A message stays pending until its worker acknowledges it; a worker that dies leaves it pending,
and :meth:`Streams.reclaim` hands it to a live worker once it has been idle long enough.
Acknowledged messages are deleted, so a stream holds only work in flight: memory is bounded by
the producers' back-pressure (:meth:`Streams.wait_below`), never by trimming unprocessed work.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError
from redis.maint_notifications import MaintNotificationsConfig

log = logging.getLogger(__name__)

PREFIX = "vs:ingest:"
FEEDS = PREFIX + "feeds"  # one message per import job: parse the feed, emit product items
CRAWLS = PREFIX + "crawls"  # one message per crawl job: crawl, emit product items
FETCH = PREFIX + "fetch"  # one message per product: download and decode its images
EMBED = PREFIX + "embed"  # one message per product: embed its decoded images
INDEX = PREFIX + "index"  # one message per product: upsert metadata + vectors
DEAD = PREFIX + "dead"  # items that failed every attempt, with the reason (kept, capped)
DEAD_MAXLEN = 100_000

Fields = dict[str, bytes]


def open_redis(url: str, **options: Any) -> aioredis.Redis:
    """A client of the queues and jobs (connects lazily; ``options`` are redis-py's).

    Maintenance notifications (a Redis Cloud feature) are off: left on ("auto", redis-py 8's
    default), the pool skips its check of idle connections, so after a Redis restart every pooled
    connection failed its next command once ("Connection closed by server"; redis/redis-py#4128).
    """
    return aioredis.Redis.from_url(
        url, maint_notifications_config=MaintNotificationsConfig(enabled=False), **options
    )


@dataclass(frozen=True)
class Message:
    stream: str
    id: str
    fields: Fields
    deliveries: int = 1  # how many times this message has been handed to a consumer

    def text(self, name: str, default: str = "") -> str:
        value = self.fields.get(name)
        return value.decode() if value is not None else default


class Streams:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def ensure_group(self, stream: str, group: str) -> None:
        """Creates the stream and its group if missing (idempotent, safe across workers)."""
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(self, stream: str, fields: dict[str, str | bytes]) -> str:
        maxlen = DEAD_MAXLEN if stream == DEAD else None
        message_id = await self.redis.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        return as_text(message_id)

    async def read(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Message]:
        """New messages for this consumer; waits up to ``block_ms`` when there are none."""
        reply: Any = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [
            Message(stream, as_text(mid), _fields(fields))
            for _, entries in reply or []
            for mid, fields in entries
        ]

    async def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Message]:
        """Takes over messages pending longer than ``min_idle_ms`` (their worker died or stalled)."""
        reply: Any = await self.redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
        claimed = [(mid, fields) for mid, fields in reply[1] if fields is not None]
        if not claimed:
            return []
        deliveries = await self._deliveries(stream, group, [as_text(mid) for mid, _ in claimed])
        return [
            Message(stream, as_text(mid), _fields(fields), deliveries.get(as_text(mid), 1))
            for mid, fields in claimed
        ]

    async def _deliveries(self, stream: str, group: str, ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mid in ids:
            info = await self.redis.xpending_range(stream, group, min=mid, max=mid, count=1)
            if info:
                counts[mid] = int(info[0]["times_delivered"])
        return counts

    async def ack(self, message: Message, group: str) -> None:
        """Done with a message: acknowledge and delete it (one group per stream)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            queue_ack(pipe, message, group)
            await pipe.execute()

    async def forward(
        self, message: Message, group: str, stream: str, fields: dict[str, str | bytes]
    ) -> None:
        """Hands the item to the next stage and acknowledges it here, atomically: an item is never
        lost between two stages, nor duplicated by a crash between the two steps."""
        async with self.redis.pipeline(transaction=True) as pipe:
            queue_forward(pipe, message, group, stream, fields)
            await pipe.execute()

    async def length(self, stream: str) -> int:
        return int(await self.redis.xlen(stream))

    async def wait_below(self, stream: str, high_water: int, poll_s: float = 0.2) -> None:
        """Back-pressure for producers: waits while ``stream`` holds ``high_water`` items or more."""
        # Polling on purpose: the consumers that drain the stream live in other processes.
        while await self.length(stream) >= high_water:  # noqa: ASYNC110
            await asyncio.sleep(poll_s)


def queue_ack(pipe: Pipeline, message: Message, group: str) -> None:
    """Adds the acknowledgement and deletion of ``message`` to a pipeline (see Streams.ack)."""
    pipe.xack(message.stream, group, message.id)
    pipe.xdel(message.stream, message.id)


def queue_forward(
    pipe: Pipeline, message: Message, group: str, stream: str, fields: dict[str, str | bytes]
) -> None:
    """Adds a hand-over to ``stream`` to a transaction pipeline (see Streams.forward)."""
    pipe.xadd(stream, fields)  # type: ignore[arg-type]
    queue_ack(pipe, message, group)


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict[bytes | str, bytes | str]) -> Fields:
    return {as_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}
