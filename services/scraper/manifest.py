"""Reads catalog rows from a dataset manifest (see shared/datasets/DATASETS.md for the format)."""

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Manifest columns that are bookkeeping, not product data.
_NOT_ATTRIBUTES = frozenset(
    {"image_path", "product_id", "match_key", "role", "split", "source_path", "title"}
)
_PRODUCT_FIELDS = ("category", "brand", "url", "currency")
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_CHARS = 1000


@dataclass(frozen=True)
class CatalogItem:
    product_id: str
    image_file: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def read_catalog(
    manifest: Path, media_root: Path | None = None, role: str = "catalog"
) -> Iterator[CatalogItem]:
    """Yields one item per row with the given role.

    ``media_root``: when the gateway serves that folder at ``/media/``, each product's image_url
    points there so a client can show the catalog photo.
    """
    base = manifest.parent
    with manifest.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            if row.get("role", role) != role:
                continue
            if not row.get("product_id") or not row.get("image_path"):
                log.warning("%s:%d: row without product_id or image_path skipped", manifest, line)
                continue
            image_file = (base / row["image_path"]).resolve()
            yield CatalogItem(row["product_id"], image_file, _metadata(row, image_file, manifest, media_root))


def _metadata(
    row: dict[str, str], image_file: Path, manifest: Path, media_root: Path | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"title": row.get("title") or row["product_id"]}
    for name in _PRODUCT_FIELDS:
        if row.get(name):
            meta[name] = row[name]
    if row.get("price"):
        meta["price"] = float(row["price"])
    if media_root is not None and image_file.is_relative_to(media_root.resolve()):
        meta["image_url"] = "/media/" + image_file.relative_to(media_root.resolve()).as_posix()
    attributes = {"dataset": manifest.parent.name}
    for name, value in row.items():
        if name and value and name not in _NOT_ATTRIBUTES and name not in meta and name != "price":
            attributes[name] = value[:MAX_ATTRIBUTE_CHARS]
    meta["attributes"] = dict(list(attributes.items())[:MAX_ATTRIBUTES])
    return meta
