"""gRPC face of the embedder: validates requests, pre-processes off the loop, embeds via the batcher."""

import asyncio
from collections.abc import Sequence

import grpc

from services.common.errors import InvalidInput, TooLarge, Unavailable
from services.common.gen.visualsearch.v1 import embedder_pb2, embedder_pb2_grpc, image_pb2
from services.common.grpc_server import rpc
from services.common.images import RGB, from_proto
from services.embedder.batching import MicroBatcher
from services.embedder.model import OnnxEmbedder
from services.embedder.views import ViewMode, combine_views, view_batch, view_count, views_model_id


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Registered before the model loads (gRPC needs handlers before start); answers UNAVAILABLE
    until :meth:`attach` hands it the warmed-up model and its batcher."""

    def __init__(
        self, max_request_images: int, views: ViewMode = "whole", view_fraction: float = 0.7
    ) -> None:
        self._max_request_images = max_request_images
        self._views, self._view_fraction = views, view_fraction
        self._model: OnnxEmbedder | None = None
        self._batcher: MicroBatcher | None = None

    def attach(self, model: OnnxEmbedder, batcher: MicroBatcher) -> None:
        self._model, self._batcher = model, batcher

    @rpc
    async def Embed(
        self, request: embedder_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedResponse:
        model, batcher = self._ready()
        images = self._decode(request.images)
        tensor = await asyncio.to_thread(
            view_batch, images, self._views, self._view_fraction, model.preprocessing
        )  # (N*V, 3, crop, crop)
        rows = await batcher.embed(list(tensor))  # (N*V, dim)
        vectors = combine_views(rows, view_count(self._views))  # (N, dim)
        return embedder_pb2.EmbedResponse(
            embeddings=[embedder_pb2.Embedding(values=row.tolist()) for row in vectors],
            model_id=self._model_id(model),
            dim=model.dim,
        )

    @rpc
    async def Info(
        self, request: embedder_pb2.EmbedderInfoRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedderInfo:
        model, batcher = self._ready()
        return embedder_pb2.EmbedderInfo(
            model_id=self._model_id(model), dim=model.dim, max_batch=batcher.max_batch
        )

    def _model_id(self, model: OnnxEmbedder) -> str:
        return views_model_id(model.model_id, self._views, self._view_fraction)

    def _ready(self) -> tuple[OnnxEmbedder, MicroBatcher]:
        if self._model is None or self._batcher is None:
            raise Unavailable("the embedding model is still loading; retry shortly")
        return self._model, self._batcher

    def _decode(self, messages: Sequence[image_pb2.RgbImage]) -> list[RGB]:
        count = len(messages)
        if count == 0:
            raise InvalidInput("the request has no images; send at least one")
        if count > self._max_request_images:
            raise TooLarge(
                f"the request has {count} images; the limit is {self._max_request_images} per request"
            )
        return [_decode_one(index, message) for index, message in enumerate(messages)]


def _decode_one(index: int, message: image_pb2.RgbImage) -> RGB:
    """from_proto with the failing image's position in the message, so a client can find it."""
    try:
        return from_proto(message)
    except TooLarge as exc:
        raise TooLarge(f"images[{index}]: {exc.message}") from exc
    except InvalidInput as exc:
        raise InvalidInput(f"images[{index}]: {exc.message}") from exc
