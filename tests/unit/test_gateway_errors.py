"""The one status mapping: gRPC status and domain errors -> HTTP status, code and message."""

import grpc
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from services.common.errors import Conflict, InvalidInput, NotFound, ServiceError, TooLarge
from services.common.images import ImageError, UnsupportedImage
from services.gateway.errors import (
    DownstreamError,
    from_downstream,
    from_service_error,
    http_status_for,
    install_error_handlers,
)


@pytest.mark.parametrize(
    ("status", "http", "code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 422, "invalid_argument"),
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "too_large"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "conflict"),
        (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503, "deadline_exceeded"),
        (grpc.StatusCode.INTERNAL, 502, "bad_gateway"),
        (grpc.StatusCode.UNKNOWN, 502, "bad_gateway"),
        (grpc.StatusCode.UNIMPLEMENTED, 502, "bad_gateway"),
        (grpc.StatusCode.PERMISSION_DENIED, 502, "bad_gateway"),
    ],
)
def test_grpc_status_mapping(status: grpc.StatusCode, http: int, code: str) -> None:
    assert http_status_for(status) == (http, code)


def test_client_errors_keep_the_backend_message() -> None:
    error = from_downstream(DownstreamError("indexer", grpc.StatusCode.NOT_FOUND, "unknown product 'x'"))
    assert (error.status_code, error.code, error.detail) == (404, "not_found", "unknown product 'x'")


def test_backend_faults_hide_their_details() -> None:
    error = from_downstream(DownstreamError("embedder", grpc.StatusCode.INTERNAL, "Traceback: secret path"))
    assert (error.status_code, error.code) == (502, "bad_gateway")
    assert "secret" not in error.detail
    assert "embedder" in error.detail


def test_unavailable_names_the_backend() -> None:
    error = from_downstream(DownstreamError("detector", grpc.StatusCode.DEADLINE_EXCEEDED, ""))
    assert (error.status_code, error.detail) == (503, "the detector service did not answer in time")


@pytest.mark.parametrize(
    ("exc", "http", "code"),
    [
        (ImageError("truncated", "the image data is truncated"), 422, "image_truncated"),
        (ImageError("empty", "the image is empty (0 bytes)"), 422, "image_empty"),
        (
            UnsupportedImage("unsupported_format", "ICO images are not supported"),
            415,
            "image_unsupported_format",
        ),
        (TooLarge("the image is 30000000 bytes"), 413, "too_large"),
        (InvalidInput("bad id"), 422, "invalid_argument"),
        (NotFound("nope"), 404, "not_found"),
        (Conflict("other model"), 409, "conflict"),
    ],
)
def test_domain_errors_mapping(exc: ServiceError, http: int, code: str) -> None:
    error = from_service_error(exc)
    assert (error.status_code, error.code, error.detail) == (http, code, exc.message)


def test_a_redis_failure_no_route_handled_is_503_not_500() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RedisConnectionError("Connection refused")

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "the job store (Redis) is unavailable; try again later",
        "code": "queue_unavailable",
    }
