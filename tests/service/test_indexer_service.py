"""The indexer over real gRPC: an in-process server on 127.0.0.1:0 with a temporary state dir.

Vectors are random unit vectors; expected rankings are recomputed by brute force with numpy, so
every assertion checks the real outcome (which product, at what similarity), not just a status.
Tests taking ``indexer_backend`` run on both storages (faiss, and milvus on milvus-lite) and expect
the same answers from each; the snapshot tests are about FAISS' files and run on faiss only.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from services.common.gen.visualsearch.v1 import indexer_pb2, indexer_pb2_grpc
from services.common.grpc_client import health_status, make_channel
from services.indexer.config import IndexerSettings
from services.indexer.server import SERVICE_NAME, RunningIndexer, start_server
from services.indexer.snapshot import INDEX_FILE, META_FILE

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    from services.common.gen.visualsearch.v1.indexer_pb2_grpc import IndexerAsyncStub as Stub

DEADLINE = 5.0
MODEL = "test-embedder-v1"
Ranked = list[tuple[str, float, str]]  # (product_id, similarity, image_key), best first


@dataclass(frozen=True)
class Item:
    product: indexer_pb2.Product
    keys: list[str]
    vectors: npt.NDArray[np.float32]  # (n, dim), unit rows

    @property
    def pid(self) -> str:
        return self.product.product_id


def unit(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=np.float32)


def make_items(dim: int = 64, seed: int = 42) -> list[Item]:
    rng = np.random.default_rng(seed)
    specs = [  # id, category, brand, price, vectors
        ("shoe-1", "shoes", "acme", 50.0, 3),
        ("shoe-2", "shoes", "zenith", 80.0, 1),
        ("bag-1", "bags", "acme", 120.0, 2),
        ("bag-2", "bags", "zenith", None, 2),
        ("hat-1", "hats", "acme", 20.0, 1),
        ("hat-2", "hats", "zenith", 35.0, 2),
    ]
    items = []
    for pid, category, brand, price, n in specs:
        product = indexer_pb2.Product(
            product_id=pid, title=pid.upper(), category=category, brand=brand, price=price
        )
        items.append(Item(product, [f"{pid}/img{i}.jpg" for i in range(n)], unit(rng.normal(size=(n, dim)))))
    # shoe-2 looks almost like shoe-1's second photo: the clear "more like this" answer for shoe-1.
    items[1].vectors[0] = unit(items[0].vectors[1] + 0.3 * unit(rng.normal(size=dim)))
    return items


def brute_force(items: list[Item], query: npt.NDArray[np.float32], exclude: str = "") -> Ranked:
    """Each product at its best vector, best first: what the index must return."""
    ranked = []
    for item in items:
        if item.pid != exclude:
            sims = item.vectors @ unit(query)
            ranked.append((item.pid, float(sims.max()), item.keys[int(sims.argmax())]))
    return sorted(ranked, key=lambda r: -r[1])


def brute_force_similar(items: list[Item], product_id: str) -> Ranked:
    """Every vector of the product is a query; each other product keeps its best over all of them."""
    source = next(i for i in items if i.pid == product_id)
    ranked = []
    for item in items:
        if item.pid != product_id:
            sims = item.vectors @ source.vectors.T  # (n_item, n_source)
            row, _ = np.unravel_index(int(sims.argmax()), sims.shape)
            ranked.append((item.pid, float(sims.max()), item.keys[int(row)]))
    return sorted(ranked, key=lambda r: -r[1])


def assert_ranked(got: Ranked, expected: Ranked) -> None:
    assert [(p, k) for p, _, k in got] == [(p, k) for p, _, k in expected]
    np.testing.assert_allclose([s for _, s, _ in got], [s for _, s, _ in expected], atol=1e-5)


def async_stub(channel: grpc.aio.Channel) -> Stub:
    return cast("Stub", indexer_pb2_grpc.IndexerStub(channel))


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


@asynccontextmanager
async def indexer(state_dir: Path, **overrides: Any) -> AsyncIterator[tuple[Stub, RunningIndexer]]:
    """An in-process indexer; plain cosine order unless a test turns category re-ranking on, since
    most tests compare with brute force."""
    options: dict[str, Any] = {"snapshot_interval_s": 3600, "category_rerank": 0.0, **overrides}
    settings = IndexerSettings(host="127.0.0.1", port=0, state_dir=state_dir, **options)
    running = await start_server(settings)
    channel = make_channel(f"127.0.0.1:{running.port}")
    try:
        yield async_stub(channel), running
    finally:
        await channel.close()
        await running.stop(grace=1.0)


async def upsert(stub: Stub, item: Item, model_id: str = MODEL) -> indexer_pb2.Product:
    vectors = [
        indexer_pb2.Vector(values=v.tolist(), image_key=k)
        for k, v in zip(item.keys, item.vectors, strict=True)
    ]
    reply: indexer_pb2.UpsertResponse = await stub.Upsert(
        indexer_pb2.UpsertRequest(product=item.product, vectors=vectors, model_id=model_id), timeout=DEADLINE
    )
    return reply.product


async def search(stub: Stub, query: npt.NDArray[np.float32], **options: Any) -> Ranked:
    request = indexer_pb2.SearchRequest(queries=[indexer_pb2.Vector(values=query.tolist())], **options)
    reply = await stub.Search(request, timeout=DEADLINE)
    [result] = reply.results
    return [(m.product.product_id, m.similarity, m.image_key) for m in result.matches]


async def similar(stub: Stub, product_id: str, **options: Any) -> Ranked:
    reply = await stub.Similar(indexer_pb2.SimilarRequest(product_id=product_id, **options), timeout=DEADLINE)
    return [(m.product.product_id, m.similarity, m.image_key) for m in reply.matches]


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


@asynccontextmanager
async def loaded(
    state_dir: Path, items: list[Item], **overrides: Any
) -> AsyncIterator[tuple[Stub, RunningIndexer]]:
    async with indexer(state_dir, **overrides) as (stub, running):
        for item in items:
            await upsert(stub, item)
        yield stub, running


def test_each_vector_finds_its_product_first(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, running):
            await wait_serving(f"127.0.0.1:{running.port}", timeout_s=0)
            for item in items:
                for key, vector in zip(item.keys, item.vectors, strict=True):
                    got = await search(stub, vector, k=3, model_id=MODEL)
                    assert got[0][0] == item.pid
                    assert got[0][1] == pytest.approx(1.0, abs=1e-5)
                    assert got[0][2] == key

    run(body())


def test_a_product_appears_once_at_its_best_score(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()
    query = unit(items[0].vectors[2] + 0.5 * items[0].vectors[0])  # near two of shoe-1's three photos

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            got = await search(stub, query, k=len(items))
            assert len({p for p, _, _ in got}) == len(got) == len(items)
            assert_ranked(got, brute_force(items, query))
            assert got[0][:1] == ("shoe-1",)
            assert got[0][2] == "shoe-1/img2.jpg"

    run(body())


def test_category_rerank_lifts_the_category_of_the_nearest_products(
    tmp_path: Path, indexer_backend: str
) -> None:
    # A bag that happens to be nearest to a shoe-like query, behind which two shoes crowd: with
    # re-ranking on, the neighbourhood's category (shoes) goes first; similarities stay the cosine.
    base = unit(np.eye(8, dtype=np.float32)[0])
    noise = np.eye(8, dtype=np.float32)
    specs = [("bag-x", "bags", 0.30, 1), ("shoe-a", "shoes", 0.32, 2), ("shoe-b", "shoes", 0.34, 3)]
    items = [
        Item(
            indexer_pb2.Product(product_id=pid, category=category),
            [f"{pid}.jpg"],
            unit((base + tilt * noise[axis])[None, :]),
        )
        for pid, category, tilt, axis in specs
    ]

    async def body() -> None:
        async with indexer(tmp_path, category_rerank=0.1, backend=indexer_backend) as (stub, _):
            for item in items:
                await upsert(stub, item)
            got = await search(stub, base, k=3, model_id=MODEL)
            assert [p for p, _, _ in got] == ["shoe-a", "shoe-b", "bag-x"]
            expected = {item.pid: float(item.vectors[0] @ base) for item in items}
            assert all(sim == pytest.approx(expected[pid], abs=1e-5) for pid, sim, _ in got)

    run(body())


def test_upsert_replaces_all_vectors_and_metadata(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()
    old = items[2]  # bag-1, two vectors
    new = Item(
        indexer_pb2.Product(product_id="bag-1", title="Bag v2", category="bags", brand="acme", price=99.0),
        ["new.jpg"],
        unit(np.random.default_rng(9).normal(size=(1, old.vectors.shape[1]))),
    )

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            stored = await upsert(stub, new)
            assert (stored.vector_count, stored.title, stored.price) == (1, "Bag v2", 99.0)
            assert stored.indexed_at_ms > 0
            for vector in old.vectors:
                got = await search(stub, vector, k=len(items))
                assert_ranked(got, brute_force([*items[:2], new, *items[3:]], vector))
                assert got[0][0] != "bag-1"
            assert (await search(stub, new.vectors[0], k=1))[0][:1] == ("bag-1",)
            product = await stub.Get(indexer_pb2.GetRequest(product_id="bag-1"), timeout=DEADLINE)
            assert (product.title, product.vector_count) == ("Bag v2", 1)
            stats = await stub.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE)
            assert stats.vectors == sum(len(i.keys) for i in items) - 1

    run(body())


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        (indexer_pb2.Filter(categories=["shoes"]), lambda p: p.category == "shoes"),
        (indexer_pb2.Filter(categories=["bags", "hats"]), lambda p: p.category in ("bags", "hats")),
        (indexer_pb2.Filter(brands=["zenith"]), lambda p: p.brand == "zenith"),
        (indexer_pb2.Filter(min_price=40.0), lambda p: p.HasField("price") and p.price >= 40),
        (indexer_pb2.Filter(max_price=50.0), lambda p: p.HasField("price") and p.price <= 50),
        (
            indexer_pb2.Filter(min_price=30.0, max_price=80.0, brands=["acme"]),
            lambda p: p.brand == "acme" and p.HasField("price") and 30 <= p.price <= 80,
        ),
    ],
)
def test_filters(
    tmp_path: Path,
    indexer_backend: str,
    flt: indexer_pb2.Filter,
    keep: Callable[[indexer_pb2.Product], bool],
) -> None:
    items = make_items()
    query = items[0].vectors[0]
    kept = [i for i in items if keep(i.product)]
    assert 0 < len(kept) < len(items)

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            got = await search(stub, query, k=len(items), filter=flt)
            assert_ranked(got, brute_force(kept, query))

    run(body())


def test_k_offset_paging_and_min_similarity(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()
    query = items[3].vectors[1]
    expected = brute_force(items, query)

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            pages = [await search(stub, query, k=2, offset=o) for o in (0, 2, 4)]
            assert [len(p) for p in pages] == [2, 2, 2]
            assert_ranked([m for page in pages for m in page], expected)
            assert await search(stub, query, k=5, offset=len(items)) == []
            threshold = (expected[1][1] + expected[2][1]) / 2
            assert_ranked(await search(stub, query, k=10, min_similarity=threshold), expected[:2])
            assert len(await search(stub, query)) == len(items)  # k 0 = default 10, more than we have

    run(body())


def test_delete_removes_from_search_and_get(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            reply = await stub.Delete(indexer_pb2.DeleteRequest(product_id="shoe-1"), timeout=DEADLINE)
            assert reply.vectors_removed == 3
            got = await search(stub, items[0].vectors[0], k=len(items))
            assert_ranked(got, brute_force(items[1:], items[0].vectors[0]))
            code, _ = await status_of(stub.Get(indexer_pb2.GetRequest(product_id="shoe-1"), timeout=DEADLINE))
            assert code == grpc.StatusCode.NOT_FOUND
            code, _ = await status_of(
                stub.Delete(indexer_pb2.DeleteRequest(product_id="shoe-1"), timeout=DEADLINE)
            )
            assert code == grpc.StatusCode.NOT_FOUND

    run(body())


def test_similar_excludes_the_product_and_finds_its_look_alike(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()
    expected = brute_force_similar(items, "shoe-1")
    acme = {i.pid for i in items if i.product.brand == "acme"}

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            got = await similar(stub, "shoe-1", k=10)
            assert got[0][0] == "shoe-2"
            assert_ranked(got, expected)
            acme_only = await similar(stub, "shoe-1", k=2, filter=indexer_pb2.Filter(brands=["acme"]))
            assert_ranked(acme_only, [r for r in expected if r[0] in acme][:2])
            code, _ = await status_of(
                stub.Similar(indexer_pb2.SimilarRequest(product_id="nope"), timeout=DEADLINE)
            )
            assert code == grpc.StatusCode.NOT_FOUND

    run(body())


def test_list_pages_with_cursor_and_stats(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            seen: list[str] = []
            cursor = ""
            for _ in range(len(items)):
                reply = await stub.List(indexer_pb2.ListRequest(limit=4, cursor=cursor), timeout=DEADLINE)
                seen += [p.product_id for p in reply.products]
                cursor = reply.next_cursor
                if not cursor:
                    break
            assert seen == sorted(i.pid for i in items)
            hats = await stub.List(indexer_pb2.ListRequest(category="hats"), timeout=DEADLINE)
            assert [p.product_id for p in hats.products] == ["hat-1", "hat-2"]
            assert [p.vector_count for p in hats.products] == [1, 2]
            assert hats.next_cursor == ""
            code, _ = await status_of(stub.List(indexer_pb2.ListRequest(cursor="%%%"), timeout=DEADLINE))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            stats = await stub.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE)
            dim = items[0].vectors.shape[1]
            assert (stats.products, stats.vectors, stats.model_id, stats.dim) == (
                len(items),
                sum(len(i.keys) for i in items),
                MODEL,
                dim,
            )

    run(body())


def test_model_and_dim_guards(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()
    dim = items[0].vectors.shape[1]
    other_dim = make_items(dim=dim // 2)

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            code, details = await status_of(upsert(stub, items[0], model_id="other-model"))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert MODEL in details
            assert "other-model" in details
            code, _ = await status_of(search(stub, items[0].vectors[0], model_id="other-model"))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            code, details = await status_of(upsert(stub, other_dim[0]))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert str(dim) in details
            code, _ = await status_of(search(stub, other_dim[0].vectors[0]))
            assert code == grpc.StatusCode.INVALID_ARGUMENT

    run(body())


def test_bad_requests_get_precise_codes(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()
    query = items[0].vectors[0]
    many = indexer_pb2.SearchRequest(queries=[indexer_pb2.Vector(values=query.tolist())] * 65)

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            cases: list[tuple[Awaitable[object], grpc.StatusCode]] = [
                (search(stub, query, k=1001), grpc.StatusCode.INVALID_ARGUMENT),
                (search(stub, query, offset=10_001), grpc.StatusCode.INVALID_ARGUMENT),
                (
                    search(stub, query, filter=indexer_pb2.Filter(min_price=9, max_price=1)),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (search(stub, query, min_similarity=float("nan")), grpc.StatusCode.INVALID_ARGUMENT),
                (search(stub, np.zeros_like(query)), grpc.StatusCode.INVALID_ARGUMENT),
                (stub.Search(many, timeout=DEADLINE), grpc.StatusCode.RESOURCE_EXHAUSTED),
                (
                    stub.Upsert(
                        indexer_pb2.UpsertRequest(product=items[0].product, model_id=MODEL), timeout=DEADLINE
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    stub.Get(indexer_pb2.GetRequest(product_id="bad id!"), timeout=DEADLINE),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
            ]
            for call, expected in cases:
                assert (await status_of(call))[0] == expected

    run(body())


def test_empty_index_searches_to_no_matches(tmp_path: Path, indexer_backend: str) -> None:
    query = make_items()[0].vectors[0]

    async def body() -> None:
        async with indexer(tmp_path, backend=indexer_backend) as (stub, running):
            assert running.store.load_path == "empty"
            assert await search(stub, query, model_id=MODEL) == []
            stats = await stub.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE)
            assert (stats.products, stats.vectors, stats.model_id, stats.dim) == (0, 0, "", 0)

    run(body())


async def snapshot_of_results(stub: Stub, items: list[Item]) -> list[Ranked]:
    queries = [v for item in items for v in item.vectors]
    return [await search(stub, q, k=4) for q in queries] + [await similar(stub, i.pid, k=3) for i in items]


def test_graceful_restart_keeps_every_answer(tmp_path: Path, indexer_backend: str) -> None:
    items = make_items()

    async def body() -> None:
        async with loaded(tmp_path, items, backend=indexer_backend) as (stub, _):
            before = await snapshot_of_results(stub, items)
        if indexer_backend == "faiss":  # FAISS saved its index; Milvus persisted each write itself
            assert (tmp_path / INDEX_FILE).is_file()
            assert (tmp_path / META_FILE).is_file()
        async with indexer(tmp_path, backend=indexer_backend) as (stub, running):
            assert running.store.load_path == {"faiss": "snapshot", "milvus": "milvus"}[indexer_backend]
            assert await snapshot_of_results(stub, items) == before

    run(body())


def _delete(state_dir: Path, saved: Path) -> None:
    (state_dir / INDEX_FILE).unlink()


def _corrupt(state_dir: Path, saved: Path) -> None:
    (state_dir / INDEX_FILE).write_bytes(os.urandom(256))


def _stale(state_dir: Path, saved: Path) -> None:
    for name in (INDEX_FILE, META_FILE):  # the snapshot from before the last writes
        shutil.copy(saved / name, state_dir / name)


@pytest.mark.parametrize("damage", [_delete, _corrupt, _stale])
def test_restart_rebuilds_from_sqlite_when_the_snapshot_is_unusable(
    tmp_path: Path, damage: Callable[[Path, Path], None]
) -> None:
    items = make_items()
    state, saved = tmp_path / "state", tmp_path / "saved"

    async def body() -> None:
        async with loaded(state, items[:3]):
            pass
        shutil.copytree(state, saved)
        async with indexer(state) as (stub, _):
            for item in items[3:]:
                await upsert(stub, item)
            await stub.Delete(indexer_pb2.DeleteRequest(product_id="shoe-2"), timeout=DEADLINE)
            before = await snapshot_of_results(stub, [i for i in items if i.pid != "shoe-2"])
        damage(state, saved)
        async with indexer(state) as (stub, running):
            assert running.store.load_path == "rebuild"
            assert await snapshot_of_results(stub, [i for i in items if i.pid != "shoe-2"]) == before
        async with indexer(state) as (_, running):  # the rebuilt index was snapshotted on stop
            assert running.store.load_path == "snapshot"

    run(body())


class IndexerProcess:
    """``python -m services.indexer`` as a real process, to kill it the hard way."""

    def __init__(self, state_dir: Path, log_path: Path, backend: str = "faiss") -> None:
        env = {**os.environ, "VS_INDEXER_HOST": "127.0.0.1", "VS_INDEXER_PORT": "0", "VS_LOG_LEVEL": "INFO"}
        env |= {"VS_INDEXER_STATE_DIR": str(state_dir), "VS_INDEXER_METRICS_PORT": "0"}
        env |= {"VS_INDEXER_BACKEND": backend, "VS_MILVUS_URI": ""}  # milvus: <state dir>/milvus.db
        self.log_path = log_path
        self._log = log_path.open("w")
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.indexer"], cwd=root, env=env, stdout=self._log, stderr=self._log
        )

    def port(self, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_path.read_text())
            if found:
                return int(found.group(1))
            assert self.proc.poll() is None, self.log_path.read_text()
            time.sleep(0.05)
        raise TimeoutError(self.log_path.read_text())

    def end(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self._log.close()
        return code


async def wait_serving(address: str, timeout_s: float = 30.0) -> None:
    channel = make_channel(address)
    try:
        deadline = time.monotonic() + timeout_s
        while await health_status(channel, SERVICE_NAME) != "SERVING":
            assert time.monotonic() < deadline, "the indexer never turned SERVING"
            await asyncio.sleep(0.05)
    finally:
        await channel.close()


@asynccontextmanager
async def process_stub(process: IndexerProcess) -> AsyncIterator[Stub]:
    address = f"127.0.0.1:{process.port()}"
    await wait_serving(address)
    channel = make_channel(address)
    try:
        yield async_stub(channel)
    finally:
        await channel.close()


def test_kill_9_then_restart_keeps_every_answer(tmp_path: Path, indexer_backend: str) -> None:
    """faiss rebuilds from SQLite after a kill and snapshots on SIGTERM; milvus-lite reopens its file."""
    items = make_items()
    state = tmp_path / "state"
    faiss = indexer_backend == "faiss"

    async def body() -> None:
        first = IndexerProcess(state, tmp_path / "first.log", indexer_backend)
        async with process_stub(first) as stub:
            for item in items:
                await upsert(stub, item)
            before = await snapshot_of_results(stub, items)
        assert first.end(signal.SIGKILL) == -signal.SIGKILL

        second = IndexerProcess(state, tmp_path / "second.log", indexer_backend)
        async with process_stub(second) as stub:
            assert await snapshot_of_results(stub, items) == before
        assert second.end(signal.SIGTERM) == 0
        expected = "rebuilt index from the catalog" if faiss else "index ready (milvus)"
        assert expected in second.log_path.read_text()

        third = IndexerProcess(state, tmp_path / "third.log", indexer_backend)
        async with process_stub(third) as stub:
            assert await snapshot_of_results(stub, items) == before
        assert third.end(signal.SIGTERM) == 0
        expected = "loaded index snapshot" if faiss else "index ready (milvus)"
        assert expected in third.log_path.read_text()

    run(body())


def test_a_milvus_lite_file_serves_one_indexer_process_at_a_time(tmp_path: Path) -> None:
    """milvus-lite locks its file: a second process fails to start (exit 2, with the reason) rather
    than corrupt it. Replicas need a Milvus server (below)."""
    state = tmp_path / "state"

    async def body() -> None:
        first = IndexerProcess(state, tmp_path / "first.log", "milvus")
        async with process_stub(first):
            second = IndexerProcess(state, tmp_path / "second.log", "milvus")
            assert second.proc.wait(timeout=60) == 2
            second.end(signal.SIGTERM)
            assert "cannot start the indexer: cannot open Milvus" in second.log_path.read_text()
        assert first.end(signal.SIGTERM) == 0

    run(body())


def test_replicas_over_one_milvus_server_answer_alike(tmp_path: Path, milvus_server: str) -> None:
    """Two indexers on one Milvus (a milvus-lite server process here, a cluster in production):
    each sees the other's writes at once and answers every question the same."""
    items = make_items()
    shared = {"backend": "milvus", "milvus_uri": milvus_server, "milvus_collection": "replicas"}
    changed = Item(
        indexer_pb2.Product(product_id="bag-1", title="Bag v2", category="bags", brand="acme", price=99.0),
        ["new.jpg"],
        unit(np.random.default_rng(5).normal(size=(1, items[0].vectors.shape[1]))),
    )

    async def body() -> None:
        async with (
            indexer(tmp_path / "a", **shared) as (a, _),
            indexer(tmp_path / "b", **shared) as (b, _),
        ):
            for item in items:
                await upsert(a, item)
            assert await snapshot_of_results(b, items) == await snapshot_of_results(a, items)
            await upsert(b, changed)
            await b.Delete(indexer_pb2.DeleteRequest(product_id="shoe-2"), timeout=DEADLINE)
            now = [changed if i.pid == "bag-1" else i for i in items if i.pid != "shoe-2"]
            for replica in (a, b):
                assert_ranked(
                    await search(replica, items[0].vectors[1], k=10), brute_force(now, items[0].vectors[1])
                )
            assert await snapshot_of_results(a, now) == await snapshot_of_results(b, now)
            lists = [await r.List(indexer_pb2.ListRequest(limit=3), timeout=DEADLINE) for r in (a, b)]
            assert lists[0] == lists[1]
            stats = [await r.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE) for r in (a, b)]
            assert stats[0] == stats[1]
            assert (stats[0].products, stats[0].model_id) == (len(now), MODEL)
            code, details = await status_of(upsert(b, items[0], model_id="other-model"))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert MODEL in details

    run(body())


def test_a_milvus_outage_answers_unavailable(
    tmp_path: Path, own_milvus_server: tuple[str, subprocess.Popen[bytes]]
) -> None:
    uri, server = own_milvus_server
    items = make_items()

    async def body() -> None:
        async with loaded(tmp_path, items[:2], backend="milvus", milvus_uri=uri, milvus_timeout_s=1.0) as (
            stub,
            _,
        ):
            assert (await search(stub, items[0].vectors[0], k=1))[0][0] == items[0].pid
            server.kill()
            server.wait(timeout=30)
            for call in (
                search(stub, items[0].vectors[0], k=1),
                upsert(stub, items[2]),
                stub.Stats(indexer_pb2.StatsRequest(), timeout=DEADLINE),
            ):
                code, details = await status_of(call)
                assert code == grpc.StatusCode.UNAVAILABLE
                assert "vector store failed" in details

    run(body())
