"""Health, readiness, metrics, OpenAPI, and backend failures mapped to HTTP."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2
from PIL import Image

from services.common.errors import TooLarge
from tests.service.gateway_fakes import FakeBackends, encode, fake_backends, gateway

PHOTO = encode(Image.new("RGB", (64, 64), "red"))


@pytest.fixture
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        fakes.indexer.add("red-bag", (1, 0, 0))
        yield fakes


@pytest.fixture
def client(backends: FakeBackends) -> Iterator[TestClient]:
    with gateway(backends) as test_client:
        yield test_client


def search(client: TestClient) -> tuple[int, dict[str, str]]:
    response = client.post("/v1/search", files={"image": ("a.jpg", PHOTO, "image/jpeg")})
    return response.status_code, response.json()


def test_ready_when_every_backend_serves(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "services": {"detector": "SERVING", "embedder": "SERVING", "indexer": "SERVING"},
    }


def test_a_stopped_backend_gives_503_and_not_ready(client: TestClient, backends: FakeBackends) -> None:
    assert search(client)[0] == 200
    backends.stop("embedder")
    status, body = search(client)
    assert (status, body["code"]) == (503, "unavailable")
    assert body["detail"] == "the embedder service is unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["services"] == {
        "detector": "SERVING",
        "embedder": "UNAVAILABLE",
        "indexer": "SERVING",
    }
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_a_backend_not_serving_is_not_ready(client: TestClient, backends: FakeBackends) -> None:
    server = backends.servers["indexer"]
    backends._run(server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["services"]["indexer"]) == (503, "NOT_SERVING")


@pytest.mark.parametrize(
    ("fault", "status", "code", "detail"),
    [
        (
            RuntimeError("secret internals"),
            502,
            "bad_gateway",
            "the embedder service failed; try again later",
        ),
        (TooLarge("at most 32 images per call"), 413, "too_large", "at most 32 images per call"),
    ],
)
def test_backend_errors_are_mapped(
    client: TestClient, backends: FakeBackends, fault: Exception, status: int, code: str, detail: str
) -> None:
    backends.embedder.fault = fault
    assert search(client) == (status, {"detail": detail, "code": code})


def test_metrics_count_requests_by_route_template_and_stage(client: TestClient) -> None:
    search(client)
    client.get("/v1/products/does-not-exist")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert 'vs_gateway_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'vs_gateway_requests_total{method="GET",route="/v1/products/{product_id}",status="404"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "does-not-exist" not in text
    for stage in ("decode", "detect", "embed", "search"):
        assert f'vs_gateway_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'vs_gateway_request_seconds_bucket{le="0.005",method="POST",route="/v1/search"}' in text


def test_openapi_documents_both_put_bodies_and_the_errors(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    put = schema["paths"]["/v1/products/{product_id}"]["put"]
    content = put["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert "image" in content["application/json"]["schema"]["properties"]
    assert content["multipart/form-data"]["schema"]["properties"]["attributes"]["type"] == "string"
    assert put["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    search_body = schema["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in search_body
    assert client.get("/docs").status_code == 200


def test_openapi_form_bodies_say_what_the_routes_accept(client: TestClient) -> None:
    """No null in a form, exactly one of a file or its URL, the configured image cap."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    search_body = schema["paths"]["/v1/search"]["post"]["requestBody"]
    form = components[search_body["content"]["multipart/form-data"]["schema"]["$ref"].rpartition("/")[2]]
    assert search_body["required"] is True
    assert form["oneOf"] == [{"required": ["image"]}, {"required": ["image_url"]}]
    assert form["properties"]["min_similarity"] == {
        "type": "number",
        "minimum": -1.0,
        "maximum": 1.0,
        "title": "Min Similarity",
    }
    assert "anyOf" not in form["properties"]["image_url"]

    videos = schema["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert videos["application/json"]["schema"]["required"] == ["video_url"]
    assert videos["multipart/form-data"]["schema"]["oneOf"] == [
        {"required": ["video"]},
        {"required": ["video_url"]},
    ]
    imports = schema["paths"]["/v1/imports"]["post"]["requestBody"]["content"]
    assert imports["application/json"]["schema"]["properties"]["feed_url"]["type"] == "string"

    put = schema["paths"]["/v1/products/{product_id}"]["put"]["requestBody"]["content"]
    assert put["multipart/form-data"]["schema"]["properties"]["image"]["maxItems"] == 8  # the default
    assert put["application/json"]["schema"]["properties"]["images"]["maxItems"] == 8


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/products/p1", {"GET", "HEAD", "PUT", "DELETE"}),
        ("DELETE", "/v1/imports", {"GET", "HEAD", "POST"}),
        ("GET", "/v1/search", {"POST"}),
    ],
)
def test_405_names_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) == allowed
