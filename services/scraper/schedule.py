"""The scheduler stage: starts the next run of every scheduled job that is due.

Any worker may run this stage; a Redis lock taken per tick (``SET NX PX``) lets one of them act.
A run is a new job with the schedule's spec plus ``schedule_id`` and ``previous_job_id``, queued
on FEEDS (imports) or CRAWLS (crawls). A run never starts while the previous one is still in
progress (including its sync-mode deletions): it starts as soon as that one is over.
"""

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from services.common.jobs import now_millis
from services.common.schedules import Schedule, Schedules
from services.common.streams import CRAWLS, FEEDS
from services.scraper.context import WorkerContext

log = logging.getLogger(__name__)

LOCK = "vs:scheduler:lock"


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    schedules = Schedules(ctx.redis)
    tick_s = ctx.settings.scheduler_tick_s
    while not stop.is_set():
        try:
            # The lock expires by itself at the end of the tick: no release, no stale lock.
            if await ctx.redis.set(LOCK, ctx.consumer, nx=True, px=max(1, int(tick_s * 1000))):
                await run_due(ctx, schedules, now_millis())
        except RedisError as exc:
            log.warning("scheduler: Redis error, retrying next tick: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_s)


async def run_due(ctx: WorkerContext, schedules: Schedules, now_ms: int) -> list[str]:
    """Starts the runs due at ``now_ms``; returns their job ids."""
    started: list[str] = []
    for schedule_id in await schedules.due(now_ms):
        schedule = await schedules.get(schedule_id)
        if schedule is None:
            await schedules.remove(schedule_id)
        elif not await _in_progress(ctx, schedule.last_job_id):
            started.append(await _start_run(ctx, schedules, schedule, now_ms))
    return started


async def _in_progress(ctx: WorkerContext, job_id: str) -> bool:
    status = await ctx.jobs.get(job_id)
    return status is not None and (status.status in ("queued", "running") or status.sync == "pending")


async def _start_run(ctx: WorkerContext, schedules: Schedules, schedule: Schedule, now_ms: int) -> str:
    spec = {**schedule.spec, "schedule_id": schedule.schedule_id, "previous_job_id": schedule.last_job_id}
    job_id = await ctx.jobs.create(schedule.kind, spec)
    await ctx.streams.add(FEEDS if schedule.kind == "import" else CRAWLS, {"job_id": job_id})
    interval_s = max(schedule.interval_s, ctx.settings.min_refresh_interval_s)
    await schedules.advance(schedule.schedule_id, job_id, now_ms + interval_s * 1000)
    log.info("scheduled %s run %s started (schedule %s)", schedule.kind, job_id, schedule.schedule_id)
    return job_id
