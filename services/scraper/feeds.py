"""Catalog feeds (CSV or JSONL) parsed row by row into Items, or RowErrors that say what is wrong.

A bad row never stops the feed: it becomes a :class:`RowError` with its line number. Only input
that is not a CSV/JSONL feed at all (binary, HTML, a JSON array, a CSV without a product_id
column) raises :class:`FeedError`, which fails the whole job.

CSV: RFC 4180 (quoted fields may hold commas, quotes and newlines), a header row, UTF-8 with or
without a BOM; a header without commas but with tabs or semicolons uses those instead.
JSONL: one JSON object per line; blank lines are ignored.
"""

import csv
import io
import itertools
import json
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

from services.scraper.feed_rows import Pairs, RowError, RowRules, to_item
from services.scraper.items import Item

FeedFormat = Literal["csv", "jsonl"]
SNIFF_BYTES = 8192
_BOM = b"\xef\xbb\xbf"
_MAGIC = {
    b"\x1f\x8b": "a gzip file",
    b"PK\x03\x04": "a zip file",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\xff\xfe": "UTF-16 text (export the feed as UTF-8)",
    b"\xfe\xff": "UTF-16 text (export the feed as UTF-8)",
}
_EXTENSIONS: dict[str, FeedFormat] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_CONTENT_TYPES: dict[str, FeedFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
}
_DELIMITERS = (",", "\t", ";")


class FeedError(Exception):
    """The input is not a CSV or JSONL feed: the whole job fails with this message."""


def detect_format(data: bytes, requested: str = "auto", name: str = "", content_type: str = "") -> FeedFormat:
    """The feed's format: as requested, else by file extension, content type, then first character.

    Raises FeedError for input that is no feed at all, whatever was requested."""
    head = data[:SNIFF_BYTES].removeprefix(_BOM)
    first = head.lstrip()[:1]
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise FeedError(f"the feed is {what}, not a CSV or JSONL feed")
    if not first:
        raise FeedError("the feed is empty")
    if b"\x00" in head:
        raise FeedError("the feed is binary data, not a CSV or JSONL feed")
    if first == b"<":
        raise FeedError("the feed looks like HTML or XML, not a CSV or JSONL feed")
    if first == b"[":
        raise FeedError("the feed is a JSON array; a JSONL feed has one JSON object per line")
    if requested in ("csv", "jsonl"):
        return "csv" if requested == "csv" else "jsonl"
    suffix = "." + urlsplit(name).path.rpartition(".")[2].lower() if "." in name else ""
    media_type = content_type.partition(";")[0].strip().lower()
    return _EXTENSIONS.get(suffix) or _CONTENT_TYPES.get(media_type) or ("jsonl" if first == b"{" else "csv")


def parse_feed(data: bytes, fmt: FeedFormat, rules: RowRules) -> Iterator[Item | RowError]:
    """Every row in feed order. Codes beyond ``to_item``'s: duplicate_product_id (the first valid
    row of a product wins), malformed_csv, wrong_field_count, malformed_json, invalid_encoding."""
    records = _csv_records(data) if fmt == "csv" else _jsonl_records(data)
    first_row: dict[str, int] = {}
    for row, record in records:
        result = record if isinstance(record, RowError) else to_item(record, row, rules)
        if isinstance(result, Item):
            first = first_row.setdefault(result.product_id, row)
            if first != row:
                message = f"product_id {result.product_id!r} already appears on line {first}"
                result = RowError(row, result.product_id, "duplicate_product_id", message)
        yield result


