"""Settings of the process launcher (``VS_STACK_*``); the services keep their own prefixes."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.devstack.replicas import MAX_REPLICAS

ROOT = Path(__file__).resolve().parents[2]


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VS_STACK_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, validation_alias="VS_GATEWAY_PORT")
    detector_port: int = 50051
    embedder_port: int = 50052
    indexer_port: int = 50053
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="VS_REDIS_URL")
    run_dir: Path = ROOT / ".run"
    data_dir: Path = Field(default=ROOT / "data", validation_alias="VS_DATA_DIR")
    models_dir: Path = Field(default=ROOT.parent / "shared" / "models", validation_alias="VS_MODELS_DIR")
    datasets_dir: Path = ROOT.parent / "shared" / "datasets"
    python: str = ""  # interpreter for the services; empty = the one running the launcher
    start_timeout_s: float = 120.0
    load_demo: bool = True
    # Replicas of the stateless services (services/devstack/replicas.py); 1 = the plain stack.
    detectors: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    embedders: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    gateways: int = Field(default=1, ge=1, le=MAX_REPLICAS)

    @property
    def gateway_url(self) -> str:
        """The first gateway's (the one on the configured port)."""
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def replica_counts(self) -> dict[str, int]:
        return {"detector": self.detectors, "embedder": self.embedders, "gateway": self.gateways}
