"""What to fetch and where it goes: a manifest entry, command-line overrides, or a bare URL."""

from dataclasses import dataclass
from pathlib import Path

from services.embedder.manifest import Manifest, ModelEntry, file_sha256, model_path
from services.models.fetch import FetchError, check_sha256, check_url


@dataclass(frozen=True)
class Target:
    label: str  # the manifest entry, or the output file, for messages
    url: str
    sha256: str
    path: Path
    pinned: bool  # the hash comes from the manifest, not from the command line


@dataclass(frozen=True)
class Status:
    entry: ModelEntry
    path: Path
    present: bool
    check: str  # "ok", "MISMATCH", "unpinned" or "-" (no file to check)


def resolve_path(name: str, models_dir: Path) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else models_dir / path


def bare_target(url: str | None, sha256: str | None, output: str | None, models_dir: Path) -> Target:
    """A file outside the manifest (a detector's ONNX, say): URL, hash and file name all given."""
    if not (url and sha256 and output):
        raise FetchError(
            "without a manifest NAME, --url, --sha256 and --output are all required "
            "(e.g. --url https://host/yolov8n.onnx --sha256 HEX --output yolov8n.onnx)"
        )
    path = resolve_path(output, models_dir)
    return Target(path.name, check_url(url), check_sha256(sha256), path, pinned=False)


def entry_target(
    manifest: Manifest,
    name: str,
    models_dir: Path,
    url: str | None = None,
    sha256: str | None = None,
    output: str | None = None,
) -> Target:
    """The manifest entry ``name``; --url, --sha256 and --output fill in or override it."""
    entry = manifest.get(name)
    source = url or entry.url
    if not source:
        raise FetchError(
            f"model {name!r} has no download URL in {manifest.source}; pass --url URL "
            "(and --sha256 HEX, the hash published with those weights)"
        )
    given = check_sha256(sha256) if sha256 else ""
    if entry.sha256 and given and given != entry.sha256:
        raise FetchError(
            f"model {name!r}: --sha256 {given} differs from the hash {entry.sha256} pinned in "
            f"{manifest.source}, and the embedder refuses a file that does not match its pin; "
            "fix the manifest or drop --sha256"
        )
    if not (entry.sha256 or given):
        raise FetchError(
            f"model {name!r} has no sha256 pinned in {manifest.source}; pass --sha256 HEX, the hash "
            "published with the weights (unverified downloads are refused)"
        )
    path = resolve_path(output, models_dir) if output else model_path(entry, models_dir)
    return Target(name, check_url(source), entry.sha256 or given, path, pinned=bool(entry.sha256))


def statuses(manifest: Manifest, models_dir: Path) -> list[Status]:
    return [_status(entry, models_dir) for _, entry in sorted(manifest.entries.items())]


def _status(entry: ModelEntry, models_dir: Path) -> Status:
    path = model_path(entry, models_dir)
    if not path.is_file():
        return Status(entry, path, present=False, check="-")
    if not entry.sha256:
        return Status(entry, path, present=True, check="unpinned")
    return Status(entry, path, present=True, check="ok" if file_sha256(path) == entry.sha256 else "MISMATCH")
