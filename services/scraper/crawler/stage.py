"""The crawls stage: consumes CRAWLS (group "crawls"), one message ``{job_id}`` per crawl job.

A crawl can run for hours, far longer than ``reclaim_idle_s``, so while it runs the worker
re-claims its own message now and then (a heartbeat that resets its idle time without counting
a delivery); only the message of a dead worker goes idle and is reclaimed by another. A crawl
interrupted by ``stop`` or a crash stays pending and starts over on the next delivery; the
once-per-job emission rule keeps it from queueing any product twice.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from services.common.jobs import Jobs
from services.common.streams import CRAWLS, Message
from services.scraper.context import WorkerContext
from services.scraper.crawler.crawl import Crawl
from services.scraper.crawler.spec import CrawlSpec, SpecError
from services.scraper.outage import RETRY_S, Outage, sleep_unless, until_redis_answers

log = logging.getLogger(__name__)

GROUP = "crawls"
HEARTBEATS_PER_IDLE = 3  # heartbeats per reclaim_idle_s: a late one or two never lose the message
STOP_GRACE_S = 5.0  # beyond the fetch timeout, for crawls to wind down after stop


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    await until_redis_answers("crawl stage", lambda: ctx.streams.ensure_group(CRAWLS, GROUP), stop)
    running: dict[str, asyncio.Task[None]] = {}
    outage = Outage("crawl stage")
    try:
        while not stop.is_set():
            free = ctx.settings.crawl_jobs_per_worker - len(running)
            if free <= 0:
                await asyncio.wait(running.values(), timeout=ctx.settings.block_ms / 1000)
                continue
            try:
                messages = await _next(ctx, free)
            except RedisError as exc:
                outage.failed(exc)
                await sleep_unless(stop, RETRY_S)
                continue
            outage.recovered()
            for message in messages:
                if message.id not in running:  # our own crawl, reclaimed after a late heartbeat
                    task = asyncio.create_task(_handle(ctx, message, stop))
                    running[message.id] = task
                    task.add_done_callback(functools.partial(_forget, running, message.id))
    finally:
        await _wind_down(list(running.values()), ctx.settings.fetch_timeout_s + STOP_GRACE_S)


def _forget(running: dict[str, asyncio.Task[None]], message_id: str, _: asyncio.Task[None]) -> None:
    running.pop(message_id, None)


async def _next(ctx: WorkerContext, count: int) -> list[Message]:
    """Crawls of dead workers first, then new ones."""
    idle_ms = int(ctx.settings.reclaim_idle_s * 1000)
    reclaimed = await ctx.streams.reclaim(CRAWLS, GROUP, ctx.consumer, idle_ms, count)
    if reclaimed:
        return reclaimed
    return await ctx.streams.read(CRAWLS, GROUP, ctx.consumer, count, ctx.settings.block_ms)


async def _wind_down(tasks: list[asyncio.Task[None]], grace_s: float) -> None:
    """Lets running crawls stop at a page boundary; cancels any still busy after ``grace_s``
    (e.g. waiting on back-pressure). Their messages stay pending either way."""
    if not tasks:
        return
    _, busy = await asyncio.wait(tasks, timeout=grace_s)
    for task in busy:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _handle(ctx: WorkerContext, message: Message, stop: asyncio.Event) -> None:
    job_id = message.text("job_id")
    try:
        async with _heartbeat(ctx, message):
            finished = await _crawl_job(ctx, message, job_id, stop)
        if finished:
            await ctx.streams.ack(message, GROUP)
    except Exception:
        # Redis or fetcher trouble mid-crawl: the message stays pending and is retried.
        log.exception("crawl job %s failed (delivery %d); it will be retried", job_id, message.deliveries)


async def _crawl_job(ctx: WorkerContext, message: Message, job_id: str, stop: asyncio.Event) -> bool:
    """Runs the job's crawl; True once the message is done with (crawled, or nothing to do)."""
    status = await ctx.jobs.get(job_id)
    if status is None:
        log.warning("crawl message %s names unknown job %r; dropped", message.id, job_id)
        return True
    if status.expanded or status.status in ("completed", "failed"):
        return True  # crawled already (the acknowledgement was lost)
    if message.deliveries > ctx.settings.max_attempts:
        attempts = message.deliveries - 1
        await ctx.jobs.fail(job_id, f"the crawl failed {attempts} times; see the worker logs")
        return True
    try:
        spec = CrawlSpec.from_dict(status.spec)
    except SpecError as exc:
        await ctx.jobs.fail(job_id, f"invalid crawl spec: {exc}")
        return True
    await ctx.jobs.start(job_id)
    await ctx.redis.hset(Jobs.key(job_id), "pages", 0)  # a restarted crawl counts from scratch
    crawl = Crawl(ctx, job_id, spec, stop)
    if not await crawl.run():
        log.info("crawl job %s stopped after %d pages; left pending", job_id, crawl.report.pages)
        return False
    report = crawl.report
    if report.parsed == 0:
        await ctx.jobs.fail(job_id, "no page could be crawled; see the job's errors")
    else:
        await ctx.jobs.finish_expansion(job_id)
    log.info(
        "crawl job %s: %d pages, %d HTML, %d products queued",
        job_id,
        report.pages,
        report.parsed,
        report.emitted,
    )
    return True


@contextlib.asynccontextmanager
async def _heartbeat(ctx: WorkerContext, message: Message) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            await asyncio.sleep(ctx.settings.reclaim_idle_s / HEARTBEATS_PER_IDLE)
            try:
                # JUSTID: resets the idle time without counting a delivery.
                await ctx.redis.xclaim(CRAWLS, GROUP, ctx.consumer, 0, [message.id], justid=True)
            except RedisError as exc:
                log.warning("crawl heartbeat for %s failed: %s", message.id, exc)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
