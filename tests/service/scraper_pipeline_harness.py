"""The ingest pipeline for service tests: real Redis, the real embedder (MobileNetV2) and indexer
servers in-process on 127.0.0.1 port 0, the real stages, and images from a local HTTP server."""

import asyncio
import functools
import http.server
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.common.gen.visualsearch.v1 import embedder_pb2, indexer_pb2
from services.common.grpc_server import GrpcServer
from services.common.images import decode_image, to_proto
from services.common.jobs import Jobs, JobStatus
from services.common.streams import Streams
from services.embedder.batching import MicroBatcher
from services.embedder.config import EmbedderSettings
from services.embedder.manifest import load_manifest, resolve_model
from services.embedder.model import OnnxEmbedder
from services.embedder.server import make_batcher, start_grpc
from services.indexer.config import IndexerSettings
from services.indexer.server import RunningIndexer, start_server
from services.scraper.config import ScraperSettings
from services.scraper.context import WorkerContext, open_context
from services.scraper.items import Item, emit_item
from services.scraper.worker import resolve_stages, run_stages
from tests.http_server import serving
from tests.paths import DATASETS, MODELS

DEADLINE_S = 10.0
SOURCE = "test-feed"
PHOTOS = sorted((DATASETS / "fashion_products" / "images").glob("1*.jpg"))


@functools.cache
def embedder_model() -> OnnxEmbedder:
    """Loaded once per test process: the real MobileNetV2 feature extractor."""
    model = OnnxEmbedder(resolve_model(load_manifest().get("mobilenetv2-features"), MODELS))
    model.warmup((1, 8))
    return model


@dataclass
class ImageServer:
    """Serves files from ``root``; /status/<code> answers that status. Records (path, status)."""

    root: Path
    url: str = ""
    requests: list[tuple[str, int]] = field(default_factory=list)

    def add(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.url}/{name}"

    def add_photo(self, photo: Path) -> str:
        shutil.copy(photo, self.root / photo.name)
        return f"{self.url}/{photo.name}"


@contextmanager
def image_server(root: Path) -> Iterator[ImageServer]:
    served = ImageServer(root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            if self.path.startswith("/status/"):
                self.send_error(int(self.path.rsplit("/", 1)[1]))
                return
            super().do_GET()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            served.requests.append((self.path, int(code)))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        served.url = url
        yield served


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product(pid: str, urls: list[str], row: int, **meta: Any) -> Item:
    fields = {"title": f"product {pid}", "price": 10.0 + row, "currency": "EUR", "category": "test"}
    fields.update(image_url=urls[0], image_urls=urls[1:], **meta)
    return Item(product_id=pid, meta=fields, source=SOURCE, row=row)


class Embedder:
    """The real embedder servicer on a real gRPC server; can be stopped and started again."""

    def __init__(self) -> None:
        self.port = 0
        self._server: GrpcServer | None = None
        self._batcher: MicroBatcher | None = None

    async def start(self) -> None:
        config = EmbedderSettings(host="127.0.0.1", port=self.port)
        self._server, servicer = await start_grpc(config)
        self.port = self._server.port
        self._batcher = make_batcher(embedder_model(), config)
        servicer.attach(embedder_model(), self._batcher)
        await self._server.set_serving()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)
        if self._batcher is not None:
            await self._batcher.close()
        self._server = self._batcher = None


