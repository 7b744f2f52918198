"""Scraper settings (``VS_SCRAPER_*``; the Redis URL is the stack-wide ``VS_REDIS_URL``)."""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.allowlist import FETCH_ALLOW_HELP, AllowList, FetchAllow
from services.common.fetch import FetchPolicy
from services.common.grpc_client import ADDRESS_HELP, GrpcAddress
from services.common.images import ImageLimits


class ScraperSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VS_SCRAPER_", extra="ignore", populate_by_name=True)

    # --- the catalog loader CLI (PUTs through the gateway) ---
    gateway_url: str = "http://127.0.0.1:8080"
    concurrency: int = Field(default=4, ge=1, le=64)
    request_timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    api_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("VS_API_KEY", "api_key"),
        description="sent as X-API-Key by `visualsearch import` and `load-*` when the gateway wants keys",
    )

    @property
    def gateway_headers(self) -> dict[str, str]:
        key = self.api_key.get_secret_value()
        return {"X-API-Key": key} if key else {}

    # --- the ingest workers ---
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("VS_REDIS_URL", "redis_url")
    )
    embedder_addr: GrpcAddress = Field(default="127.0.0.1:50052", description=ADDRESS_HELP)
    indexer_addr: GrpcAddress = Field(default="127.0.0.1:50053", description=ADDRESS_HELP)
    embed_deadline_s: float = Field(default=30.0, gt=0)
    index_deadline_s: float = Field(default=15.0, gt=0)
    # Images and feeds fetched by URL: the same guards as the gateway's image_url.
    fetch_timeout_s: float = Field(default=15.0, gt=0)
    fetch_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    allow_private_urls: bool = False
    fetch_allow: FetchAllow = Field(
        default="",
        validation_alias=AliasChoices("VS_FETCH_ALLOW", "fetch_allow"),
        description=FETCH_ALLOW_HELP,
    )
    fetch_concurrency: int = Field(
        default=8, ge=1, le=256, description="images downloaded at once per worker"
    )
    local_media: dict[str, Path] = Field(
        default_factory=dict,
        description="image URL prefix -> local folder holding the same files, read from disk instead "
        'of downloaded, e.g. {"http://127.0.0.1:8080/media/": "/srv/datasets"} (JSON)',
    )
    max_feed_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    # Decoded like the gateway decodes a PUT, so an imported product embeds exactly like a PUT one.
    max_pixels: int = Field(default=40_000_000, ge=1)
    min_side: int = Field(default=16, ge=1)
    max_side: int = Field(default=1024, ge=0)
    max_images_per_product: int = Field(default=8, ge=1, le=32)
    embed_batch: int = Field(default=32, ge=1, le=256, description="images per Embed call")
    # Delivery: a message idle this long is reclaimed from a dead worker; retries back off
    # exponentially from retry_base_s; after max_attempts deliveries the item is dead-lettered.
    reclaim_idle_s: float = Field(default=30.0, gt=0)
    retry_base_s: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=50)
    # Back-pressure: a producer waits while the next stream holds this many items.
    high_water: int = Field(default=256, ge=1)
    block_ms: int = Field(default=1000, ge=10)

    # --- worker process and the fetch/embed/index stages (services/scraper/stages) ---
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("VS_LOG_LEVEL", "log_level"))
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 disables the /metrics listener")
    retry_max_s: float = Field(default=60.0, gt=0, description="cap of the exponential retry back-off")
    # A backend that is down (restarting, loading a big index) uses up none of an item's attempts.
    outage_patience_s: float = Field(
        default=1800.0, gt=0, description="how long an item waits for an unreachable embedder or indexer"
    )
    outage_retry_max_s: float = Field(
        default=5.0, gt=0, description="items waiting out an outage retry at least this often"
    )
    embed_in_flight: int = Field(default=2, ge=1, le=16, description="Embed calls at once per worker")
    index_in_flight: int = Field(default=8, ge=1, le=64, description="Upsert calls at once per worker")
    # Items per stream read in the fetch and index stages: a batch is read, and its hand-overs or
    # outcomes settled, in one Redis round trip each; its items are handled concurrently.
    fetch_batch: int = Field(default=4, ge=1, le=64, description="items per read in the fetch stage")
    index_batch: int = Field(default=4, ge=1, le=64, description="items per read in the index stage")
    # Decoded pixels wait in Redis (up to 3 MB per image): the fetch stage pauses at this depth.
    embed_high_water: int = Field(default=64, ge=1)
    url_cache_ttl_s: int = Field(
        default=30 * 86400, ge=60, description="how long an image URL's ETag/Last-Modified is kept"
    )

    # --- the crawler (services/scraper/crawler) ---
    crawl_max_page_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="HTML pages over this are skipped (too_large)"
    )
    crawl_jobs_per_worker: int = Field(default=2, ge=1, le=32, description="crawls run at once per worker")

    # --- feeds, sync mode and scheduled refresh (feed_stage, sync, schedule) ---
    feed_timeout_s: float = Field(default=300.0, gt=0, description="whole download of a feed by URL")
    feed_jobs_per_worker: int = Field(default=2, ge=1, le=16, description="feeds read at once per worker")
    min_refresh_interval_s: int = Field(default=60, ge=1, description="shortest refresh interval run")
    scheduler_tick_s: float = Field(default=5.0, gt=0, description="how often due refreshes are started")
    sync_poll_s: float = Field(default=2.0, gt=0, description="how often finished sync imports are checked")
    sync_concurrency: int = Field(default=8, ge=1, le=64, description="indexer deletes at once in a sync")

    def fetch_policy(self, max_bytes: int | None = None) -> FetchPolicy:
        return FetchPolicy(
            max_bytes=max_bytes or self.fetch_max_bytes,
            timeout_s=self.fetch_timeout_s,
            max_redirects=self.fetch_max_redirects,
            allow_private=self.allow_private_urls,
            allow=AllowList.parse(self.fetch_allow),
        )

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_bytes=self.fetch_max_bytes,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
            max_side=self.max_side,
        )
