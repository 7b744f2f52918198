"""Pending-message bookkeeping of one stage in one worker: keep what it holds, take over what dead
workers left behind, claim messages back for a retry, and give up on them (dead-lettering)."""

import asyncio
import heapq
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError

from services.common.jobs import ItemError
from services.common.streams import DEAD, Message, as_text
from services.scraper.context import WorkerContext

log = logging.getLogger(__name__)

_CHUNK = 500  # ids per XCLAIM
_SCANS_PER_RECLAIM = 20  # XAUTOCLAIM calls per reclaim pass (each scans up to 10 x count entries)


class Redelivery:
    def __init__(self, ctx: WorkerContext, stream: str, group: str, count: int) -> None:
        self.redis = ctx.redis
        self.stream = stream
        self.group = group
        self.consumer = ctx.consumer
        self.count = count
        self.idle_ms = int(ctx.settings.reclaim_idle_s * 1000)
        self.held: set[str] = set()  # message ids this worker is handling or will retry
        self._retries: list[tuple[float, str]] = []  # heap of (due, message id), time.monotonic()
        self._kept: dict[str, int] = {}  # message id -> delivery count its next claim keeps
        self._cursor = "0-0"  # XAUTOCLAIM scan position
        self._next_scan = 0.0  # loop time of the next reclaim pass

    def hold(self, ids: Iterable[str]) -> None:
        self.held.update(ids)

    def release(self, message_id: str) -> None:
        self.held.discard(message_id)
        self._kept.pop(message_id, None)

    def later(self, message_id: str, delay_s: float, keep_count: int | None = None) -> None:
        """Keeps holding the message, to claim it back in ``delay_s`` (:meth:`claim_due`): one
        more delivery, or with ``keep_count`` its delivery count set to that (a retry that
        is not the item's attempt, e.g. after a backend outage)."""
        if keep_count is not None:
            self._kept[message_id] = keep_count
        heapq.heappush(self._retries, (time.monotonic() + delay_s, message_id))

    @property
    def retries_waiting(self) -> bool:
        return bool(self._retries)

    def wait_s(self, longest: float) -> float:
        """``longest``, or less when a retry is due sooner."""
        return min(longest, self._retries[0][0] - time.monotonic()) if self._retries else longest

    async def claim_due(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages whose retry is due, claimed back (one more delivery each)."""
        now = time.monotonic()
        ids: list[str] = []
        while self._retries and self._retries[0][0] <= now and len(ids) < limit:
            ids.append(heapq.heappop(self._retries)[1])
        if not ids:
            return []
        try:
            messages = await self.claim(ids)
        except RedisError:
            # Still due: out of the heap but held, the heartbeat would keep them claimed forever,
            # never retried here nor reclaimed by another worker.
            for message_id in ids:
                heapq.heappush(self._retries, (now, message_id))
            raise
        for gone in set(ids) - {m.id for m in messages}:  # finished elsewhere meanwhile
            self.release(gone)
        return messages

    async def heartbeat(self) -> None:
        """Keeps the held messages' idle time low, so no other worker reclaims them."""
        interval = self.idle_ms / 3000
        while True:
            await asyncio.sleep(interval)
            ids = list(self.held)
            for start in range(0, len(ids), _CHUNK):
                try:
                    # JUSTID: refreshes the idle time without counting a delivery.
                    await self.redis.xclaim(
                        self.stream,
                        self.group,
                        self.consumer,
                        0,
                        _ids(ids[start : start + _CHUNK]),
                        justid=True,
                    )
                except Exception as exc:  # never let a Redis hiccup end the heartbeat
                    log.warning("%s: heartbeat failed: %s", self.group, exc)

    async def claim(self, ids: list[str]) -> list[Message]:
        """Takes held messages back for a retry: one more delivery each, except those with a
        kept count (:meth:`later`), whose count XCLAIM's RETRYCOUNT sets back."""
        by_count: dict[int | None, list[str]] = {}
        for message_id in ids:
            by_count.setdefault(self._kept.get(message_id), []).append(message_id)
        entries: list[Any] = []
        for count, group in by_count.items():
            reply: Any = await self.redis.xclaim(
                self.stream, self.group, self.consumer, 0, _ids(group), retrycount=count
            )
            entries += reply
        for message_id in ids:  # only now: a claim that failed is tried again with the same count
            self._kept.pop(message_id, None)
        return await self._messages(entries)

    async def reclaim(self) -> list[Message]:
        """Messages idle for ``reclaim_idle_s`` (their worker died), scanning the whole pending
        list in passes at most every ``reclaim_idle_s / 2``."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_scan:
            return []
        for _ in range(_SCANS_PER_RECLAIM):
            reply: Any = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self.idle_ms, self._cursor, count=self.count
            )
            self._cursor = as_text(reply[0])
            # Ours already: held through a Redis outage longer than the idle time, which the
            # heartbeat could not refresh. Handling them twice would forward them twice.
            messages = [m for m in await self._messages(reply[1]) if m.id not in self.held]
            if messages:
                log.info("%s: took over %d messages of a stopped worker", self.group, len(messages))
                self.hold(m.id for m in messages)
                return messages
            if self._cursor == "0-0":
                break
        if self._cursor == "0-0":  # a full pass found nothing: rest until the next pass
            self._next_scan = loop.time() + self.idle_ms / 2000
        return []

    async def _messages(self, entries: list[Any]) -> list[Message]:
        found = [(as_text(mid), fields) for mid, fields in entries if fields is not None]
        if not found:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid, _ in found:
                pipe.xpending_range(self.stream, self.group, min=mid, max=mid, count=1)
            pending: list[Any] = await pipe.execute()
        return [
            Message(
                self.stream,
                mid,
                {as_text(k): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()},
                int(info[0]["times_delivered"]) if info else 1,
            )
            for (mid, fields), info in zip(found, pending, strict=True)
        ]


def _ids(ids: list[str]) -> list[Any]:
    return list(ids)  # redis-py's annotation wants a list of a union that list[str] does not match


async def dead_letter_item(ctx: WorkerContext, message: Message, error: ItemError, attempts: int) -> None:
    """The default last resort for a job item: a DEAD stream entry, and the item failed."""
    job_id, product_id = message.text("job_id"), message.text("product_id")
    await ctx.streams.add(
        DEAD,
        {
            "job_id": job_id,
            "product_id": product_id,
            "stage": error.stage,
            "code": error.code,
            "reason": f"{error.code}: {error.message}",
            "attempts": str(attempts),
            "item": message.fields.get("item", b""),
        },
    )
    if job_id:
        final = replace(
            error,
            code="retries_exhausted",
            message=f"gave up after {attempts} attempts; last error ({error.code}): {error.message}",
        )
        await ctx.jobs.finish_item(job_id, product_id, "failed", final)
