"""Pre-indexing registered videos in the background: sample a frame every interval, skip frames
that nearly duplicate the last searched one, search the rest, cache each result in Redis.

Limitation: indexing runs as an asyncio task in the gateway process that received the video (at
most ``video_index_concurrency`` videos at a time) and reads the file from that process's
``data_dir``; a restart leaves the video's status where it was. Moving this to the ingest
workers (a Redis stream, like imports) is a later step.
"""

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from services.common.errors import ServiceError
from services.common.images import RGB
from services.gateway.clients import Backends
from services.gateway.config import GatewaySettings
from services.gateway.errors import DownstreamError
from services.gateway.metrics import StageTimer
from services.gateway.pipeline import SearchQuery, search_decoded
from services.gateway.schemas import SearchResponse
from services.gateway.video.container import VideoLimits
from services.gateway.video.frames import near_duplicate, sample_frames, thumbnail, to_decoded
from services.gateway.video.schemas import FrameSearchResponse, Marker
from services.gateway.video.store import VideoStore

log = logging.getLogger(__name__)
WHOLE_IMAGE_LABEL = "image"  # what the pipeline calls the whole frame when nothing was detected

Sample = tuple[float, RGB, np.ndarray]  # (time, (H, W, 3) frame, (32, 32) thumbnail)


async def search_frame(
    backends: Backends,
    settings: GatewaySettings,
    rgb: RGB,
    time_s: float,
    query: SearchQuery,
    timer: StageTimer,
) -> FrameSearchResponse:
    """One decoded frame through the photo search pipeline, answering with the detected objects."""
    with timer.stage("decode"):
        decoded = await asyncio.to_thread(to_decoded, rgb, settings.max_side)
    frame_query = dataclasses.replace(query, whole_image_object=False)
    result = await search_decoded(backends, settings, decoded, frame_query, timer)
    return FrameSearchResponse(**dict(result), frame_time_s=round(time_s, 4))


def marker_for(time_s: float, response: SearchResponse) -> Marker | None:
    """A timeline marker when the detector found something with matches in the frame."""
    found = [o for o in response.objects if o.label != WHOLE_IMAGE_LABEL and o.matches]
    if not found:
        return None
    labels = list(dict.fromkeys(o.label for o in found))
    return Marker(t=round(time_s, 4), labels=labels, top_product_id=found[0].matches[0].product_id)


def _next_sample(frames: Iterator[tuple[float, RGB]]) -> Sample | None:
    """Blocking: decodes up to the next sample and makes its thumbnail."""
    item = next(frames, None)
    if item is None:
        return None
    return item[0], item[1], thumbnail(item[1])


class VideoIndexer:
    def __init__(self, store: VideoStore, backends: Backends, settings: GatewaySettings) -> None:
        self.store = store
        self.backends = backends
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.video_index_concurrency)
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, video_id: str, path: Path) -> None:
        task = asyncio.create_task(self._run(video_id, path), name=f"index-video-{video_id}")
        self.tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _run(self, video_id: str, path: Path) -> None:
        async with self.slots:
            try:
                await self._index(video_id, path)
            except asyncio.CancelledError:
                await self.store.set_status(
                    video_id, "failed", "indexing was interrupted (gateway shut down)"
                )
                raise
            except (ServiceError, DownstreamError) as exc:
                log.warning("indexing video %s failed: %s", video_id, exc)
                await self.store.set_status(video_id, "failed", f"indexing failed: {exc}")
            except Exception:
                log.exception("indexing video %s failed", video_id)
                await self.store.set_status(video_id, "failed", "indexing failed: internal error")

    async def _index(self, video_id: str, path: Path) -> None:
        await self.store.set_status(video_id, "indexing", "sampling and searching frames")
        settings = self.settings
        frames = sample_frames(
            path, settings.video_sample_interval_s, settings.video_max_frames, VideoLimits.of(settings)
        )
        last: tuple[float, np.ndarray] | None = None  # (time, thumbnail) of the last searched frame
        try:
            while (sample := await asyncio.to_thread(_next_sample, frames)) is not None:
                time_s, rgb, thumb = sample
                if last is not None and near_duplicate(last[1], thumb, settings.video_duplicate_threshold):
                    await self.store.add_duplicate(video_id, time_s, last[0])
                    continue
                response = await search_frame(
                    self.backends, settings, rgb, time_s, SearchQuery(), StageTimer()
                )
                await self.store.add_frame(
                    video_id, time_s, response.model_dump_json(), marker_for(time_s, response)
                )
                last = (time_s, thumb)
        finally:
            # A generator: closing it closes the container. When cancelled mid-decode, a worker
            # thread still runs it and close() cannot; it then closes when garbage-collected.
            with contextlib.suppress(ValueError):
                frames.close()  # type: ignore[attr-defined]
        await self.store.set_status(video_id, "ready", "indexed")
