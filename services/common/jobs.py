"""Ingest jobs in Redis: what a job is, and exact per-item accounting that survives retries.

A job (an import or a crawl) emits one item per product. Every item ends exactly once as done,
skipped (unchanged) or failed, however often a crashed worker made it run: the first outcome
recorded for a product in a job wins (a Redis set), and the counters move only then.
"""

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from services.common.streams import as_text

Outcome = Literal["done", "skipped", "failed"]
JobKind = Literal["import", "crawl"]
MAX_ERRORS_KEPT = 10_000
_JOBS = "vs:jobs"
_Mapping = Any  # redis-py types hset mappings with an invariant key type no plain dict matches

# KEYS: job hash, finished-items set, errors list.
# ARGV: product id, outcome, error JSON or "", now ms, errors kept.
# Records an item's outcome once, then completes the job if that was the last item.
_FINISH_ITEM = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
end
local h = redis.call('HMGET', KEYS[1], 'expanded', 'total', 'done', 'skipped', 'failed', 'status')
local finished = tonumber(h[3] or 0) + tonumber(h[4] or 0) + tonumber(h[5] or 0)
if h[1] == '1' and finished >= tonumber(h[2] or 0) and h[6] == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'finished_at_ms', ARGV[4])
end
return 1
"""

# KEYS: job hash. ARGV: now ms. Marks the producer done; completes the job if nothing is in flight.
_FINISH_EXPANSION = """
redis.call('HSET', KEYS[1], 'expanded', '1')
local h = redis.call('HMGET', KEYS[1], 'total', 'done', 'skipped', 'failed', 'status')
local finished = tonumber(h[2] or 0) + tonumber(h[3] or 0) + tonumber(h[4] or 0)
if finished >= tonumber(h[1] or 0) and h[5] == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'finished_at_ms', ARGV[1])
end
return 1
"""

# KEYS: emitted-items set, job hash, target stream. ARGV: product id, then field/value pairs.
# Queues an item once per job: a producer that crashed and re-reads its feed emits nothing twice.
_EMIT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'total', 1)
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 2))
return 1
"""


@dataclass(frozen=True)
class ItemError:
    """Why one item failed: shown to the catalog owner at GET /v1/imports/{id}/errors."""

    product_id: str
    stage: str  # feed, crawl, fetch, decode, embed, index
    code: str  # stable: http_status, timeout, not_image, too_large, invalid_row, duplicate...
    message: str
    http_status: int | None = None
    row: int | None = None  # feed line number
    url: str | None = None


@dataclass
class JobStatus:
    job_id: str
    kind: str
    status: str  # queued, running, completed, failed
    spec: dict[str, Any]
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    created_at_ms: int = 0
    started_at_ms: int = 0
    finished_at_ms: int = 0
    message: str = ""  # why a whole job failed (e.g. the feed URL was unreachable)
    expanded: bool = False  # the producer has emitted every item
    invalid_rows: int = 0  # feed rows rejected before they became items (no product to count)
    deleted: int = 0  # sync-mode imports: products removed because the feed no longer lists them
    sync: str = ""  # sync-mode imports: pending, done or skipped ("" for other jobs)

    @property
    def queued(self) -> int:
        return max(0, self.total - self.done - self.skipped - self.failed)

    def rate(self, now_ms: int) -> float | None:
        """Finished items per second since the job started."""
        end = self.finished_at_ms or now_ms
        seconds = (end - self.started_at_ms) / 1000 if self.started_at_ms else 0
        finished = self.done + self.skipped + self.failed
        return round(finished / seconds, 2) if seconds > 0 and finished else None

    def as_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        now_ms = now_ms or now_millis()
        rate = self.rate(now_ms)
        eta = round(self.queued / rate, 1) if rate and self.status == "running" and self.expanded else None
        return {**asdict(self), "queued": self.queued, "rate_per_s": rate, "eta_s": eta}


def now_millis() -> int:
    return int(time.time() * 1000)


