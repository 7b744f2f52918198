"""The feed stage: reads import jobs from the FEEDS stream (group "feeds"), one message per job,
parses the feed and emits one FETCH item per valid row; bad rows become the job's errors.

A job's message stays pending until its feed has been read to the end, and the worker keeps it
claimed meanwhile (a big feed takes longer than the reclaim idle time). If the worker dies, the
job is read again from the start elsewhere: emission is idempotent per product, and each
rejected row is recorded once, so a retry neither duplicates items nor errors. A Redis outage
mid-feed makes the same worker read the feed again once Redis is back.

Each worker also watches pending sync-mode deletions (services.scraper.sync).
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from services.common.jobs import ItemError, Jobs
from services.common.streams import DEAD, FEEDS, Message
from services.scraper import sync
from services.scraper.context import WorkerContext
from services.scraper.feed_rows import RowError, RowRules
from services.scraper.feed_source import FeedInput, FeedUnavailable, NotModified, read_feed, remember
from services.scraper.feeds import FeedError, detect_format, parse_feed
from services.scraper.items import emit_item
from services.scraper.outage import RETRY_S, Outage, until_redis_answers
from services.scraper.stages.apply import ITEMS
from services.scraper.stages.runner import STAGE_SECONDS

log = logging.getLogger(__name__)

GROUP = "feeds"
STAGE = "feed"
# Rows of these errors have no usable product id: nothing to keep in a sync.
_NO_PRODUCT = frozenset({"missing_product_id", "invalid_product_id"})


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    await until_redis_answers("feed stage", lambda: ctx.streams.ensure_group(FEEDS, GROUP), stop)
    watcher = asyncio.create_task(sync.watch(ctx, stop), name="sync-watch")
    active: set[asyncio.Task[None]] = set()
    outage = Outage("feed stage")
    try:
        while not stop.is_set():
            try:
                await _take(ctx, active)
            except RedisError as exc:
                outage.failed(exc)
                await asyncio.sleep(RETRY_S)
                continue
            outage.recovered()
    finally:
        # Unfinished feeds stay pending; another worker reads them again (idempotently). Not
        # finished here: a feed waiting on back-pressure would wait for stages that are stopping.
        for task in active:
            task.cancel()
        await asyncio.gather(*active, return_exceptions=True)
        await asyncio.gather(watcher, return_exceptions=True)


async def _take(ctx: WorkerContext, active: set[asyncio.Task[None]]) -> None:
    free = ctx.settings.feed_jobs_per_worker - len(active)
    if free <= 0:
        await asyncio.wait(active, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        return
    idle_ms = int(ctx.settings.reclaim_idle_s * 1000)
    messages = await ctx.streams.reclaim(FEEDS, GROUP, ctx.consumer, idle_ms, free)
    if not messages:
        messages = await ctx.streams.read(FEEDS, GROUP, ctx.consumer, free, ctx.settings.block_ms)
    reading = {task.get_name() for task in active}
    for message in messages:
        name = f"feed-{message.id}"
        if name in reading:
            continue  # ours, idle through a Redis outage: the task reading it acknowledges it
        task = asyncio.create_task(_process(ctx, message), name=name)
        active.add(task)
        task.add_done_callback(active.discard)


async def _process(ctx: WorkerContext, message: Message) -> None:
    job_id = message.text("job_id")
    if message.deliveries > ctx.settings.max_attempts:
        tries = message.deliveries - 1
        reason = f"gave up on the feed after {tries} attempt(s): the workers reading it crashed or failed"
        await ctx.streams.add(DEAD, {"job_id": job_id, "stage": GROUP, "reason": reason})
        await ctx.jobs.fail(job_id, reason)
        await ctx.streams.ack(message, GROUP)
        ITEMS.labels(GROUP, "dead").inc()
        return
    heartbeat = asyncio.create_task(keep_claimed(ctx, message))
    started = time.perf_counter()
    try:
        await _handle_until_done(ctx, message)
        ITEMS.labels(GROUP, "acked").inc()
    except Exception:
        log.exception("feed job %s: unexpected error; the job stays pending and is retried", job_id)
        ITEMS.labels(GROUP, "left").inc()
    finally:
        heartbeat.cancel()
        STAGE_SECONDS.labels(GROUP).observe(time.perf_counter() - started)


async def _handle_until_done(ctx: WorkerContext, message: Message) -> None:
    """Reads the job's feed and acknowledges its message. Through a Redis outage it starts over
    once Redis is back, in this worker and without another delivery: a redelivery would count
    against the job's attempts, and wait ``reclaim_idle_s`` first."""
    job_id = message.text("job_id")
    outage = Outage(f"feed job {job_id}")
    while True:
        try:
            if outage.since is not None:
                await ctx.redis.ping()
                outage.recovered()
            await handle_job(ctx, job_id)
            await ctx.streams.ack(message, GROUP)
            return
        except RedisError as exc:
            outage.failed(exc)
            await asyncio.sleep(RETRY_S)  # cancelled when the worker stops: the job stays pending


