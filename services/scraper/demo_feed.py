"""The demo catalog (DATASETS.md: fashion catalog rows plus the grocery iconic photos) as a CSV
feed whose image_url point at a web server holding the datasets folder, e.g. the dev gateway's
/media/ (``--base-url http://127.0.0.1:8080/media``)."""

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from services.scraper.manifest import read_catalog

PRODUCT_COLUMNS = ("product_id", "title", "image_url", "price", "currency", "category", "brand", "url")


def demo_rows(datasets: Path, manifests: Iterable[str], base_url: str) -> Iterator[dict[str, Any]]:
    """One feed row per catalog row of each manifest (paths relative to ``datasets``)."""
    root = datasets.resolve()
    for relative in manifests:
        for item in read_catalog(datasets / relative, media_root=datasets):
            meta = {k: v for k, v in item.metadata.items() if k not in ("image_url", "attributes")}
            image_path = item.image_file.relative_to(root).as_posix()
            yield {
                "product_id": item.product_id,
                **meta,
                "image_url": f"{base_url.rstrip('/')}/{quote(image_path)}",
                **item.metadata.get("attributes", {}),
            }


def write_feed(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Writes the rows as CSV (product columns first, then every attribute seen); returns the count."""
    rows = list(rows)
    attributes = dict.fromkeys(k for row in rows for k in row if k not in PRODUCT_COLUMNS)
    writer = csv.DictWriter(out, fieldnames=[*PRODUCT_COLUMNS, *attributes])
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)
