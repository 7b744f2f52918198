"""bench/quality on a manifest it has never seen: its own folder, odd product ids, renamed files.

The harness must need nothing but the manifest and its images: it starts its own throwaway stacks
(real services, real models), indexes the catalog, runs the queries and the scenes, and writes
the report. Built from a few grocery products so it runs in about a minute.
"""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.paths import DATASETS, ROOT

pytestmark = pytest.mark.e2e

PRODUCTS = [
    "Banana",
    "Arla-Standard-Milk",
    "Red-Bell-Pepper",
    "Tropicana-Apple-Juice",
    "Watermelon",
    "Yellow-Onion",
]
QUERIES_PER_PRODUCT = 3
COLUMNS = ["image_path", "product_id", "match_key", "category", "role", "split", "title"]


def write_manifest(folder: Path) -> Path:
    source = list(csv.DictReader((DATASETS / "grocery_store" / "manifest.csv").open(encoding="utf-8")))
    rows = []
    for n, name in enumerate(PRODUCTS):
        mine = [r for r in source if r["product_id"] == name]
        catalog = next(r for r in mine if r["role"] == "catalog")
        val = [r for r in mine if r["role"] == "query" and r["split"] == "val"][:QUERIES_PER_PRODUCT]
        train = [r for r in mine if r["role"] == "query" and r["split"] == "train"][:1]
        for role, split, picked in (
            ("catalog", "train", [catalog]),
            ("query", "val", val),
            ("query", "train", train),
        ):
            for m, row in enumerate(picked):
                path = Path("photos") / f"{role}-{n}-{m}.jpg"
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(DATASETS / "grocery_store" / row["image_path"], folder / path)
                rows.append(
                    [str(path), f"item #{n} / {name}", f"key {n}", catalog["category"], role, split, name]
                )
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return manifest


def test_the_harness_scores_an_unseen_manifest(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "unseen")
    out = tmp_path / "quality.json"
    done = subprocess.run(
        [str(ROOT / "bench" / "quality"), str(manifest), "--json", str(out), "--scenes", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "baseline" in done.stdout
    assert "default" in done.stdout
    [dataset] = json.loads(out.read_text())["datasets"]
    assert (dataset["queries"], dataset["catalog_products"]) == (
        len(PRODUCTS) * QUERIES_PER_PRODUCT,
        len(PRODUCTS),
    )
    for name in ("baseline", "default"):
        scores = dataset[name]
        assert set(scores) >= {"recall@1", "recall@5", "recall@10", "map@10", "mrr", "median_query_ms"}
        assert scores["recall@10"] == 1.0  # six products: every one is in any top 10
        assert scores["recall@1"] > 1 / len(PRODUCTS)  # well above chance
    report = json.loads(out.read_text())
    assert report["errors"]["unseen/default"]["queries_failed"] == 0
    scenes = report["scenes"]["unseen"]
    assert scenes["scenes"] == 3
    assert scenes["products"] == 12
    assert 0.0 <= scenes["per_object@10"] <= 1.0


def test_a_bad_manifest_is_refused_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.csv"
    bad.write_text("image_path,product_id\nx.jpg,1\n", encoding="utf-8")
    done = subprocess.run(
        [str(ROOT / "bench" / "quality"), str(bad)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert "match_key" in done.stderr
