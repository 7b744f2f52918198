"""Refresh schedules of ingest jobs in Redis, shared by the gateway (creates, shows, stops them)
and the scheduler stage (starts the runs that are due).

A schedule is named after the job that created it. Each run is a new job whose spec carries
``schedule_id`` and ``previous_job_id``; the schedule remembers its latest run so the next one
waits while that one is still in progress.
"""

import json
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from services.common.jobs import JobKind
from services.common.streams import as_text

_DUE = "vs:schedules"  # sorted set: schedule id -> next run time (ms)
_Mapping = Any  # see services.common.jobs


@dataclass(frozen=True)
class Schedule:
    schedule_id: str
    kind: JobKind
    spec: dict[str, Any]  # the spec of every run (without the per-run fields)
    interval_s: int
    last_job_id: str
    next_run_at_ms: int | None  # None once the schedule is stopped


def schedule_id_of(job_id: str, spec: dict[str, Any]) -> str:
    """The schedule a job belongs to: the one it was started by, or the one it created."""
    return str(spec.get("schedule_id") or job_id)


class Schedules:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    @staticmethod
    def key(schedule_id: str) -> str:
        return f"vs:schedule:{schedule_id}"

    async def add(
        self, schedule_id: str, kind: JobKind, spec: dict[str, Any], interval_s: int, next_run_at_ms: int
    ) -> None:
        mapping = {
            "kind": kind,
            "spec": json.dumps(spec),
            "interval_s": interval_s,
            "last_job_id": schedule_id,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(schedule_id), mapping=cast(_Mapping, mapping))
            pipe.zadd(_DUE, {schedule_id: next_run_at_ms})
            await pipe.execute()

    async def get(self, schedule_id: str) -> Schedule | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(schedule_id))
            pipe.zscore(_DUE, schedule_id)
            raw, score = await pipe.execute()
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        if "kind" not in h:  # unknown, or stopped while a run was being recorded
            return None
        return Schedule(
            schedule_id=schedule_id,
            kind=cast(JobKind, h["kind"]),
            spec=json.loads(h["spec"]),
            interval_s=int(h["interval_s"]),
            last_job_id=h["last_job_id"],
            next_run_at_ms=int(score) if score is not None else None,
        )

    async def next_run_at(self, schedule_id: str) -> int | None:
        score = await self.redis.zscore(_DUE, schedule_id)
        return int(score) if score is not None else None

    async def due(self, now_ms: int, limit: int = 100) -> list[str]:
        ids: Any = await self.redis.zrangebyscore(_DUE, "-inf", now_ms, start=0, num=limit)
        return [as_text(i) for i in ids]

    async def advance(self, schedule_id: str, last_job_id: str, next_run_at_ms: int) -> None:
        """Records the run just started and when the next one is due (unless stopped meanwhile)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(schedule_id), "last_job_id", last_job_id)
            pipe.zadd(_DUE, {schedule_id: next_run_at_ms}, xx=True)
            await pipe.execute()

    async def remove(self, schedule_id: str) -> bool:
        """Stops the schedule (runs in progress finish). False if there was none."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(_DUE, schedule_id)
            pipe.delete(self.key(schedule_id))
            removed, _ = await pipe.execute()
        return bool(removed)
