"""gRPC handlers for ``visualsearch.v1.Detector``."""

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import grpc

from services.common.errors import InvalidInput, Unavailable
from services.common.gen.visualsearch.v1 import detector_pb2, detector_pb2_grpc
from services.common.grpc_server import rpc
from services.common.images import from_proto
from services.detector.config import MAX_DETECTIONS_LIMIT
from services.detector.model import Detection, YoloDetector


class DetectorServicer(detector_pb2_grpc.DetectorServicer):
    """Registered before the server starts; :meth:`attach` hands it the model once loaded and warm."""

    def __init__(self, parallel_runs: int = 1) -> None:
        self._detector: YoloDetector | None = None
        # A bounded pool: inference calls queue instead of oversubscribing the CPU cores with
        # concurrent onnxruntime runs, and a cancelled call that has not started never runs.
        self._executor = ThreadPoolExecutor(max_workers=parallel_runs, thread_name_prefix="detector-infer")

    def attach(self, detector: YoloDetector) -> None:
        self._detector = detector

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def detector(self) -> YoloDetector:
        if self._detector is None:
            raise Unavailable("the detector model is still loading")
        return self._detector

    @rpc
    async def Detect(
        self, request: detector_pb2.DetectRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectResponse:
        detector = self.detector
        conf = _min_confidence(request.min_confidence)
        max_det = _max_detections(request.max_detections)
        pixels = from_proto(request.image)
        loop = asyncio.get_running_loop()
        detections = await loop.run_in_executor(self._executor, detector.detect, pixels, conf, max_det)
        return detector_pb2.DetectResponse(
            detections=[_to_proto(d) for d in detections], model_id=detector.model_id
        )

    @rpc
    async def Info(
        self, request: detector_pb2.DetectorInfoRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectorInfo:
        detector = self.detector
        return detector_pb2.DetectorInfo(
            model_id=detector.model_id,
            input_size=detector.input_size,
            labels=detector.labels,
            allowed_labels=detector.allowed_labels,
        )


def _min_confidence(value: float) -> float | None:
    """0 keeps the configured threshold; anything else must be a probability in (0, 1]."""
    if value == 0:
        return None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise InvalidInput(f"min_confidence must be in (0, 1] (or 0 for the default), got {value}")
    return value


def _max_detections(value: int) -> int | None:
    """0 keeps the configured maximum."""
    if value == 0:
        return None
    if value > MAX_DETECTIONS_LIMIT:
        raise InvalidInput(f"max_detections must be at most {MAX_DETECTIONS_LIMIT}, got {value}")
    return value


def _to_proto(d: Detection) -> detector_pb2.Detection:
    return detector_pb2.Detection(
        x1=d.x1, y1=d.y1, x2=d.x2, y2=d.y2, label=d.label, class_id=d.class_id, confidence=d.confidence
    )
