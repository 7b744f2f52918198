import json
from pathlib import Path

import pytest

from services.devstack.config import StackSettings
from services.devstack.launcher import Stack


def stack(tmp_path: Path) -> Stack:
    return Stack(
        StackSettings(run_dir=tmp_path / "run", datasets_dir=tmp_path / "datasets", gateway_port=18080)
    )


def test_the_worker_reads_the_gateways_media_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VS_SCRAPER_LOCAL_MEDIA", raising=False)
    mounts = json.loads(stack(tmp_path).env()["VS_SCRAPER_LOCAL_MEDIA"])
    assert mounts == {"http://127.0.0.1:18080/media/": str(tmp_path / "datasets")}


def test_an_explicit_local_media_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_SCRAPER_LOCAL_MEDIA", "{}")
    assert stack(tmp_path).env()["VS_SCRAPER_LOCAL_MEDIA"] == "{}"
