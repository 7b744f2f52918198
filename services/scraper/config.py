from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScraperSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VS_SCRAPER_", extra="ignore")

    gateway_url: str = "http://127.0.0.1:8080"
    concurrency: int = Field(default=4, ge=1, le=64)
    request_timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
