"""Settings of ``visualsearch models``: the shared ``VS_MODELS_DIR``, plus ``VS_FETCH_*`` download tuning."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ModelsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_FETCH_", extra="ignore", populate_by_name=True)

    # The embedder's own manifest setting, so `models fetch NAME` reads the manifest the embedder will load.
    manifest: Path | None = Field(default=None, validation_alias=AliasChoices("VS_EMBEDDER_MANIFEST"))
    attempts: int = Field(default=5, ge=1, le=20, description="tries per download, resuming each time")
    backoff_s: float = Field(default=1.0, ge=0.0, le=60.0, description="first retry delay; doubles per try")
    timeout_s: float = Field(default=30.0, gt=0.0, le=600.0, description="connect/read timeout, not total")
