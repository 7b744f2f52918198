"""Gateway settings, read from ``VS_GATEWAY_*`` environment variables (and the shared ``VS_*``)."""

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.allowlist import FETCH_ALLOW_HELP, FetchAllow
from services.common.catalog import MAX_IMAGES_PER_PRODUCT
from services.common.grpc_client import ADDRESS_HELP, GrpcAddress
from services.common.images import ImageLimits
from services.common.settings import ServiceSettings

# Hard ceilings the OpenAPI schema advertises; settings may only lower them.
MAX_K_LIMIT = 100
MAX_IMAGES_LIMIT = MAX_IMAGES_PER_PRODUCT


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_GATEWAY_", extra="ignore", populate_by_name=True)

    port: int = Field(default=8080, ge=0, le=65535)

    # Required: a gateway without its backends is a misconfiguration, not a default.
    # Each: host:port, a list of replicas host:p1,host:p2, or a gRPC target (dns:///name:port).
    detector_addr: GrpcAddress = Field(min_length=1, description=f"the detector service: {ADDRESS_HELP}")
    embedder_addr: GrpcAddress = Field(min_length=1, description=f"the embedder service: {ADDRESS_HELP}")
    indexer_addr: GrpcAddress = Field(min_length=1, description=f"the indexer service: {ADDRESS_HELP}")

    detect_deadline_s: float = Field(default=10.0, gt=0)
    embed_deadline_s: float = Field(default=20.0, gt=0)
    search_deadline_s: float = Field(default=5.0, gt=0)
    indexer_deadline_s: float = Field(default=10.0, gt=0, description="catalog reads and writes")
    health_deadline_s: float = Field(default=1.0, gt=0)

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_product_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="whole PUT /v1/products body (all images)"
    )
    max_pixels: int = Field(default=40_000_000, ge=1)
    min_side: int = Field(default=16, ge=1)
    max_side: int = Field(default=1024, ge=0, description="decoded images are downscaled to this; 0 keeps")
    max_objects: int = Field(default=8, ge=1, le=64, description="objects searched per photo, in all")
    whole_image_object: bool = Field(
        default=True,
        description="answer with the whole image as the first object, before the detected ones "
        "(docs/quality.md); false = detected objects only",
    )
    max_k: int = Field(default=MAX_K_LIMIT, ge=1, le=MAX_K_LIMIT)
    max_images_per_product: int = Field(default=8, ge=1, le=MAX_IMAGES_LIMIT)
    crop_padding: float = Field(default=0.04, ge=0.0, le=1.0, description="share of box size added per side")

    allow_private_urls: bool = Field(
        default=False, description="let image_url reach loopback/private hosts (dev and tests only)"
    )
    fetch_allow: FetchAllow = Field(
        default="",
        validation_alias=AliasChoices("VS_FETCH_ALLOW", "fetch_allow"),
        description=FETCH_ALLOW_HELP,
    )
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    media_dir: Path | None = Field(default=None, description="served read-only at /media/ when set")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("VS_REDIS_URL", "redis_url"),
        description="the ingest queues (imports and crawls), and the API keys when auth_enabled",
    )
    # --- imports (routes/imports.py): uploaded feeds wait in Redis until a feed worker reads them ---
    max_feed_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, description="POST /v1/imports upload cap")
    feed_ttl_s: int = Field(default=86400, ge=60, description="how long an uploaded feed waits to be read")
    # --- videos (services/gateway/video): Shop now on a frame, and pre-indexed shoppable timelines ---
    max_video_bytes: int = Field(default=200 * 1024 * 1024, ge=1024, description="video upload/fetch cap")
    video_sample_interval_s: float = Field(default=0.5, gt=0, le=60, description="pre-indexing step")
    video_duplicate_threshold: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="mean grey difference (0..1) under which a frame is not re-searched",
    )
    video_max_frames: int = Field(default=2000, ge=1, description="sampled frames per video, at most")
    video_max_duration_s: float = Field(default=1800.0, gt=0, description="longer videos are refused (413)")
    video_index_concurrency: int = Field(default=1, ge=1, le=8, description="videos pre-indexed at once")
    # --- API keys (services/gateway/auth): off for local development, on in production ---
    auth_enabled: bool = Field(
        default=False, description="require an API key (`visualsearch keys create`) on the /v1 API"
    )
    auth_rate_per_min: int = Field(
        default=120, ge=0, description="requests per minute per key unless the key sets its own; 0 = no limit"
    )
    auth_daily_quota: int = Field(
        default=10_000, ge=0, description="requests per UTC day per key unless it sets its own; 0 = no limit"
    )

    @model_validator(mode="after")
    def _media_dir_exists(self) -> Self:
        if self.media_dir is not None and not self.media_dir.is_dir():
            raise ValueError(f"media_dir is not a directory: {self.media_dir} (VS_GATEWAY_MEDIA_DIR)")
        return self

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
            max_side=self.max_side,
        )
