"""Sync-mode imports: once a full re-import has finished, delete the source's products that the
feed no longer lists.

Design: before it finishes reading a sync-mode feed, the feed stage marks the job
``sync=pending`` and adds it to a sorted set (:func:`request`). Every feed worker watches that
set (:func:`watch`) without blocking its feeds: a job is claimed with a lease, so one worker
handles it at a time and another takes over if that worker dies; it is looked at again later
while its items are in flight, skipped if the job failed, and synced once the job completed.
A sync is idempotent: a product counts as deleted only for the worker that removes it from the
source set, so a retried sync neither double-counts nor misses anything.

Kept: every product the job emitted, and the products of rows the feed stage rejected (a row
with a bad price must not delete the product it describes). A job that emitted nothing deletes
nothing: an empty or broken feed is far likelier than a shop with no products left.
"""

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.gen.visualsearch.v1 import indexer_pb2
from services.common.jobs import Jobs, now_millis
from services.common.streams import as_text
from services.scraper.context import WorkerContext

log = logging.getLogger(__name__)

PENDING = "vs:sync:pending"  # sorted set: job id -> when to look at it next (ms)
LEASE_MS = 60_000  # a claimed job is someone's for this long (renewed while deleting)
SCAN_BATCH = 500

# KEYS: the pending set. ARGV: now ms, lease end ms, count. Claims due jobs by pushing them back.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, job in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], job) end
return due
"""


def source_key(source: str) -> str:
    """The products indexed from a source (maintained by the index stage)."""
    return f"vs:source:{source}"


def emitted_key(job_id: str) -> str:
    return f"{Jobs.key(job_id)}:emitted"


def kept_key(job_id: str) -> str:
    """Products of rejected rows: not imported this time, but not to be deleted either."""
    return f"{Jobs.key(job_id)}:kept"


async def request(client: aioredis.Redis, job_id: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(Jobs.key(job_id), "sync", "pending")
        pipe.zadd(PENDING, {job_id: now_millis()})
        await pipe.execute()


async def watch(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """Settles pending syncs until ``stop`` is set."""
    claim = ctx.redis.register_script(_CLAIM)
    while not stop.is_set():
        try:
            now = now_millis()
            due: Any = await claim(keys=[PENDING], args=[now, now + LEASE_MS, 10])
            for job_id in due:
                await settle(ctx, as_text(job_id))
        except (RedisError, grpc.aio.AioRpcError) as exc:
            # Left pending: the lease runs out and the sync is tried again.
            log.warning("sync deferred: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ctx.settings.sync_poll_s)


async def settle(ctx: WorkerContext, job_id: str) -> None:
    """Syncs one claimed job if it completed; looks again later if it is still running."""
    status = await ctx.jobs.get(job_id)
    if status is None:
        await ctx.redis.zrem(PENDING, job_id)
        return
    if status.status in ("queued", "running"):
        await ctx.redis.zadd(PENDING, {job_id: now_millis() + int(ctx.settings.sync_poll_s * 1000)})
        return
    if status.status != "completed":
        await _finish(ctx.redis, job_id, "skipped", "sync skipped: the import failed, so nothing was deleted")
        return
    if not await ctx.redis.scard(emitted_key(job_id)):
        await _finish(ctx.redis, job_id, "skipped", "sync skipped: the feed had no valid items")
        return
    deleted = await delete_missing(ctx, job_id, str(status.spec.get("source", "")))
    log.info("sync of job %s deleted %d products", job_id, deleted)
    await _finish(ctx.redis, job_id, "done", f"sync deleted {deleted} products the feed no longer lists")


async def _finish(client: aioredis.Redis, job_id: str, sync: str, message: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(Jobs.key(job_id), mapping={"sync": sync, "message": message})
        pipe.zrem(PENDING, job_id)
        await pipe.execute()


async def delete_missing(ctx: WorkerContext, job_id: str, source: str) -> int:
    """Deletes from the indexer every product of ``source`` this job did not list; returns how many
    this call deleted."""
    source_set = source_key(source)
    limit = asyncio.Semaphore(ctx.settings.sync_concurrency)
    deleted = 0
    cursor: int = 0
    while True:
        cursor, members = await ctx.redis.sscan(source_set, cursor, count=SCAN_BATCH)
        product_ids = [as_text(m) for m in members]
        stale = await _not_listed(ctx.redis, job_id, product_ids)
        results = await asyncio.gather(*(_delete(ctx, job_id, source_set, p, limit) for p in stale))
        deleted += sum(results)
        await ctx.redis.zadd(PENDING, {job_id: now_millis() + LEASE_MS}, xx=True)  # still ours
        if cursor == 0:
            return deleted


async def _not_listed(client: aioredis.Redis, job_id: str, product_ids: list[str]) -> list[str]:
    if not product_ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        pipe.smismember(emitted_key(job_id), product_ids)
        pipe.smismember(kept_key(job_id), product_ids)
        emitted, kept = await pipe.execute()
    return [p for p, e, k in zip(product_ids, emitted, kept, strict=True) if not e and not k]


async def _delete(
    ctx: WorkerContext, job_id: str, source_set: str, product_id: str, limit: asyncio.Semaphore
) -> int:
    async with limit:
        try:
            request = indexer_pb2.DeleteRequest(product_id=product_id)
            await ctx.indexer.Delete(request, timeout=ctx.settings.index_deadline_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            # Already gone (deleted by hand, or by an earlier attempt of this sync).
        if not await ctx.redis.srem(source_set, product_id):
            return 0  # another worker's attempt got here first and counted it
        await ctx.redis.hincrby(Jobs.key(job_id), "deleted", 1)
        return 1
