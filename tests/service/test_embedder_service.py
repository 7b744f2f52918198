"""The embedder over real gRPC (127.0.0.1, port 0) with the real MobileNetV2 weights."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from services.common.gen.visualsearch.v1 import embedder_pb2, embedder_pb2_grpc, image_pb2
from services.common.grpc_client import health_status, make_channel
from services.common.images import decode_image, to_proto
from services.embedder.batching import MicroBatcher
from services.embedder.config import EmbedderSettings
from services.embedder.manifest import load_manifest, resolve_model
from services.embedder.model import OnnxEmbedder
from services.embedder.preprocess import build_batch
from services.embedder.server import SERVICE_NAME, make_batcher, start_grpc
from services.embedder.views import ViewMode, combine_views, expand_views, view_count

DEADLINE_S = 10.0
PHOTOS = [
    "fashion_products/images/10099.jpg",  # watch
    "grocery_store/catalog/Pink-Lady_Iconic.jpg",  # apple
    "fashion_products/images/19291.jpg",  # watch
    "fashion_products/images/17366.jpg",  # tie gift set
]
T = TypeVar("T")


@pytest.fixture(scope="module")
def model(models_dir: Path) -> OnnxEmbedder:
    embedder = OnnxEmbedder(resolve_model(load_manifest().get("mobilenetv2-features"), models_dir))
    embedder.warmup((1, 8))
    return embedder


@pytest.fixture(scope="module")
def photos(datasets_dir: Path) -> list[npt.NDArray[np.uint8]]:
    return [decode_image((datasets_dir / path).read_bytes()).pixels for path in PHOTOS]


@dataclass
class Client:
    stub: embedder_pb2_grpc.EmbedderStub
    channel: grpc.aio.Channel
    batcher: MicroBatcher | None  # None while the model is still loading

    async def embed(self, images: list[image_pb2.RgbImage]) -> embedder_pb2.EmbedResponse:
        request = embedder_pb2.EmbedRequest(images=images)
        reply: embedder_pb2.EmbedResponse = await self.stub.Embed(request, timeout=DEADLINE_S)
        return reply


@asynccontextmanager
async def serving(model: OnnxEmbedder | None, **settings: Any) -> AsyncIterator[Client]:
    """The production wiring (start_grpc + make_batcher); model None = still loading."""
    config = EmbedderSettings(host="127.0.0.1", port=0, **settings)
    server, servicer = await start_grpc(config)
    batcher = None
    if model is not None:
        batcher = make_batcher(model, config)
        servicer.attach(model, batcher)
        await server.set_serving()
    channel = make_channel(f"127.0.0.1:{server.port}")
    try:
        yield Client(embedder_pb2_grpc.EmbedderStub(channel), channel, batcher)
    finally:
        await channel.close()
        await server.stop(grace=0)
        if batcher is not None:
            await batcher.close()


def run(model: OnnxEmbedder | None, body: Callable[[Client], Awaitable[T]], **settings: Any) -> T:
    async def main() -> T:
        async with serving(model, **settings) as client:
            return await body(client)

    return asyncio.run(main())


def vectors(reply: embedder_pb2.EmbedResponse) -> npt.NDArray[np.float32]:
    return np.array([list(e.values) for e in reply.embeddings], dtype=np.float32)


def local(
    model: OnnxEmbedder, images: list[npt.NDArray[np.uint8]], views: ViewMode = "multi-crop"
) -> npt.NDArray[np.float32]:
    """What the service must answer, computed in-process from the same pieces."""
    rows = model.embed(build_batch(expand_views(images, views, 0.7), model.preprocessing))
    return combine_views(rows, view_count(views))


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(
    ("views", "model_id"),
    [
        ("whole", "mobilenetv2-features@e69b04dfa63c"),
        ("multi-crop", "mobilenetv2-features@e69b04dfa63c+mc70"),
    ],
)
def test_embed_returns_one_unit_vector_per_image_in_order(
    model: OnnxEmbedder, photos: list[npt.NDArray[np.uint8]], views: ViewMode, model_id: str
) -> None:
    async def body(client: Client) -> tuple[embedder_pb2.EmbedResponse, embedder_pb2.EmbedderInfo]:
        reply = await client.embed([to_proto(photo) for photo in photos])
        info = await client.stub.Info(embedder_pb2.EmbedderInfoRequest(), timeout=DEADLINE_S)
        return reply, info

    reply, info = run(model, body, views=views)
    assert reply.model_id == info.model_id == model_id
    assert reply.dim == info.dim == 1280
    assert info.max_batch == 32
    served = vectors(reply)
    assert served.shape == (4, 1280)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, local(model, photos, views), atol=1e-4)  # request order kept
    watch, apple, other_watch = served[0], served[1], served[2]
    assert float(watch @ other_watch) > float(watch @ apple)


def test_concurrent_requests_share_model_runs(
    model: OnnxEmbedder, photos: list[npt.NDArray[np.uint8]]
) -> None:
    images = [photos[i % len(photos)] for i in range(8)]
    images = [image if i < 4 else image[:, ::-1].copy() for i, image in enumerate(images)]

    async def body(client: Client) -> tuple[list[embedder_pb2.EmbedResponse], int]:
        replies = await asyncio.gather(*(client.embed([to_proto(image)]) for image in images))
        assert client.batcher is not None
        return list(replies), client.batcher.runs

    replies, runs = run(model, body, max_wait_ms=50)
    assert runs < len(images)
    served = np.concatenate([vectors(reply) for reply in replies])
    np.testing.assert_allclose(served, local(model, images), atol=1e-4)  # each caller got its own row


def test_tiny_and_elongated_crops_are_embedded(model: OnnxEmbedder) -> None:
    stripes = np.tile(np.array([[0, 0, 0], [255, 255, 255]], np.uint8), (2, 450, 1))[:3]  # (3, 900, 3)
    images = [stripes, np.full((1, 1, 3), 200, np.uint8), np.ascontiguousarray(stripes.transpose(1, 0, 2))]
    reply = run(model, lambda client: client.embed([to_proto(image) for image in images]))
    np.testing.assert_allclose(np.linalg.norm(vectors(reply), axis=1), 1.0, atol=1e-5)


def test_empty_request_is_invalid(model: OnnxEmbedder) -> None:
    error = run(model, lambda client: rpc_error(client.embed([])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the request has no images; send at least one"


def test_too_many_images_is_resource_exhausted(model: OnnxEmbedder) -> None:
    tiny = to_proto(np.zeros((4, 4, 3), np.uint8))
    error = run(model, lambda client: rpc_error(client.embed([tiny] * 4)), max_request_images=3)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "the request has 4 images; the limit is 3 per request"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            image_pb2.RgbImage(width=10, height=10, pixels=b"\0" * 5),
            "images[1]: image is 10x10 but carries 5 bytes",
        ),
        (image_pb2.RgbImage(width=0, height=10), "images[1]: image has an empty side (0x10)"),
    ],
)
def test_malformed_image_is_invalid_with_its_position(
    model: OnnxEmbedder, bad: image_pb2.RgbImage, message: str
) -> None:
    good = to_proto(np.zeros((8, 8, 3), np.uint8))
    error = run(model, lambda client: rpc_error(client.embed([good, bad])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(message)


def test_health_is_serving_once_the_model_is_attached(model: OnnxEmbedder) -> None:
    async def body(client: Client) -> str:
        return await health_status(client.channel, SERVICE_NAME, deadline_s=DEADLINE_S)

    assert run(model, body) == "SERVING"


def test_before_the_model_loads_health_is_not_serving_and_calls_are_unavailable() -> None:
    async def body(client: Client) -> tuple[str, grpc.aio.AioRpcError]:
        status = await health_status(client.channel, SERVICE_NAME, deadline_s=DEADLINE_S)
        return status, await rpc_error(client.embed([to_proto(np.zeros((8, 8, 3), np.uint8))]))

    status, error = run(None, body)
    assert status == "NOT_SERVING"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "still loading" in error.details()
