"""Embedder settings, read from ``VS_EMBEDDER_*`` environment variables (and the shared ``VS_*``)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.embedder.views import ViewMode


class EmbedderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_EMBEDDER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50052, ge=0, le=65535)
    model: str = Field(default="mobilenetv2-features", min_length=1, description="a model manifest entry")
    manifest: Path | None = Field(default=None, description="models.toml to read; None = the packaged one")
    max_batch: int = Field(default=32, ge=1, le=256, description="images per model run")
    # 0: no idle wait. Each request's images and whatever queued while the model was busy still
    # share runs, and bigger runs are no cheaper per image here (run_chunk); waiting only added
    # max_wait to every search (bench/results/latency.json).
    max_wait_ms: float = Field(
        default=0.0, ge=0.0, le=1000.0, description="how long the first waiting image waits for company"
    )
    max_request_images: int = Field(default=64, ge=1, le=4096, description="more -> RESOURCE_EXHAUSTED")
    threads: int = Field(
        default=2, ge=1, le=64, description="model runs in parallel, one core each (chunks of a batch)"
    )
    # 4: per image, MobileNetV2 runs cheapest in small runs (its early activations, 1.6 MB per
    # image, stay in cache), and small runs leave less of a micro-batch's tail on one core.
    # Measured in the stack at concurrency 8: 6.07 QPS with 4 vs 5.80 with 8 (docs/performance.md).
    run_chunk: int = Field(
        default=4, ge=1, le=256, description="images per model run; a micro-batch is split into such runs"
    )
    views: ViewMode = Field(
        default="multi-crop",
        description="whole = one centre crop per image (the seed method); multi-crop = whole image plus "
        "five zoomed crops, summed (docs/quality.md)",
    )
    view_fraction: float = Field(default=0.7, gt=0.0, lt=1.0, description="side of each zoomed crop")