@dataclass
class Pipeline:
    redis: aioredis.Redis
    streams: Streams
    jobs: Jobs
    embedder: Embedder
    indexer: RunningIndexer
    indexer_settings: IndexerSettings
    settings: ScraperSettings
    workers: list[tuple[asyncio.Event, asyncio.Task[bool]]] = field(default_factory=list)

    async def emit(self, items: list[Item]) -> str:
        job_id = await self.jobs.create("import", {"source": SOURCE})
        await self.jobs.start(job_id)
        for item in items:
            assert await emit_item(self.streams, self.jobs, job_id, item, high_water=10_000)
        await self.jobs.finish_expansion(job_id)
        return job_id

    async def stop_indexer(self) -> None:
        await self.indexer.stop(grace=0)

    async def start_indexer(self) -> None:
        """Starts the indexer again, on its port and state directory (a restart)."""
        port = self.indexer.port
        self.indexer = await start_server(self.indexer_settings.model_copy(update={"port": port}))

    @asynccontextmanager
    async def worker(self, stages: str = "fetch,embed,index", name: str = "w1") -> AsyncIterator[None]:
        """Runs a worker with ``stages`` in this event loop for the block's duration."""
        stop = asyncio.Event()
        async with open_context(self.settings, name) as ctx:
            task = asyncio.create_task(run_stages(ctx, resolve_stages(stages), stop))
            try:
                yield
            finally:
                stop.set()
                assert await asyncio.wait_for(task, 10), "a stage crashed"

    @asynccontextmanager
    async def context(self, name: str) -> AsyncIterator[WorkerContext]:
        async with open_context(self.settings, name) as ctx:
            yield ctx

    async def wait_job(self, job_id: str, timeout_s: float = 20.0) -> JobStatus:
        deadline = time.monotonic() + timeout_s
        while True:
            status = await self.jobs.get(job_id)
            assert status is not None
            if status.status in ("completed", "failed") or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.05)

    async def wait_for_length(self, stream: str, length: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        # Polling on purpose: the state lives in Redis, written by the stages.
        while await self.streams.length(stream) < length:
            assert time.monotonic() < deadline, f"{stream} never reached {length} messages"
            await asyncio.sleep(0.05)

    async def errors(self, job_id: str) -> dict[str, dict[str, Any]]:
        return {e["product_id"]: e for e in await self.jobs.errors(job_id, 0, 1000)}

    async def stored(self, product_id: str) -> indexer_pb2.Product:
        async with self.context("reader") as ctx:
            request = indexer_pb2.GetRequest(product_id=product_id)
            reply: indexer_pb2.Product = await ctx.indexer.Get(request, timeout=DEADLINE_S)
            return reply

    async def top_match(self, photo: bytes) -> str:
        """The product the indexer ranks first for this photo, embedded like the pipeline does."""
        async with self.context("reader") as ctx:
            pixels = decode_image(photo, self.settings.image_limits).pixels
            request = embedder_pb2.EmbedRequest(images=[to_proto(pixels)])
            reply: embedder_pb2.EmbedResponse = await ctx.embedder.Embed(request, timeout=DEADLINE_S)
            query = indexer_pb2.Vector(values=reply.embeddings[0].values)
            found: indexer_pb2.SearchResponse = await ctx.indexer.Search(
                indexer_pb2.SearchRequest(queries=[query], k=1), timeout=DEADLINE_S
            )
            return str(found.results[0].matches[0].product.product_id)


@asynccontextmanager
async def pipeline(redis_url: str, state_dir: Path, **settings: Any) -> AsyncIterator[Pipeline]:
    """Flushed Redis, embedder and indexer servers, and worker settings pointing at them."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    embedder = Embedder()
    await embedder.start()
    indexer_settings = IndexerSettings(host="127.0.0.1", port=0, state_dir=state_dir)
    indexer = await start_server(indexer_settings)
    config: dict[str, Any] = {
        "redis_url": redis_url,
        "embedder_addr": f"127.0.0.1:{embedder.port}",
        "indexer_addr": f"127.0.0.1:{indexer.port}",
        "allow_private_urls": True,
        "block_ms": 100,
        "fetch_timeout_s": 5.0,
        "reclaim_idle_s": 0.6,
        "retry_base_s": 0.05,
        "retry_max_s": 0.4,
    }
    config.update(settings)
    running: Pipeline | None = None
    try:
        running = Pipeline(
            client,
            Streams(client),
            Jobs(client),
            embedder,
            indexer,
            indexer_settings,
            ScraperSettings(**config),
        )
        yield running
    finally:
        await embedder.stop()
        await (running.indexer if running else indexer).stop(grace=0)  # a test may have restarted it
        await client.aclose()