def _lines(data: bytes, bad_lines: set[int]) -> Iterator[str]:
    """Decoded lines with their endings (csv needs them); lines that are not UTF-8 are decoded with
    replacement characters and their numbers (from 1) added to ``bad_lines``."""
    for number, raw in enumerate(io.BytesIO(data.removeprefix(_BOM)), start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.add(number)
            yield raw.decode("utf-8", "replace")


def _encoding_error(start: int, end: int, bad_lines: set[int], product_id: str = "") -> RowError | None:
    """The row spanning lines ``start``-``end`` holds a line that is not UTF-8."""
    bad = next((n for n in range(start, end + 1) if n in bad_lines), None)
    if bad is None:
        return None
    return RowError(start, product_id, "invalid_encoding", f"line {bad} is not valid UTF-8 text")


def _jsonl_records(data: bytes) -> Iterator[tuple[int, Pairs | RowError]]:
    bad_lines: set[int] = set()
    for number, line in enumerate(_lines(data, bad_lines), start=1):
        if not line.strip():
            continue
        if error := _encoding_error(number, number, bad_lines):
            yield number, error
            continue
        try:
            value = json.loads(line, object_pairs_hook=_Object)
        except ValueError as exc:
            yield number, RowError(number, "", "malformed_json", f"not valid JSON: {_json_reason(exc)}")
            continue
        if not isinstance(value, _Object):
            kind = type(value).__name__.replace("str", "a string").replace("list", "an array")
            yield number, RowError(number, "", "invalid_type", f"each line must be a JSON object, not {kind}")
            continue
        yield number, value.pairs


class _Object(dict[str, Any]):
    """A JSON object that also remembers repeated keys (several ``image_url``) in order."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs: Pairs = pairs


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def _csv_records(data: bytes) -> Iterator[tuple[int, Pairs | RowError]]:
    bad_lines: set[int] = set()
    lines = _lines(data, bad_lines)
    leading_blank = 0
    for line in lines:
        if line.strip():
            break
        leading_blank += 1
    else:
        raise FeedError("the feed is empty")
    reader = csv.reader(itertools.chain([line], lines), delimiter=_delimiter(line), strict=True)
    try:
        header = _header(next(reader))
    except csv.Error as exc:
        raise FeedError(f"the CSV header cannot be read: {exc}") from None
    last_line = leading_blank + reader.line_num
    while True:
        start = last_line + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last_line = leading_blank + reader.line_num
            yield start, RowError(start, "", "malformed_csv", _csv_reason(exc, start, last_line))
            continue
        last_line = leading_blank + reader.line_num
        if any(v.strip() for v in values):  # else a blank line
            yield start, _csv_row(values, header, start, last_line, bad_lines)


def _csv_row(
    values: list[str], header: list[str], start: int, end: int, bad_lines: set[int]
) -> Pairs | RowError:
    pairs = [(name, value) for name, value in zip(header, values, strict=False) if name]
    product_id = next((v.strip() for k, v in pairs if k.lower() == "product_id"), "")
    if error := _encoding_error(start, end, bad_lines, product_id):
        return error
    if len(values) > len(header) and any(v.strip() for v in values[len(header) :]):
        message = f"the row has {len(values)} fields; the header has {len(header)}"
        return RowError(start, product_id, "wrong_field_count", message)
    return pairs


def _csv_reason(exc: csv.Error, start: int, end: int) -> str:
    if "unexpected end of data" in str(exc):
        return f"a quoted field opened on line {start} is never closed; lines {start}-{end} were not read"
    return f"lines {start}-{end}: {exc}"


def _delimiter(header_line: str) -> str:
    names = header_line.lower()
    return next((d for d in _DELIMITERS if d in names and "product_id" in names), ",")


def _header(names: list[str]) -> list[str]:
    header = [name.strip() for name in names]
    lowered = [name.lower() for name in header]
    if "product_id" not in lowered:
        found = ", ".join(repr(n) for n in header[:12]) or "none"
        raise FeedError(f"the CSV header has no product_id column (columns: {found})")
    repeated = {n for n in lowered if n and n != "image_url" and lowered.count(n) > 1}
    if repeated:
        raise FeedError(f"the CSV header repeats the column(s) {', '.join(sorted(repeated))}")
    return header
