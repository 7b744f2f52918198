"""Typed wrappers around the three backend stubs. Every call carries a deadline from settings,
and every gRPC failure becomes a :class:`DownstreamError` naming the backend."""

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from services.common.gen.visualsearch.v1 import (
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    image_pb2,
    indexer_pb2,
    indexer_pb2_grpc,
)
from services.common.grpc_client import EVERY_METHOD, health_status, make_channel, service_name
from services.gateway.config import GatewaySettings
from services.gateway.errors import DownstreamError

T = TypeVar("T")
Vectors = npt.NDArray[np.float32]  # (n, dim)

# Health service names the channels watch (each replica's SERVING status gates its share).
DETECTOR = service_name(detector_pb2.DESCRIPTOR, "Detector")
EMBEDDER = service_name(embedder_pb2.DESCRIPTOR, "Embedder")
INDEXER = service_name(indexer_pb2.DESCRIPTOR, "Indexer")
# Safe to retry on another replica: detection and embedding are pure, and so are the indexer's
# reads; its writes are not retried behind the caller's back.
INDEXER_READS = ("Get", "List", "Search", "Similar", "Stats")


async def _call(service: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise DownstreamError(service, exc.code(), exc.details() or "") from exc


def _broken(service: str, message: str) -> DownstreamError:
    # A reply that breaks the contract is a backend fault (502), like any unknown status.
    return DownstreamError(service, grpc.StatusCode.INTERNAL, message)


class DetectorClient:
    def __init__(self, channel: grpc.aio.Channel, deadline_s: float) -> None:
        self._stub = detector_pb2_grpc.DetectorStub(channel)
        self._deadline_s = deadline_s

    async def detect(self, image: image_pb2.RgbImage) -> list[detector_pb2.Detection]:
        request = detector_pb2.DetectRequest(image=image)
        reply: detector_pb2.DetectResponse = await _call(
            "detector", self._stub.Detect(request, timeout=self._deadline_s)
        )
        return list(reply.detections)


class EmbedderClient:
    def __init__(self, channel: grpc.aio.Channel, deadline_s: float) -> None:
        self._stub = embedder_pb2_grpc.EmbedderStub(channel)
        self._deadline_s = deadline_s

    async def embed(self, images: Sequence[image_pb2.RgbImage]) -> tuple[Vectors, str]:
        """One batched call: (n, dim) vectors in request order, and the model id."""
        request = embedder_pb2.EmbedRequest(images=images)
        reply: embedder_pb2.EmbedResponse = await _call(
            "embedder", self._stub.Embed(request, timeout=self._deadline_s)
        )
        if len(reply.embeddings) != len(images):
            raise _broken("embedder", f"{len(reply.embeddings)} embeddings for {len(images)} images")
        vectors = np.array([e.values for e in reply.embeddings], dtype=np.float32)  # (n, dim)
        if vectors.ndim != 2 or vectors.shape[1] != reply.dim or not reply.model_id:
            raise _broken("embedder", f"vectors of shape {vectors.shape} for dim {reply.dim}")
        return vectors, reply.model_id


class IndexerClient:
    def __init__(self, channel: grpc.aio.Channel, search_deadline_s: float, deadline_s: float) -> None:
        self._stub = indexer_pb2_grpc.IndexerStub(channel)
        self._search_deadline_s = search_deadline_s
        self._deadline_s = deadline_s

    async def search(self, request: indexer_pb2.SearchRequest) -> list[indexer_pb2.SearchResult]:
        reply: indexer_pb2.SearchResponse = await _call(
            "indexer", self._stub.Search(request, timeout=self._search_deadline_s)
        )
        if len(reply.results) != len(request.queries):
            raise _broken("indexer", f"{len(reply.results)} results for {len(request.queries)} queries")
        return list(reply.results)

    async def similar(self, request: indexer_pb2.SimilarRequest) -> indexer_pb2.SearchResult:
        reply: indexer_pb2.SearchResult = await _call(
            "indexer", self._stub.Similar(request, timeout=self._search_deadline_s)
        )
        return reply

    async def get(self, product_id: str) -> indexer_pb2.Product:
        request = indexer_pb2.GetRequest(product_id=product_id)
        reply: indexer_pb2.Product = await _call("indexer", self._stub.Get(request, timeout=self._deadline_s))
        return reply

    async def find(self, product_id: str) -> indexer_pb2.Product | None:
        """Like :meth:`get`, but None for an unknown product."""
        try:
            return await self.get(product_id)
        except DownstreamError as exc:
            if exc.status == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def upsert(self, request: indexer_pb2.UpsertRequest) -> indexer_pb2.Product:
        reply: indexer_pb2.UpsertResponse = await _call(
            "indexer", self._stub.Upsert(request, timeout=self._deadline_s)
        )
        return reply.product

    async def delete(self, product_id: str) -> int:
        request = indexer_pb2.DeleteRequest(product_id=product_id)
        reply: indexer_pb2.DeleteResponse = await _call(
            "indexer", self._stub.Delete(request, timeout=self._deadline_s)
        )
        return reply.vectors_removed

    async def list(self, request: indexer_pb2.ListRequest) -> indexer_pb2.ListResponse:
        reply: indexer_pb2.ListResponse = await _call(
            "indexer", self._stub.List(request, timeout=self._deadline_s)
        )
        return reply

    async def stats(self) -> indexer_pb2.StatsResponse:
        request = indexer_pb2.StatsRequest()
        reply: indexer_pb2.StatsResponse = await _call(
            "indexer", self._stub.Stats(request, timeout=self._deadline_s)
        )
        return reply


class Backends:
    """One channel per backend, opened by the app's lifespan and closed with it."""

    def __init__(self, settings: GatewaySettings) -> None:
        size = settings.grpc_max_message_bytes
        self.channels: dict[str, grpc.aio.Channel] = {
            "detector": make_channel(settings.detector_addr, size, DETECTOR, EVERY_METHOD),
            "embedder": make_channel(settings.embedder_addr, size, EMBEDDER, EVERY_METHOD),
            "indexer": make_channel(settings.indexer_addr, size, INDEXER, INDEXER_READS),
        }
        self.detector = DetectorClient(self.channels["detector"], settings.detect_deadline_s)
        self.embedder = EmbedderClient(self.channels["embedder"], settings.embed_deadline_s)
        self.indexer = IndexerClient(
            self.channels["indexer"], settings.search_deadline_s, settings.indexer_deadline_s
        )
        self._health_deadline_s = settings.health_deadline_s

    async def health(self) -> dict[str, str]:
        """Each backend's overall health status, all checked concurrently."""
        names = list(self.channels)
        statuses = await asyncio.gather(
            *(health_status(self.channels[n], "", self._health_deadline_s) for n in names)
        )
        return dict(zip(names, statuses, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))
