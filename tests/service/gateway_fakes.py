"""Fake detector/embedder/indexer gRPC backends for the gateway service tests (no tests here).

Each fake implements the generated ``*Servicer`` base class and runs on a real grpc.aio server
with the standard health service (GrpcServer), on 127.0.0.1 port 0, in a background event
loop, so the gateway under test talks real gRPC. The fakes are deterministic:

- the detector returns whatever ``detections`` the test set, in working-image coordinates;
- the embedder embeds an image as its L2-normalised mean RGB colour (dim 3), so a red crop
  matches a red catalog product;
- the indexer keeps products in memory and searches by brute-force cosine.
"""

import asyncio
import io
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient
from PIL import Image

from services.common.errors import Conflict, InvalidInput, NotFound
from services.common.gen.visualsearch.v1 import (
    detector_pb2,
    detector_pb2_grpc,
    embedder_pb2,
    embedder_pb2_grpc,
    indexer_pb2,
    indexer_pb2_grpc,
)
from services.common.grpc_server import GrpcServer, rpc
from services.common.ids import validate_product_id
from services.common.images import from_proto
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings

MODEL_ID = "fake-mean-rgb"
DIM = 3
T = TypeVar("T")


def unit(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    vector = np.asarray(values, dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class FakeDetector(detector_pb2_grpc.DetectorServicer):
    def __init__(self) -> None:
        self.detections: list[detector_pb2.Detection] = []
        self.seen: list[tuple[int, int]] = []  # (width, height) of every image received

    @rpc
    async def Detect(
        self, request: detector_pb2.DetectRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectResponse:
        pixels = from_proto(request.image)
        self.seen.append((pixels.shape[1], pixels.shape[0]))
        return detector_pb2.DetectResponse(detections=self.detections, model_id="fake-detector")

    @rpc
    async def Info(
        self, request: detector_pb2.DetectorInfoRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectorInfo:
        return detector_pb2.DetectorInfo(model_id="fake-detector", input_size=640)


class FakeEmbedder(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []  # per Embed call: (width, height) of each image
        self.fault: Exception | None = None  # raised by the next Embed calls when set

    @rpc
    async def Embed(
        self, request: embedder_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedResponse:
        if self.fault is not None:
            raise self.fault
        images = [from_proto(image) for image in request.images]
        self.calls.append([(p.shape[1], p.shape[0]) for p in images])
        vectors = [unit(p.reshape(-1, 3).mean(axis=0) + 1e-3) for p in images]
        return embedder_pb2.EmbedResponse(
            embeddings=[embedder_pb2.Embedding(values=v.tolist()) for v in vectors],
            model_id=MODEL_ID,
            dim=DIM,
        )

    @rpc
    async def Info(
        self, request: embedder_pb2.EmbedderInfoRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedderInfo:
        return embedder_pb2.EmbedderInfo(model_id=MODEL_ID, dim=DIM, max_batch=32)


class FakeIndexer(indexer_pb2_grpc.IndexerServicer):
    def __init__(self) -> None:
        self.products: dict[str, indexer_pb2.Product] = {}
        self.vectors: dict[str, list[indexer_pb2.Vector]] = {}
        self.searches: list[indexer_pb2.SearchRequest] = []

    def add(self, product_id: str, color: tuple[float, float, float], **fields: Any) -> None:
        """Seeds a product directly (bypassing the gateway) with one vector of that colour."""
        vector = indexer_pb2.Vector(values=unit(color).tolist(), image_key="seed")
        self.products[product_id] = indexer_pb2.Product(product_id=product_id, vector_count=1, **fields)
        self.vectors[product_id] = [vector]

    def _product(self, product_id: str) -> indexer_pb2.Product:
        if product_id not in self.products:
            raise NotFound(f"unknown product {product_id!r}")
        return self.products[product_id]

    @rpc
    async def Upsert(
        self, request: indexer_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.UpsertResponse:
        product_id = validate_product_id(request.product.product_id)
        if request.model_id != MODEL_ID:
            raise Conflict(f"the index holds {MODEL_ID} vectors, not {request.model_id}")
        if any(len(v.values) != DIM for v in request.vectors):
            raise InvalidInput(f"vectors must have {DIM} values")
        product = indexer_pb2.Product()
        product.CopyFrom(request.product)
        product.vector_count = len(request.vectors)
        product.updated_at_ms = product.indexed_at_ms = int(time.time() * 1000)
        self.products[product_id] = product
        self.vectors[product_id] = list(request.vectors)
        return indexer_pb2.UpsertResponse(product=product)

    @rpc
    async def Delete(
        self, request: indexer_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.DeleteResponse:
        self._product(request.product_id)
        del self.products[request.product_id]
        return indexer_pb2.DeleteResponse(vectors_removed=len(self.vectors.pop(request.product_id)))

    @rpc
    async def Get(
        self, request: indexer_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.Product:
        return self._product(request.product_id)

    @rpc
    async def List(
        self, request: indexer_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.ListResponse:
        ids = sorted(
            p for p, v in self.products.items() if not request.category or v.category == request.category
        )
        start = int(request.cursor or 0)
        page = ids[start : start + request.limit]
        more = start + request.limit < len(ids)
        return indexer_pb2.ListResponse(
            products=[self.products[p] for p in page], next_cursor=str(start + request.limit) if more else ""
        )

    def _rank(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        flt: indexer_pb2.Filter,
        min_sim: float,
        exclude: str = "",
    ) -> indexer_pb2.SearchResult:
        scored = []
        for product_id, product in self.products.items():
            if product_id == exclude or (flt.categories and product.category not in flt.categories):
                continue
            if flt.brands and product.brand not in flt.brands:
                continue
            similarity = max(float(np.dot(query, np.asarray(v.values))) for v in self.vectors[product_id])
            if similarity >= min_sim:
                scored.append((similarity, product_id))
        scored.sort(reverse=True)
        return indexer_pb2.SearchResult(
            matches=[indexer_pb2.Match(product=self.products[p], similarity=s) for s, p in scored[:k]]
        )

    @rpc
    async def Search(
        self, request: indexer_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.SearchResponse:
        self.searches.append(request)
        if request.model_id != MODEL_ID:
            raise Conflict(f"the index holds {MODEL_ID} vectors, not {request.model_id}")
        queries = [np.asarray(q.values, dtype=np.float32) for q in request.queries]
        return indexer_pb2.SearchResponse(
            results=[self._rank(q, request.k, request.filter, request.min_similarity) for q in queries]
        )

    @rpc
    async def Similar(
        self, request: indexer_pb2.SimilarRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.SearchResult:
        self._product(request.product_id)
        query = np.asarray(self.vectors[request.product_id][0].values, dtype=np.float32)
        return self._rank(
            query, request.k, request.filter, request.min_similarity, exclude=request.product_id
        )

    @rpc
    async def Stats(
        self, request: indexer_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> indexer_pb2.StatsResponse:
        vectors = sum(len(v) for v in self.vectors.values())
        return indexer_pb2.StatsResponse(
            products=len(self.products), vectors=vectors, model_id=MODEL_ID, dim=DIM
        )


class FakeBackends:
    """The three fakes, each on its own gRPC server, served from a background event loop."""

    def __init__(self) -> None:
        self.detector = FakeDetector()
        self.embedder = FakeEmbedder()
        self.indexer = FakeIndexer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-backends", daemon=True)
        self._thread.start()
        self.servers: dict[str, GrpcServer] = {}
        self.addrs: dict[str, str] = {}
        for name, servicer, add in (
            ("detector", self.detector, detector_pb2_grpc.add_DetectorServicer_to_server),
            ("embedder", self.embedder, embedder_pb2_grpc.add_EmbedderServicer_to_server),
            ("indexer", self.indexer, indexer_pb2_grpc.add_IndexerServicer_to_server),
        ):
            self.servers[name] = self._run(self._serve(name, servicer, add))
            self.addrs[name] = f"127.0.0.1:{self.servers[name].port}"

    @staticmethod
    async def _serve(name: str, servicer: Any, add: Callable[[Any, Any], None]) -> GrpcServer:
        server = GrpcServer([f"visualsearch.v1.{name.capitalize()}"], 64 * 1024 * 1024)
        add(servicer, server.server)
        await server.start("127.0.0.1", 0)
        await server.set_serving()
        return server

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def stop(self, name: str) -> None:
        self._run(self.servers[name].stop(0))

    def close(self) -> None:
        for server in self.servers.values():
            self._run(server.stop(0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def settings(self, **overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "detector_addr": self.addrs["detector"],
            "embedder_addr": self.addrs["embedder"],
            "indexer_addr": self.addrs["indexer"],
            "allow_private_urls": True,
            "detect_deadline_s": 5.0,
            "embed_deadline_s": 5.0,
            **overrides,
        }
        return GatewaySettings(**values)


@contextmanager
def fake_backends() -> Iterator[FakeBackends]:
    backends = FakeBackends()
    try:
        yield backends
    finally:
        backends.close()


@contextmanager
def gateway(backends: FakeBackends, **overrides: Any) -> Iterator[TestClient]:
    """The real gateway app, lifespan and all, wired to the fakes."""
    with TestClient(create_app(backends.settings(**overrides))) as client:
        yield client


def encode(image: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def two_bag_scene(width: int = 2048, height: int = 1536) -> Image.Image:
    """White photo with a red box at (200,300)-(800,900) and a blue box at (1200,400)-(1800,1000)."""
    image = Image.new("RGB", (width, height), "white")
    image.paste((220, 20, 20), (200, 300, 800, 900))
    image.paste((20, 20, 220), (1200, 400, 1800, 1000))
    return image


def detection(
    box: tuple[float, float, float, float], label: str, confidence: float
) -> detector_pb2.Detection:
    x1, y1, x2, y2 = box
    return detector_pb2.Detection(x1=x1, y1=y1, x2=x2, y2=y2, label=label, confidence=confidence)
