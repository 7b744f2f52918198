"""What every ingest stage gets: settings, Redis queues and jobs, the URL fetcher, gRPC stubs.

A stage module exposes ``async def run(ctx: WorkerContext, stop: asyncio.Event) -> None`` and
returns once ``stop`` is set, leaving unfinished messages pending for another worker.
"""

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from services.common.fetch import SafeFetcher
from services.common.gen.visualsearch.v1 import embedder_pb2, embedder_pb2_grpc, indexer_pb2, indexer_pb2_grpc
from services.common.grpc_client import EVERY_METHOD, make_channel, service_name
from services.common.jobs import Jobs
from services.common.streams import Streams, open_redis
from services.scraper.config import ScraperSettings

EMBEDDER = service_name(embedder_pb2.DESCRIPTOR, "Embedder")
INDEXER = service_name(indexer_pb2.DESCRIPTOR, "Indexer")


@dataclass(frozen=True)
class WorkerContext:
    settings: ScraperSettings
    redis: aioredis.Redis
    streams: Streams
    jobs: Jobs
    fetcher: SafeFetcher
    http: httpx.AsyncClient  # the fetcher's client, for stages that need raw access (robots.txt...)
    embedder: embedder_pb2_grpc.EmbedderStub
    indexer: indexer_pb2_grpc.IndexerStub
    consumer: str  # this worker's consumer name in every group: unique per process


def consumer_name(name: str | None = None) -> str:
    return name or f"{socket.gethostname()}-{os.getpid()}"


@asynccontextmanager
async def open_context(settings: ScraperSettings, name: str | None = None) -> AsyncIterator[WorkerContext]:
    client = open_redis(settings.redis_url, socket_connect_timeout=5)
    # trust_env=False: no proxy from the environment, so the SSRF checks see the real target.
    http = httpx.AsyncClient(
        timeout=settings.fetch_timeout_s,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "visualsearch-bot/0.1 (+catalog ingest)"},
        limits=httpx.Limits(max_connections=settings.fetch_concurrency * 2),
    )
    # Embeds and reads are retried on another replica when one dies; writes are left to the
    # stages' own retries, which know the item.
    embedder_channel = make_channel(settings.embedder_addr, health_service=EMBEDDER, idempotent=EVERY_METHOD)
    indexer_channel = make_channel(settings.indexer_addr, health_service=INDEXER, idempotent=("Get",))
    try:
        yield WorkerContext(
            settings=settings,
            redis=client,
            streams=Streams(client),
            jobs=Jobs(client),
            fetcher=SafeFetcher(http, settings.fetch_policy()),
            http=http,
            embedder=embedder_pb2_grpc.EmbedderStub(embedder_channel),
            indexer=indexer_pb2_grpc.IndexerStub(indexer_channel),
            consumer=consumer_name(name),
        )
    finally:
        await embedder_channel.close()
        await indexer_channel.close()
        await http.aclose()
        await client.aclose()
