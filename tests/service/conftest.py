import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.devstack.ephemeral import free_port
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


@pytest.fixture(params=["faiss", "milvus"])
def indexer_backend(request: pytest.FixtureRequest) -> str:
    """The indexer's storage (VS_INDEXER_BACKEND): a test taking this runs once on each. milvus is
    milvus-lite in a file of the test's state dir, unless the test gives a server URI."""
    return str(request.param)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A milvus-lite server process on a free loopback port, shared by the session: indexers reach it
    over a URI, as replicas reach a Milvus cluster. Tests use their own collections."""
    yield from _milvus_lite_server(Path(tmp_path_factory.mktemp("milvus")))


@pytest.fixture
def own_milvus_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A milvus-lite server process of the test's own (to stop it): (URI, process)."""
    proc: list[subprocess.Popen[bytes]] = []
    for uri in _milvus_lite_server(tmp_path / "milvus-own", proc):
        yield uri, proc[0]


def _milvus_lite_server(
    data_dir: Path, started: list[subprocess.Popen[bytes]] | None = None
) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir / "data")]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log)
    if started is not None:
        started.append(proc)
    try:
        deadline = time.monotonic() + 60
        while not _accepts(port):
            assert proc.poll() is None, (data_dir / "server.log").read_text()
            assert time.monotonic() < deadline, "milvus-lite server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # its clean shutdown: drains, then closes the data dir
            proc.wait(timeout=30)
        log.close()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
