"""Inputs of bench/index: the real embedding dim, and seeded synthetic vectors shaped like embeddings.

Isotropic Gaussian noise is the worst case for every ANN index (all points nearly equidistant), so
it would understate what IVF/HNSW do on real catalogs. CNN embeddings are instead clustered
(near-duplicate products, one category), anisotropic (a few directions carry most of the variance)
and, after ReLU + pooling, share a common positive mean. The generator reproduces those three traits.
"""

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.embedder.manifest import load_manifest, resolve_model
from services.embedder.model import OnnxEmbedder

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("VS_MODELS_DIR", ROOT.parent / "shared" / "models"))
BACKBONE = "mobilenetv2-features"  # the embedder's default entry of services/embedder/models.toml

Matrix = npt.NDArray[np.float32]  # (n, dim), unit rows
CHUNK = 65_536  # rows generated at a time: bounds the float64 temporaries to ~0.7 GB at dim 1280


def model_dim(models: Path = MODELS, name: str = BACKBONE) -> int:
    """The embedder's vector dim, read from the ONNX model exactly as the embedder service does."""
    return OnnxEmbedder(resolve_model(load_manifest().get(name), models), threads=1).dim


class ClusteredVectors:
    """A seeded mixture of anisotropic Gaussian clusters around a shared mean, unit-normalised.

    Per-dimension std decays as (1 + j) ** -decay, both between cluster centres and within a
    cluster, so the effective dimension is far below ``dim``; cluster sizes follow a Zipf law
    (a few big categories, a long tail) like a real catalog.
    """

    def __init__(self, dim: int, clusters: int = 2000, seed: int = 0, decay: float = 0.5) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self._seed = dim, seed
        scale = (1.0 + np.arange(dim)) ** -decay  # (dim,)
        # Shared positive mean: cosine between unrelated embeddings is ~0.3-0.5, not ~0.
        mean = np.abs(rng.standard_normal(dim)) * scale  # (dim,)
        self._centres = mean + rng.standard_normal((clusters, dim)) * scale  # (clusters, dim)
        # Within-cluster spread varies per cluster (tight near-duplicates ... loose categories), and
        # clusters overlap: with tighter ones IVF reached recall 0.95 probing 4 of 900 lists, too easy.
        self._spread = rng.uniform(0.6, 1.2, clusters)  # (clusters,)
        self._scale = scale
        weights = 1.0 / (1.0 + np.arange(clusters)) ** 0.7
        self._weights = weights / weights.sum()  # (clusters,)

    def sample(self, n: int, stream: int) -> Matrix:
        """n vectors of the distribution; ``stream`` seeds them, so base and queries never overlap."""
        out = np.empty((n, self.dim), dtype=np.float32)
        rng = np.random.default_rng([self._seed, stream])
        for start in range(0, n, CHUNK):
            rows = min(CHUNK, n - start)
            which = rng.choice(len(self._weights), size=rows, p=self._weights)  # (rows,)
            noise = rng.standard_normal((rows, self.dim), dtype=np.float32) * self._scale.astype(np.float32)
            # A little isotropic noise on top: real embeddings are never exactly low-rank.
            noise += rng.standard_normal((rows, self.dim), dtype=np.float32) * np.float32(0.01)
            block = self._centres[which].astype(np.float32) + noise * self._spread[which, None].astype(
                np.float32
            )
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start : start + rows] = block
        return out