class Jobs:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._finish_item = client.register_script(_FINISH_ITEM)
        self._finish_expansion = client.register_script(_FINISH_EXPANSION)
        self._emit = client.register_script(_EMIT)

    @staticmethod
    def key(job_id: str) -> str:
        return f"vs:job:{job_id}"

    async def create(self, kind: JobKind, spec: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        now = now_millis()
        mapping: dict[str, str | int] = {
            "kind": kind,
            "status": "queued",
            "spec": json.dumps(spec),
            "created_at_ms": now,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(job_id), mapping=cast(_Mapping, mapping))
            pipe.zadd(_JOBS, {job_id: now})
            await pipe.execute()
        return job_id

    async def get(self, job_id: str) -> JobStatus | None:
        raw = await self.redis.hgetall(self.key(job_id))
        if not raw:
            return None
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        ints = {
            name: int(h.get(name, 0) or 0)
            for name in (
                "total",
                "done",
                "skipped",
                "failed",
                "created_at_ms",
                "started_at_ms",
                "finished_at_ms",
                "invalid_rows",
                "deleted",
            )
        }
        return JobStatus(
            job_id=job_id,
            kind=h.get("kind", ""),
            status=h.get("status", ""),
            spec=json.loads(h.get("spec", "{}")),
            message=h.get("message", ""),
            expanded=h.get("expanded") == "1",
            sync=h.get("sync", ""),
            **ints,
        )

    async def recent(self, limit: int = 50) -> list[JobStatus]:
        ids: Any = await self.redis.zrevrange(_JOBS, 0, limit - 1)
        jobs = [await self.get(as_text(i)) for i in ids]
        return [j for j in jobs if j is not None]

    async def start(self, job_id: str) -> None:
        """The producer picked the job up (idempotent: a retried producer keeps the first start)."""
        await self.redis.hsetnx(self.key(job_id), "started_at_ms", now_millis())
        await self.redis.hset(self.key(job_id), "status", "running")

    async def emit(self, job_id: str, product_id: str, stream: str, fields: dict[str, str]) -> bool:
        """Counts the item in the job and queues it on ``stream``, atomically and once per job.

        False: this product was already emitted in this job (a duplicate row, or a re-run)."""
        key = self.key(job_id)
        pairs = [part for name_value in fields.items() for part in name_value]
        emitted = await self._emit(keys=[f"{key}:emitted", key, stream], args=[product_id, *pairs])
        return bool(emitted)

    async def finish_expansion(self, job_id: str) -> None:
        await self._finish_expansion(keys=[self.key(job_id)], args=[now_millis()])

    async def finish_item(
        self,
        job_id: str,
        product_id: str,
        outcome: Outcome,
        error: ItemError | None = None,
        pipe: Pipeline | None = None,
    ) -> bool:
        """Records an item's outcome; False if this product already had one in this job.

        With ``pipe`` the script is only queued on that pipeline (its result comes with the
        pipeline's) and True is returned: a stage settles a whole batch in one round trip."""
        error_json = json.dumps(asdict(error)) if error is not None else ""
        key = self.key(job_id)
        recorded = await self._finish_item(
            keys=[key, f"{key}:items", f"{key}:errors"],
            args=[product_id, outcome, error_json, now_millis(), MAX_ERRORS_KEPT],
            client=pipe,
        )
        return True if pipe is not None else bool(recorded)

    async def has_outcome(self, job_id: str, product_id: str) -> bool:
        """Whether the product's item in this job already ended (done, skipped or failed)."""
        return bool(await self.redis.sismember(f"{self.key(job_id)}:items", product_id))

    async def record_error(self, job_id: str, error: ItemError) -> None:
        """A failure that is not one of the job's items (a bad feed row: no product to count)."""
        key = f"{self.key(job_id)}:errors"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(asdict(error)))
            pipe.ltrim(key, 0, MAX_ERRORS_KEPT - 1)
            pipe.hincrby(self.key(job_id), "invalid_rows", 1)
            await pipe.execute()

    async def fail(self, job_id: str, message: str) -> None:
        """The whole job failed (e.g. its feed could not be read)."""
        mapping: dict[str, str | int] = {
            "status": "failed",
            "message": message,
            "finished_at_ms": now_millis(),
        }
        await self.redis.hset(self.key(job_id), mapping=cast(_Mapping, mapping))

    async def errors(self, job_id: str, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(f"{self.key(job_id)}:errors", offset, offset + limit - 1)
        return [json.loads(item) for item in raw]
