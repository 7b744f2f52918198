from pathlib import Path

import pytest

from services.indexer.config import IndexerSettings


def test_state_lives_under_the_shared_data_dir_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VS_INDEXER_STATE_DIR", raising=False)
    monkeypatch.setenv("VS_DATA_DIR", "/srv/vs")
    settings = IndexerSettings()
    assert settings.port == 50053
    assert settings.state_path == Path("/srv/vs/indexer")


def test_state_dir_can_be_set_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_DATA_DIR", "/srv/vs")
    monkeypatch.setenv("VS_INDEXER_STATE_DIR", "/var/lib/indexer")
    monkeypatch.setenv("VS_INDEXER_SNAPSHOT_INTERVAL_S", "5")
    settings = IndexerSettings()
    assert settings.state_path == Path("/var/lib/indexer")
    assert settings.snapshot_interval_s == 5.0


def test_backend_is_faiss_unless_milvus_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VS_INDEXER_BACKEND", "VS_MILVUS_URI", "VS_INDEXER_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VS_DATA_DIR", "/srv/vs")
    settings = IndexerSettings()
    assert settings.backend == "faiss"
    assert settings.milvus_target == "/srv/vs/indexer/milvus.db"  # milvus-lite in the state dir
    monkeypatch.setenv("VS_INDEXER_BACKEND", "milvus")
    monkeypatch.setenv("VS_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("VS_MILVUS_TOKEN", "root:secret")
    monkeypatch.setenv("VS_MILVUS_DB", "shop")
    monkeypatch.setenv("VS_MILVUS_COLLECTION", "products_v2")
    monkeypatch.setenv("VS_INDEXER_MILVUS_INDEX_TYPE", "HNSW")
    settings = IndexerSettings()
    assert (settings.backend, settings.milvus_target, settings.milvus_db) == (
        "milvus",
        "http://milvus:19530",
        "shop",
    )
    assert (settings.milvus_collection, settings.milvus_index_type) == ("products_v2", "HNSW")
    assert settings.milvus_token.get_secret_value() == "root:secret"
    assert "secret" not in repr(settings)
    monkeypatch.setenv("VS_MILVUS_COLLECTION", "no spaces")
    with pytest.raises(ValueError, match="VS_MILVUS_COLLECTION"):
        IndexerSettings()
