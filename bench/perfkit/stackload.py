"""A throwaway stack for the latency and throughput benches: catalog, query photos, restarts.

The catalog's vectors are computed once in the bench process with the embedder's own classes and
upserted both into the stack's indexer (over gRPC) and into an in-process store, so both sides
search exactly the same index.
"""

import csv
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.perfkit.inprocess import Models, load_models, temp_store, upsert
from services.common.gen.visualsearch.v1 import indexer_pb2, indexer_pb2_grpc
from services.common.images import decode_image
from services.devstack.config import StackSettings
from services.devstack.ephemeral import ephemeral_stack
from services.devstack.launcher import GRPC_SERVICES, Stack
from services.devstack.replicas import service_of
from services.indexer.records import ProductRecord
from services.indexer.store import CatalogStore

log = logging.getLogger(__name__)

DATASETS = StackSettings().datasets_dir
BATCH_ENV = ("VS_EMBEDDER_MAX_BATCH", "VS_EMBEDDER_MAX_WAIT_MS")


@dataclass(frozen=True)
class Query:
    name: str  # dataset/file, for the JSON
    data: bytes


def _manifest(name: str) -> list[dict[str, str]]:
    with (DATASETS / name / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _spread(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """``count`` rows evenly spread over the list: deterministic, and not all one category."""
    if count >= len(rows):
        return rows
    step = len(rows) / count
    return [rows[int(i * step)] for i in range(count)]


def query_photos(per_kind: Mapping[str, int]) -> list[Query]:
    """Real query photos: multi-object scenes, grocery shop photos, fashion product photos (val)."""
    queries = []
    for dataset, count in per_kind.items():
        rows = [r for r in _manifest(dataset) if r["role"] == "query" and r["split"] == "val"]
        if dataset == "scenes":  # only 2 val scenes; scenes are not used for any tuning
            rows = [r for r in _manifest(dataset) if r["role"] == "query"]
        for row in _spread(rows, count):
            path = DATASETS / dataset / row["image_path"]
            queries.append(Query(f"{dataset}/{row['image_path']}", path.read_bytes()))
    return queries


def catalog_rows(fashion: int, grocery: int) -> list[tuple[ProductRecord, Path]]:
    """Catalog products (fashion catalog photos and grocery iconic photos) with their image files."""
    picked = []
    for dataset, count in (("fashion_products", fashion), ("grocery_store", grocery)):
        rows = [r for r in _manifest(dataset) if r["role"] == "catalog"]
        for row in _spread(rows, count):
            record = ProductRecord(
                product_id=f"{dataset[:4]}-{row['product_id']}",
                title=row.get("title", ""),
                category=row["category"],
            )
            picked.append((record, DATASETS / dataset / row["image_path"]))
    return picked


def load_catalog(
    stack: Stack, models: Models, store: CatalogStore, rows: list[tuple[ProductRecord, Path]]
) -> None:
    """Embeds each product image in-process; the same vector goes to the stack and to ``store``."""
    limits = models.gateway.image_limits
    with grpc.insecure_channel(stack.address("indexer")) as channel:
        stub = indexer_pb2_grpc.IndexerStub(channel)
        for start in range(0, len(rows), 16):
            chunk = rows[start : start + 16]
            pixels = [decode_image(path.read_bytes(), limits).pixels for _, path in chunk]
            vectors = models.embed_images(pixels)
            for (record, _), vector in zip(chunk, vectors, strict=True):
                upsert(store, record, vector, models.model_id)
                stub.Upsert(_upsert_request(record, vector.tolist(), models.model_id), timeout=30)
    log.info("catalog loaded: %d products", len(rows))


def _upsert_request(record: ProductRecord, values: list[float], model_id: str) -> indexer_pb2.UpsertRequest:
    product = indexer_pb2.Product(product_id=record.product_id, title=record.title, category=record.category)
    vector = indexer_pb2.Vector(values=values, image_key="img0")
    return indexer_pb2.UpsertRequest(product=product, vectors=[vector], model_id=model_id)


@contextmanager
def bench_stack() -> Iterator[Stack]:
    """An ephemeral stack without the demo catalog, and without the ingest worker (it would only
    poll Redis and steal CPU from the measurements)."""
    with ephemeral_stack(load_demo=False) as stack:
        stack.procs.stop("scraper")
        yield stack


@contextmanager
def catalog_stack(catalog: tuple[int, int]) -> Iterator[tuple[Stack, Models, CatalogStore]]:
    """A bench stack serving the default multi-crop pipeline, the models in-process (single-threaded,
    so the bare runs' CPU is the calling thread's), and ``catalog`` (fashion, grocery products)
    loaded into both the stack and an in-process store."""
    os.environ.setdefault("VS_MODELS_DIR", str(StackSettings().models_dir))
    os.environ["VS_EMBEDDER_VIEWS"] = "multi-crop"
    with bench_stack() as stack, temp_store() as store:
        models = load_models(detector_threads=1, embedder_threads=1)
        load_catalog(stack, models, store, catalog_rows(*catalog))
        yield stack, models, store


def restart(stack: Stack, name: str, env: Mapping[str, str | None], wipe_state: bool = False) -> None:
    """Restarts one backend with ``env`` applied to this process's environment (the stack passes
    os.environ on). ``wipe_state`` empties the indexer, for a catalog of another model."""
    stack.stop_service(name)
    for key, value in env.items():  # None unsets: the service's own default
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if wipe_state:
        shutil.rmtree(stack.settings.data_dir / "indexer", ignore_errors=True)
    stack.start_service(name)
    stack.wait_ready(name)
    if service_of(name) in GRPC_SERVICES:  # the gateway reconnects on its own; make sure it is ready again
        stack.wait_ready("gateway")


def service_pids(stack: Stack) -> dict[str, int]:
    return {name: proc.pid for name, proc in stack.running().items() if name != "redis"}
