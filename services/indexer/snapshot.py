"""Persistence of the vector index: atomic snapshots, and a rebuild from SQLite when they are stale.

SQLite is the source of truth; the snapshot only saves the start-up cost of re-adding every vector.
It is trusted only when it reflects exactly the catalog's current ``generation`` (bumped by every
write), so a crash between writes and the next snapshot (kill -9) always ends in a rebuild.
"""

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from services.indexer import ann
from services.indexer.catalog import Catalog
from services.indexer.index import FaissIndex
from services.indexer.records import ModelInfo

INDEX_FILE = "index.faiss"
META_FILE = "index.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotMeta:
    generation: int
    model_id: str
    dim: int
    ntotal: int


def read_meta(state_dir: Path) -> SnapshotMeta | None:
    """The snapshot's metadata, or None when there is none or it is unreadable."""
    try:
        return SnapshotMeta(**json.loads((state_dir / META_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def stale_reason(meta: SnapshotMeta | None, generation: int, model: ModelInfo, vectors: int) -> str | None:
    """Why the snapshot cannot stand for the catalog, or None when it can be loaded."""
    if meta is None:
        return "no readable snapshot"
    if meta.generation != generation:
        return f"snapshot is at generation {meta.generation}, the catalog at {generation}"
    if (meta.model_id, meta.dim) != (model.model_id, model.dim):
        return f"snapshot holds {meta.model_id}/{meta.dim}, the catalog {model.model_id}/{model.dim}"
    if meta.ntotal != vectors:
        return f"snapshot holds {meta.ntotal} vectors, the catalog {vectors}"
    return None


def save(index: FaissIndex, meta: SnapshotMeta, state_dir: Path) -> None:
    """Index first, then metadata, each via temp file + rename: a crash in between leaves a
    metadata file whose generation is behind the catalog, which forces a rebuild, never a mix-up."""
    tmp = state_dir / f"{INDEX_FILE}.tmp"
    index.save(tmp)
    _fsync(tmp)
    os.replace(tmp, state_dir / INDEX_FILE)
    _fsync(state_dir)  # the index rename is on disk before the metadata can name it (power cuts)
    tmp = state_dir / f"{META_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(meta)))
    _fsync(tmp)
    os.replace(tmp, state_dir / META_FILE)
    _fsync(state_dir)


def load_or_rebuild(
    catalog: Catalog, state_dir: Path, policy: ann.IndexPolicy = ann.IndexPolicy()
) -> tuple[FaissIndex | None, str]:
    """The index for the catalog's current state, and how it was obtained: empty/snapshot/rebuild."""
    model = catalog.model()
    if model is None:
        log.info("empty catalog: the index is created by the first upsert")
        return None, "empty"
    start = time.perf_counter()
    generation, (_, vectors) = catalog.generation(), catalog.counts()
    meta = read_meta(state_dir)
    reason = stale_reason(meta, generation, model, vectors)
    if reason is None:
        try:
            index = FaissIndex.load(state_dir / INDEX_FILE, model.dim)
            if index.ntotal == vectors:
                log.info("loaded index snapshot: %d vectors in %.2fs", vectors, time.perf_counter() - start)
                return index, "snapshot"
            reason = f"snapshot file holds {index.ntotal} vectors, the catalog {vectors}"
        except (RuntimeError, ValueError, OSError) as exc:  # faiss reports a corrupt file as RuntimeError
            reason = f"snapshot unreadable: {exc}"
    # A stale snapshot must never be loaded later: after a power cut it can be AHEAD of the
    # catalog (whose last commits were lost), and new writes could bring the catalog back to its
    # generation and size with other contents.
    (state_dir / META_FILE).unlink(missing_ok=True)
    index = rebuild(catalog, model.dim, policy)
    log.info(
        "rebuilt index from the catalog (%s): %d vectors in %.2fs",
        reason,
        index.ntotal,
        time.perf_counter() - start,
    )
    return index, "rebuild"


def rebuild(catalog: Catalog, dim: int, policy: ann.IndexPolicy = ann.IndexPolicy()) -> FaissIndex:
    """Every catalog vector in an index of the kind ``policy`` wants for their number: a big
    catalog goes straight into its IVF, never through a flat index five times its size."""
    vectors = catalog.counts()[1]
    kind = policy.kind_for(vectors, "flat")
    return ann.build(kind, dim, vectors, lambda: catalog.iter_vectors(dim), policy)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
