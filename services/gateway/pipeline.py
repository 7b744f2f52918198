"""Search orchestration: decode once -> detect -> crop -> one Embed batch -> one Search batch.

The whole image comes first (``whole_image_object``), then the detected objects ordered by
prominence (detector confidence x share of the image area), capped at ``max_objects`` in all;
when nothing is detected the whole image is searched as one object.
"""

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import InvalidInput
from services.common.gen.visualsearch.v1 import image_pb2, indexer_pb2
from services.common.images import RGB, DecodedImage, decode_image, to_proto
from services.gateway.clients import Backends
from services.gateway.config import GatewaySettings
from services.gateway.geometry import (
    Box,
    Region,
    clip_box,
    crop_slice,
    objects_to_search,
    pad_box,
    scale_box,
    whole_image,
)
from services.gateway.metrics import StageTimer
from services.gateway.schemas import ImageSize, MatchOut, ObjectOut, SearchResponse, Timings


@dataclass(frozen=True)
class SearchQuery:
    k: int = 10
    detect: bool = True
    box: Box | None = None  # original coordinates; searches only this region, without detection
    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    min_similarity: float = 0.0
    # False for video frames: a paused frame is a scene, and its products are what the shopper wants.
    whole_image_object: bool = True

    def filter(self) -> indexer_pb2.Filter:
        return indexer_pb2.Filter(
            categories=self.categories,
            brands=self.brands,
            min_price=self.min_price,
            max_price=self.max_price,
        )


class BoxLike(Protocol):
    """A detector box in working coordinates: the wire message, or the detector's own record
    (bench/perfkit runs this pipeline in-process with the model classes)."""

    @property
    def x1(self) -> float: ...
    @property
    def y1(self) -> float: ...
    @property
    def x2(self) -> float: ...
    @property
    def y2(self) -> float: ...
    @property
    def label(self) -> str: ...
    @property
    def confidence(self) -> float: ...


def detections_to_regions(detections: Sequence[BoxLike], decoded: DecodedImage) -> list[Region]:
    """Detector boxes (working coordinates) -> regions in original coordinates, clipped."""
    regions = []
    for det in detections:
        working = (det.x1, det.y1, det.x2, det.y2)
        if not all(math.isfinite(v) for v in working):
            continue
        box = clip_box(scale_box(working, 1.0 / decoded.scale), decoded.width, decoded.height)
        if box is not None:
            confidence = min(1.0, max(0.0, float(det.confidence)))
            regions.append(Region(box, det.label or "object", confidence, padded=True))
    return regions


def crop_pixels(decoded: DecodedImage, regions: Sequence[Region], padding: float) -> list[RGB]:
    """One working-size crop per region (detections padded), as views of the decoded pixels."""
    pixels = decoded.pixels  # (h, w, 3)
    height, width = pixels.shape[:2]
    crops = []
    for region in regions:
        box = scale_box(region.box, decoded.scale)
        if region.padded:
            box = pad_box(box, padding, width, height)
        x1, y1, x2, y2 = crop_slice(box, width, height)
        crops.append(pixels[y1:y2, x1:x2])  # (y2-y1, x2-x1, 3)
    return crops


def crop_regions(decoded: DecodedImage, regions: list[Region], padding: float) -> list[image_pb2.RgbImage]:
    """Blocking: :func:`crop_pixels` as wire messages. Run it in a thread."""
    return [to_proto(crop) for crop in crop_pixels(decoded, regions, padding)]


async def find_regions(
    backends: Backends,
    decoded: DecodedImage,
    query: SearchQuery,
    settings: GatewaySettings,
    timer: StageTimer,
) -> list[Region]:
    if query.box is not None:
        box = clip_box(query.box, decoded.width, decoded.height)
        if box is None:
            raise InvalidInput(f"box lies outside the {decoded.width}x{decoded.height} image")
        return [Region(box, "region", 1.0, padded=False)]
    if not query.detect:
        return [whole_image(decoded.width, decoded.height)]
    with timer.stage("detect"):
        message = await asyncio.to_thread(to_proto, decoded.pixels)  # the working-size image
        detections = await backends.detector.detect(message)
    regions = detections_to_regions(detections, decoded)
    return objects_to_search(
        regions,
        decoded.width,
        decoded.height,
        settings.max_objects,
        whole_first=settings.whole_image_object and query.whole_image_object,
    )


async def search_image(
    backends: Backends, settings: GatewaySettings, data: bytes, query: SearchQuery, timer: StageTimer
) -> SearchResponse:
    with timer.stage("decode"):
        decoded = await asyncio.to_thread(decode_image, data, settings.image_limits)
    return await search_decoded(backends, settings, decoded, query, timer)


async def search_decoded(
    backends: Backends,
    settings: GatewaySettings,
    decoded: DecodedImage,
    query: SearchQuery,
    timer: StageTimer,
) -> SearchResponse:
    """Searches an already-decoded image (a photo, or a video frame)."""
    regions = await find_regions(backends, decoded, query, settings, timer)
    with timer.stage("embed"):
        crops = await asyncio.to_thread(crop_regions, decoded, regions, settings.crop_padding)
        vectors, model_id = await backends.embedder.embed(crops)
    with timer.stage("search"):
        request = indexer_pb2.SearchRequest(
            queries=[indexer_pb2.Vector(values=row.tolist()) for row in vectors],
            k=query.k,
            filter=query.filter(),
            min_similarity=query.min_similarity,
            model_id=model_id,
        )
        results = await backends.indexer.search(request)
    objects = [
        ObjectOut(
            box=[round(v, 1) for v in region.box],
            label=region.label,
            confidence=round(region.confidence, 4),
            matches=[MatchOut.from_proto(m) for m in result.matches],
        )
        for region, result in zip(regions, results, strict=True)
    ]
    return SearchResponse(
        image=ImageSize(width=decoded.width, height=decoded.height),
        objects=objects,
        timings_ms=timings(timer),
    )


def timings(timer: StageTimer) -> Timings:
    return Timings(
        decode=timer.get("decode"),
        detect=timer.get("detect"),
        embed=timer.get("embed"),
        search=timer.get("search"),
        total=round(timer.elapsed_ms(), 2),
    )
