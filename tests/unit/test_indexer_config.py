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
