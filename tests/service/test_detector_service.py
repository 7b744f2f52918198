"""The detector over real gRPC on 127.0.0.1, port 0, with the real YOLOv8n weights."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import pytest

from services.common.gen.visualsearch.v1 import detector_pb2, detector_pb2_grpc, image_pb2
from services.common.grpc_client import health_status, make_channel
from services.common.grpc_server import GrpcServer
from services.common.images import ImageLimits, decode_image, to_proto
from services.detector.config import DetectorSettings
from services.detector.model import YoloDetector
from services.detector.server import SERVICE_NAME, load_detector, start_server
from services.detector.servicer import DetectorServicer
from tests.paths import DATASETS, MODELS

T = TypeVar("T")
DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def settings() -> DetectorSettings:
    return DetectorSettings(models_dir=MODELS, host="127.0.0.1", port=0, metrics_port=0)


@pytest.fixture(scope="module")
def detector(settings: DetectorSettings) -> YoloDetector:
    return load_detector(settings)


@pytest.fixture(scope="module")
def bus() -> image_pb2.RgbImage:
    data = (DATASETS / "scenes" / "extra" / "bus.jpg").read_bytes()
    return to_proto(decode_image(data, ImageLimits(max_side=0)).pixels)


def with_server(
    settings: DetectorSettings, detector: YoloDetector | None, scenario: Callable[[Any], Awaitable[T]]
) -> T:
    """Starts the real server, runs ``scenario(channel)`` against it, always stops it."""

    async def run() -> T:
        running = await start_server(settings, detector)
        try:
            async with make_channel(f"127.0.0.1:{running.port}") as channel:
                return await scenario(channel)
        finally:
            await running.stop(grace=0)

    return asyncio.run(run())


def test_detect_finds_the_bus_and_the_people(
    settings: DetectorSettings, detector: YoloDetector, bus: image_pb2.RgbImage
) -> None:
    async def scenario(channel: Any) -> detector_pb2.DetectResponse:
        stub = detector_pb2_grpc.DetectorStub(channel)
        reply: detector_pb2.DetectResponse = await stub.Detect(
            detector_pb2.DetectRequest(image=bus), timeout=DEADLINE_S
        )
        return reply

    reply = with_server(settings, detector, scenario)
    # At its 640x480 input; the person cut off at the left edge scores 0.24 there, just under the
    # threshold (0.37 at 640x640: tests/unit/test_detector_model.py).
    assert Counter(d.label for d in reply.detections) == {"person": 3, "bus": 1}
    confidences = [d.confidence for d in reply.detections]
    assert confidences == sorted(confidences, reverse=True)
    (bus_box,) = [d for d in reply.detections if d.label == "bus"]
    assert bus_box.class_id == 5
    # MODELS.md: [34, 230, 796, 774] on the 810x1080 original, here 384x512.
    assert [bus_box.x1, bus_box.y1, bus_box.x2, bus_box.y2] == pytest.approx([16, 109, 377, 367], abs=15)
    assert reply.model_id == "yolov8n_fp32_from_int8-1c163f08"


def test_per_request_overrides(
    settings: DetectorSettings, detector: YoloDetector, bus: image_pb2.RgbImage
) -> None:
    async def scenario(channel: Any) -> tuple[int, int]:
        stub = detector_pb2_grpc.DetectorStub(channel)
        strict = await stub.Detect(
            detector_pb2.DetectRequest(image=bus, min_confidence=0.6), timeout=DEADLINE_S
        )
        top = await stub.Detect(detector_pb2.DetectRequest(image=bus, max_detections=1), timeout=DEADLINE_S)
        return len(strict.detections), len(top.detections)

    assert with_server(settings, detector, scenario) == (4, 1)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            detector_pb2.DetectRequest(image=image_pb2.RgbImage(width=4, height=4, pixels=b"\0" * 10)),
            "image is 4x4 but carries 10 bytes; expected 48",
        ),
        (
            detector_pb2.DetectRequest(image=image_pb2.RgbImage(width=0, height=4, pixels=b"")),
            "image has an empty side (0x4)",
        ),
        (detector_pb2.DetectRequest(), "image has an empty side (0x0)"),
        (
            detector_pb2.DetectRequest(
                image=image_pb2.RgbImage(width=1, height=1, pixels=b"\0\0\0"), min_confidence=1.5
            ),
            "min_confidence must be in (0, 1] (or 0 for the default), got 1.5",
        ),
        (
            detector_pb2.DetectRequest(
                image=image_pb2.RgbImage(width=1, height=1, pixels=b"\0\0\0"), max_detections=301
            ),
            "max_detections must be at most 300, got 301",
        ),
    ],
)
def test_malformed_requests_are_invalid_argument(
    settings: DetectorSettings, detector: YoloDetector, request_: detector_pb2.DetectRequest, message: str
) -> None:
    async def scenario(channel: Any) -> grpc.aio.AioRpcError:
        stub = detector_pb2_grpc.DetectorStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Detect(request_, timeout=DEADLINE_S)
        return caught.value

    error = with_server(settings, detector, scenario)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_start_loads_the_model_then_serves_and_info_lists_the_labels(settings: DetectorSettings) -> None:
    async def scenario(channel: Any) -> tuple[str, str, detector_pb2.DetectorInfo]:
        stub = detector_pb2_grpc.DetectorStub(channel)
        info = await stub.Info(detector_pb2.DetectorInfoRequest(), timeout=DEADLINE_S)
        named = await health_status(channel, SERVICE_NAME, deadline_s=DEADLINE_S)
        overall = await health_status(channel, "", deadline_s=DEADLINE_S)
        return named, overall, info

    named, overall, info = with_server(settings, None, scenario)  # None: start_server loads the model
    assert (named, overall) == ("SERVING", "SERVING")
    assert info.model_id == "yolov8n_fp32_from_int8-1c163f08"
    assert info.input_size == 640
    assert len(info.labels) == 80
    assert (info.labels[0], info.labels[5], info.labels[79]) == ("person", "bus", "toothbrush")
    assert list(info.allowed_labels) == list(info.labels)


def test_info_reports_the_allow_list(settings: DetectorSettings, bus: image_pb2.RgbImage) -> None:
    only_bags = settings.model_copy(update={"classes": ["handbag", "backpack"]})

    async def scenario(channel: Any) -> tuple[detector_pb2.DetectorInfo, detector_pb2.DetectResponse]:
        stub = detector_pb2_grpc.DetectorStub(channel)
        info = await stub.Info(detector_pb2.DetectorInfoRequest(), timeout=DEADLINE_S)
        reply = await stub.Detect(detector_pb2.DetectRequest(image=bus), timeout=DEADLINE_S)
        return info, reply

    info, reply = with_server(only_bags, None, scenario)
    assert list(info.allowed_labels) == ["backpack", "handbag"]  # model order
    assert len(reply.detections) == 0  # bus.jpg has no bags


def test_not_serving_and_unavailable_until_the_model_is_attached() -> None:
    """Between bind and model load, health says NOT_SERVING and calls get a retryable UNAVAILABLE."""

    async def run() -> tuple[str, grpc.StatusCode]:
        server = GrpcServer([SERVICE_NAME], 4 * 1024 * 1024)
        servicer = DetectorServicer()
        detector_pb2_grpc.add_DetectorServicer_to_server(servicer, server.server)
        port = await server.start("127.0.0.1", 0)
        try:
            async with make_channel(f"127.0.0.1:{port}") as channel:
                status = await health_status(channel, SERVICE_NAME, deadline_s=DEADLINE_S)
                stub = detector_pb2_grpc.DetectorStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Info(detector_pb2.DetectorInfoRequest(), timeout=DEADLINE_S)
                return status, caught.value.code()
        finally:
            await server.stop(grace=0)
            servicer.close()

    assert asyncio.run(run()) == ("NOT_SERVING", grpc.StatusCode.UNAVAILABLE)


def test_concurrent_detects_run_in_parallel_and_agree(
    settings: DetectorSettings, detector: YoloDetector, bus: image_pb2.RgbImage
) -> None:
    """parallel_runs=2 (the default): overlapping calls share the session and get the same answer."""
    assert settings.parallel_runs == 2

    async def scenario(channel: Any) -> list[detector_pb2.DetectResponse]:
        stub = detector_pb2_grpc.DetectorStub(channel)
        request = detector_pb2.DetectRequest(image=bus)
        return list(await asyncio.gather(*(stub.Detect(request, timeout=DEADLINE_S) for _ in range(4))))

    replies = with_server(settings, detector, scenario)
    assert all(reply == replies[0] for reply in replies)
    assert Counter(d.label for d in replies[0].detections) == {"person": 3, "bus": 1}
