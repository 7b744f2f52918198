"""A crash in the middle of writing a snapshot loses no acknowledged write.

The crash is real: a child process upserts and deletes through the store, writes a snapshot, makes
more writes, then dies by SIGKILL at a chosen point of the next snapshot (half the index file
written, right after the index file's rename, right before the metadata's rename). The parent then
opens the store on the same state dir, as a restarted indexer would, and finds every write the
child had acknowledged: nothing lost, nothing deleted coming back.
"""

import json
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from services.indexer import snapshot
from services.indexer.index import FaissIndex
from services.indexer.records import ProductRecord, SearchParams
from services.indexer.store import CatalogStore
from tests.paths import ROOT

DIM = 8
MODEL_ID = "m1"
FIRST = [f"p{i}" for i in range(8)]  # in the snapshot the crash interrupts the successor of
LATER = [f"q{i}" for i in range(5)]  # acknowledged after that snapshot
DELETED = "p0"  # in the snapshot, deleted after it

# The child: CRASH_AT names where the second snapshot dies. It prints each acknowledged write as a
# JSON line before the next step, so the parent knows exactly what was acknowledged.
CHILD = r"""
import json, os, signal, sys, zlib
from pathlib import Path
import numpy as np
from services.indexer import snapshot
from services.indexer.index import FaissIndex
from services.indexer.records import ProductRecord
from services.indexer.store import CatalogStore

state_dir, crash_at, dim = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
first, later, deleted = json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]

def ack(**event):
    print(json.dumps(event), flush=True)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def vector(product_id):
    seed = zlib.crc32(product_id.encode())
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)

store = CatalogStore(state_dir)
store.open()
for pid in first:
    store.upsert(ProductRecord(pid), ["a"], [vector(pid)], "m1")
    ack(upserted=pid)
assert store.snapshot_if_dirty()
ack(snapshot=True)
for pid in later:
    store.upsert(ProductRecord(pid), ["a"], [vector(pid)], "m1")
    ack(upserted=pid)
store.delete(deleted)
ack(deleted=deleted)

real_save, real_replace = FaissIndex.save, os.replace

def half_written(self, path):
    real_save(self, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    die()

def replace(src, dst):
    if crash_at == "before_meta_rename" and str(dst).endswith(snapshot.META_FILE):
        die()
    real_replace(src, dst)
    if crash_at == "after_index_rename" and str(dst).endswith(snapshot.INDEX_FILE):
        die()

if crash_at == "index_half_written":
    FaissIndex.save = half_written
os.replace = replace
store.snapshot_if_dirty()
ack(unexpected="the snapshot finished")
"""


def vector(product_id: str) -> np.ndarray:
    """The child's vector of ``product_id`` (same seed rule)."""
    seed = zlib.crc32(product_id.encode())
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


def run_child(state_dir: Path, crash_at: str) -> list[dict[str, str]]:
    args = [state_dir, crash_at, DIM, json.dumps(FIRST), json.dumps(LATER), DELETED]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    return [json.loads(line) for line in child.stdout.splitlines()]


def assert_holds_exactly(store: CatalogStore, product_ids: list[str]) -> None:
    stats = store.stats()
    assert (stats.products, stats.vectors) == (len(product_ids), len(product_ids))
    for pid in product_ids:
        assert store.get(pid).vector_count == 1
        [matches] = store.search([vector(pid)], SearchParams(k=1), MODEL_ID)
        assert [m.product.product_id for m in matches] == [pid]


@pytest.mark.parametrize("crash_at", ["index_half_written", "after_index_rename", "before_meta_rename"])
def test_a_crash_mid_snapshot_loses_no_acknowledged_write(tmp_path: Path, crash_at: str) -> None:
    events = run_child(tmp_path, crash_at)
    acknowledged = [e["upserted"] for e in events if "upserted" in e]
    assert acknowledged == FIRST + LATER
    assert {"deleted": DELETED} in events
    # What the crash left: the previous snapshot (or half of the next one) and temp files.
    leftovers = {p.name for p in tmp_path.iterdir()}
    assert {snapshot.INDEX_FILE, snapshot.META_FILE} <= leftovers
    meta = snapshot.read_meta(tmp_path)
    assert meta is not None
    assert meta.ntotal == len(FIRST)  # the metadata is still the previous snapshot's

    store = CatalogStore(tmp_path)
    store.open()
    try:
        assert store.load_path.startswith("rebuild")  # the catalog is ahead of the snapshot
        survivors = [pid for pid in acknowledged if pid != DELETED]
        assert_holds_exactly(store, survivors)
        # A snapshot over the leftovers works, and the next start loads it.
        assert store.snapshot_if_dirty()
    finally:
        store.close()
    assert not list(tmp_path.glob("*.tmp"))
    again = CatalogStore(tmp_path)
    again.open()
    try:
        assert again.load_path.startswith("snapshot")
        assert_holds_exactly(again, survivors)
    finally:
        again.close()


def test_a_snapshot_that_fails_halfway_leaves_the_store_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write (disk full) raises to the caller (the periodic loop logs and retries); the
    store keeps its writes, and the next snapshot, then a restart, carry all of them."""
    store = CatalogStore(tmp_path)
    store.open()
    try:
        for pid in FIRST:
            store.upsert(ProductRecord(pid), ["a"], [vector(pid)], MODEL_ID)
        assert store.snapshot_if_dirty()
        store.upsert(ProductRecord(LATER[0]), ["a"], [vector(LATER[0])], MODEL_ID)
        real_save = FaissIndex.save

        def disk_full(self: FaissIndex, path: Path) -> None:
            real_save(self, path)
            path.write_bytes(path.read_bytes()[:100])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(FaissIndex, "save", disk_full)
        with pytest.raises(OSError, match="No space"):
            store.snapshot_if_dirty()
        assert snapshot.read_meta(tmp_path) is not None
        store.upsert(ProductRecord(LATER[1]), ["a"], [vector(LATER[1])], MODEL_ID)
        assert_holds_exactly(store, [*FIRST, *LATER[:2]])
        monkeypatch.undo()
        assert store.snapshot_if_dirty()  # still dirty: the failed one did not count
    finally:
        store.close()
    again = CatalogStore(tmp_path)
    again.open()
    try:
        assert again.load_path.startswith("snapshot")
        assert_holds_exactly(again, [*FIRST, *LATER[:2]])
    finally:
        again.close()
