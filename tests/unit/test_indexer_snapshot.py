from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from services.indexer import snapshot
from services.indexer.catalog import Catalog
from services.indexer.ids import vector_id
from services.indexer.records import ModelInfo, ProductRecord
from services.indexer.snapshot import SnapshotMeta, stale_reason

MODEL = ModelInfo("m1", 8)
Damage = Callable[[Path, Catalog], None]
CURRENT = SnapshotMeta(generation=5, model_id="m1", dim=8, ntotal=12)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        (CURRENT, None),
        (None, "no readable snapshot"),
        (SnapshotMeta(4, "m1", 8, 12), "generation 4, the catalog at 5"),
        (SnapshotMeta(6, "m1", 8, 12), "generation 6, the catalog at 5"),
        (SnapshotMeta(5, "m2", 8, 12), "m2/8"),
        (SnapshotMeta(5, "m1", 16, 12), "m1/16"),
        (SnapshotMeta(5, "m1", 8, 11), "11 vectors"),
    ],
)
def test_snapshot_is_used_only_when_it_matches_the_catalog(
    meta: SnapshotMeta | None, reason: str | None
) -> None:
    got = stale_reason(meta, generation=5, model=MODEL, vectors=12)
    if reason is None:
        assert got is None
    else:
        assert got is not None
        assert reason in got


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path / "catalog.sqlite3")
    rng = np.random.default_rng(0)
    for i in range(6):
        pid, keys = f"p{i}", ["a", "b"]
        vectors = rng.normal(size=(2, MODEL.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # the store's job, done by hand here
        cat.replace_product(ProductRecord(pid), [vector_id(pid, k) for k in keys], keys, vectors, MODEL)
    yield cat
    cat.close()


def save_current(catalog: Catalog, state_dir: Path) -> None:
    index = snapshot.rebuild(catalog, MODEL.dim)
    meta = SnapshotMeta(catalog.generation(), MODEL.model_id, MODEL.dim, index.ntotal)
    snapshot.save(index, meta, state_dir)


def test_empty_catalog_has_no_index(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
    assert snapshot.load_or_rebuild(cat, tmp_path) == (None, "empty")
    cat.close()


def test_current_snapshot_is_loaded(catalog: Catalog, tmp_path: Path) -> None:
    save_current(catalog, tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    index, path = snapshot.load_or_rebuild(catalog, tmp_path)
    assert path == "snapshot"
    assert index is not None
    assert index.ntotal == 12


def _missing(state_dir: Path, catalog: Catalog) -> None:
    (state_dir / snapshot.INDEX_FILE).unlink()
    (state_dir / snapshot.META_FILE).unlink()


def _corrupt_index(state_dir: Path, catalog: Catalog) -> None:
    (state_dir / snapshot.INDEX_FILE).write_bytes(b"not a faiss index")


def _corrupt_meta(state_dir: Path, catalog: Catalog) -> None:
    (state_dir / snapshot.META_FILE).write_text("{")


def _index_file_only_missing(state_dir: Path, catalog: Catalog) -> None:
    (state_dir / snapshot.INDEX_FILE).unlink()


def _catalog_moved_on(state_dir: Path, catalog: Catalog) -> None:
    catalog.delete_product("p0")  # as if the process died before the next snapshot


@pytest.mark.parametrize(
    "damage", [_missing, _corrupt_index, _corrupt_meta, _index_file_only_missing, _catalog_moved_on]
)
def test_unusable_snapshot_means_rebuild_from_the_catalog(
    catalog: Catalog, tmp_path: Path, damage: Damage
) -> None:
    save_current(catalog, tmp_path)
    damage(tmp_path, catalog)
    index, path = snapshot.load_or_rebuild(catalog, tmp_path)
    assert path == "rebuild"
    assert index is not None
    assert index.ntotal == catalog.counts()[1]
    # The rebuilt index finds every stored vector as its own nearest neighbour.
    for ids, vectors in catalog.iter_vectors(MODEL.dim):
        _, found = index.search(vectors, 1)
        assert found[:, 0].tolist() == ids.tolist()


def test_a_snapshot_ahead_of_the_catalog_is_dropped_and_never_loaded_later(
    catalog: Catalog, tmp_path: Path
) -> None:
    """A power cut can lose the catalog's last commits but not the (fsynced) snapshot: the catalog
    is then behind it. Once rebuilt, later writes may bring the catalog back to the snapshot's
    generation and size with other vectors; the old snapshot must be gone by then."""
    meta = SnapshotMeta(catalog.generation() + 1, MODEL.model_id, MODEL.dim, 12)
    snapshot.save(snapshot.rebuild(catalog, MODEL.dim), meta, tmp_path)
    assert snapshot.load_or_rebuild(catalog, tmp_path)[1] == "rebuild"
    assert not (tmp_path / snapshot.META_FILE).exists()
    vectors = np.eye(2, MODEL.dim, dtype=np.float32)
    catalog.replace_product(
        ProductRecord("p0"), [vector_id("p0", k) for k in "ab"], ["a", "b"], vectors, MODEL
    )
    assert catalog.generation() == meta.generation
    assert snapshot.load_or_rebuild(catalog, tmp_path)[1] == "rebuild"
