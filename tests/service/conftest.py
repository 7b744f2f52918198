from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.service.redis_server import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server shared by the session; tests use distinct keys or flush what they use."""
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on the shared Redis, emptied first: for asserting on queues and jobs."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()
