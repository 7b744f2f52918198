"""Ground truth from the shared manifests, for end-to-end assertions."""

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.paths import DATASETS


@dataclass(frozen=True)
class Row:
    product_id: str
    path: Path
    match_key: str
    role: str
    split: str


def rows(dataset: str) -> list[Row]:
    manifest = DATASETS / dataset / "manifest.csv"
    with manifest.open(newline="", encoding="utf-8") as fh:
        return [
            Row(r["product_id"], manifest.parent / r["image_path"], r["match_key"], r["role"], r["split"])
            for r in csv.DictReader(fh)
        ]


def unique_image_catalog_rows(dataset: str) -> list[Row]:
    """Catalog rows whose image bytes appear once (the fashion set has byte-identical duplicates)."""
    catalog = [r for r in rows(dataset) if r.role == "catalog"]
    digests = {r.product_id: hashlib.sha256(r.path.read_bytes()).hexdigest() for r in catalog}
    counts = Counter(digests.values())
    return [r for r in catalog if counts[digests[r.product_id]] == 1]


def every_nth(items: list[Row], count: int) -> list[Row]:
    """A deterministic, evenly spread sample."""
    step = max(1, len(items) // count)
    return items[::step][:count]
