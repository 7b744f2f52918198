"""Process entry point: settings, logging, metrics, gRPC server, index load, then serve until a signal."""

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass

from services.common.gen.visualsearch.v1 import indexer_pb2, indexer_pb2_grpc
from services.common.grpc_server import GrpcServer
from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.common.settings import load_settings
from services.indexer.ann import IndexPolicy
from services.indexer.backend import Backend, StorageUnavailable
from services.indexer.config import IndexerSettings
from services.indexer.embedded import EmbeddedBackend
from services.indexer.locking import StateDirLocked
from services.indexer.rerank import CategoryRerank
from services.indexer.servicer import IndexerServicer
from services.indexer.store import CatalogStore, StoreLimits

SERVICE_NAME = indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name  # visualsearch.v1.Indexer

log = logging.getLogger(__name__)


@dataclass
class RunningIndexer:
    grpc: GrpcServer
    store: CatalogStore
    snapshots: asyncio.Task[None]
    port: int

    async def stop(self, grace: float = 5.0) -> None:
        """Drains calls, then writes the final snapshot so the next start skips the rebuild."""
        await self.grpc.stop(grace)
        self.snapshots.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.snapshots
        await asyncio.to_thread(self.store.close)


async def start_server(settings: IndexerSettings) -> RunningIndexer:
    """Starts listening (NOT_SERVING), opens the store off the loop, then turns SERVING.

    Tests call this with ``port=0`` and a temporary ``state_dir`` to run the real server in-process.
    """
    rerank = CategoryRerank(settings.category_rerank, settings.rerank_neighbours)
    policy = IndexPolicy(
        settings.index_type, settings.ann_threshold, settings.nprobe, settings.ann_retrain_growth
    )
    store = CatalogStore(
        settings.state_path, _limits(settings), rerank, policy, make_backend(settings, policy)
    )
    server = GrpcServer([SERVICE_NAME], settings.grpc_max_message_bytes)
    indexer_pb2_grpc.add_IndexerServicer_to_server(IndexerServicer(store, settings.max_k), server.server)
    port = await server.start(settings.host, settings.port)
    try:
        await asyncio.to_thread(store.open)
        log.info("index ready (%s) in %s", store.load_path, _where(settings))
        snapshots = asyncio.create_task(_snapshot_loop(store, settings.snapshot_interval_s))
        await server.set_serving()
    except BaseException:
        await server.stop(grace=0)
        await asyncio.to_thread(store.close)
        raise
    return RunningIndexer(server, store, snapshots, port)


async def _snapshot_loop(store: CatalogStore, interval_s: float) -> None:
    """Snapshots a changed index every interval_s, so a process killed while idle restarts from the
    snapshot instead of rebuilding (a kill right after a write still rebuilds: the catalog is ahead)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(store.snapshot_if_dirty)
        except Exception:
            log.exception("periodic snapshot failed; retrying in %.0fs", interval_s)


def make_backend(settings: IndexerSettings, policy: IndexPolicy) -> Backend:
    if settings.backend == "milvus":
        # Imported here: pymilvus is an optional extra, needed only by this backend.
        from services.indexer.milvus_backend import MilvusBackend
        from services.indexer.milvus_search import MilvusConfig

        return MilvusBackend(
            MilvusConfig(
                uri=settings.milvus_target,
                token=settings.milvus_token.get_secret_value(),
                db_name=settings.milvus_db,
                collection=settings.milvus_collection,
                index_type=settings.milvus_index_type,
                consistency=settings.milvus_consistency,
                timeout_s=settings.milvus_timeout_s,
            )
        )
    return EmbeddedBackend(settings.state_path, policy)


def _where(settings: IndexerSettings) -> str:
    if settings.backend == "milvus":
        return f"Milvus collection {settings.milvus_collection!r} at {settings.milvus_target}"
    return str(settings.state_path)


def _limits(settings: IndexerSettings) -> StoreLimits:
    return StoreLimits(
        max_vectors_per_product=settings.max_vectors_per_product, max_list_limit=settings.max_list_limit
    )


async def serve(settings: IndexerSettings) -> None:
    start_metrics_server(settings.host, settings.metrics_port)
    running = await start_server(settings)
    try:
        await running.grpc.run_until_signal()
    finally:
        await running.stop(grace=0)


def main() -> None:
    settings = load_settings(IndexerSettings)
    setup_logging("indexer", settings.log_level)
    try:
        asyncio.run(serve(settings))
    except (StateDirLocked, StorageUnavailable, sqlite3.DatabaseError, OSError) as exc:
        log.error("cannot start the indexer: %s", exc)
        raise SystemExit(2) from None
