"""The search pipeline in-process: the services' own model and store classes as Python calls.

It does what ``POST /v1/search`` does (decode once, detect, whole image plus the most prominent
objects, crops, views, one embedding per object, one index search) with the same settings the
services read from the environment, so gateway p50 / in-process p50 is the cost of the services.
``bare_runs`` times only the model sessions on the same inputs: the floor under both.
"""

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.images import DecodedImage, decode_image
from services.detector.config import DetectorSettings
from services.detector.model import YoloDetector
from services.embedder.config import EmbedderSettings
from services.embedder.manifest import load_manifest, resolve_model
from services.embedder.model import OnnxEmbedder, Vectors
from services.embedder.preprocess import RGB, Tensor
from services.embedder.views import combine_views, view_batch, view_count, views_model_id
from services.gateway.config import GatewaySettings
from services.gateway.geometry import Region, objects_to_search
from services.gateway.pipeline import crop_pixels, detections_to_regions
from services.indexer.config import IndexerSettings
from services.indexer.records import ProductRecord, SearchParams
from services.indexer.rerank import CategoryRerank
from services.indexer.store import CatalogStore, StoreLimits


@dataclass
class Models:
    detector: YoloDetector
    embedder: OnnxEmbedder
    embedder_settings: EmbedderSettings
    gateway: GatewaySettings

    @property
    def model_id(self) -> str:
        """The id the embedder service serves with its vectors (views included)."""
        s = self.embedder_settings
        return views_model_id(self.embedder.model_id, s.views, s.view_fraction)

    def embed_images(self, images: Sequence[RGB]) -> Vectors:
        """Like the embedder service: views, preprocessing, runs of at most max_batch, combine."""
        s = self.embedder_settings
        tensor = view_batch(images, s.views, s.view_fraction, self.embedder.preprocessing)
        return combine_views(self.run_embedder(tensor), view_count(s.views))

    def run_embedder(self, tensor: Tensor) -> Vectors:
        """The bare backbone runs, chunked like the service chunks one request's micro-batch."""
        step = self.embedder_settings.run_chunk
        parts = [self.embedder.embed(tensor[i : i + step]) for i in range(0, len(tensor), step)]
        return np.concatenate(parts)


def load_models(detector_threads: int | None = None, embedder_threads: int | None = None) -> Models:
    """The services' model classes, configured from the same VS_* environment as the stack."""
    det_settings = DetectorSettings()
    emb_settings = EmbedderSettings()
    if detector_threads is not None:
        det_settings = det_settings.model_copy(update={"threads": detector_threads})
    if embedder_threads is not None:
        emb_settings = emb_settings.model_copy(update={"threads": embedder_threads})
    detector = YoloDetector.from_settings(det_settings)
    detector.warmup()
    resolved = resolve_model(
        load_manifest(emb_settings.manifest).get(emb_settings.model), emb_settings.models_dir
    )
    embedder = OnnxEmbedder(resolved, threads=emb_settings.threads, run_chunk=emb_settings.run_chunk)
    embedder.warmup(sorted({1, emb_settings.max_batch}))
    unused = "unused:1"  # in process nothing is called over gRPC, but the settings require addresses
    gateway = GatewaySettings(detector_addr=unused, embedder_addr=unused, indexer_addr=unused)
    return Models(detector, embedder, emb_settings, gateway)


@contextmanager
def temp_store() -> Iterator[CatalogStore]:
    """A CatalogStore in a temp folder, with the indexer's ranking settings."""
    settings = IndexerSettings()
    rerank = CategoryRerank(settings.category_rerank, settings.rerank_neighbours)
    with tempfile.TemporaryDirectory(prefix="vs-inproc-") as tmp:
        store = CatalogStore(Path(tmp), StoreLimits(), rerank)
        store.open()
        try:
            yield store
        finally:
            store.close()


def upsert(store: CatalogStore, product: ProductRecord, vector: Vectors, model_id: str) -> None:
    store.upsert(product, ["img0"], [vector], model_id)


@dataclass(frozen=True)
class Traced:
    ms: dict[str, float]  # decode, detect, embed, search, total
    objects: int
    views: int


def regions_for(models: Models, decoded: DecodedImage) -> list[Region]:
    gs = models.gateway
    detections = models.detector.detect(decoded.pixels)
    regions = detections_to_regions(detections, decoded)
    return objects_to_search(regions, decoded.width, decoded.height, gs.max_objects, gs.whole_image_object)


def search(models: Models, store: CatalogStore, data: bytes, k: int = 10) -> Traced:
    """One search, timed by stage like the gateway's ``timings_ms``."""
    marks = [time.perf_counter()]
    decoded = decode_image(data, models.gateway.image_limits)
    marks.append(time.perf_counter())
    regions = regions_for(models, decoded)
    marks.append(time.perf_counter())
    crops = crop_pixels(decoded, regions, models.gateway.crop_padding)
    vectors = models.embed_images(crops)
    marks.append(time.perf_counter())
    store.search(list(vectors), SearchParams(k=k), models.model_id)
    marks.append(time.perf_counter())
    stages = ("decode", "detect", "embed", "search")
    ms = {name: (marks[i + 1] - marks[i]) * 1000 for i, name in enumerate(stages)}
    ms["total"] = (marks[-1] - marks[0]) * 1000
    return Traced(ms, len(regions), len(regions) * view_count(models.embedder_settings.views))


@dataclass(frozen=True)
class Prepared:
    """The exact model inputs one search produces, so the bare runs can be timed alone."""

    detector_input: np.ndarray
    embedder_input: Tensor


def prepare(models: Models, data: bytes) -> Prepared:
    decoded = decode_image(data, models.gateway.image_limits)
    crops = crop_pixels(decoded, regions_for(models, decoded), models.gateway.crop_padding)
    s = models.embedder_settings
    tensor = view_batch(crops, s.views, s.view_fraction, models.embedder.preprocessing)
    return Prepared(models.detector.preprocess(decoded.pixels).tensor, tensor)


def bare_runs(models: Models, prepared: Prepared) -> dict[str, float]:
    """Wall ms and this thread's CPU ms of the detector run and the embedder runs of one search.

    CPU time is the calling thread's: with 1 intra-op thread onnxruntime runs on it, so that is
    the whole CPU cost of the model runs (the throughput bench's compute-bound limit).
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    models.detector.infer(prepared.detector_input)
    det_wall, det_cpu = time.perf_counter() - wall, time.thread_time() - cpu
    wall, cpu = time.perf_counter(), time.thread_time()
    models.run_embedder(prepared.embedder_input)
    emb_wall, emb_cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return {
        "detect": det_wall * 1000,
        "embed": emb_wall * 1000,
        "total": (det_wall + emb_wall) * 1000,
        "cpu": (det_cpu + emb_cpu) * 1000,
    }
