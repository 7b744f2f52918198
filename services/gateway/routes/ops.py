"""Operations: liveness, readiness, Prometheus metrics, index statistics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError

from services.gateway.auth.deps import SEARCH_KEY
from services.gateway.deps import State
from services.gateway.errors import error_responses
from services.gateway.schemas import ReadinessOut, StatsOut

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: 200 while the process runs")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "A backend is not SERVING"}},
    summary="Readiness: 200 only when every backend reports SERVING (and Redis answers, with API keys on)",
)
async def readyz(state: State) -> JSONResponse:
    services = await state.backends.health()
    if state.settings.auth_enabled:  # every keyed call checks its key in Redis: no Redis, no service
        services["redis"] = await _redis_status(state)
    ready = all(status == "SERVING" for status in services.values())
    body = ReadinessOut(status="ready" if ready else "not_ready", services=services)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _redis_status(state: State) -> str:
    try:
        await state.jobs.redis.ping()
    except RedisError:
        return "UNAVAILABLE"
    return "SERVING"


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/stats", response_model=StatsOut, responses=error_responses(502, 503), dependencies=[SEARCH_KEY]
)
async def stats(state: State) -> StatsOut:
    reply = await state.backends.indexer.stats()
    return StatsOut(products=reply.products, vectors=reply.vectors, model_id=reply.model_id, dim=reply.dim)
