"""Import jobs: POST a feed (upload or URL) to queue it; follow the job, its errors, its schedule.

The gateway only queues: an uploaded feed waits in Redis (with a TTL) until a feed worker reads
it, and a job's progress is what the workers record. Crawl jobs are followed here too.
"""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.datastructures import UploadFile

from services.common.errors import InvalidInput
from services.common.jobs import now_millis
from services.common.schedules import Schedules, schedule_id_of
from services.common.streams import FEEDS
from services.gateway.auth.deps import CATALOG_KEY
from services.gateway.bodies import body_kind, read_json, read_upload
from services.gateway.deps import GatewayState, State
from services.gateway.errors import ApiError, error_responses
from services.gateway.import_schemas import (
    IMPORT_BODY,
    JOB_ID_PATTERN,
    ImportAccepted,
    ImportErrors,
    ImportJob,
    ImportList,
    ImportOptions,
    ItemErrorOut,
    ScheduleStopped,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"], dependencies=[CATALOG_KEY])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job_id POST /v1/imports returned")]
UPLOAD_PREFIX = "vs:feed:upload:"


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis holds every job: without it the ingest API answers 503 (searches keep working)."""
    try:
        yield
    except RedisError as exc:
        log.warning("the job store (Redis) failed: %s", exc)
        raise ApiError(
            503, "queue_unavailable", "the job store (Redis) is unavailable; try again later"
        ) from None


@router.post(
    "/v1/imports",
    status_code=202,
    response_model=ImportAccepted,
    responses=error_responses(400, 413, 415, 422, 503),
    openapi_extra=IMPORT_BODY,
    summary="Import a catalog feed (CSV or JSONL upload, or feed_url); returns at once with a job",
)
async def create_import(state: State, request: Request, response: Response) -> ImportAccepted:
    kind = body_kind(request)
    if kind == "form":
        options, upload = await _form(request, state.settings.max_feed_bytes)
    elif kind == "json":
        options, upload = _validate(await read_json(request)), None
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (or JSON with a feed_url)")
    if (upload is None) == (options.feed_url is None):
        raise InvalidInput("send the feed either as a `feed` file upload or as a `feed_url`, not both")
    if upload is not None and options.refresh_interval_s is not None:
        raise InvalidInput("refresh_interval_s needs a feed_url: an uploaded feed cannot be fetched again")
    if options.feed_url is not None:
        await state.fetcher.refuse_blocked(options.feed_url, "feed_url")
    with redis_errors():
        job_id = await _queue(state, options, upload)
    accepted = ImportAccepted(
        job_id=job_id, status_url=f"/v1/imports/{job_id}", errors_url=f"/v1/imports/{job_id}/errors"
    )
    response.headers["Location"] = accepted.status_url
    return accepted


async def _queue(state: GatewayState, options: ImportOptions, upload: Upload | None) -> str:
    redis = state.jobs.redis
    spec: dict[str, Any] = {"format": options.format, "mode": options.mode}
    if upload is not None:
        feed_key = UPLOAD_PREFIX + uuid.uuid4().hex
        await redis.set(feed_key, upload.data, ex=state.settings.feed_ttl_s)
        spec |= {
            "feed_key": feed_key,
            "filename": upload.filename,
            "source": options.source or upload.filename,
        }
    else:
        spec |= {"feed_url": options.feed_url, "source": options.source or options.feed_url}
    interval = options.refresh_interval_s
    if interval is not None:
        spec["refresh_interval_s"] = interval
    job_id = await state.jobs.create("import", spec)
    if interval is not None:
        await Schedules(redis).add(job_id, "import", spec, interval, now_millis() + interval * 1000)
    await state.streams.add(FEEDS, {"job_id": job_id})
    return job_id


def _validate(raw: Any) -> ImportOptions:
    try:
        return ImportOptions.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for error in errors:
            error["loc"] = ("body", *error["loc"])
        raise RequestValidationError(errors) from None


async def _form(request: Request, max_bytes: int) -> tuple[ImportOptions, Upload | None]:
    fields: dict[str, str] = {}
    upload: Upload | None = None
    async with request.form(max_files=1, max_fields=20) as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "feed":
                    raise InvalidInput(f"unexpected file field {key!r}; upload the feed as `feed`")
                if value.filename or value.size:  # browsers send an empty part for an empty file input
                    upload = Upload(await _read_feed(value, max_bytes), value.filename or "upload")
            elif key == "feed":
                raise InvalidInput("`feed` must be a file upload (or send the URL as `feed_url`)")
            elif key in fields:
                raise InvalidInput(f"form field {key!r} is given more than once")
            elif value.strip():  # an empty form field means "not given"
                fields[key] = value
    return _validate(fields), upload


async def _read_feed(upload: UploadFile, max_bytes: int) -> bytes:
    data = await read_upload(upload, max_bytes, "the feed")
    if not data.strip():
        raise ApiError(422, "empty_feed", "the uploaded feed is empty")
    return data


@router.get(
    "/v1/imports/{job_id}",
    response_model=ImportJob,
    responses=error_responses(404, 422, 503),
    summary="An import (or crawl) job: counts, rate, ETA, status",
)
async def get_import(state: State, job_id: JobId) -> ImportJob:
    with redis_errors():
        return await _job(state, job_id)


async def _job(state: GatewayState, job_id: str) -> ImportJob:
    status = await state.jobs.get(job_id)
    if status is None:
        raise ApiError(404, "not_found", f"unknown job {job_id}")
    next_run = None
    if status.spec.get("refresh_interval_s"):
        next_run = await Schedules(state.jobs.redis).next_run_at(schedule_id_of(job_id, status.spec))
    return ImportJob.build(status, next_run)


@router.get(
    "/v1/imports/{job_id}/errors",
    response_model=ImportErrors,
    responses=error_responses(404, 422, 503),
    summary="Why each failed item failed, and why each rejected feed row was rejected",
)
async def get_import_errors(
    state: State,
    job_id: JobId,
    # A Redis list holds under 2**32 entries; a larger offset would overflow LRANGE's integers.
    offset: Annotated[int, Query(ge=0, le=2**32)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ImportErrors:
    with redis_errors():
        if not await state.jobs.redis.exists(state.jobs.key(job_id)):
            raise ApiError(404, "not_found", f"unknown job {job_id}")
        page = await state.jobs.errors(job_id, offset, limit + 1)  # one more: is there a next page?
    return ImportErrors(
        errors=[ItemErrorOut.model_validate(e) for e in page[:limit]],
        next_offset=offset + limit if len(page) > limit else None,
    )


@router.get(
    "/v1/imports",
    response_model=ImportList,
    responses=error_responses(422, 503),
    summary="Recent import and crawl jobs, newest first",
)
async def list_imports(
    state: State,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    kind: Annotated[Literal["import", "crawl"] | None, Query(description="only jobs of this kind")] = None,
) -> ImportList:
    with redis_errors():
        recent = await state.jobs.recent(limit)
    return ImportList(imports=[ImportJob.build(s, None) for s in recent if kind is None or s.kind == kind])


@router.delete(
    "/v1/imports/{job_id}/schedule",
    response_model=ScheduleStopped,
    responses=error_responses(404, 422, 503),
    summary="Stop refreshing a scheduled job (a run in progress finishes); idempotent",
)
async def stop_schedule(state: State, job_id: JobId) -> ScheduleStopped:
    with redis_errors():
        status = await state.jobs.get(job_id)
        if status is None:
            raise ApiError(404, "not_found", f"unknown job {job_id}")
        schedule_id = schedule_id_of(job_id, status.spec)
        # Like any DELETE, a repeated one succeeds: the job is left without a schedule either way.
        stopped = await Schedules(state.jobs.redis).remove(schedule_id)
    return ScheduleStopped(job_id=job_id, schedule_id=schedule_id, stopped=stopped)
