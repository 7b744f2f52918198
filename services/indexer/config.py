"""Indexer settings, read from ``VS_INDEXER_*`` environment variables (and the shared ``VS_*``)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.indexer.ann import IndexType
from services.indexer.index import DEFAULT_NPROBE


class IndexerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_INDEXER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50053, ge=0, le=65535)
    state_dir: Path | None = Field(
        default=None, description="where the catalog and index snapshot live; default <data_dir>/indexer"
    )
    max_k: int = Field(default=1000, ge=1, le=10_000)
    max_vectors_per_product: int = Field(default=32, ge=1, le=1024)
    max_list_limit: int = Field(default=1000, ge=1, le=100_000)
    category_rerank: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="weight of the nearest products' category vote in the ranking; 0 = plain cosine order "
        "(docs/quality.md)",
    )
    rerank_neighbours: int = Field(default=10, ge=1, le=100, description="how many nearest products vote")
    snapshot_interval_s: float = Field(
        default=30.0, gt=0, description="how often a changed index is snapshotted to disk"
    )

    index_type: IndexType = Field(
        default="auto",
        description="auto = exact flat below ann_threshold vectors, IVF-SQ8 from it; flat = always exact; "
        "ivf-sq8 / ivf-flat = always that IVF (once >= 1024 vectors); bench/index measures them",
    )
    ann_threshold: int = Field(
        default=100_000, ge=1, description="vectors from which index_type=auto switches to IVF-SQ8"
    )
    nprobe: int = Field(
        default=DEFAULT_NPROBE, ge=1, le=65_536, description="IVF lists scanned per query: recall vs speed"
    )
    ann_retrain_growth: float = Field(
        default=4.0, gt=1.0, description="retrain the IVF when the catalog grew (or shrank) this many times"
    )

    @property
    def state_path(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.data_dir / "indexer"
