"""Registered videos and their per-frame search results, in Redis so any gateway replica can
answer ``GET /v1/videos/{id}`` and cached ``/shop`` calls.

Keys, per video:
- ``vs:video:<id>``: hash: status, message, path, duration_s, frames_sampled, frames_indexed, ...
- ``vs:video:<id>:times``: sorted set scored by sampled time; member ``"<sampled>|<searched>"``
  points a sampled time at the frame whose result answers it (itself, or the earlier frame it
  nearly duplicates), so the nearest sample to any t is one ZRANGEBYSCORE away.
- ``vs:video:<id>:results``: hash: searched time -> the frame's search response (JSON).
- ``vs:video:<id>:markers``: hash: searched time -> marker JSON (frames where products appear).
"""

import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.common.streams import as_text
from services.gateway.video.schemas import Marker, VideoStatus

_Mapping = Any  # redis-py types hset mappings with an invariant key type no plain dict matches


def _time_key(t: float) -> str:
    return f"{t:.6f}"


class VideoStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    @staticmethod
    def key(video_id: str, part: str = "") -> str:
        return f"vs:video:{video_id}" + (f":{part}" if part else "")

    async def create(self, video_id: str, path: Path, duration_s: float | None, expected_frames: int) -> None:
        fields: _Mapping = {
            "status": "queued",
            "message": "waiting to be indexed",
            "path": str(path),
            "duration_s": "" if duration_s is None else repr(duration_s),
            "expected_frames": expected_frames,
            "frames_sampled": 0,
            "frames_indexed": 0,
            "created_at_ms": int(time.time() * 1000),
        }
        await self.redis.hset(self.key(video_id), mapping=fields)

    async def get(self, video_id: str) -> dict[str, str] | None:
        raw: dict[Any, Any] = await self.redis.hgetall(self.key(video_id))
        return {as_text(k): as_text(v) for k, v in raw.items()} or None

    async def set_status(self, video_id: str, status: VideoStatus, message: str) -> None:
        fields: _Mapping = {"status": status, "message": message}
        await self.redis.hset(self.key(video_id), mapping=fields)

    async def add_frame(self, video_id: str, t: float, response_json: str, marker: Marker | None) -> None:
        key = _time_key(t)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(video_id, "results"), key, response_json)
            pipe.zadd(self.key(video_id, "times"), {f"{key}|{key}": t})
            if marker is not None:
                pipe.hset(self.key(video_id, "markers"), key, marker.model_dump_json())
            pipe.hincrby(self.key(video_id), "frames_sampled", 1)
            pipe.hincrby(self.key(video_id), "frames_indexed", 1)
            await pipe.execute()

    async def add_duplicate(self, video_id: str, t: float, searched_t: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key(video_id, "times"), {f"{_time_key(t)}|{_time_key(searched_t)}": t})
            pipe.hincrby(self.key(video_id), "frames_sampled", 1)
            await pipe.execute()

    async def nearest(self, video_id: str, t: float, within_s: float) -> tuple[float, str] | None:
        """(searched frame time, its response JSON) for the sample nearest ``t`` within ``within_s``."""
        found: list[Any] = await self.redis.zrangebyscore(
            self.key(video_id, "times"), t - within_s, t + within_s, withscores=True
        )
        if not found:
            return None
        member, _ = min(found, key=lambda item: abs(float(item[1]) - t))
        searched = as_text(member).split("|", 1)[1]
        raw = await self.redis.hget(self.key(video_id, "results"), searched)
        return None if raw is None else (float(searched), as_text(raw))

    async def markers(self, video_id: str) -> list[Marker]:
        raw: dict[Any, Any] = await self.redis.hgetall(self.key(video_id, "markers"))
        markers = [Marker.model_validate_json(v) for v in raw.values()]
        return sorted(markers, key=lambda m: m.t)
