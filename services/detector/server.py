"""Process entry point: settings, logging, metrics, gRPC server, model load, then serve until a signal."""

import asyncio
import logging
from dataclasses import dataclass

from services.common.gen.visualsearch.v1 import detector_pb2_grpc
from services.common.grpc_server import GrpcServer
from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.common.settings import load_settings
from services.detector.config import DetectorSettings
from services.detector.model import ModelConfigError, YoloDetector
from services.detector.servicer import DetectorServicer

SERVICE_NAME = "visualsearch.v1.Detector"

log = logging.getLogger(__name__)


@dataclass
class RunningDetector:
    grpc: GrpcServer
    servicer: DetectorServicer
    port: int

    async def stop(self, grace: float = 5.0) -> None:
        await self.grpc.stop(grace)
        self.servicer.close()


def load_detector(settings: DetectorSettings) -> YoloDetector:
    """Blocking: loads the model and runs it once. Call off the event loop."""
    detector = YoloDetector.from_settings(settings)
    detector.warmup()
    return detector


async def start_server(settings: DetectorSettings, detector: YoloDetector | None = None) -> RunningDetector:
    """Starts listening (NOT_SERVING), loads and warms the model unless given one, then turns SERVING.

    Tests pass an already loaded ``detector`` and ``port=0`` to run the real server in-process.
    """
    server = GrpcServer([SERVICE_NAME], settings.grpc_max_message_bytes)
    servicer = DetectorServicer(settings.parallel_runs)
    detector_pb2_grpc.add_DetectorServicer_to_server(servicer, server.server)
    port = await server.start(settings.host, settings.port)
    try:
        if detector is None:
            detector = await asyncio.to_thread(load_detector, settings)
        servicer.attach(detector)
        await server.set_serving()
    except BaseException:
        await server.stop(grace=0)
        servicer.close()
        raise
    return RunningDetector(server, servicer, port)


async def serve(settings: DetectorSettings) -> None:
    start_metrics_server(settings.host, settings.metrics_port)
    running = await start_server(settings)
    try:
        await running.grpc.run_until_signal()
    finally:
        running.servicer.close()


def main() -> None:
    settings = load_settings(DetectorSettings)
    setup_logging("detector", settings.log_level)
    try:
        asyncio.run(serve(settings))
    except (ModelConfigError, FileNotFoundError) as exc:
        log.error("cannot start the detector: %s", exc)
        raise SystemExit(2) from None
