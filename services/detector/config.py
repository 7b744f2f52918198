"""Detector settings, read from ``VS_DETECTOR_*`` environment variables (and the shared ``VS_*``)."""

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.settings import ServiceSettings

# A hard ceiling for configured and per-request max_detections: bounds response size and NMS output.
MAX_DETECTIONS_LIMIT = 300


class DetectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_DETECTOR_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50051, ge=0, le=65535)
    model: str = Field(
        default="yolov8n_fp32_from_int8.onnx", description="ONNX file, relative to models_dir or absolute"
    )
    decoder: Literal["yolov8", "yolox"] = "yolov8"
    labels_file: str = Field(
        default="coco80_labels.txt", description="one label a line; used when the model has no `names`"
    )
    conf_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=20, ge=1, le=MAX_DETECTIONS_LIMIT)
    # NoDecode: the env var is a plain comma-separated list ("person,handbag"), not JSON.
    classes: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="allow-list of label names; empty keeps every class"
    )
    threads: int = Field(default=2, ge=1, le=64, description="onnxruntime intra-op threads of a run alone")
    # 1: a run that overlaps another runs on its own calling thread, so concurrent requests scale
    # over requests, not over ops, and no intra-op hand-overs are paid (services/detector/sessions.py).
    concurrent_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="onnxruntime intra-op threads of a run that starts while another is in flight",
    )
    parallel_runs: int = Field(default=2, ge=1, le=64, description="requests detected at the same time")
    spin_wait: bool = Field(
        default=False,
        description="let idle onnxruntime threads busy-wait for the next op: a little faster alone, "
        "but under load they burn the cores the embedder needs (bench/results/throughput.json)",
    )

    # Smaller inputs for photos that are not square or are small (services/detector/inputs.py).
    rect_sides: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [384, 480],
        description="short sides of the rectangular inputs beside the square one (multiples of 32): "
        "a 4:3 photo runs at 640x480, a 16:9 frame at 640x384; empty = the square only",
    )
    small_size: int = Field(
        default=416,
        ge=0,
        description="photos whose long side is at most this run at this square input instead of being "
        "scaled up to the model's (a multiple of 32; 0 = off)",
    )

    @field_validator("rect_sides", mode="before")
    @classmethod
    def _split_sides(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [int(v) for v in value.split(",") if v.strip()]
        return value

    @field_validator("rect_sides")
    @classmethod
    def _multiples_of_32(cls, sides: list[int]) -> list[int]:
        bad = [side for side in sides if side <= 0 or side % 32]
        if bad:
            raise ValueError(f"rect sides must be positive multiples of 32, got {bad}")
        return sorted(set(sides))

    @field_validator("small_size")
    @classmethod
    def _small_multiple_of_32(cls, size: int) -> int:
        if size % 32:
            raise ValueError(f"small_size must be a multiple of 32 (or 0), got {size}")
        return size

    @field_validator("classes", mode="before")
    @classmethod
    def _split_classes(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            names = [str(v).strip() for v in value]
            return list(dict.fromkeys(n for n in names if n))  # drop blanks and duplicates, keep order
        return value

    @model_validator(mode="after")
    def _model_exists(self) -> Self:
        if not self.model_path.is_file():
            raise ValueError(
                f"detector model file not found: {self.model_path} "
                "(set VS_DETECTOR_MODEL to a file, or VS_MODELS_DIR to the folder holding it)"
            )
        return self

    @property
    def model_path(self) -> Path:
        return _resolve(self.models_dir, self.model)

    @property
    def labels_path(self) -> Path:
        return _resolve(self.models_dir, self.labels_file)


def _resolve(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path
