"""Operations: liveness, readiness, Prometheus metrics, index statistics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

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
    summary="Readiness: 200 only when every backend reports SERVING",
)
async def readyz(state: State) -> JSONResponse:
    services = await state.backends.health()
    ready = all(status == "SERVING" for status in services.values())
    body = ReadinessOut(status="ready" if ready else "not_ready", services=services)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/stats", response_model=StatsOut, responses=error_responses(502, 503))
async def stats(state: State) -> StatsOut:
    reply = await state.backends.indexer.stats()
    return StatsOut(products=reply.products, vectors=reply.vectors, model_id=reply.model_id, dim=reply.dim)