async def keep_claimed(ctx: WorkerContext, message: Message) -> None:
    """Resets the message's idle time so no other worker reclaims a feed still being read."""
    while True:
        await asyncio.sleep(ctx.settings.reclaim_idle_s / 3)
        with contextlib.suppress(RedisError):
            await ctx.redis.xclaim(FEEDS, GROUP, ctx.consumer, 0, [message.id], justid=True)


async def handle_job(ctx: WorkerContext, job_id: str) -> None:
    """Reads the job's feed and emits its items. Returns once the feed was fully read (or the
    job failed); transient errors (Redis) propagate so the message is retried."""
    status = await ctx.jobs.get(job_id)
    if status is None:
        log.warning("feed job %s does not exist; message dropped", job_id)
        return
    if status.expanded or status.status in ("completed", "failed"):
        return  # a redelivery of a job already read
    await ctx.jobs.start(job_id)
    spec = status.spec
    try:
        feed = await read_feed(ctx, spec)
    except FeedUnavailable as exc:
        log.info("feed job %s failed: %s", job_id, exc.message)
        await ctx.jobs.fail(job_id, exc.message)
        return
    if isinstance(feed, NotModified):
        await ctx.redis.hset(Jobs.key(job_id), "message", f"feed not modified since {feed.since}")
        await ctx.jobs.finish_expansion(job_id)
        return
    try:
        emitted, rejected = await _expand(ctx, job_id, spec, feed)
    except FeedError as exc:
        await ctx.jobs.fail(job_id, str(exc))
        return
    if spec.get("mode") == "sync":
        await sync.request(ctx.redis, job_id)  # before finishing: the job may complete right away
    await ctx.jobs.finish_expansion(job_id)
    await _after_expansion(ctx, spec, feed)
    log.info("feed job %s read: %d items queued, %d rows rejected", job_id, emitted, rejected)


async def _expand(ctx: WorkerContext, job_id: str, spec: dict[str, Any], feed: FeedInput) -> tuple[int, int]:
    fmt = detect_format(feed.data, str(spec.get("format", "auto")), feed.name, feed.content_type)
    rules = RowRules(
        source=str(spec.get("source") or feed.name),
        base_url=feed.base_url,
        max_images=ctx.settings.max_images_per_product,
    )
    keep = spec.get("mode") == "sync"
    emitted = rejected = 0
    for result in parse_feed(feed.data, fmt, rules):
        if isinstance(result, RowError):
            rejected += await _reject(ctx, job_id, result, keep)
        elif await emit_item(ctx.streams, ctx.jobs, job_id, result, ctx.settings.high_water):
            emitted += 1
        # else: emitted by an earlier attempt of this job (the feed itself has no duplicates left)
    ITEMS.labels(GROUP, "forwarded").inc(emitted)
    ITEMS.labels(GROUP, "failed").inc(rejected)
    return emitted, rejected


async def _reject(ctx: WorkerContext, job_id: str, error: RowError, keep: bool) -> int:
    """Records a bad row once per job, however often the feed is read."""
    if not await ctx.redis.sadd(f"{Jobs.key(job_id)}:rejected_rows", error.row):
        return 0
    if keep and error.product_id and error.code not in _NO_PRODUCT:
        await ctx.redis.sadd(sync.kept_key(job_id), error.product_id)
    item_error = ItemError(error.product_id, STAGE, error.code, error.message, row=error.row)
    await ctx.jobs.record_error(job_id, item_error)
    return 1


async def _after_expansion(ctx: WorkerContext, spec: dict[str, Any], feed: FeedInput) -> None:
    if feed_key := spec.get("feed_key"):
        await ctx.redis.delete(str(feed_key))  # the upload is no longer needed
    if feed_url := spec.get("feed_url"):
        await remember(ctx.redis, str(feed_url), feed, ctx.settings.url_cache_ttl_s)
