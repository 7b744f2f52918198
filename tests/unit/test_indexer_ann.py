"""The approximate (IVF) index and the size policy that switches to it: services/indexer/ann.py."""

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from services.indexer import ann
from services.indexer.config import IndexerSettings
from services.indexer.index import FaissIndex
from services.indexer.records import Filter, ProductRecord, SearchParams, VectorIds, Vectors
from services.indexer.store import CatalogStore, StoreLimits

DIM = 32


def clustered(n: int, seed: int = 0, clusters: int = 40) -> Vectors:
    """(n, DIM) unit vectors in overlapping clusters: what IVF is for (uniform noise is its worst case)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(clusters, DIM))  # same centres for every seed
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, DIM))
    unit: Vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return unit


def source(ids: VectorIds, vectors: Vectors) -> ann.VectorSource:
    def batches() -> Iterable[tuple[VectorIds, Vectors]]:
        for start in range(0, len(ids), 500):
            yield ids[start : start + 500], vectors[start : start + 500]

    return batches


def built(kind: str, n: int = 3000, nprobe: int = 8) -> tuple[FaissIndex, VectorIds, Vectors]:
    vectors = clustered(n)
    ids = np.arange(n, dtype=np.int64) * 7 + 10**12  # sparse, large ids like vector_id() makes
    return ann.build(kind, DIM, n, source(ids, vectors), ann.IndexPolicy(nprobe=nprobe)), ids, vectors


def exact(vectors: Vectors, ids: VectorIds, queries: Vectors, k: int) -> VectorIds:
    order = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]  # (q, k)
    return ids[order]


def test_policy_picks_the_kind_by_size() -> None:
    auto = ann.IndexPolicy(ann_threshold=2000)
    assert auto.kind_for(1999, "flat") == "flat"
    assert auto.kind_for(2000, "flat") == "ivf-sq8"
    assert auto.kind_for(1200, "ivf-sq8") == "ivf-sq8"  # hysteresis: stays until half the threshold
    assert auto.kind_for(999, "ivf-sq8") == "flat"
    assert ann.IndexPolicy("flat", ann_threshold=10).kind_for(10**6, "flat") == "flat"
    assert ann.IndexPolicy("ivf-flat").kind_for(ann.MIN_IVF_VECTORS, "flat") == "ivf-flat"
    assert ann.IndexPolicy("ivf-sq8").kind_for(ann.MIN_IVF_VECTORS - 1, "flat") == "flat"


def test_ivf_recall_on_clustered_data_is_close_to_flat() -> None:
    index, ids, vectors = built("ivf-sq8", n=5000)
    queries = clustered(200, seed=1)
    found = index.search(queries, 10)[1]
    truth = exact(vectors, ids, queries, 10)
    recall = np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert index.kind == "ivf-sq8"
    assert index.nlist == ann.nlist_for(5000)
    assert recall >= 0.9


def test_ivf_removes_ids_and_never_returns_them() -> None:
    index, ids, vectors = built("ivf-sq8")
    gone = ids[::10]
    assert index.remove(gone) == len(gone)
    assert index.ntotal == len(ids) - len(gone)
    found = index.search(vectors[::10], 10)[1]  # each removed vector queried for itself
    assert not np.isin(found, gone).any()
    assert index.remove(gone) == 0


def test_filtered_ivf_search_is_exact_over_a_small_allowed_set() -> None:
    index, ids, vectors = built("ivf-flat")  # flat codes: similarities comparable to exact search
    allowed = ids[5::97]  # 31 ids scattered over every list
    queries = clustered(20, seed=2)
    sims, found = index.search(queries, 10, allowed)
    mask = np.isin(ids, allowed)
    np.testing.assert_array_equal(found, exact(vectors[mask], ids[mask], queries, 10))
    assert np.all(sims[:, :-1] >= sims[:, 1:])


def test_filtered_sq8_search_returns_only_allowed_ids_and_pads() -> None:
    index, ids, _ = built("ivf-sq8")
    allowed = ids[:4]
    _sims, found = index.search(clustered(3, seed=3), 6, allowed)
    assert set(found[:, :4].ravel()) <= set(allowed)
    assert (found[:, 4:] == -1).all()


def test_save_load_round_trips_the_kind_and_results(tmp_path: Path) -> None:
    for kind in ("ivf-sq8", "ivf-flat", "flat"):
        index, ids, vectors = built(kind)
        index.save(tmp_path / f"{kind}.faiss")
        loaded = FaissIndex.load(tmp_path / f"{kind}.faiss", DIM, nprobe=8)
        assert (loaded.kind, loaded.nlist, loaded.ntotal) == (kind, index.nlist, len(ids))
        np.testing.assert_array_equal(loaded.search(vectors[:5], 5)[1], index.search(vectors[:5], 5)[1])


def test_outgrown_ivf_is_retrained_with_more_lists() -> None:
    index, ids, vectors = built("ivf-sq8", n=1100)
    more = clustered(4000, seed=4)
    more_ids = np.arange(4000, dtype=np.int64) + 5 * 10**12
    index.add(more_ids, more)
    policy = ann.IndexPolicy("ivf-sq8")
    assert policy.outgrown(index)
    all_ids, all_vectors = np.concatenate([ids, more_ids]), np.concatenate([vectors, more])
    retrained = ann.maintain(index, policy, source(all_ids, all_vectors))
    assert retrained is not None
    assert retrained is not index
    assert retrained.nlist == ann.nlist_for(5100)
    assert retrained.ntotal == 5100
    assert ann.maintain(retrained, policy, source(all_ids, all_vectors)) is retrained


def test_store_switches_at_the_threshold_and_keeps_deletes_filters_and_snapshots(tmp_path: Path) -> None:
    policy = ann.IndexPolicy(ann_threshold=1100, nprobe=64)
    store = CatalogStore(tmp_path / "state", StoreLimits(max_vectors_per_product=32), policy=policy)
    store.open()
    vectors = clustered(40 * 32, seed=5)  # 40 products x 32 images
    for p in range(40):
        product = ProductRecord(f"p{p}", category="even" if p % 2 == 0 else "odd")
        keys = [f"k{i}" for i in range(32)]
        store.upsert(product, keys, list(vectors[p * 32 : (p + 1) * 32]), "m")
        assert store.index_kind == ("ivf-sq8" if (p + 1) * 32 >= 1100 else "flat")
    query = [vectors[3 * 32]]  # an image of p3
    assert store.search(query, SearchParams(k=1), "m")[0][0].product.product_id == "p3"
    even_only = store.search(query, SearchParams(k=5, filter=Filter(categories=("even",))), "m")[0]
    assert even_only
    assert all(m.product.category == "even" for m in even_only)
    store.delete("p3")
    assert all(m.product.product_id != "p3" for m in store.search(query, SearchParams(k=40), "m")[0])
    store.close()
    reopened = CatalogStore(tmp_path / "state", policy=policy)
    reopened.open()
    try:
        assert (reopened.load_path, reopened.index_kind) == ("snapshot", "ivf-sq8")
        assert reopened.stats().vectors == 39 * 32
    finally:
        reopened.close()


def test_flat_policy_rebuilds_a_saved_ivf_as_flat_on_open(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "s", policy=ann.IndexPolicy("ivf-flat"))
    store.open()
    vectors = clustered(1100, seed=6)
    for p in range(0, 1100, 32):
        store.upsert(
            ProductRecord(f"p{p}"),
            [f"k{i}" for i in range(len(vectors[p : p + 32]))],
            list(vectors[p : p + 32]),
            "m",
        )
    assert store.index_kind == "ivf-flat"
    store.close()
    flat = CatalogStore(tmp_path / "s", policy=ann.IndexPolicy("flat"))
    flat.open()
    try:
        assert (flat.load_path, flat.index_kind) == ("snapshot+flat", "flat")
    finally:
        flat.close()


def test_a_rebuild_goes_straight_into_the_kind_the_size_needs(tmp_path: Path) -> None:
    policy = ann.IndexPolicy("ivf-flat")
    store = CatalogStore(tmp_path / "s", policy=policy)
    store.open()
    vectors = clustered(1100, seed=7)
    for p in range(0, 1100, 32):
        keys = [f"k{i}" for i in range(len(vectors[p : p + 32]))]
        store.upsert(ProductRecord(f"p{p}"), keys, list(vectors[p : p + 32]), "m")
    store.close()
    for name in ("index.faiss", "index.json"):  # as if killed before any snapshot
        (tmp_path / "s" / name).unlink(missing_ok=True)
    reopened = CatalogStore(tmp_path / "s", policy=policy)
    reopened.open()
    try:
        assert (reopened.load_path, reopened.index_kind) == ("rebuild", "ivf-flat")
        assert reopened.search([vectors[64]], SearchParams(k=1), "m")[0][0].product.product_id == "p64"
    finally:
        reopened.close()


def test_settings_read_the_index_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_INDEXER_INDEX_TYPE", "ivf-flat")
    monkeypatch.setenv("VS_INDEXER_ANN_THRESHOLD", "5000")
    monkeypatch.setenv("VS_INDEXER_NPROBE", "48")
    settings = IndexerSettings()
    assert (settings.index_type, settings.ann_threshold, settings.nprobe) == ("ivf-flat", 5000, 48)
    monkeypatch.setenv("VS_INDEXER_INDEX_TYPE", "hnsw")
    with pytest.raises(ValueError, match="index_type"):
        IndexerSettings()
