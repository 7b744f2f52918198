"""Process entry point: settings -> manifest check -> gRPC up (NOT_SERVING) -> model warm -> SERVING."""

import asyncio
import logging

from services.common.gen.visualsearch.v1 import embedder_pb2_grpc
from services.common.grpc_server import GrpcServer
from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.common.settings import load_settings
from services.embedder.batching import Item, MicroBatcher, Rows
from services.embedder.config import EmbedderSettings
from services.embedder.manifest import ManifestError, ResolvedModel, load_manifest, resolve_model
from services.embedder.model import ModelError, OnnxEmbedder
from services.embedder.servicer import EmbedderServicer

SERVICE_NAME = "visualsearch.v1.Embedder"

log = logging.getLogger(__name__)


def main() -> None:
    settings = load_settings(EmbedderSettings)
    setup_logging("embedder", settings.log_level)
    try:
        # Cheap checks first, so a typo in the model name or a wrong file fails before anything binds.
        resolved = resolve_model(load_manifest(settings.manifest).get(settings.model), settings.models_dir)
    except ManifestError as exc:
        log.critical("%s", exc)
        raise SystemExit(2) from None
    asyncio.run(serve(settings, resolved))


async def serve(settings: EmbedderSettings, resolved: ResolvedModel) -> None:
    start_metrics_server(settings.host, settings.metrics_port)
    grpc_server, servicer = await start_grpc(settings)
    try:
        model = await asyncio.to_thread(load_model, resolved, settings)
    except ModelError as exc:  # the file loads but does not match its manifest entry
        log.critical("%s", exc)
        await grpc_server.stop(grace=0)
        raise SystemExit(2) from None
    batcher = make_batcher(model, settings)
    servicer.attach(model, batcher)
    await grpc_server.set_serving()
    try:
        await grpc_server.run_until_signal()
    finally:
        await batcher.close()
        model.close()


async def start_grpc(settings: EmbedderSettings) -> tuple[GrpcServer, EmbedderServicer]:
    """Binds and starts the server, NOT_SERVING and answering UNAVAILABLE until a model is attached."""
    servicer = EmbedderServicer(settings.max_request_images, settings.views, settings.view_fraction)
    grpc_server = GrpcServer([SERVICE_NAME], settings.grpc_max_message_bytes)
    embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, grpc_server.server)
    await grpc_server.start(settings.host, settings.port)
    return grpc_server, servicer


def load_model(resolved: ResolvedModel, settings: EmbedderSettings) -> OnnxEmbedder:
    """Blocking: opens the session and warms the batch sizes traffic will use."""
    model = OnnxEmbedder(resolved, threads=settings.threads, run_chunk=settings.run_chunk)
    model.warmup(sorted({1, settings.max_batch}))
    return model


def make_batcher(model: OnnxEmbedder, settings: EmbedderSettings) -> MicroBatcher:
    def run(items: list[Item]) -> Rows:
        return model.embed(items)  # n items (3, crop, crop) -> (n, dim)

    return MicroBatcher(run, settings.max_batch, settings.max_wait_ms)
