"""The one mapping from failures to HTTP: every error body is ``{"detail": ..., "code": ...}``.

gRPC statuses from the backends, domain errors raised at the edge (image decoding, ids),
FastAPI's own validation errors and Starlette's HTTP errors all end up here.
"""

import logging
import math
from http import HTTPStatus
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from services.common.errors import ServiceError
from services.common.images import ImageError, UnsupportedImage
from services.gateway.schemas import ErrorBody

log = logging.getLogger(__name__)

# gRPC status -> (HTTP status, stable code). Anything missing is a backend fault: 502.
GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (422, "invalid_argument"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (413, "too_large"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "conflict"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "deadline_exceeded"),
}
BAD_GATEWAY = (502, "bad_gateway")


class ApiError(HTTPException):
    """An HTTP error with a stable code. Subclasses HTTPException so FastAPI re-raises it unchanged
    even from inside request-body parsing (the body size limit relies on that)."""

    def __init__(
        self, status_code: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code


class DownstreamError(Exception):
    """A failed call to a backend service, tagged with which one."""

    def __init__(self, service: str, status: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}: {status.name}: {details}")
        self.service = service
        self.status = status
        self.details = details


def http_status_for(status: grpc.StatusCode) -> tuple[int, str]:
    return GRPC_TO_HTTP.get(status, BAD_GATEWAY)


def from_downstream(exc: DownstreamError) -> ApiError:
    http, code = http_status_for(exc.status)
    if (http, code) == BAD_GATEWAY:
        # Internal details of a backend fault stay in the log, not in the response.
        log.error("%s call failed: %s %s", exc.service, exc.status.name, exc.details)
        return ApiError(http, code, f"the {exc.service} service failed; try again later")
    if http == 503:
        what = (
            "did not answer in time" if exc.status == grpc.StatusCode.DEADLINE_EXCEEDED else "is unavailable"
        )
        log.warning("%s %s: %s", exc.service, what, exc.details)
        return ApiError(http, code, f"the {exc.service} service {what}")
    return ApiError(http, code, exc.details or f"the {exc.service} service rejected the request")


def from_service_error(exc: ServiceError) -> ApiError:
    """Domain errors raised in the gateway itself (decode_image, validate_product_id...)."""
    if isinstance(exc, ImageError):
        status = 415 if isinstance(exc, UnsupportedImage) else 422
        return ApiError(status, f"image_{exc.reason}", exc.message)
    http, code = http_status_for(exc.code)
    if (http, code) == BAD_GATEWAY:
        log.error("unexpected domain error: %s", exc.message)
        return ApiError(500, "internal", "internal error")
    return ApiError(http, code, exc.message)


def json_safe(value: Any) -> Any:
    """Error details echo client input, which may hold what JSON cannot carry: NaN/inf numbers,
    lone surrogates, exception objects. Renders those as text instead of failing with a 500."""
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def error_response(
    status: int, code: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": json_safe(detail), "code": code}, status_code=status, headers=headers)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).name.lower()
    except ValueError:
        return "http_error"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = exc.code if isinstance(exc, ApiError) else _status_code_name(exc.status_code)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405 and (methods := _documented_methods(request)):
        headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
    return error_response(exc.status_code, code, exc.detail, headers)


def _documented_methods(request: Request) -> set[str]:
    """Every method the OpenAPI schema gives the path. Starlette's 405 names only those of the
    first route that matched it, while a path often has one route per method (GET, PUT, DELETE)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    return methods | ({"HEAD"} if "GET" in methods else set())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", exc.errors())


async def _downstream_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DownstreamError)
    return await _http_error(request, from_downstream(exc))


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return await _http_error(request, from_service_error(exc))


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    # Routes map their own Redis failures (routes/imports.py); this is the net for one that does not.
    log.warning("Redis failed under %s: %s", request.url.path, exc)
    return error_response(503, "queue_unavailable", "the job store (Redis) is unavailable; try again later")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this handler answers, so the server logs the traceback once.
    return error_response(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DownstreamError, _downstream_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected_error)


ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No API key, or an unknown or revoked one (WWW-Authenticate says how to send one)",
    403: "The API key lacks the scope this route needs",
    404: "Unknown product",
    409: "Conflicts with the index state",
    413: "Payload too large",
    415: "Unsupported image or media type",
    422: "Invalid request or unusable image",
    429: "The API key's rate limit or daily quota is used up (Retry-After: seconds to wait)",
    502: "A backend failed",
    503: "A backend is unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: each listed status documented with the error body."""
    return {s: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}
