"""Crawl jobs: POST /v1/crawls queues a crawl. It is followed like an import: GET
/v1/imports/{job_id} and its /errors serve any job kind."""

import logging

from fastapi import APIRouter, Response
from redis.exceptions import RedisError

from services.common.jobs import now_millis
from services.common.schedules import Schedules
from services.common.streams import CRAWLS
from services.gateway.auth.deps import CATALOG_KEY
from services.gateway.crawl_schemas import CrawlAccepted, CrawlRequest
from services.gateway.deps import State
from services.gateway.errors import ApiError, error_responses

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"], dependencies=[CATALOG_KEY])


@router.post(
    "/v1/crawls",
    status_code=202,
    response_model=CrawlAccepted,
    responses=error_responses(400, 413, 422, 503),
    summary="Crawl a shop's pages for schema.org products and index them; returns at once with a job",
)
async def create_crawl(state: State, body: CrawlRequest, response: Response) -> CrawlAccepted:
    for number, url in enumerate(body.start_urls):
        await state.fetcher.refuse_blocked(url, "start_url", f"start_urls[{number}]")
    spec = body.spec()
    interval = body.refresh_interval_s
    try:
        job_id = await state.jobs.create("crawl", spec)
        if interval is not None:
            await Schedules(state.jobs.redis).add(
                job_id, "crawl", spec, interval, now_millis() + interval * 1000
            )
        await state.streams.add(CRAWLS, {"job_id": job_id})
    except RedisError as exc:
        log.warning("the job store (Redis) failed: %s", exc)
        raise ApiError(
            503, "queue_unavailable", "the job store (Redis) is unavailable; try again later"
        ) from None
    accepted = CrawlAccepted(
        job_id=job_id, status_url=f"/v1/imports/{job_id}", errors_url=f"/v1/imports/{job_id}/errors"
    )
    response.headers["Location"] = accepted.status_url
    return accepted
