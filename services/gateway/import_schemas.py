"""Import job request and response models: the validation and the OpenAPI schema."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.catalog import MAX_URL_CHARS, check_absolute_url
from services.common.jobs import JobStatus

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_REFRESH_INTERVAL_S = 365 * 86400


class JobOptions(BaseModel):
    """What every ingest job request (an import, a crawl) may set about its products' source."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    mode: Literal["upsert", "sync"] = Field(
        default="upsert",
        description="sync: once the job completes, delete this source's products it no longer found",
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^\S+$",
        description="the products' source name (default: the feed URL or file name; "
        '"crawl:<host of the first start URL>" for a crawl)',
    )
    refresh_interval_s: int | None = Field(
        default=None,
        ge=60,
        le=MAX_REFRESH_INTERVAL_S,
        description="run the job again this often (seconds), re-fetching only what changed",
    )


class ImportOptions(JobOptions):
    """The form fields (or JSON body) of POST /v1/imports, next to the optional ``feed`` file."""

    feed_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="absolute http(s) URL of the feed (or upload `feed`)",
    )
    format: Literal["auto", "csv", "jsonl"] = Field(
        default="auto", description="auto: by file extension, content type, then first character"
    )

    @field_validator("feed_url")
    @classmethod
    def _absolute_http(cls, value: str | None) -> str | None:
        return None if value is None else check_absolute_url(value)


# The OpenAPI request body of POST /v1/imports: a multipart form, or JSON for a feed_url.
IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "title": "ImportForm",
                    "type": "object",
                    "properties": {
                        "feed": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": "the feed file (CSV or JSONL); or give feed_url",
                        },
                        **ImportOptions.model_json_schema()["properties"],
                    },
                    "additionalProperties": False,
                }
            },
            "application/json": {"schema": ImportOptions.model_json_schema()},
        },
    }
}


class ImportAccepted(BaseModel):
    job_id: str
    status_url: str = Field(description="GET it for the job's progress and counts")
    errors_url: str = Field(description="GET it for the reason of every failed item or rejected row")


class ImportJob(BaseModel):
    """An ingest job (an import, or a crawl) and where it stands."""

    job_id: str
    kind: Literal["import", "crawl"]
    status: Literal["queued", "running", "completed", "failed"]
    message: str = Field(description="why the job failed, or a note (feed not modified, sync result)")
    source: str | None
    mode: Literal["upsert", "sync"]
    feed_url: str | None
    total: int = Field(description="items queued so far; final once `expanded`")
    queued: int = Field(description="items not finished yet")
    done: int = Field(description="items indexed")
    skipped: int = Field(description="items already indexed with the same content")
    failed: int = Field(description="items that failed (see errors_url)")
    invalid_rows: int = Field(description="feed rows rejected before they became items (see errors_url)")
    deleted: int = Field(description="sync mode: products deleted because the feed no longer lists them")
    rate_per_s: float | None = Field(description="finished items per second since the job started")
    eta_s: float | None = Field(description="seconds left at the current rate, once the feed is read")
    expanded: bool = Field(description="the whole feed has been read: total is final")
    sync: Literal["pending", "done", "skipped"] | None = Field(description="sync mode: the deletions' state")
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    previous_job_id: str | None = Field(description="scheduled runs: the run before this one")
    schedule_id: str | None = Field(description="scheduled jobs: the schedule (the first run's job id)")
    refresh_interval_s: int | None
    next_run_at_ms: int | None = Field(description="scheduled jobs: when the next run starts")
    errors_url: str

    @classmethod
    def build(cls, status: JobStatus, next_run_at_ms: int | None) -> "ImportJob":
        spec: dict[str, Any] = status.spec
        interval = spec.get("refresh_interval_s")
        return cls.model_validate(
            {
                **status.as_dict(),
                "status": status.status or "queued",
                "source": spec.get("source"),
                "mode": spec.get("mode", "upsert"),
                "feed_url": spec.get("feed_url"),
                "sync": status.sync or None,
                "started_at_ms": status.started_at_ms or None,
                "finished_at_ms": status.finished_at_ms or None,
                "previous_job_id": spec.get("previous_job_id"),
                "schedule_id": (spec.get("schedule_id") or status.job_id) if interval else None,
                "refresh_interval_s": interval,
                "next_run_at_ms": next_run_at_ms,
                "errors_url": f"/v1/imports/{status.job_id}/errors",
            }
        )


class ImportList(BaseModel):
    imports: list[ImportJob] = Field(description="newest first")


class ItemErrorOut(BaseModel):
    """Why one item failed, or why one feed row was rejected (stage "feed")."""

    product_id: str = Field(description='"" when the row has no usable product_id')
    stage: str = Field(description="feed, crawl, fetch, decode, embed or index")
    code: str = Field(description="stable: no_image, invalid_field, duplicate_product_id, http_status, ...")
    message: str
    http_status: int | None = None
    row: int | None = Field(default=None, description="feed line number (the CSV header is line 1)")
    url: str | None = None


class ImportErrors(BaseModel):
    errors: list[ItemErrorOut]
    next_offset: int | None = Field(description="offset of the next page; null on the last page")


class ScheduleStopped(BaseModel):
    job_id: str
    schedule_id: str
    stopped: bool = Field(description="false: the job had no refresh schedule (none now either way)")
