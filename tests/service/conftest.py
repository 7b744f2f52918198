from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.redis_server import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server shared by the session; tests use distinct keys or flush what they use."""
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url
