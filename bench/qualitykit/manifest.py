"""Read a dataset manifest in the common format into catalog rows and scorable queries.

The harness must score any manifest in this format (including held-out sets with products it has
never seen), so nothing here knows about a particular dataset. Every problem is reported with the
file and line, because a silently skipped row would quietly change the measured quality.
"""

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("image_path", "product_id", "match_key", "category", "role", "split")
ROLES = ("catalog", "query")
MAX_LISTED_MISSING = 5


class ManifestError(ValueError):
    """A manifest that cannot be scored as written; the message names the file and line."""


@dataclass(frozen=True)
class Row:
    """One manifest line; ``image_path`` is absolute so callers never resolve it again."""

    image_path: Path
    product_id: str
    match_key: str
    category: str
    role: str
    split: str
    title: str = ""


@dataclass(frozen=True)
class Dataset:
    """A manifest split into what gets indexed and what gets searched."""

    name: str
    manifest: Path
    catalog: list[Row]
    queries: list[Row]
    train_queries: list[Row]

    @property
    def has_queries(self) -> bool:
        """Whether there is anything to score: both a catalog to search and queries with ground truth."""
        return bool(self.catalog) and bool(self.queries)


def scorable(datasets: list[Dataset], prog: str) -> list[Dataset]:
    """The datasets with a catalog and scored queries; each other one is reported on stderr."""
    for dataset in datasets:
        if not dataset.has_queries:
            print(
                f"{prog}: skipping {dataset.manifest}: no catalog rows or no scored queries", file=sys.stderr
            )
    return [dataset for dataset in datasets if dataset.has_queries]


def load_dataset(path: Path) -> Dataset:
    """Load and validate ``path``; raise :class:`ManifestError` on anything the harness cannot score."""
    manifest = path.resolve()
    if not manifest.is_file():
        raise ManifestError(f"{path}: manifest not found")
    numbered = list(_read_rows(manifest))
    _check_images_exist(manifest, numbered)
    rows = [row for _, row in numbered]
    scorable = [r for r in rows if r.role == "query" and r.match_key]
    return Dataset(
        name=manifest.parent.name,
        manifest=manifest,
        catalog=[r for r in rows if r.role == "catalog"],
        queries=[r for r in scorable if r.split != "train"],
        train_queries=[r for r in scorable if r.split == "train"],
    )


def _read_rows(manifest: Path) -> Iterator[tuple[int, Row]]:
    """Yield (line, row) pairs; decoding and CSV syntax errors become ManifestError with the line."""
    try:
        with manifest.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header = _read_header(manifest, reader)
            start = reader.line_num + 1
            for values in reader:
                if values:
                    yield start, _parse_row(manifest, start, header, values)
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{manifest}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise ManifestError(f"{manifest}: malformed CSV ({exc})") from exc


def _read_header(manifest: Path, reader: Iterator[list[str]]) -> list[str]:
    """Return the header; the required columns are checked up front so the error names all of them."""
    header = next(reader, None)
    if not header:
        raise ManifestError(f"{manifest}: empty file, expected a header row")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{manifest}, line 1: missing required column(s): {', '.join(missing)}")
    return header


def _parse_row(manifest: Path, line: int, header: list[str], values: list[str]) -> Row:
    """Turn one record into a Row, rejecting what would make scoring ambiguous."""
    where = f"{manifest}, line {line}"
    if len(values) != len(header):
        raise ManifestError(f"{where}: {len(values)} fields, the header has {len(header)}")
    cells = dict(zip(header, values, strict=True))
    role = cells["role"]
    if role not in ROLES:
        raise ManifestError(f"{where}: role {role!r} is neither 'catalog' nor 'query'")
    if role == "catalog" and not cells["product_id"]:
        raise ManifestError(f"{where}: catalog row without product_id")
    if not cells["image_path"]:
        raise ManifestError(f"{where}: empty image_path")
    return Row(
        image_path=(manifest.parent / cells["image_path"]).resolve(),
        product_id=cells["product_id"],
        match_key=cells["match_key"],
        category=cells["category"],
        role=role,
        split=cells["split"],
        title=cells.get("title", ""),
    )


def _check_images_exist(manifest: Path, rows: list[tuple[int, Row]]) -> None:
    """Fail before any indexing starts, listing a few missing files (with their lines) and the count."""
    missing = [(line, r.image_path) for line, r in rows if not r.image_path.is_file()]
    if not missing:
        return
    shown = "; ".join(f"line {line}: {p}" for line, p in missing[:MAX_LISTED_MISSING])
    more = f" (and {len(missing) - MAX_LISTED_MISSING} more)" if len(missing) > MAX_LISTED_MISSING else ""
    raise ManifestError(f"{manifest}: {len(missing)} image file(s) not found: {shown}{more}")
