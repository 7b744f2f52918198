"""Settings base shared by every service.

Each service subclasses :class:`ServiceSettings` with its own prefix (``VS_DETECTOR_`` ...).
Settings shared by the whole stack (models dir, data dir, Redis URL, log level) are read from
``VS_*`` variables so one value configures every service.
"""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def shared(name: str) -> AliasChoices:
    """Env var names for a stack-wide setting: ``VS_<NAME>``."""
    return AliasChoices(f"VS_{name.upper()}")


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``model_config`` with their own env prefix."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 disables the /metrics listener")
    log_level: str = Field(default="INFO", validation_alias=shared("log_level"))
    models_dir: Path = Field(default=Path("models"), validation_alias=shared("models_dir"))
    data_dir: Path = Field(default=Path("data"), validation_alias=shared("data_dir"))
    # gRPC messages carry raw RGB crops; 64 MiB bounds a batch of large crops without being unbounded.
    grpc_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
