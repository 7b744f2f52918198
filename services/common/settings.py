"""Settings base shared by every service.

Each service subclasses :class:`ServiceSettings` with its own prefix (``VS_DETECTOR_`` ...).
Settings shared by the whole stack (models dir, data dir, Redis URL, log level) are read from
``VS_*`` variables so one value configures every service.
"""

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


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


def load_settings(cls: type[S]) -> S:
    """Reads a service's settings from the environment, or exits (code 2) naming each bad variable.

    Services call this first thing, so a missing address or a typo fails fast, before anything binds.
    """
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = "\n".join(
            f"  {_env_name(cls, prefix, error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        sys.stderr.write(f"invalid settings for {cls.__name__}:\n{problems}\n")
        raise SystemExit(2) from None


def _env_name(cls: type[BaseSettings], prefix: str, loc: tuple[int | str, ...]) -> str:
    if not loc:
        return prefix.rstrip("_") or "settings"
    field = cls.model_fields.get(str(loc[0]))
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{prefix}{'_'.join(str(part) for part in loc)}".upper()
