"""Indexer settings, read from ``VS_INDEXER_*`` environment variables (and the shared ``VS_*``)."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.indexer.ann import IndexType
from services.indexer.index import DEFAULT_NPROBE


class IndexerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VS_INDEXER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50053, ge=0, le=65535)
    backend: Literal["faiss", "milvus"] = Field(
        default="faiss",
        description="where the catalog and vectors live: faiss = FAISS + SQLite in state_dir (one "
        "indexer per dir); milvus = a Milvus collection at VS_MILVUS_URI (replicas share it)",
    )
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

    # --- backend=milvus (services/indexer/milvus_backend.py) ---
    milvus_uri: str = Field(
        default="",
        validation_alias=AliasChoices("VS_MILVUS_URI", "milvus_uri"),
        description="a Milvus server (http://host:19530) or a milvus-lite file (*.db, one process at a "
        "time); empty = <state_dir>/milvus.db",
    )
    milvus_token: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("VS_MILVUS_TOKEN", "milvus_token"),
        description="user:password or an API key; empty for none",
    )
    milvus_db: str = Field(
        default="", validation_alias=AliasChoices("VS_MILVUS_DB", "milvus_db"), description="empty = default"
    )
    milvus_collection: str = Field(
        default="visualsearch",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        validation_alias=AliasChoices("VS_MILVUS_COLLECTION", "milvus_collection"),
    )
    milvus_index_type: Literal["FLAT", "HNSW", "AUTOINDEX"] = Field(
        default="FLAT",
        description="the collection's vector index, set when it is created: FLAT = exact, as the faiss "
        "backend's default; HNSW for millions of vectors; AUTOINDEX on managed Milvus",
    )
    milvus_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        default="Strong",
        description="Strong: every replica sees every acknowledged write; Bounded trades seconds of lag for latency",
    )
    milvus_timeout_s: float = Field(
        default=10.0, gt=0, description="bound of each Milvus call, pymilvus' retries included"
    )

    @property
    def milvus_target(self) -> str:
        return self.milvus_uri or str(self.state_path / "milvus.db")

    @property
    def state_path(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.data_dir / "indexer"
