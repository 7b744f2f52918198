from pathlib import Path

import pytest

from tests.paths import DATASETS, MODELS


@pytest.fixture(scope="session")
def models_dir() -> Path:
    assert MODELS.is_dir(), f"shared models not found at {MODELS} (set VS_SHARED_DIR)"
    return MODELS


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    assert DATASETS.is_dir(), f"shared datasets not found at {DATASETS} (set VS_SHARED_DIR)"
    return DATASETS
