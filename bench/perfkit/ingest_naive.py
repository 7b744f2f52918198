"""The seed system's ingest, in one process: per image decode, preprocess, embed at batch 1, add.

Same model file, preprocessing and views as the embedder service (its own functions), run as the seed
did: one onnxruntime session with default options, batch 1, no pipelining, one FAISS add per image.
"""

import os
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import onnxruntime as ort
from PIL import Image

from bench.perfkit import cpu_seconds
from services.embedder.config import EmbedderSettings
from services.embedder.manifest import ResolvedModel, load_manifest, resolve_model
from services.embedder.model import OnnxEmbedder, Vectors, flatten_features, l2_normalise
from services.embedder.preprocess import Tensor, build_batch
from services.embedder.server import load_model
from services.embedder.views import ViewMode, combine_views, expand_views, view_count

VIEW_FRACTION = 0.7  # the embedder's default VS_EMBEDDER_VIEW_FRACTION


class SeedModel:
    """The seed's way to run the model: one onnxruntime session with default options, batch 1."""

    def __init__(self, resolved: ResolvedModel) -> None:
        entry = resolved.entry
        self.spec = entry.preprocessing
        self.input, self.output = entry.input, entry.output
        self.session = ort.InferenceSession(str(resolved.path), providers=["CPUExecutionProvider"])
        self.dim = int(self.run(np.zeros((1, 3, self.spec.crop, self.spec.crop), np.float32)).shape[1])

    def run(self, tensor: Tensor) -> Vectors:
        (output,) = self.session.run([self.output], {self.input: tensor})
        return l2_normalise(flatten_features(np.asarray(output)))


def resolved_model(models_dir: Path) -> ResolvedModel:
    """The model the embedder service runs (its VS_EMBEDDER_MODEL, default manifest entry)."""
    settings = EmbedderSettings(models_dir=models_dir)
    return resolve_model(load_manifest(settings.manifest).get(settings.model), models_dir)


def service_model(models_dir: Path) -> OnnxEmbedder:
    """The model as the embedder service loads it (its threads and run settings), warmed up."""
    return load_model(resolved_model(models_dir), EmbedderSettings(models_dir=models_dir))


def embed_one(model: SeedModel, path: Path, views: ViewMode) -> Vectors:
    """One image file -> (1, dim): decode, one batch-1 model run per view, views combined."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))  # (H, W, 3)
    crops = expand_views([pixels], views, VIEW_FRACTION)
    rows = np.concatenate([model.run(build_batch([crop], model.spec)) for crop in crops])
    return combine_views(rows, view_count(views))


def naive_loop(model: SeedModel, paths: list[Path], views: ViewMode) -> dict[str, Any]:
    """Embeds and indexes ``paths`` one by one; items/s and this process's CPU seconds."""
    index = faiss.IndexFlatIP(model.dim)
    cpu_before = cpu_seconds(os.getpid())
    started = time.perf_counter()
    for path in paths:
        index.add(embed_one(model, path, views))
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(os.getpid()) - cpu_before
    return {
        "items": int(index.ntotal),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(paths) / seconds, 1),
        "cpu_s": {"bench": round(cpu, 2)},
        "cpu_s_per_item_ms": {"bench": round(1000 * cpu / max(1, len(paths)), 2)},
        "cpu_busy": round(cpu / seconds / (os.cpu_count() or 1), 2),
    }


def backbone_ceiling(model: OnnxEmbedder, views: ViewMode, batch: int = 32, runs: int = 8) -> dict[str, Any]:
    """The backbone alone at the embedder's batch size: wall and CPU ms per view, and the images/s
    no ingest path can beat with ``views`` (every core busy with nothing but model runs)."""
    crop = model.preprocessing.crop
    tensor = np.zeros((batch, 3, crop, crop), dtype=np.float32)
    model.embed(tensor)
    cpu_before, started = cpu_seconds(os.getpid()), time.perf_counter()
    for _ in range(runs):
        model.embed(tensor)
    wall_ms = 1000 * (time.perf_counter() - started) / (batch * runs)
    cpu_ms = 1000 * (cpu_seconds(os.getpid()) - cpu_before) / (batch * runs)
    return {
        "wall_ms_per_view": round(wall_ms, 2),
        "cpu_ms_per_view": round(cpu_ms, 2),
        "views_per_image": view_count(views),
        "max_items_per_s": round(1000 / (wall_ms * view_count(views)), 1),
    }
