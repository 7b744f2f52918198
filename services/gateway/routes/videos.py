"""Shop now on video: search the frame at time t of a video, and shoppable timelines (a video
registered once, pre-indexed in the background, then answered from the cache per frame).

Pre-indexing runs in the gateway process that received the video: see video/indexing.py.
"""

import asyncio
import math
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, File, Form, Path, Query, Request, Response, UploadFile
from starlette.datastructures import UploadFile as FormFile

from services.common.catalog import MAX_URL_CHARS
from services.gateway.auth.deps import CATALOG_KEY, SEARCH_KEY
from services.gateway.bodies import body_kind, read_json
from services.gateway.deps import GatewayState, State
from services.gateway.errors import ApiError, error_responses
from services.gateway.metrics import StageTimer
from services.gateway.pipeline import SearchQuery
from services.gateway.routes.imports import redis_errors
from services.gateway.search_form import SearchOptions
from services.gateway.video.container import VideoError, VideoLimits, probe
from services.gateway.video.frames import Frame, frame_at
from services.gateway.video.indexing import VideoIndexer, search_frame
from services.gateway.video.schemas import (
    REGISTER_BODY,
    VIDEO_URL_HELP,
    FrameSearchResponse,
    VideoRegistered,
    VideoShopResponse,
    VideoStatusOut,
)
from services.gateway.video.source import api_error, fetch_video, save_upload, suffix_of
from services.gateway.video.store import VideoStore


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's own lifespan (FastAPI merges router lifespans), after the state exists."""
    state = cast(GatewayState, app.state.gateway)
    indexer = VideoIndexer(VideoStore(state.jobs.redis), state.backends, state.settings)
    app.state.video_indexer = indexer
    try:
        yield
    finally:
        await indexer.close()


router = APIRouter(tags=["video"], lifespan=lifespan)


def video_indexer(request: Request) -> VideoIndexer:
    return cast(VideoIndexer, request.app.state.video_indexer)


Indexer = Annotated[VideoIndexer, Depends(video_indexer)]
VideoId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the id POST /v1/videos returned")]


async def _frame(state: GatewayState, path: FilePath, t: float) -> Frame:
    try:
        return await asyncio.to_thread(frame_at, path, t, VideoLimits.of(state.settings))
    except VideoError as exc:
        raise api_error(exc) from None


def _one_source(upload: Any, video_url: Any) -> None:
    if (upload is None) == (video_url is None):
        raise ApiError(422, "invalid_argument", "send exactly one of: a `video` file or a `video_url`")


@router.post(
    "/v1/shop/frame",
    response_model=FrameSearchResponse,
    responses=error_responses(400, 413, 415, 422, 502, 503),
    summary="Shop now: search the frame shown at time t of a video (upload or video_url)",
    dependencies=[SEARCH_KEY],
)
async def shop_frame(
    state: State,
    query: SearchOptions,
    t: Annotated[float, Form(ge=0, allow_inf_nan=False, description="seconds from the start")],
    video: Annotated[UploadFile | None, File(description="the video; any format FFmpeg reads")] = None,
    video_url: Annotated[str | None, Form(max_length=MAX_URL_CHARS, description=VIDEO_URL_HELP)] = None,
) -> FrameSearchResponse:
    timer = StageTimer()
    video_url = video_url or None  # an HTML form sends an empty field for "not given"
    _one_source(video, video_url)
    with tempfile.TemporaryDirectory(prefix="vs-frame-") as tmp:
        path = await _local_video(state, video, video_url, FilePath(tmp) / "video", timer)
        with timer.stage("decode"):
            frame = await _frame(state, path, t)
    return await search_frame(state.backends, state.settings, frame.rgb, frame.time_s, query, timer)


async def _local_video(
    state: GatewayState, upload: FormFile | None, url: str | None, dest: FilePath, timer: StageTimer
) -> FilePath:
    limit = state.settings.max_video_bytes
    if upload is not None:
        await save_upload(upload, dest, limit)
        return dest
    with timer.stage("fetch"):
        return await fetch_video(state.fetcher, str(url), dest, limit)


