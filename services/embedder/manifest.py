"""The model manifest (models.toml): which backbone file to load and how to feed it.

Nothing about a backbone is hard-coded in the service; swapping MobileNetV2 for ResNet50, CLIP or
DINOv2 is a manifest entry plus a file. The manifest is validated at start-up, and a pinned sha256
that does not match the file refuses to start rather than serving vectors from unknown weights.
"""

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.embedder.preprocess import PreprocessSpec

PACKAGED_MANIFEST = "models.toml"
_HASH_CHUNK = 1 << 20


class ManifestError(ValueError):
    """A manifest that cannot be used, or a model file that does not match it."""


class ModelEntry(BaseModel):
    """One manifest table. Unknown keys are rejected so a typo never silently falls back to a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^([0-9a-f]{64})?$", description="lowercase hex; empty = unchecked")
    url: str = ""
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    resize_shorter: int = Field(ge=1, le=4096)
    crop: int = Field(ge=1, le=4096)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    dim: int | None = Field(default=None, ge=1, description="a check only; the dim is read from the model")
    licence: str = Field(min_length=1)
    description: str = ""

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _three_channels(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 3:
            raise ValueError(f"needs 3 values (one per channel, 0..255 pixel units), got {len(value)}")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"every std value must be > 0, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _crop_fits(self) -> Self:
        if self.resize_shorter < self.crop:
            raise ValueError(
                f"resize_shorter ({self.resize_shorter}) must be >= crop ({self.crop}) "
                "so the centre crop always fits inside the resized image"
            )
        return self

    @property
    def preprocessing(self) -> PreprocessSpec:
        return PreprocessSpec(
            self.resize_shorter, self.crop, self.mean, self.std, self.channel_order == "BGR"
        )


@dataclass(frozen=True)
class Manifest:
    source: str  # file path, or the packaged file, for error messages
    entries: Mapping[str, ModelEntry]

    def get(self, name: str) -> ModelEntry:
        if name not in self.entries:
            known = ", ".join(sorted(self.entries)) or "none"
            raise ManifestError(f"unknown model {name!r} in {self.source}; known models: {known}")
        return self.entries[name]


@dataclass(frozen=True)
class ResolvedModel:
    """A manifest entry bound to an existing file whose hash is known."""

    entry: ModelEntry
    path: Path
    sha256: str  # of the file, always computed, pinned or not

    @property
    def model_id(self) -> str:
        return f"{self.entry.name}@{self.sha256[:12]}"


def load_manifest(path: Path | None = None) -> Manifest:
    """Parses and validates a manifest file; None reads the one packaged with the service."""
    if path is None:
        source = f"packaged {PACKAGED_MANIFEST}"
        text = resources.files("services.embedder").joinpath(PACKAGED_MANIFEST).read_text("utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ManifestError(f"cannot read model manifest {path}: {exc.strerror or exc}") from exc
    return parse_manifest(text, source)


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source} is not valid TOML: {exc}") from exc
    entries = {name: _parse_entry(name, table, source) for name, table in tables.items()}
    if not entries:
        raise ManifestError(f"{source} defines no models")
    return Manifest(source, entries)


def _parse_entry(name: str, table: Any, source: str) -> ModelEntry:
    if not isinstance(table, dict):
        raise ManifestError(f"{source}: {name!r} must be a table ([{name}]), not a plain value")
    try:
        return ModelEntry.model_validate({**table, "name": name})
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ManifestError(f"{source}: model {name!r}: {problems}") from None


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "entry"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}"


def resolve_model(entry: ModelEntry, models_dir: Path) -> ResolvedModel:
    """Finds the entry's file (absolute, or under models_dir) and verifies its pinned sha256."""
    path = model_path(entry, models_dir)
    if not path.is_file():
        hint = f"download it from {entry.url}" if entry.url else "no public download is pinned for it yet"
        raise ManifestError(
            f"model file for {entry.name!r} not found at {path} ({hint}; or set VS_MODELS_DIR "
            "to the folder holding it)"
        )
    digest = file_sha256(path)
    if entry.sha256 and digest != entry.sha256:
        raise ManifestError(
            f"sha256 mismatch for model {entry.name!r} at {path}: the manifest pins {entry.sha256} "
            f"but the file hashes to {digest}; refusing to load weights that are not the pinned ones"
        )
    return ResolvedModel(entry, path, digest)


def model_path(entry: ModelEntry, models_dir: Path) -> Path:
    """Where the entry's file lives: its ``file`` if absolute, else under models_dir."""
    path = Path(entry.file).expanduser()
    return path if path.is_absolute() else models_dir / path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