async def _register_source(request: Request) -> tuple[FormFile | None, str | None]:
    kind = body_kind(request)
    if kind == "form":
        form = await request.form()
        upload, url = form.get("video"), form.get("video_url") or None
        if upload is not None and not isinstance(upload, FormFile):
            raise ApiError(422, "invalid_argument", "`video` must be a file upload")
    elif kind == "json":
        body = await read_json(request)
        upload, url = None, body.get("video_url") if isinstance(body, dict) else None
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (or JSON with a video_url)")
    if url is not None and (not isinstance(url, str) or len(url) > MAX_URL_CHARS):
        raise ApiError(
            422, "invalid_argument", f"video_url must be a string of at most {MAX_URL_CHARS} characters"
        )
    _one_source(upload, url)
    return upload, url


@router.post(
    "/v1/videos",
    status_code=202,
    response_model=VideoRegistered,
    responses=error_responses(400, 413, 415, 422, 503),
    summary="Register a video (upload or video_url) and pre-index it in the background",
    openapi_extra=REGISTER_BODY,
    dependencies=[CATALOG_KEY],  # it stores the video and runs a search per sampled frame
)
async def register_video(
    state: State, indexer: Indexer, request: Request, response: Response
) -> VideoRegistered:
    upload, url = await _register_source(request)
    video_id = uuid.uuid4().hex
    directory = state.settings.data_dir / "videos"
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    dest = directory / f"{video_id}{suffix_of(upload.filename or '' if upload else str(url))}"
    try:
        path = await _local_video(state, upload, url, dest, StageTimer())
        # Validated whole before it is kept: a broken upload is a 4xx now, not a failed job later.
        length = await asyncio.to_thread(probe, path, VideoLimits.of(state.settings))
    except VideoError as exc:
        dest.unlink(missing_ok=True)
        raise api_error(exc) from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    settings = state.settings
    expected = settings.video_max_frames
    if length is not None:
        expected = min(expected, math.floor(length / settings.video_sample_interval_s) + 1)
    with redis_errors():
        await indexer.store.create(video_id, path, length, expected)
    indexer.submit(video_id, path)
    registered = VideoRegistered(video_id=video_id, status_url=f"/v1/videos/{video_id}")
    response.headers["Location"] = registered.status_url
    return registered


async def _video(indexer: VideoIndexer, video_id: str) -> dict[str, str]:
    with redis_errors():
        info = await indexer.store.get(video_id)
    if info is None:
        raise ApiError(404, "not_found", f"unknown video {video_id}")
    return info


@router.get(
    "/v1/videos/{video_id}",
    response_model=VideoStatusOut,
    responses=error_responses(404, 422, 503),
    summary="A registered video's indexing progress and its timeline markers",
    dependencies=[SEARCH_KEY],
)
async def video_status(indexer: Indexer, video_id: VideoId) -> VideoStatusOut:
    info = await _video(indexer, video_id)
    sampled, expected = int(info["frames_sampled"]), int(info["expected_frames"])
    status = info["status"]
    progress = 1.0 if status == "ready" else min(1.0, sampled / expected) if expected else 0.0
    with redis_errors():
        markers = await indexer.store.markers(video_id)
    return VideoStatusOut(
        video_id=video_id,
        status=cast(Any, status),
        duration_s=float(info["duration_s"]) if info["duration_s"] else None,
        frames_sampled=sampled,
        frames_indexed=int(info["frames_indexed"]),
        progress=round(progress, 4),
        message=info["message"],
        markers=markers,
    )


@router.get(
    "/v1/videos/{video_id}/shop",
    response_model=VideoShopResponse,
    responses=error_responses(404, 409, 422, 502, 503),
    summary="Shop now on a registered video: the cached result nearest t, else a live search",
    dependencies=[SEARCH_KEY],
)
async def shop_video(
    state: State,
    indexer: Indexer,
    video_id: VideoId,
    t: Annotated[float, Query(ge=0, allow_inf_nan=False, description="seconds from the start")],
) -> VideoShopResponse:
    info = await _video(indexer, video_id)
    with redis_errors():
        cached = await indexer.store.nearest(video_id, t, state.settings.video_sample_interval_s)
    if cached is not None:
        return VideoShopResponse(**dict(FrameSearchResponse.model_validate_json(cached[1])), cached=True)
    path = FilePath(info["path"])
    if not await asyncio.to_thread(path.is_file):
        raise ApiError(409, "conflict", "this video's file is not on this gateway and t is not indexed yet")
    timer = StageTimer()
    with timer.stage("decode"):
        frame = await _frame(state, path, t)
    result = await search_frame(state.backends, state.settings, frame.rgb, frame.time_s, SearchQuery(), timer)
    return VideoShopResponse(**dict(result), cached=False)
